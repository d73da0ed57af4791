"""The servicer's period-close rules, written once for two kinds of numbers.

`gpucredit.audit.model` (the auditor's reference model, plain Python
integers, one note) and `gpucredit.risk.engine` (the Monte Carlo engine,
numpy int64 arrays, one value per path) both decide a period with the
functions below, so a rule changed here changes both. The functions only do
arithmetic through an *ops* object:

- `INT_OPS` (this module): Python ints and bools, exact at any size. The
  audit model uses it and so stays free of numpy and of the risk engine: the
  replay's independence from the contracts is unchanged.
- `gpucredit.risk.engine.ARRAY_OPS`: numpy element-wise versions of the same
  operations (`np.minimum`, `np.where`, ...).

Every branch is written as a selection (`ops.where`), never as an `if` on a
value, so the same code runs on one note or on 100,000 paths at once. The
rules are those of `contracts/servicing/Servicer.sol` and
`contracts/libraries/Waterfall.sol` (README "Covenants at each period close",
"Coupon steps", "Remedies", "Revenue waterfall"); docs/audit.md lists the
sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BPS = 10_000
UINT32_MAX = 2**32 - 1
UINT8_MAX = 255

# Covenant breach flags (IServicer.CovenantResult.breaches)
BREACH_DSCR = 1
BREACH_LTV = 2
BREACH_UPTIME = 4
BREACH_STALE = 8
BREACH_LOW_UTILIZATION = 16
BREACH_TOPUP_OUTSTANDING = 32
BREACH_DEFAULT = 64

# IServicer.Status
PERFORMING, DEFAULTED, STEPPED_IN, RELEASED = range(4)

# WaterfallDistributed.result (IServicer.WaterfallResult), in its field order
WATERFALL_FIELDS = (
    "cashIn",
    "fees",
    "seniorInterest",
    "juniorInterest",
    "seniorPrincipal",
    "juniorPrincipal",
    "reserveDrawn",
    "reserveAdded",
    "sweep",
    "equity",
    "trapped",
    "reserveBalance",
)


class IntOps:
    """Exact Python-integer arithmetic (the audit model)."""

    @staticmethod
    def min(a: Any, b: Any) -> Any:
        return a if a <= b else b

    @staticmethod
    def max(a: Any, b: Any) -> Any:
        return a if a >= b else b

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def and_(a: Any, b: Any) -> bool:
        return bool(a) and bool(b)

    @staticmethod
    def or_(a: Any, b: Any) -> bool:
        return bool(a) or bool(b)

    @staticmethod
    def not_(a: Any) -> bool:
        return not a

    @staticmethod
    def ceil_div(a: Any, b: Any) -> Any:
        return -(-a // b)

    @staticmethod
    def flag(cond: Any, bit: int) -> int:
        return bit if cond else 0


INT_OPS = IntOps()


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------
# Collateral valuation (CollateralRegistry, libraries/Depreciation.sol)
# ---------------------------------------------------------------------------

QUARTER = 7_889_400  # 365.25 days / 4
_BPS2 = BPS * BPS


def depreciation_factor_bps(
    markdown_bps: Any, floor_bps: Any, quarters: Any, o: Any = INT_OPS
) -> Any:
    """max(floor, 10,000 - quarters x markdown); 10,000 without markdown."""
    markdown = o.min(quarters, BPS) * markdown_bps
    factor = o.where(markdown >= BPS, floor_bps, o.max(floor_bps, BPS - markdown))
    return o.where(markdown_bps == 0, BPS, factor)


def quarters_elapsed(in_service_at: Any, ts: Any, o: Any = INT_OPS) -> Any:
    """Full quarters in service (rounded down); 0 before the in-service date."""
    return o.where(ts <= in_service_at, 0, (ts - in_service_at) // QUARTER)


def batch_value(cost: Any, factor_bps: Any, haircut_bps: Any) -> Any:
    """cost x factor x (1 - haircut) / 10,000^2, rounded down.

    Split so that no intermediate exceeds 2^63 for costs below 9 x 10^14
    (numpy int64); exact for Python ints too.
    """
    x = cost * factor_bps
    keep = BPS - haircut_bps
    return (x // _BPS2) * keep + (x % _BPS2) * keep // _BPS2


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def dscr_bps(revenue_reported: Any, revenue_cash: Any, debt_service: Any, o: Any = INT_OPS) -> Any:
    """min(oracle revenue, cash revenue) / debt service, rounded down; max without debt service."""
    safe = o.max(debt_service, 1)
    ratio = o.min(o.min(revenue_reported, revenue_cash) * BPS // safe, UINT32_MAX)
    return o.where(debt_service == 0, UINT32_MAX, ratio)


def ltv_bps(outstanding: Any, collateral: Any, o: Any = INT_OPS) -> Any:
    """Outstanding / (GPU value + cash collateral), rounded up; 0 with nothing outstanding."""
    safe = o.max(collateral, 1)
    ratio = o.min(o.ceil_div(outstanding * BPS, safe), UINT32_MAX)
    return o.where(outstanding == 0, 0, o.where(collateral == 0, UINT32_MAX, ratio))


def reserve_target(senior_outstanding: Any, senior_rate: Any, months: int, o: Any = INT_OPS) -> Any:
    """`months` of senior interest at the current rate, rounded up."""
    return o.ceil_div(senior_outstanding * senior_rate * months, 12 * BPS)


def clamped_rate(
    reference: Any, spread: int, step: Any, floor: int, cap: int, o: Any = INT_OPS
) -> Any:
    """reference + spread + step, clamped to [floor, cap]."""
    return o.min(o.max(reference + spread + step, floor), cap)


def principal_due(
    original: Any, outstanding: Any, cumulative_bps: Any, matured: Any, o: Any = INT_OPS
) -> Any:
    """Scheduled principal due and unpaid (all of it from maturity)."""
    scheduled = o.ceil_div(original * cumulative_bps, BPS)
    repaid = original - outstanding
    due = o.where(scheduled > repaid, o.min(scheduled - repaid, outstanding), 0)
    return o.where(outstanding == 0, 0, o.where(matured, outstanding, due))


# ---------------------------------------------------------------------------
# Covenants, coupon steps and remedies at a close
# ---------------------------------------------------------------------------


@dataclass
class StepState:
    """The servicer's covenant engine state (`IServicer` Engine)."""

    status: Any = PERFORMING
    high_streak: Any = 0
    low_streak: Any = 0
    step: Any = 0
    low_step_on: Any = False
    topup_deadline: Any = 0
    topup_required: Any = 0


@dataclass
class Decision:
    """What a close decided, besides the new `StepState`."""

    cured: Any  # an open top-up is cured at this close
    defaulted: Any  # the cure lapsed: event of default at this close
    cure_collateral: Any  # collateral seen by the cure / default check
    topup_new: Any  # a top-up is demanded at this close
    low: Any
    old_step: Any
    new_step: Any
    dscr: Any
    ltv: Any
    ltv_limit: Any
    breaches: Any
    sweep_on: Any
    equity_blocked: Any


def decide(
    s: StepState,
    t: Any,
    *,
    ts: Any,
    reported: Any,
    late: Any,
    utilization: Any,
    uptime: Any,
    revenue_reported: Any,
    revenue_cash: Any,
    debt_service: Any,
    collateral: Any,
    outstanding: Any,
    o: Any = INT_OPS,
) -> Decision:
    """`closePeriod()`'s decisions; updates `s` in place.

    `t` holds the covenant terms (`CovenantTerms` field names); `collateral`
    is GPU value plus cash collateral. Order as in the contract: streaks, an
    open top-up (cured, lapsed into default, or still open), the coupon
    step, a new top-up, then the breach flags.
    """
    # A late report is used but never counts as good; a missing one counts as low.
    high = o.and_(o.and_(reported, o.not_(late)), utilization >= t.step_down_util_bps)
    low = o.or_(o.not_(reported), utilization < t.step_up_util_bps)
    s.high_streak = o.where(high, o.min(s.high_streak + 1, UINT8_MAX), 0)
    s.low_streak = o.where(low, o.min(s.low_streak + 1, UINT8_MAX), 0)

    open_topup = s.topup_deadline != 0
    cured = o.and_(open_topup, collateral >= s.topup_required)
    defaulted = o.and_(
        o.and_(open_topup, o.not_(cured)),
        o.and_(ts > s.topup_deadline, s.status == PERFORMING),
    )
    s.topup_deadline = o.where(cured, 0, s.topup_deadline)
    s.topup_required = o.where(cured, 0, s.topup_required)
    s.status = o.where(defaulted, DEFAULTED, s.status)

    # Step-up on after `step_up_periods` low periods; off at the first close
    # that is not low with no top-up open. Step-down on after
    # `step_down_periods` high periods. The two add up.
    switch_off = o.and_(o.and_(s.low_step_on, o.not_(low)), s.topup_deadline == 0)
    s.low_step_on = o.where(
        s.low_streak >= t.step_up_periods, True, o.where(switch_off, False, s.low_step_on)
    )
    old_step = s.step
    new_step = o.where(s.high_streak >= t.step_down_periods, t.step_down_bps, 0) + o.where(
        s.low_step_on, t.step_up_bps, 0
    )
    s.step = new_step

    ltv_limit = o.where(s.low_step_on, t.low_util_max_ltv_bps, t.max_ltv_bps)
    ltv = ltv_bps(outstanding, collateral, o)
    topup_new = o.and_(o.and_(ltv > ltv_limit, s.topup_deadline == 0), s.status == PERFORMING)
    required = o.ceil_div(outstanding * BPS, ltv_limit)
    s.topup_required = o.where(topup_new, required, s.topup_required)
    s.topup_deadline = o.where(topup_new, ts + t.cure_period, s.topup_deadline)

    dscr = dscr_bps(revenue_reported, revenue_cash, debt_service, o)
    breaches = (
        o.flag(dscr < t.dscr_min_bps, BREACH_DSCR)
        | o.flag(ltv > ltv_limit, BREACH_LTV)
        | o.flag(o.and_(reported, uptime < t.uptime_sla_bps), BREACH_UPTIME)
        | o.flag(o.or_(o.not_(reported), late), BREACH_STALE)
        | o.flag(low, BREACH_LOW_UTILIZATION)
        | o.flag(s.topup_deadline != 0, BREACH_TOPUP_OUTSTANDING)
        | o.flag(s.status != PERFORMING, BREACH_DEFAULT)
    )
    sweep_on = (breaches & (BREACH_DSCR | BREACH_TOPUP_OUTSTANDING | BREACH_DEFAULT)) != 0
    return Decision(
        cured=cured,
        defaulted=defaulted,
        cure_collateral=collateral,
        topup_new=topup_new,
        low=low,
        old_step=old_step,
        new_step=new_step,
        dscr=dscr,
        ltv=ltv,
        ltv_limit=ltv_limit,
        breaches=breaches,
        sweep_on=sweep_on,
        equity_blocked=breaches != 0,
    )


# ---------------------------------------------------------------------------
# Revenue waterfall
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Due:
    """What a period's waterfall owes, read at the close."""

    cash_in: Any
    reserve_balance: Any
    reserve_target: Any
    fees: Any
    senior_interest: Any
    junior_interest: Any
    senior_principal: Any
    junior_principal: Any
    senior_outstanding: Any
    junior_outstanding: Any
    sweep_share_bps: Any
    sweep_on: Any = False
    equity_blocked: Any = False
    wind_down: Any = False


def waterfall(d: Due, o: Any = INT_OPS) -> dict[str, Any]:
    """Splits the period's cash into the buckets (README "Revenue waterfall").

    Performing: fees, senior interest, junior interest (a shortfall of either
    drawn from the reserve, senior first), scheduled principal senior then
    junior, reserve up to its target, sweep (a share of what is left, rounded
    down, at most the senior principal still outstanding), equity or trapped.
    Wind-down: fees, senior interest, senior principal, junior interest,
    junior principal, equity only once both tranches are repaid. Performing,
    reserve above its target is first drawn back into the cash.
    """
    wind = d.wind_down
    performing = o.not_(wind)
    released = o.where(performing, o.max(d.reserve_balance - d.reserve_target, 0), 0)
    cash = d.cash_in + released
    reserve = d.reserve_balance - released

    fees = o.min(cash, d.fees)
    cash = cash - fees

    paid = o.min(cash, d.senior_interest)
    cash = cash - paid
    senior_drawn = o.min(reserve, d.senior_interest - paid)
    reserve = reserve - senior_drawn
    senior_interest = paid + senior_drawn

    wind_senior = o.where(wind, o.min(cash, d.senior_outstanding), 0)
    cash = cash - wind_senior

    paid = o.min(cash, d.junior_interest)
    cash = cash - paid
    junior_drawn = o.min(reserve, d.junior_interest - paid)
    reserve = reserve - junior_drawn
    junior_interest = paid + junior_drawn

    wind_junior = o.where(wind, o.min(cash, d.junior_outstanding), 0)
    cash = cash - wind_junior

    senior_principal = o.where(performing, o.min(cash, d.senior_principal), 0)
    cash = cash - senior_principal
    junior_principal = o.where(performing, o.min(cash, d.junior_principal), 0)
    cash = cash - junior_principal

    added = o.where(performing, o.min(cash, o.max(d.reserve_target - reserve, 0)), 0)
    cash = cash - added
    reserve = reserve + added

    room = d.senior_outstanding - senior_principal
    sweep = o.where(o.and_(performing, d.sweep_on), o.min(cash * d.sweep_share_bps // BPS, room), 0)
    cash = cash - sweep

    repaid = o.and_(wind_senior == d.senior_outstanding, wind_junior == d.junior_outstanding)
    to_equity = o.where(wind, repaid, o.not_(d.equity_blocked))
    equity = o.where(to_equity, cash, 0)
    return {
        "cashIn": d.cash_in,
        "fees": fees,
        "seniorInterest": senior_interest,
        "juniorInterest": junior_interest,
        "seniorPrincipal": senior_principal + wind_senior,
        "juniorPrincipal": junior_principal + wind_junior,
        "reserveDrawn": senior_drawn + junior_drawn + released,
        "reserveAdded": added,
        "sweep": sweep,
        "equity": equity,
        "trapped": cash - equity,
        "reserveBalance": reserve,
    }
