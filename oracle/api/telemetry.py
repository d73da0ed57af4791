"""Operators push signed telemetry batches."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from oracle.api.deps import FleetIdPath, IngestorDep, MetricsDep
from oracle.api.errors import error_responses
from oracle.errors import OracleError
from oracle.models import TelemetryAccepted, TelemetryBatchIn

router = APIRouter(prefix="/v1/fleets", tags=["telemetry"])


@router.post(
    "/{fleet_id}/telemetry",
    status_code=201,
    response_model=TelemetryAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
    summary="Push a signed telemetry batch",
)
async def push_telemetry(
    fleet_id: FleetIdPath,
    batch: TelemetryBatchIn,
    request: Request,
    ingestor: IngestorDep,
    metrics: MetricsDep,
) -> TelemetryAccepted:
    """Stores a batch of samples and revenue events signed by the fleet's operator.

    The signature is EIP-712 ``TelemetryBatch(uint256 fleetId,bytes32 batchId,
    bytes32 payloadHash)`` with ``payloadHash`` the keccak256 of the canonical
    JSON of the body without ``signature`` (see docs/oracle-service.md). The
    batch is committed to the database before 201 is answered; on any error
    nothing is stored. Sending the same batch again answers 409
    ``batch_replayed`` and stores nothing.
    """
    raw = json.loads(await request.body())  # the exact content the operator signed
    try:
        ack = await ingestor.ingest_async(fleet_id, batch, raw)
    except OracleError as exc:
        metrics.batches.inc(1, exc.code)
        raise
    metrics.batches.inc(1, "accepted")
    metrics.samples.inc(ack.samples)
    metrics.revenue_events.inc(ack.revenue_events)
    return ack
