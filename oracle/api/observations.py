"""Signed observations: what peers fetch to assemble a quorum."""

from __future__ import annotations

from fastapi import APIRouter

from oracle.api.deps import FleetIdPath, PeriodPath, ServicesDep
from oracle.api.errors import error_responses
from oracle.errors import NotFound
from oracle.models import ObservationOut

router = APIRouter(prefix="/v1/fleets", tags=["observations"])


def _out(row) -> ObservationOut:
    return ObservationOut(
        fleet_id=row.fleet_id,
        period=row.period,
        period_start=row.period_start,
        period_end=row.period_end,
        utilization_bps=row.utilization_bps,
        uptime_bps=row.uptime_bps,
        revenue=int(row.revenue),
        signer=row.signer,
        signature=row.signature,
    )


@router.get(
    "/{fleet_id}/periods/{period}/observation",
    response_model=ObservationOut,
    responses=error_responses(404),
    summary="This node's signed observation of a period",
)
def own_observation(fleet_id: FleetIdPath, period: PeriodPath, services: ServicesDep):
    """404 until the period has ended, settled and been signed by this node."""
    row = services.store.observation(fleet_id, period, services.account.address)
    if row is None:
        raise NotFound(f"no observation of fleet {fleet_id} period {period} signed yet")
    return _out(row)


@router.get(
    "/{fleet_id}/periods/{period}/observations",
    response_model=list[ObservationOut],
    summary="Every verified observation of a period this node holds",
)
def all_observations(fleet_id: FleetIdPath, period: PeriodPath, services: ServicesDep):
    """This node's observation and the peers' it fetched and verified."""
    return [_out(row) for row in services.store.observations_for(fleet_id, period)]
