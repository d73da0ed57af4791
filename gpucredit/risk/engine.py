"""The deal engine: a note's periods on many paths at once, decided as the contracts do.

Every period close runs the shared rules of `gpucredit.audit.rules` (the same
functions the audit model runs on plain integers) on numpy int64 arrays, one
element per path: covenants (DSCR, LTV, uptime, freshness), coupon steps with
their look-backs, top-up with cure period, default, the waterfall (fees,
interest with reserve draws, amortization, reserve top-up, sweep, equity or
trapped cash, the wind-down after a step-in).

What the engine adds is the state between closes, per path:

- Coupon accrual. The contracts keep a per-face index scaled by 10^27,
  which needs more than 64 bits. The engine keeps the exact rational
  `sum(outstanding x rate x elapsed) / (10,000 x year)` as an integer part
  and a remainder, and rounds up. That equals the contracts'
  `ceil(index x original / 10^27)` whenever
  `accruals x original < 10^27 / (10,000 x year)` (about 3.2 x 10^15, e.g.
  200 accruals of a 15M tranche in 6-decimal units): each index step rounds
  down by less than one index unit, so the n steps together lose less than
  `n x original / 10^27` of a token unit, which is smaller than the
  `1 / (10,000 x year)` spacing of the exact sums. `check_exactness` refuses
  deals outside that bound.
- Cash collateral posted, the trustee's step-in (reserve and cash collateral
  join the trapped cash), the reserve, trapped cash and fee arrears.

Inputs are per path and period (`PathInputs`); outputs (`Run`) are the close's
decisions and waterfall amounts in the contracts' units, so a test can play a
path through the real contracts and compare event by event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpucredit.audit.model import CovenantTerms
from gpucredit.audit.rules import (
    BPS,
    DEFAULTED,
    PERFORMING,
    STEPPED_IN,
    WATERFALL_FIELDS,
    Due,
    StepState,
    batch_value,
    clamped_rate,
    decide,
    depreciation_factor_bps,
    principal_due,
    quarters_elapsed,
    reserve_target,
    waterfall,
)

YEAR = 365 * 86_400
_ACCRUAL_DIVISOR = BPS * YEAR  # interest = outstanding x rate x seconds / this
_INDEX_SCALE = 10**27


class ArrayOps:
    """numpy element-wise versions of `gpucredit.audit.rules.IntOps`."""

    min = staticmethod(np.minimum)
    max = staticmethod(np.maximum)
    and_ = staticmethod(np.logical_and)
    or_ = staticmethod(np.logical_or)
    not_ = staticmethod(np.logical_not)

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    @staticmethod
    def ceil_div(a: Any, b: Any) -> Any:
        return -(-a // b)

    @staticmethod
    def flag(cond: Any, bit: int) -> Any:
        return np.where(cond, np.int64(bit), np.int64(0))


ARRAY_OPS = ArrayOps()


@dataclass(frozen=True)
class TrancheParams:
    """One tranche as drawn: principal and coupon terms, schedule, maturity."""

    original: int
    reference_rate_bps: int
    spread_bps: int
    floor_rate_bps: int
    cap_rate_bps: int
    maturity: int
    # (due timestamp, cumulative bps of the original principal); empty = bullet
    schedule: tuple[tuple[int, int], ...] = ()
    drawdown_at: int | None = None  # accrual start; default: the deal's drawdown

    def cumulative_bps_at(self, ts: np.ndarray) -> np.ndarray:
        bps = np.zeros_like(ts)
        for due_at, cumulative in self.schedule:
            bps = np.where(ts >= due_at, cumulative, bps)
        return bps


@dataclass(frozen=True)
class BatchParams:
    """A pledged batch: total cost, its class's markdown and floor, in-service date."""

    cost: int
    markdown_bps: int
    floor_bps: int
    in_service_at: int


@dataclass(frozen=True)
class DealParams:
    """Everything the contracts know about a note once it is drawn."""

    covenants: CovenantTerms
    senior: TrancheParams
    junior: TrancheParams | None
    batches: tuple[BatchParams, ...]
    genesis: int  # start of period 0 (the subscription end)
    period_length: int
    heartbeat: int
    drawdown_at: int  # coupons accrue from here

    def period_end(self, period: int) -> int:
        return self.genesis + (period + 1) * self.period_length

    def check_exactness(self, periods: int) -> None:
        """Refuses a deal whose accrual the int64 engine could not reproduce to the unit."""
        for t in (self.senior, self.junior):
            if t is None:
                continue
            accruals = 4 * (periods + 2)  # closes plus holders' balance changes, generously
            if accruals * t.original * _ACCRUAL_DIVISOR >= _INDEX_SCALE:
                raise ValueError(
                    f"tranche original {t.original}: too large for the exact int64 engine"
                )
            if t.original * max(t.cap_rate_bps, 1) * 12 >= 2**62:
                raise ValueError(f"tranche original {t.original}: overflows int64")


@dataclass
class PathInputs:
    """What happens on each path in each period, arrays of shape (paths, periods).

    `close_ts` is when period p is closed (after its end; after its end plus
    the heartbeat when its report is missing). Cash posted as collateral
    arrives before the close; the trustee's step-in (only taken while the
    note is in default) happens right after it. `haircut_bps` is the
    registry's obsolescence haircut on the fleet's model at the close.
    """

    revenue_cash: np.ndarray
    revenue_reported: np.ndarray
    utilization: np.ndarray
    uptime: np.ndarray
    reported: np.ndarray  # bool: a report exists (else the close marks it missed)
    late: np.ndarray  # bool: reported after period end + heartbeat
    close_ts: np.ndarray
    haircut_bps: np.ndarray
    cash_posted: np.ndarray
    step_in: np.ndarray  # bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.revenue_cash.shape  # type: ignore[return-value]

    def slice(self, start: int, stop: int) -> PathInputs:
        return PathInputs(**{k: v[start:stop] for k, v in self.__dict__.items()})


# Per-period outputs, (paths, periods) each.
DECISION_FIELDS = (
    "status",
    "dscr",
    "ltv",
    "ltv_limit",
    "high_streak",
    "low_streak",
    "old_step",
    "new_step",
    "breaches",
    "sweep_on",
    "equity_blocked",
    "cured",
    "defaulted",
    "topup_new",
    "topup_required",
    "topup_deadline",
    "stepped_in",
    "senior_rate",
    "junior_rate",
    "senior_outstanding",
    "junior_outstanding",
    "senior_interest_due",
    "junior_interest_due",
    "collateral_value",
    "debt_service",
)
ALL_FIELDS = DECISION_FIELDS + WATERFALL_FIELDS


@dataclass
class Run:
    """Recorded outputs: name -> (paths, periods) array."""

    fields: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]


class _TrancheState:
    """Exact accrual of one tranche on every path (see the module docstring)."""

    def __init__(self, t: TrancheParams, n: int, start: int) -> None:
        self.t = t
        self.outstanding = np.full(n, t.original, dtype=np.int64)
        self.rate = np.full(
            n,
            clamped_rate(t.reference_rate_bps, t.spread_bps, 0, t.floor_rate_bps, t.cap_rate_bps),
            dtype=np.int64,
        )
        self.whole = np.zeros(n, dtype=np.int64)  # accrued, integer part
        self.frac = np.zeros(n, dtype=np.int64)  # remainder, in 1 / (BPS x YEAR)
        self.paid = np.zeros(n, dtype=np.int64)
        self.last = np.full(n, start, dtype=np.int64)

    def accrue(self, ts: np.ndarray) -> None:
        elapsed = ts - self.last
        if np.any(elapsed >= (2**63 - 1) // _ACCRUAL_DIVISOR):
            raise ValueError("a period longer than the exact int64 accrual allows")
        m = self.outstanding * self.rate
        hi, lo = np.divmod(m, _ACCRUAL_DIVISOR)
        extra, rest = np.divmod(lo * elapsed, _ACCRUAL_DIVISOR)
        self.whole += hi * elapsed + extra
        self.frac += rest
        carry = self.frac // _ACCRUAL_DIVISOR
        self.whole += carry
        self.frac -= carry * _ACCRUAL_DIVISOR
        self.last = np.maximum(self.last, ts)

    def interest_due(self) -> np.ndarray:
        accrued = self.whole + (self.frac > 0)
        return np.maximum(accrued - self.paid, 0)

    def set_step(self, step: np.ndarray) -> None:
        t = self.t
        self.rate = clamped_rate(
            t.reference_rate_bps, t.spread_bps, step, t.floor_rate_bps, t.cap_rate_bps, ARRAY_OPS
        ).astype(np.int64)


def collateral_value(deal: DealParams, ts: np.ndarray, haircut_bps: np.ndarray) -> np.ndarray:
    """The registry's value of the note's batches at `ts` (per path)."""
    total = np.zeros_like(ts)
    for b in deal.batches:
        q = quarters_elapsed(b.in_service_at, ts, ARRAY_OPS)
        factor = depreciation_factor_bps(b.markdown_bps, b.floor_bps, q, ARRAY_OPS)
        total += batch_value(np.int64(b.cost), factor, haircut_bps)
    return total


@dataclass
class View:
    """What an actor sees before a close (state after the previous one)."""

    ts: np.ndarray
    status: np.ndarray
    topup_deadline: np.ndarray
    topup_required: np.ndarray
    cash_collateral: np.ndarray
    senior_outstanding: np.ndarray
    junior_outstanding: np.ndarray


Actor = Callable[[int, View], None]


def run(
    deal: DealParams,
    paths: PathInputs,
    keep: tuple[str, ...] = ALL_FIELDS,
    actor: Actor | None = None,
) -> Run:
    """Plays every path's periods; returns the fields in `keep`, (paths, periods) each.

    `actor(p, view)`, when given, runs before close `p` and may write column
    `p` of `paths` (revenue, cash posted, step-in): the operator's and the
    trustee's reactions to the state the previous closes left.
    """
    n, periods = paths.shape
    deal.check_exactness(periods)
    o = ARRAY_OPS
    t = deal.covenants
    i64 = np.int64
    senior = _TrancheState(deal.senior, n, deal.senior.drawdown_at or deal.drawdown_at)
    junior_params = deal.junior or TrancheParams(0, 0, 0, 0, 0, deal.senior.maturity)
    junior = _TrancheState(junior_params, n, junior_params.drawdown_at or deal.drawdown_at)
    has_junior = deal.junior is not None

    s = StepState(
        status=np.full(n, PERFORMING, dtype=i64),
        high_streak=np.zeros(n, dtype=i64),
        low_streak=np.zeros(n, dtype=i64),
        step=np.zeros(n, dtype=i64),
        low_step_on=np.zeros(n, dtype=bool),
        topup_deadline=np.zeros(n, dtype=i64),
        topup_required=np.zeros(n, dtype=i64),
    )
    reserve = np.zeros(n, dtype=i64)
    trapped = np.zeros(n, dtype=i64)
    cash_collateral = np.zeros(n, dtype=i64)
    fee_arrears = np.zeros(n, dtype=i64)

    # column-major: each period's column is contiguous to write
    out = {name: np.empty((n, periods), dtype=_dtype(name), order="F") for name in keep}

    def record(name: str, p: int, value: Any) -> None:
        if name in out:
            out[name][:, p] = value

    for p in range(periods):
        ts = paths.close_ts[:, p].astype(i64, copy=False)
        if actor is not None:
            actor(
                p,
                View(
                    ts,
                    s.status,
                    s.topup_deadline,
                    s.topup_required,
                    cash_collateral,
                    senior.outstanding,
                    junior.outstanding,
                ),
            )
        # before the close: cash collateral (into the wind-down once stepped in)
        posted = paths.cash_posted[:, p].astype(i64, copy=False)
        wound = s.status == STEPPED_IN
        trapped += np.where(wound, posted, 0)
        cash_collateral += np.where(wound, 0, posted)
        revenue_cash = paths.revenue_cash[:, p].astype(i64, copy=False)
        reported = paths.reported[:, p]
        late = np.logical_and(reported, paths.late[:, p])
        utilization = np.where(reported, paths.utilization[:, p], 0).astype(i64, copy=False)
        uptime = np.where(reported, paths.uptime[:, p], 0).astype(i64, copy=False)
        revenue_reported = np.where(reported, paths.revenue_reported[:, p], 0)
        revenue_reported = revenue_reported.astype(i64, copy=False)

        senior.accrue(ts)
        junior.accrue(ts)
        matured_s = ts >= deal.senior.maturity
        matured_j = ts >= junior_params.maturity
        due = Due(
            cash_in=revenue_cash + trapped,
            reserve_balance=reserve,
            reserve_target=reserve_target(senior.outstanding, senior.rate, t.reserve_months, o),
            fees=t.fee_per_period + fee_arrears,
            senior_interest=senior.interest_due(),
            junior_interest=junior.interest_due(),
            senior_principal=principal_due(
                senior.t.original,
                senior.outstanding,
                deal.senior.cumulative_bps_at(ts),
                matured_s,
                o,
            ),
            junior_principal=principal_due(
                junior_params.original,
                junior.outstanding,
                junior_params.cumulative_bps_at(ts),
                matured_j,
                o,
            ),
            senior_outstanding=senior.outstanding.copy(),
            junior_outstanding=junior.outstanding.copy(),
            sweep_share_bps=t.sweep_share_bps,
            wind_down=s.status == STEPPED_IN,
        )
        debt_service = (
            due.fees
            + due.senior_interest
            + due.senior_principal
            + due.junior_interest
            + due.junior_principal
        )
        gpu_value = collateral_value(deal, ts, paths.haircut_bps[:, p].astype(i64, copy=False))
        outstanding = due.senior_outstanding + due.junior_outstanding
        record("senior_interest_due", p, due.senior_interest)
        record("junior_interest_due", p, due.junior_interest)
        record("collateral_value", p, gpu_value)
        record("debt_service", p, debt_service)

        d = decide(
            s,
            t,
            ts=ts,
            reported=reported,
            late=late,
            utilization=utilization,
            uptime=uptime,
            revenue_reported=revenue_reported,
            revenue_cash=revenue_cash,
            debt_service=debt_service,
            collateral=gpu_value + cash_collateral,
            outstanding=outstanding,
            o=o,
        )
        due.sweep_on = d.sweep_on
        due.equity_blocked = d.equity_blocked
        w = waterfall(due, o)

        reserve = w["reserveBalance"]
        trapped = w["trapped"]
        fee_arrears = due.fees - w["fees"]

        senior.paid += w["seniorInterest"]
        senior.outstanding -= w["seniorPrincipal"] + w["sweep"]
        junior.paid += w["juniorInterest"]
        junior.outstanding -= w["juniorPrincipal"]
        # a step change re-rates both tranches (the rate is a function of the step)
        senior.set_step(s.step)
        if has_junior:
            junior.set_step(s.step)

        for name, value in (
            ("dscr", d.dscr),
            ("ltv", d.ltv),
            ("ltv_limit", d.ltv_limit),
            ("high_streak", s.high_streak),
            ("low_streak", s.low_streak),
            ("old_step", d.old_step),
            ("new_step", d.new_step),
            ("breaches", d.breaches),
            ("sweep_on", d.sweep_on),
            ("equity_blocked", d.equity_blocked),
            ("cured", d.cured),
            ("defaulted", d.defaulted),
            ("topup_new", d.topup_new),
            ("topup_required", s.topup_required),
            ("topup_deadline", s.topup_deadline),
            ("senior_rate", senior.rate),
            ("junior_rate", junior.rate),
            ("senior_outstanding", senior.outstanding),
            ("junior_outstanding", junior.outstanding),
        ):
            record(name, p, value)
        for name in WATERFALL_FIELDS:
            record(name, p, w[name])

        # after the close: the trustee steps in on a defaulted note
        stepping = np.logical_and(paths.step_in[:, p], s.status == DEFAULTED)
        s.status = np.where(stepping, STEPPED_IN, s.status)
        trapped = trapped + np.where(stepping, cash_collateral + reserve, 0)
        cash_collateral = np.where(stepping, 0, cash_collateral)
        reserve = np.where(stepping, 0, reserve)
        record("stepped_in", p, stepping)
        record("status", p, s.status)
    return Run(out)


_BOOL_FIELDS = {"sweep_on", "equity_blocked", "cured", "defaulted", "topup_new", "stepped_in"}


def _dtype(name: str) -> Any:
    return np.bool_ if name in _BOOL_FIELDS else np.int64
