"""Reports recorded on-chain, with the transaction that landed each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from oracle.api.deps import FleetIdPath, StoreDep
from oracle.models import MAX_PERIOD, ReportOut

router = APIRouter(prefix="/v1/fleets", tags=["reports"])


@router.get(
    "/{fleet_id}/reports",
    response_model=list[ReportOut],
    summary="Past reports of a fleet, newest first",
)
def past_reports(
    fleet_id: FleetIdPath,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_PERIOD + 1, description="only periods below this")
    ] = None,
) -> list[ReportOut]:
    """Reported and missed periods this node has seen on-chain."""
    return [
        ReportOut(
            fleet_id=row.fleet_id,
            period=row.period,
            status=row.status,
            utilization_bps=row.utilization_bps,
            uptime_bps=row.uptime_bps,
            revenue=int(row.revenue),
            observations=row.observations,
            tx_hash=row.tx_hash,
            block_number=row.block_number,
            submitter=row.submitter,
            posted_by_this_node=row.posted_by_this_node,
            closed=row.closed,
            close_tx_hash=row.close_tx_hash,
        )
        for row in store.reports_for(fleet_id, limit, before)
    ]
