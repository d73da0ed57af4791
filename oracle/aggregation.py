"""Aggregation of a fleet's period into the figures the contract stores.

Deterministic, integer-only and order-independent, so every honest node that
holds the same telemetry signs the same observation. For the samples ``i``
whose ``ts`` lies in ``[periodStart, periodEnd)`` and the revenue events whose
``ts`` lies there too:

* ``utilization_bps = floor(10_000 * sum(used_i) / sum(available_i))``, GPU-hours
  in exact micro-GPU-hours; 0 when nothing was available;
* ``uptime_bps = floor(10_000 * sum(uptime_seconds_i * gpu_count_i)
  / sum(interval_seconds_i * gpu_count_i))``: the GPU-weighted share of sampled
  time the GPUs were up; 0 without samples;
* ``revenue = sum(amount)`` of the period's revenue events (stablecoin units).

Both shares round down: an observation never overstates a fleet. The sums are
computed by the database (``Store.totals``); 100k samples aggregate in tens of
milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from oracle.models import MICRO, Aggregate
from oracle.store import Totals

BPS = 10_000


@dataclass(frozen=True)
class Figures:
    utilization_bps: int
    uptime_bps: int
    revenue: int


def figures(totals: Totals) -> Figures:
    utilization = BPS * totals.used_uh // totals.available_uh if totals.available_uh else 0
    uptime = BPS * totals.uptime_gpu_s // totals.span_gpu_s if totals.span_gpu_s else 0
    return Figures(utilization_bps=utilization, uptime_bps=uptime, revenue=totals.revenue)


def _hours(micro: int) -> str:
    whole, frac = divmod(micro, MICRO)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else str(whole)


def aggregate_view(totals: Totals) -> Aggregate:
    fig = figures(totals)
    return Aggregate(
        samples=totals.samples,
        revenue_events=totals.revenue_events,
        gpu_hours_available=_hours(totals.available_uh),
        gpu_hours_used=_hours(totals.used_uh),
        utilization_bps=fig.utilization_bps,
        uptime_bps=fig.uptime_bps,
        revenue=fig.revenue,
    )
