"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from oracle.api.deps import MetricsDep
from oracle.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


class PrometheusResponse(PlainTextResponse):
    media_type = CONTENT_TYPE


@router.get(
    "/metrics",
    response_class=PrometheusResponse,
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}, "description": "text exposition format"}},
)
def metrics(registry: MetricsDep) -> PrometheusResponse:
    """Counters of batches, samples, transactions, peer fetches; request latency."""
    return PrometheusResponse(registry.render())
