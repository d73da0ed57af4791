"""The auditor's reference model of a gpucredit note, in plain Python integers.

Written from the documented rules (README "How a note works", "Covenants at
each period close", "Coupon steps", "Remedies", "Revenue waterfall", and the
NatSpec of `contracts/interfaces/*.sol`), never by calling a contract. Each
class holds the state one contract keeps and exposes the operations the
events reveal; the replay (`gpucredit.audit.replay`) feeds it the events'
inputs and compares what it computes with the events' recorded outputs.

Arithmetic follows the documented rounding: holders' entitlements and
collateral values round down, amounts owed by the SPV (LTV, top-up level,
reserve target, interest due) round up. docs/audit.md lists every rule with
its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The period-close rules are shared with the risk engine (gpucredit.risk): one
# source of truth, written for plain ints here and numpy arrays there.
from gpucredit.audit.rules import (  # noqa: F401  (re-exported for the replay)
    BPS,
    BREACH_DEFAULT,
    BREACH_DSCR,
    BREACH_LOW_UTILIZATION,
    BREACH_LTV,
    BREACH_STALE,
    BREACH_TOPUP_OUTSTANDING,
    BREACH_UPTIME,
    DEFAULTED,
    PERFORMING,
    QUARTER,
    RELEASED,
    STEPPED_IN,
    UINT8_MAX,
    UINT32_MAX,
    WATERFALL_FIELDS,
    Due,
    StepState,
    batch_value,
    ceil_div,
    decide,
    depreciation_factor_bps,
    dscr_bps,
    ltv_bps,
    quarters_elapsed,
    reserve_target,
    waterfall,
)
from gpucredit.audit.rules import clamped_rate as _clamped_rate
from gpucredit.audit.rules import principal_due as _principal_due

YEAR = 365 * 86_400
INDEX_SCALE = 10**27  # coupon per face
PRINCIPAL_SCALE = 10**16  # principal per face

BREACH_NAMES = {
    BREACH_DSCR: "DSCR",
    BREACH_LTV: "LTV",
    BREACH_UPTIME: "uptime",
    BREACH_STALE: "stale",
    BREACH_LOW_UTILIZATION: "low-util",
    BREACH_TOPUP_OUTSTANDING: "top-up open",
    BREACH_DEFAULT: "default",
}

# INoteTranche.State
SUBSCRIPTION, CLOSED, ACTIVE, REPAID, CANCELLED, WRITTEN_OFF = range(6)
# ITelemetryOracle.ReportStatus
REPORT_NONE, REPORTED, MISSED = range(3)
# ICollateralRegistry.NoteStatus / BatchStatus
NOTE_NONE, NOTE_OPEN, NOTE_RELEASED, NOTE_STEPPED_IN = range(4)
(
    BATCH_NONE,
    BATCH_REGISTERING,
    BATCH_REGISTERED,
    BATCH_ATTESTED,
    BATCH_PLEDGED,
    BATCH_VOIDED,
    BATCH_REJECTED,
) = range(7)
DAY_SECONDS = 86_400
REGISTRATION_WINDOW = 3 * DAY_SECONDS  # CollateralRegistry.REGISTRATION_WINDOW
PLEDGE_WINDOW = 14 * DAY_SECONDS
CHALLENGE_WINDOW = 3 * DAY_SECONDS
MAX_KEYS_PER_CHUNK = 700

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def breach_names(mask: int) -> list[str]:
    return [name for bit, name in BREACH_NAMES.items() if mask & bit]


# ---------------------------------------------------------------------------
# Collateral registry: batches, classes, haircuts, valuation
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    batch_id: int
    issuer: str
    operator: str
    count: int
    total_cost: int
    model: str  # bytes32 as lower-case 0x hex; its class and haircut are the model's
    in_service_at: int
    opened_at: int = 0
    status: int = BATCH_REGISTERING
    keys_registered: int = 0
    attested_at: int = 0
    note_id: int = 0


@dataclass(slots=True)
class NoteCollateral:
    note_id: int
    issuer: str
    servicer: str = ZERO_ADDRESS  # fixed once by NoteBound
    status: int = NOTE_OPEN
    bound: bool = False
    batch_ids: list[int] = field(default_factory=list)  # live (pledged, not voided)
    tranches: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    defects: int = 0
    lienholder: str = ZERO_ADDRESS


class Registry:
    """Batches and notes of the one collateral registry all issuers share."""

    MAX_BATCHES_PER_NOTE = 32
    MAX_TRANCHES_PER_NOTE = 4

    def __init__(self) -> None:
        self.classes: dict[int, tuple[int, int]] = {}
        # model -> (class id, haircut bps)
        self.models: dict[str, tuple[int, int]] = {}
        # GPU key (lower-case 0x hex) -> the batch whose slot holds it
        self.holders: dict[str, int] = {}
        # value-raising changes waiting out VALUATION_CHANGE_DELAY: value, eta;
        # executable only in [eta, eta + GRACE_PERIOD], then expired
        self.pending_classes: dict[int, tuple[tuple[int, int], int]] = {}
        self.pending_models: dict[str, tuple[tuple[int, int], int]] = {}
        self.batches: dict[int, Batch] = {}
        self.notes: dict[int, NoteCollateral] = {}
        self.batch_count = 0
        self.note_count = 0

    def batch_value(self, batch: Batch, ts: int) -> int:
        """cost x factor x (1 - haircut) of the batch's model, rounded down;
        0 once voided or rejected."""
        if batch.status in (BATCH_VOIDED, BATCH_REJECTED):
            return 0
        class_id, haircut = self.models.get(batch.model, (0, 0))
        markdown, floor = self.classes.get(class_id, (0, 0))
        factor = depreciation_factor_bps(markdown, floor, quarters_elapsed(batch.in_service_at, ts))
        return batch_value(batch.total_cost, factor, haircut)

    def is_live_note(self, note_id: int) -> bool:
        note = self.notes.get(note_id)
        return note is not None and note.status in (NOTE_OPEN, NOTE_STEPPED_IN)

    def blocks(self, batch: Batch, ts: int) -> bool:
        """Whether the batch still holds the GPUs whose slot names it."""
        if batch.status in (BATCH_REGISTERING, BATCH_REGISTERED):
            return ts < batch.opened_at + REGISTRATION_WINDOW
        if batch.status == BATCH_ATTESTED:
            return ts < batch.attested_at + PLEDGE_WINDOW
        if batch.status == BATCH_PLEDGED or (batch.status == BATCH_VOIDED and batch.note_id):
            return self.is_live_note(batch.note_id)
        return False

    def collateral_value(self, note_id: int, ts: int) -> int:
        """Value of the note's live batches past their challenge window; 0
        unless the note is live."""
        if not self.is_live_note(note_id):
            return 0
        total = 0
        for batch_id in self.notes[note_id].batch_ids:
            batch = self.batches[batch_id]
            if ts >= batch.attested_at + CHALLENGE_WINDOW:
                total += self.batch_value(batch, ts)
        return total


# ---------------------------------------------------------------------------
# Identity registry
# ---------------------------------------------------------------------------


class Identities:
    """KYC whitelist: listed, unexpired, not frozen."""

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}  # address -> [expiresAt, frozen]

    def register(self, account: str, expires_at: int) -> None:
        record = self.records.get(account)
        if record is None:
            self.records[account] = [expires_at, False]
        else:
            record[0] = expires_at  # a renewal keeps the frozen flag

    def remove(self, account: str) -> None:
        self.records.pop(account, None)

    def freeze(self, account: str, frozen: bool) -> None:
        if account in self.records:
            self.records[account][1] = frozen

    def problem(self, account: str, ts: int) -> str | None:
        """Why `account` may not hold notes at `ts` (None when verified)."""
        record = self.records.get(account)
        if record is None:
            return "IdentityUnknown"
        if record[1]:
            return "IdentityIsFrozen"
        if record[0] <= ts:
            return "IdentityExpired"
        return None


# ---------------------------------------------------------------------------
# Telemetry oracle
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    status: int
    utilization_bps: int
    uptime_bps: int
    revenue: int
    recorded_at: int
    observations: int


@dataclass(slots=True)
class Fleet:
    fleet_id: int
    operator: str
    consumer: str
    genesis: int
    period_length: int
    heartbeat: int
    quorum: int = 0
    signer_version: int = 0
    signers: list[str] = field(default_factory=list)
    # a signer-set change waiting out SIGNER_CHANGE_DELAY: ((signers, quorum), eta);
    # executable only in [eta, eta + GRACE_PERIOD], then expired
    pending_signers: tuple[tuple[list[str], int], int] | None = None
    # an operator-key change waiting out the same delay: (operator, eta)
    pending_operator: tuple[str, int] | None = None
    next_period: int = 0
    reports: dict[int, Report] = field(default_factory=dict)

    def bounds(self, period: int) -> tuple[int, int]:
        start = self.genesis + period * self.period_length
        return start, start + self.period_length

    def stale_at(self, period: int) -> int:
        return self.bounds(period)[1] + self.heartbeat

    def is_stale(self, ts: int) -> bool:
        return ts > self.stale_at(self.next_period)


class Oracle:
    def __init__(self) -> None:
        self.fleets: dict[int, Fleet] = {}

    def mark_missed(self, fleet: Fleet, ts: int) -> dict[str, int]:
        period = fleet.next_period
        _, end = fleet.bounds(period)
        fleet.reports[period] = Report(MISSED, 0, 0, 0, ts, 0)
        fleet.next_period = period + 1
        return {
            "fleetId": fleet.fleet_id,
            "period": period,
            "periodEnd": end,
            "staleSince": end + fleet.heartbeat,
        }


# ---------------------------------------------------------------------------
# Note tranche: subscriptions, per-face coupon and principal accumulators
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrancheTerms:
    note_id: int
    seniority: int
    max_size: int
    min_subscription: int
    subscription_start: int
    subscription_end: int
    maturity: int
    reference_rate_bps: int
    spread_bps: int
    floor_rate_bps: int
    cap_rate_bps: int
    min_collateral_ratio_bps: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrancheTerms:
        return cls(
            note_id=int(data["noteId"]),
            seniority=int(data["seniority"]),
            max_size=int(data["maxSize"]),
            min_subscription=int(data["minSubscription"]),
            subscription_start=int(data["subscriptionStart"]),
            subscription_end=int(data["subscriptionEnd"]),
            maturity=int(data["maturity"]),
            reference_rate_bps=int(data["referenceRateBps"]),
            spread_bps=int(data["spreadBps"]),
            floor_rate_bps=int(data["floorRateBps"]),
            cap_rate_bps=int(data["capRateBps"]),
            min_collateral_ratio_bps=int(data["minCollateralRatioBps"]),
        )


@dataclass(slots=True)
class Holder:
    """One holder's position: face and what it has earned, as of its checkpoint."""

    balance: int = 0
    escrowed: int = 0  # filled face still in escrow: earns from the drawdown like the rest
    ck_interest: int = 0  # interest index at the checkpoint
    ck_principal: int = 0  # principal checkpoint: the face earns index minus this (may be < 0)
    funded: int = 0  # coupon claimable
    pending: int = 0  # coupon accrued up to ck_interest above the funded index then
    principal_owed: int = 0

    @property
    def face(self) -> int:
        return self.balance + self.escrowed


def _earned(balance: int, start: int, end: int, funded_index: int) -> tuple[int, int]:
    """(claimable, pending) coupon `balance` earned from index `start` to
    `end`, split at the funded index, each rounded down."""
    if not balance or end <= start:
        return 0, 0
    funded = pending = 0
    if start < funded_index:
        cut = min(end, funded_index)
        funded = balance * (cut - start) // INDEX_SCALE
        start = cut
    if end > start:
        pending = balance * (end - start) // INDEX_SCALE
    return funded, pending


@dataclass(frozen=True, slots=True)
class PayOutcome:
    due: int  # interest due when the payment arrived
    outstanding: int  # principal outstanding after it
    repaid: bool  # this payment repaid the tranche
    problem: str | None  # why the contract would have refused it


class Tranche:
    """One tranche: coupons accrue per second on outstanding principal.

    The interest index is coupon per unit of face (scaled 1e27); it rises by
    `outstanding x rate x elapsed / (10,000 x year x face)` (rounded down) at
    every balance change, payment and rate change. Coupon accrued up to the
    funded index is claimable; the funded index catches up with the interest
    index only when a payment covers everything due (partial payments are
    held). Coupon a holder accrued up to its checkpoint is all paid for once
    the funded index reaches the checkpoint. Principal repaid is shared per
    face through a second index (scaled 1e16). Filled face is the holder's
    position from the fulfilment on, flagged as in escrow: it earns from the
    drawdown (both indexes 0), and claiming it only clears the flag.
    """

    def __init__(self, address: str, terms: TrancheTerms) -> None:
        self.address = address
        self.escrow = address.lower()
        self.terms = terms
        self.state = SUBSCRIPTION
        self.paused = False  # the guardian's pause (subscriptions, transfers, drawdown)
        self.requests: dict[str, int] = {}
        self.total_pending = 0
        self.total_requested = 0
        self.total_filled = 0
        self.fills: dict[str, list[int]] = {}  # controller -> [shares, refund]
        self.interest_index = 0
        self.last_accrual_at = 0
        self.reference_rate = terms.reference_rate_bps
        self.step = 0
        self.rate = self.clamped_rate(terms.reference_rate_bps, 0)
        self.principal_index = 0
        self.outstanding = 0
        self.original = 0
        self.funded_index = 0
        self.held = 0
        self.cash_funded = 0
        self.cash_claimed = 0
        self.holders: dict[str, Holder] = {}
        self.total_supply = 0
        self.schedule: list[tuple[int, int]] = []

    # ---- rates ----

    def clamped_rate(self, reference: int, step: int) -> int:
        t = self.terms
        return _clamped_rate(reference, t.spread_bps, step, t.floor_rate_bps, t.cap_rate_bps)

    def set_rate(self, ts: int, reference: int, step: int) -> tuple[int, int]:
        """Accrues at the old rate, then moves to the new; returns (old, new)."""
        self.accrue(ts)
        old = self.rate
        self.reference_rate = reference
        self.step = step
        self.rate = self.clamped_rate(reference, step)
        return old, self.rate

    # ---- accrual ----

    def _index_increase(self, ts: int) -> int:
        supply = self.original
        if supply == 0 or self.outstanding == 0 or self.rate == 0:
            return 0
        elapsed = ts - self.last_accrual_at
        return self.outstanding * self.rate * elapsed * INDEX_SCALE // (BPS * YEAR * supply)

    def accrue(self, ts: int) -> None:
        if self.state != ACTIVE or self.last_accrual_at == ts:
            return
        self.interest_index += self._index_increase(ts)
        self.last_accrual_at = ts

    def index_at(self, ts: int) -> int:
        if self.state == ACTIVE and self.last_accrual_at != ts:
            return self.interest_index + self._index_increase(ts)
        return self.interest_index

    def _due_from_index(self, index: int) -> int:
        accrued = ceil_div(index * self.original, INDEX_SCALE)
        paid = self.cash_funded + self.held
        return accrued - paid if accrued > paid else 0

    def interest_due(self, ts: int) -> int:
        """Accrued (rounded up) minus what was paid in (allocated or held)."""
        return self._due_from_index(self.index_at(ts))

    def cumulative_bps_at(self, ts: int) -> int:
        bps = 0
        for due_at, cumulative in self.schedule:
            if due_at <= ts:
                bps = cumulative
            else:
                break
        return bps

    def principal_due(self, ts: int) -> int:
        """Scheduled principal due and unpaid (all of it from maturity)."""
        return _principal_due(
            self.original, self.outstanding, self.cumulative_bps_at(ts), ts >= self.terms.maturity
        )

    # ---- holders ----

    def holder(self, account: str) -> Holder:
        key = account.lower()
        holder = self.holders.get(key)
        if holder is None:
            holder = self.holders[key] = Holder()
        return holder

    def settle(self, h: Holder) -> None:
        """Credits the coupon the holder's face earned since its checkpoint."""
        index = self.interest_index
        if h.ck_interest != index:
            funded, pending = _earned(h.face, h.ck_interest, index, self.funded_index)
            if h.ck_interest <= self.funded_index:  # funding caught up since: pending is paid for
                h.funded += h.pending + funded
                h.pending = pending
            else:
                h.funded += funded
                h.pending += pending
            h.ck_interest = index

    def rebase(self, h: Holder, new_face: int) -> None:
        """Before the face becomes `new_face`: the principal checkpoint moves
        so that the new face earns what the old one had (rounded down); when
        it would leave int56, or no face is left, the principal is credited."""
        p_index = self.principal_index
        if h.ck_principal == p_index:
            return
        earned = h.face * (p_index - h.ck_principal)
        if new_face:
            moved = p_index - earned // new_face
            if moved >= -(2**55):
                h.ck_principal = moved
                return
        h.principal_owed += earned // PRINCIPAL_SCALE
        h.ck_principal = p_index

    def realize_principal(self, h: Holder) -> None:
        """Credits the principal the face earned since its checkpoint (redeem)."""
        h.principal_owed += h.face * (self.principal_index - h.ck_principal) // PRINCIPAL_SCALE
        h.ck_principal = self.principal_index

    def _earns(self, h: Holder) -> bool:
        return not h.escrowed or self.state in (ACTIVE, REPAID, WRITTEN_OFF)

    def entitlement(self, account: str, ts: int) -> tuple[int, int]:
        """(claimable, accrued-but-unfunded) coupon of `account` at `ts`, no state change."""
        h = self.holders.get(account.lower())
        if h is None or not self._earns(h):
            return 0, 0
        funded, pending = _earned(h.face, h.ck_interest, self.index_at(ts), self.funded_index)
        if h.ck_interest <= self.funded_index:
            return funded + h.funded + h.pending, pending
        return funded + h.funded, pending + h.pending

    def move(self, ts: int, sender: str, receiver: str, value: int) -> None:
        """A balance change (mint: sender zero; burn: receiver zero): each side
        settles its coupon and rebases its principal checkpoint first."""
        if sender == ZERO_ADDRESS:  # the drawdown mint into escrow: nothing accrued yet
            self.total_supply += value
            self.holder(receiver).balance += value
            return
        self.accrue(ts)
        src = self.holder(sender)
        self.settle(src)
        self.rebase(src, src.face - value)
        src.balance -= value
        if receiver == ZERO_ADDRESS:
            self.total_supply -= value
            return
        dst = self.holder(receiver)
        self.settle(dst)
        self.rebase(dst, dst.face + value)
        dst.balance += value

    def fulfil(self, controller: str, filled: int, refund: int) -> None:
        """The fill becomes the controller's position, flagged as in escrow."""
        self.fills[controller.lower()] = [filled, refund]
        self.holder(controller).escrowed = filled

    def release_from_escrow(self, ts: int, controller: str, shares: int) -> None:
        """Claimed face leaves the escrow: what it earned there is already the
        holder's (its position earned from the drawdown), only the flag goes."""
        escrow = self.holder(self.escrow)
        owner = self.holder(controller)
        escrow.balance -= shares
        owner.escrowed -= shares
        owner.balance += shares

    def claim_coupon(self, ts: int, account: str) -> tuple[int, int]:
        """Pays the claimable coupon; returns (amount, accrued-but-unfunded after).

        No accrual: the balance does not change, so the checkpoint moves to
        the funded index only, and what accrued above it stays implicit."""
        h = self.holder(account)
        amount, pending = h.funded, h.pending
        if h.ck_interest <= self.funded_index:
            amount += pending + h.face * (self.funded_index - h.ck_interest) // INDEX_SCALE
            pending = 0
            h.ck_interest = self.funded_index
        h.funded, h.pending = 0, pending
        self.cash_claimed += amount
        index = self.index_at(ts)
        if index > h.ck_interest:
            pending += h.face * (index - h.ck_interest) // INDEX_SCALE
        return amount, pending

    def redeemable(self, ts: int, account: str) -> int:
        """Settles the holder and returns its repaid principal."""
        self.accrue(ts)
        h = self.holder(account)
        self.settle(h)
        self.realize_principal(h)
        return h.principal_owed

    # ---- servicing ----

    def pay(self, ts: int, interest: int, principal: int) -> PayOutcome:
        """Interest funds holders only once it covers all that is due; principal per face."""
        problem = None
        if self.state not in (ACTIVE, REPAID):
            problem = "StateIs: tranche not active"
        self.accrue(ts)
        due = self._due_from_index(self.interest_index)
        if interest > due:
            problem = f"InterestOverpaid: {interest} > due {due}"
        if principal > self.outstanding:
            problem = f"PrincipalOverpaid: {principal} > outstanding {self.outstanding}"
            principal = self.outstanding
        if interest:
            self.held += interest
            if interest >= due:
                self.cash_funded += self.held
                self.funded_index = self.interest_index
                self.held = 0
        repaid = False
        if principal:
            supply = self.total_supply or 1
            self.principal_index += principal * PRINCIPAL_SCALE // supply
            self.outstanding -= principal
            if self.outstanding == 0:
                self.state = REPAID
                repaid = True
        return PayOutcome(max(due, interest), self.outstanding, repaid, problem)

    def write_off(self, ts: int) -> tuple[int, int, int]:
        """The servicer ends the tranche: held partial interest is shared per
        face through the principal index; returns (principal lost, interest
        lost, held released)."""
        self.accrue(ts)
        held = self.held
        interest_lost = self._due_from_index(self.interest_index)
        if held:
            supply = self.total_supply or 1
            self.principal_index += held * PRINCIPAL_SCALE // supply
            self.cash_funded += held
            self.held = 0
        lost = self.outstanding
        self.outstanding = 0
        self.state = WRITTEN_OFF
        return lost, interest_lost, held

    def fill_of(self, requested: int) -> int:
        """Pro rata cut of an oversubscribed tranche, rounded down."""
        if self.total_requested <= self.terms.max_size:
            return requested
        return requested * self.terms.max_size // self.total_requested


# ---------------------------------------------------------------------------
# Servicer: covenants, coupon steps, remedies and the waterfall
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CovenantTerms:
    dscr_min_bps: int
    max_ltv_bps: int
    low_util_max_ltv_bps: int
    uptime_sla_bps: int
    step_down_util_bps: int
    step_down_periods: int
    step_down_bps: int
    step_up_util_bps: int
    step_up_periods: int
    step_up_bps: int
    sweep_share_bps: int
    reserve_months: int
    cure_period: int
    fee_per_period: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CovenantTerms:
        return cls(
            dscr_min_bps=int(data["dscrMinBps"]),
            max_ltv_bps=int(data["maxLtvBps"]),
            low_util_max_ltv_bps=int(data["lowUtilMaxLtvBps"]),
            uptime_sla_bps=int(data["uptimeSlaBps"]),
            step_down_util_bps=int(data["stepDownUtilBps"]),
            step_down_periods=int(data["stepDownPeriods"]),
            step_down_bps=int(data["stepDownBps"]),
            step_up_util_bps=int(data["stepUpUtilBps"]),
            step_up_periods=int(data["stepUpPeriods"]),
            step_up_bps=int(data["stepUpBps"]),
            sweep_share_bps=int(data["sweepShareBps"]),
            reserve_months=int(data["reserveMonths"]),
            cure_period=int(data["curePeriod"]),
            fee_per_period=int(data["feePerPeriod"]),
        )


Expected = tuple[str, str, dict[str, Any]]  # (address, event, args)


@dataclass
class CloseOutcome:
    events: list[Expected]
    problem: str | None = None  # the close should have reverted
    period: int = 0


class Servicer:
    """The SPV account of one note and its covenant engine."""

    def __init__(
        self,
        address: str,
        note_id: int,
        terms: CovenantTerms,
        senior: Tranche,
        junior: Tranche | None,
    ) -> None:
        self.address = address
        self.note_id = note_id
        self.terms = terms
        self.senior = senior
        self.junior = junior
        self.next_period = 0
        self.status = PERFORMING
        self.high_streak = 0
        self.low_streak = 0
        self.step = 0
        self.low_step_on = False
        self.topup_deadline = 0
        self.topup_required = 0
        self.period_revenue = 0
        self.reserve = 0
        self.trapped = 0
        self.cash_collateral = 0
        self.fees_payable = 0
        self.equity_payable = 0
        self.fee_arrears = 0
        self.capital_disbursed = 0
        self.trustee = ""
        self.operator = ""  # receives disbursed capital and equity (ServicerInitialised)
        self.fee_recipient = ""  # receives fees (ServicerInitialised)
        self.lienholder = ""  # the trustee that stepped in: receives recoveries
        self.defects_seen = 0
        self.recovery_payable = 0

    @property
    def tranches(self) -> list[Tranche]:
        return [self.senior] if self.junior is None else [self.senior, self.junior]

    def collateral_total(self, registry: Registry, ts: int) -> int:
        return registry.collateral_value(self.note_id, ts) + self.cash_collateral

    def close(
        self, ts: int, registry: Registry, oracle: Oracle, oracle_address: str
    ) -> CloseOutcome:
        """`closePeriod()` at `ts`: the events it must emit, in order."""
        out: list[Expected] = []
        t = self.terms
        problem = None
        if self.senior.state not in (ACTIVE, REPAID):
            problem = "NoteNotActive: the senior tranche is not drawn"
        period = self.next_period
        fleet = oracle.fleets.get(self.note_id)
        if fleet is None:
            return CloseOutcome([], f"FleetUnknown: {self.note_id}", period)
        report = fleet.reports.get(period)
        if report is None:
            if fleet.next_period != period or not fleet.is_stale(ts):
                problem = f"PeriodNotClosable: period {period} has no report and is not stale"
                report = Report(REPORT_NONE, 0, 0, 0, 0, 0)
            else:
                out.append((oracle_address, "ReportMissed", oracle.mark_missed(fleet, ts)))
                # The close marks the period missed itself and records the report it
                # read before doing so: recordedAt 0, not the marking time the oracle
                # stores (docs/audit.md, "Observations").
                report = Report(MISSED, 0, 0, 0, 0, 0)
        reported = report.status == REPORTED
        late = reported and report.recorded_at > fleet.bounds(period)[1] + fleet.heartbeat

        senior, junior = self.senior, self.junior
        due = Due(
            cash_in=self.period_revenue + self.trapped,
            reserve_balance=self.reserve,
            reserve_target=reserve_target(senior.outstanding, senior.rate, t.reserve_months),
            fees=t.fee_per_period + self.fee_arrears,
            senior_interest=senior.interest_due(ts),
            junior_interest=junior.interest_due(ts) if junior else 0,
            senior_principal=senior.principal_due(ts),
            junior_principal=junior.principal_due(ts) if junior else 0,
            senior_outstanding=senior.outstanding,
            junior_outstanding=junior.outstanding if junior else 0,
            sweep_share_bps=t.sweep_share_bps,
            wind_down=self.status == STEPPED_IN,
        )
        debt_service = (
            due.fees
            + due.senior_interest
            + due.senior_principal
            + due.junior_interest
            + due.junior_principal
        )
        collateral_value = registry.collateral_value(self.note_id, ts)
        outstanding = due.senior_outstanding + due.junior_outstanding
        inputs = {
            "period": period,
            "reportStatus": report.status,
            "reportLate": late,
            "reportRecordedAt": report.recorded_at,
            "utilizationBps": report.utilization_bps,
            "uptimeBps": report.uptime_bps,
            "revenueReported": report.revenue,
            "revenueCash": self.period_revenue,
            "debtService": debt_service,
            "collateralValue": collateral_value,
            "cashCollateral": self.cash_collateral,
            "outstanding": outstanding,
        }

        # Streaks, an open top-up, the coupon step, a new top-up and the
        # breach flags: the shared rules (gpucredit.audit.rules.decide).
        state = StepState(
            status=self.status,
            high_streak=self.high_streak,
            low_streak=self.low_streak,
            step=self.step,
            low_step_on=self.low_step_on,
            topup_deadline=self.topup_deadline,
            topup_required=self.topup_required,
        )
        open_required, open_deadline = self.topup_required, self.topup_deadline
        collateral = collateral_value + self.cash_collateral
        d = decide(
            state,
            t,
            ts=ts,
            reported=reported,
            late=late,
            utilization=report.utilization_bps,
            uptime=report.uptime_bps,
            revenue_reported=report.revenue,
            revenue_cash=self.period_revenue,
            debt_service=debt_service,
            collateral=collateral,
            outstanding=outstanding,
        )
        self.status = state.status
        self.high_streak = state.high_streak
        self.low_streak = state.low_streak
        self.step = state.step
        self.low_step_on = state.low_step_on
        self.topup_deadline = state.topup_deadline
        self.topup_required = state.topup_required
        if d.cured:
            cured = {"requiredCollateral": open_required, "collateral": collateral, "curedAt": ts}
            out.append((self.address, "TopUpCured", cured))
        if d.defaulted:
            lapsed = {
                "requiredCollateral": open_required,
                "collateral": collateral,
                "deadline": open_deadline,
            }
            out.append((self.address, "DefaultDeclared", lapsed))
        if d.topup_new:
            demanded = {
                "period": period,
                "requiredCollateral": self.topup_required,
                "shortfall": self.topup_required - collateral,
                "deadline": self.topup_deadline,
            }
            out.append((self.address, "TopUpRequired", demanded))
        old_step, new_step = d.old_step, d.new_step
        sweep_on = d.sweep_on
        breaches = d.breaches
        result = {
            "dscrBps": d.dscr,
            "ltvBps": d.ltv,
            "ltvLimitBps": d.ltv_limit,
            "highStreak": self.high_streak,
            "lowStreak": self.low_streak,
            "oldStepBps": old_step,
            "newStepBps": new_step,
            "breaches": breaches,
            "sweepOn": sweep_on,
            "equityBlocked": d.equity_blocked,
        }

        due.sweep_on = sweep_on
        due.equity_blocked = breaches != 0
        w = waterfall(due)

        self.next_period = period + 1
        self.period_revenue = 0
        self.reserve = w["reserveBalance"]
        self.trapped = w["trapped"]
        self.fee_arrears = due.fees - w["fees"]
        self.fees_payable += w["fees"]
        self.equity_payable += w["equity"]

        closed = {"period": period, "inputs": inputs, "result": result}
        out.append((self.address, "PeriodClosed", closed))
        out.append((self.address, "WaterfallDistributed", {"period": period, "result": w}))

        if new_step != old_step:
            for tranche in self.tranches:
                old_rate, new_rate = tranche.set_rate(ts, tranche.reference_rate, new_step)
                out.append(
                    (
                        tranche.address,
                        "RateChanged",
                        {
                            "oldRateBps": old_rate,
                            "newRateBps": new_rate,
                            "referenceRateBps": tranche.reference_rate,
                            "spreadBps": tranche.terms.spread_bps,
                            "stepBps": new_step,
                        },
                    )
                )
            out.append(
                (
                    self.address,
                    "CouponStepped",
                    {
                        "period": period,
                        "oldStepBps": old_step,
                        "newStepBps": new_step,
                        "seniorRateBps": senior.rate,
                        "juniorRateBps": junior.rate if junior else 0,
                    },
                )
            )

        payments = [(senior, w["seniorInterest"], w["seniorPrincipal"] + w["sweep"])]
        if junior is not None:
            payments.append((junior, w["juniorInterest"], w["juniorPrincipal"]))
        for tranche, interest, principal in payments:
            if interest == 0 and principal == 0:
                continue
            paid = tranche.pay(ts, interest, principal)
            if paid.problem and problem is None:
                problem = f"{tranche.address}: {paid.problem}"
            if paid.repaid:
                out.append((tranche.address, "Repaid", {}))
            out.append(
                (
                    tranche.address,
                    "Paid",
                    {
                        "interest": interest,
                        "principal": principal,
                        "interestDueAfter": paid.due - interest,
                        "outstandingAfter": paid.outstanding,
                    },
                )
            )
        return CloseOutcome(out, problem, period)
