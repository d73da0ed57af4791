"""A fleet's periods: bounds, open/sealed state and the running aggregate."""

from __future__ import annotations

from fastapi import APIRouter

from oracle.aggregation import aggregate_view
from oracle.api.deps import (
    FleetIdPath,
    FleetsDep,
    PeriodPath,
    ServicesDep,
    SettingsDep,
    StoreDep,
)
from oracle.api.errors import error_responses
from oracle.errors import NotFound
from oracle.models import PeriodView

router = APIRouter(prefix="/v1/fleets", tags=["fleets"])


def _view(fleet_id: int, period: int, fleets, store, settings) -> PeriodView:
    cfg = fleets.fleet(fleet_id)
    start, end = cfg.bounds(period)
    with store.read() as conn:
        row = store.period_row(conn, fleet_id, period)
        totals = store.totals(conn, fleet_id, period)
    return PeriodView(
        fleet_id=fleet_id,
        period=period,
        period_start=start,
        period_end=end,
        accepts_telemetry_until=end + settings.settle_seconds,
        next_reportable_period=cfg.next_period,
        sealed=bool(row.sealed) if row is not None else False,
        aggregate=aggregate_view(totals),
    )


@router.get(
    "/{fleet_id}/periods/current",
    response_model=PeriodView,
    responses=error_responses(404, 503),
    summary="The fleet's current period",
)
def current_period(
    fleet_id: FleetIdPath,
    fleets: FleetsDep,
    store: StoreDep,
    settings: SettingsDep,
    services: ServicesDep,
) -> PeriodView:
    """The period that contains the current time (the node's clock), with what this
    node holds for it."""
    cfg = fleets.fleet(fleet_id)
    period = cfg.period_at(int(services.clock()))
    if period is None:
        raise NotFound(f"fleet {fleet_id} starts at {cfg.genesis}", {"genesis": cfg.genesis})
    return _view(fleet_id, period, fleets, store, settings)


@router.get(
    "/{fleet_id}/periods/{period}",
    response_model=PeriodView,
    responses=error_responses(404, 503),
    summary="One period of the fleet",
)
def period_view(
    fleet_id: FleetIdPath,
    period: PeriodPath,
    fleets: FleetsDep,
    store: StoreDep,
    settings: SettingsDep,
) -> PeriodView:
    """Bounds, seal state and aggregate (as it would be signed now) of ``period``."""
    return _view(fleet_id, period, fleets, store, settings)
