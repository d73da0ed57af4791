"""Dependencies shared by the routers, as ``Annotated[..., Depends()]`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from oracle.chain import FleetDirectory
from oracle.ingest import Ingestor
from oracle.metrics import Metrics
from oracle.models import MAX_FLEET_ID, MAX_PERIOD
from oracle.services import Services
from oracle.settings import Settings
from oracle.store import Store


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_store(services: Annotated[Services, Depends(get_services)]) -> Store:
    return services.store


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


async def get_fleets(services: Annotated[Services, Depends(get_services)]) -> FleetDirectory:
    return services.fleets


async def get_ingestor(services: Annotated[Services, Depends(get_services)]) -> Ingestor:
    return services.ingestor


async def get_metrics(services: Annotated[Services, Depends(get_services)]) -> Metrics:
    return services.metrics


ServicesDep = Annotated[Services, Depends(get_services)]
StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
FleetsDep = Annotated[FleetDirectory, Depends(get_fleets)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FleetIdPath = Annotated[int, Path(ge=0, le=MAX_FLEET_ID, description="on-chain fleet id")]
PeriodPath = Annotated[int, Path(ge=0, le=MAX_PERIOD, description="period index from genesis")]
