"""Random engine paths, and the same paths played through the audit model.

The engine is checked against the audit model (`tests/risk/test_engine_vs_model.py`)
and against the contracts on anvil
(`tests/integration/test_risk_engine_vs_contracts.py`) on the paths made
here: every covenant event occurs on some of them (steps both ways, top-ups
cured with cash and lapsed into default, step-ins and the wind-down, missed
and late reports, sweeps, equity blocks, amortization, haircut cuts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpucredit.audit import model as m
from gpucredit.protocol import CovenantSpec
from gpucredit.risk.engine import (
    BatchParams,
    DealParams,
    PathInputs,
    TrancheParams,
)

DAY = 86_400
USD = 10**6
PERIOD = 30 * DAY
HOUR = 3_600

# The fields compared per period: the close's decisions and the waterfall.
RESULT_FIELDS = (
    "dscrBps",
    "ltvBps",
    "ltvLimitBps",
    "highStreak",
    "lowStreak",
    "oldStepBps",
    "newStepBps",
    "breaches",
    "sweepOn",
    "equityBlocked",
)
ENGINE_RESULT = {
    "dscrBps": "dscr",
    "ltvBps": "ltv",
    "ltvLimitBps": "ltv_limit",
    "highStreak": "high_streak",
    "lowStreak": "low_streak",
    "oldStepBps": "old_step",
    "newStepBps": "new_step",
    "breaches": "breaches",
    "sweepOn": "sweep_on",
    "equityBlocked": "equity_blocked",
}


@dataclass(frozen=True)
class ReferenceDeal:
    """The seed deal of tests/integration: 1,000 H100 x $25,000, 14M senior + 3M junior."""

    start: int  # subscription opens
    subscription: int = 14 * DAY
    term: int = 360 * DAY
    in_service_offset: int = -1  # GPUs in service this long after `start`

    def params(self, drawdown_at: int, in_service_at: int | None = None) -> DealParams:
        genesis = self.start + self.subscription
        maturity = genesis + self.term
        cov = m.CovenantTerms(*CovenantSpec().as_tuple())  # the seed terms
        schedule = ((genesis + 180 * DAY, 3_334), (genesis + 270 * DAY, 6_667))
        senior = TrancheParams(14_000_000 * USD, 430, 450, 500, 2_500, maturity, schedule)
        junior = TrancheParams(3_000_000 * USD, 430, 900, 500, 2_500, maturity)
        isa = self.start - 1 if in_service_at is None else in_service_at
        batches = (BatchParams(1_000 * 25_000 * USD, 500, 0, isa),)
        return DealParams(cov, senior, junior, batches, genesis, PERIOD, 7 * DAY, drawdown_at)


def random_paths(deal: DealParams, n: int, periods: int, seed: int) -> PathInputs:
    """Paths that visit every event; close times on a whole-second grid after each period end."""
    rng = np.random.default_rng(seed)
    shape = (n, periods)
    regime = rng.choice(4, size=shape, p=[0.35, 0.3, 0.2, 0.15])  # strong, normal, weak, shock
    lo = np.array([9_000, 6_000, 4_000, 1_000])[regime]
    hi = np.array([10_000, 9_000, 6_500, 4_000])[regime]
    utilization = rng.integers(lo, hi + 1)
    uptime = np.where(rng.random(shape) < 0.8, rng.integers(9_900, 10_001, shape), 9_500)
    base = rng.integers(300_000, 2_000_000, shape) * USD
    revenue_cash = base * utilization // 10_000 + rng.integers(0, 1_000_000, shape)
    revenue_cash = np.where(rng.random(shape) < 0.05, 0, revenue_cash)
    revenue_reported = np.where(
        rng.random(shape) < 0.8, revenue_cash, revenue_cash * rng.integers(50, 150, shape) // 100
    )
    reported = rng.random(shape) > 0.07
    late = np.logical_and(reported, rng.random(shape) < 0.05)
    ends = np.array([deal.period_end(p) for p in range(periods)], dtype=np.int64)
    lag = np.where(
        np.logical_or(~reported, late), deal.heartbeat + rng.integers(1, 3 * DAY, shape), 0
    )
    lag = lag + rng.integers(HOUR, DAY, shape)  # room to report before the close
    close_ts = ends[None, :] + lag
    # a path's closes never go back in time, and stay inside the next period's window
    close_ts = np.maximum.accumulate(close_ts, axis=1)
    cuts = rng.random(shape) < 0.06
    steps = np.where(cuts, rng.integers(500, 2_500, shape), 0)
    haircut = np.minimum(np.cumsum(steps, axis=1), 9_000)
    cash_posted = np.where(rng.random(shape) < 0.15, rng.integers(1, 6_000_000, shape) * USD, 0)
    step_in = rng.random(shape) < 0.6
    return PathInputs(
        revenue_cash=revenue_cash.astype(np.int64),
        revenue_reported=revenue_reported.astype(np.int64),
        utilization=utilization.astype(np.int64),
        uptime=uptime.astype(np.int64),
        reported=reported,
        late=late,
        close_ts=close_ts.astype(np.int64),
        haircut_bps=haircut.astype(np.int64),
        cash_posted=cash_posted.astype(np.int64),
        step_in=step_in,
    )


def _tranche(address: str, t: TrancheParams, seniority: int, deal: DealParams) -> m.Tranche:
    terms = m.TrancheTerms(
        note_id=1,
        seniority=seniority,
        max_size=t.original,
        min_subscription=1,
        subscription_start=0,
        subscription_end=deal.genesis,
        maturity=t.maturity,
        reference_rate_bps=t.reference_rate_bps,
        spread_bps=t.spread_bps,
        floor_rate_bps=t.floor_rate_bps,
        cap_rate_bps=t.cap_rate_bps,
        min_collateral_ratio_bps=0,
    )
    tr = m.Tranche(address, terms)
    tr.state = m.ACTIVE
    tr.original = tr.outstanding = tr.total_supply = t.original
    tr.last_accrual_at = t.drawdown_at or deal.drawdown_at
    tr.schedule = list(t.schedule)
    return tr


def play_model(deal: DealParams, paths: PathInputs, i: int) -> list[dict[str, Any]]:
    """Path `i` through the audit model; per period the close's result and waterfall."""
    registry = m.Registry()
    note = m.NoteCollateral(note_id=1, issuer="i", servicer="s", bound=True)
    registry.notes[1] = note
    models = []
    for k, b in enumerate(deal.batches, start=1):
        # one model per batch, so that each keeps its own depreciation class;
        # every model takes the path's haircut
        model = f"0x{k:064x}"
        models.append((model, k))
        registry.classes[k] = (b.markdown_bps, b.floor_bps)
        registry.models[model] = (k, 0)
        registry.batches[k] = m.Batch(
            batch_id=k,
            issuer="i",
            operator="o",
            count=1,
            total_cost=b.cost,
            model=model,
            in_service_at=b.in_service_at,
            status=m.BATCH_PLEDGED,
            keys_registered=1,
            note_id=1,
        )
        note.batch_ids.append(k)
    oracle = m.Oracle()
    fleet = m.Fleet(1, "o", "s", deal.genesis, deal.period_length, deal.heartbeat)
    oracle.fleets[1] = fleet
    senior = _tranche("senior", deal.senior, 0, deal)
    junior = _tranche("junior", deal.junior, 1, deal) if deal.junior else None
    servicer = m.Servicer("servicer", 1, deal.covenants, senior, junior)
    rows = []
    _, periods = paths.shape
    for p in range(periods):
        ts = int(paths.close_ts[i, p])
        for model, class_id in models:
            registry.models[model] = (class_id, int(paths.haircut_bps[i, p]))
        posted = int(paths.cash_posted[i, p])
        if servicer.status == m.STEPPED_IN:
            servicer.trapped += posted
        else:
            servicer.cash_collateral += posted
        servicer.period_revenue += int(paths.revenue_cash[i, p])
        if paths.reported[i, p]:
            _, end = fleet.bounds(p)
            recorded = end + deal.heartbeat + 1 if paths.late[i, p] else end + 1
            fleet.reports[p] = m.Report(
                m.REPORTED,
                int(paths.utilization[i, p]),
                int(paths.uptime[i, p]),
                int(paths.revenue_reported[i, p]),
                recorded,
                2,
            )
            fleet.next_period = p + 1
        outcome = servicer.close(ts, registry, oracle, "oracle")
        if outcome.problem:
            raise AssertionError(f"path {i} period {p}: {outcome.problem}")
        row: dict[str, Any] = {"events": [name for _, name, _ in outcome.events]}
        for _, name, args in outcome.events:
            if name == "PeriodClosed":
                row.update(args["result"])
                row["inputs"] = args["inputs"]
            elif name == "WaterfallDistributed":
                row["waterfall"] = args["result"]
        if paths.step_in[i, p] and servicer.status == m.DEFAULTED:
            servicer.trapped += servicer.cash_collateral + servicer.reserve
            servicer.cash_collateral = 0
            servicer.reserve = 0
            servicer.status = m.STEPPED_IN
        row["status"] = servicer.status
        rows.append(row)
    return rows


def engine_row(run: Any, i: int, p: int) -> dict[str, Any]:
    """The engine's period `p` on path `i`, shaped like `play_model`'s rows."""
    from gpucredit.audit.rules import WATERFALL_FIELDS

    row: dict[str, Any] = {k: _py(run[v][i, p]) for k, v in ENGINE_RESULT.items()}
    row["waterfall"] = {k: int(run[k][i, p]) for k in WATERFALL_FIELDS}
    row["status"] = int(run["status"][i, p])
    return row


def _py(value: Any) -> Any:
    return bool(value) if isinstance(value, np.bool_) else int(value)


def compare(engine: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Differences between two rows (decisions and waterfall amounts)."""
    diffs = [
        f"{k}: engine {engine[k]} != {other[k]}"
        for k in RESULT_FIELDS
        if _py(engine[k]) != _py(other[k])
    ]
    for k, v in engine["waterfall"].items():
        if int(v) != int(other["waterfall"][k]):
            diffs.append(f"waterfall.{k}: engine {v} != {other['waterfall'][k]}")
    return diffs
