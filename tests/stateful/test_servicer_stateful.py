"""Stateful test of the Servicer: random reports, revenue, top-ups, defaults and time.

Deal (as in tests/integration/test_servicer_scenarios.py): 1,000 H100 at
$25,000 (class 1, 5 % markdown a quarter), senior 14M at 430 + 450 bps
(floor raised to 800 bps so the -200 bps step-down hits it), junior 3M at
430 + 900 bps (cap lowered to 1,500 bps so the +300 bps step-up hits it),
seed covenants. Three lenders: senior 7M / 4M / 3M (the 3M stays in escrow
until the lender first claims), junior 2M / 1M.

Rules: the operator pays revenue (0 .. 3M); a period is reported (random
utilization, uptime and reported revenue, possibly after its heartbeat; or
a good month) and closed; a period is left unreported past the
heartbeat and closed as missed; the operator posts cash collateral or
pledges a small batch of new GPUs (fresh serials) and cures the top-up when
it can; anyone asks for a cure; time passes (1 h .. 40 days, or just past
the cure deadline); anyone declares the default; the trustee steps in;
lenders claim coupons and redeem principal; the fee recipient and the
operator withdraw; anyone releases a repaid note. A call the model expects
to revert is asserted to revert with that error.

The model follows the events (RevenueReceived, CashCollateralPosted,
PeriodClosed, WaterfallDistributed, Paid, SteppedIn, Withdrawn,
NoteReleased) and replays every close independently: the covenant result
(streaks, step, LTV, DSCR, breaches, sweep, equity block, top-up raised,
cured or lapsed) from the documented rules (README "Coupon steps",
Servicer NatSpec; a report recorded after its heartbeat is a STALE breach
and never a high period), the waterfall, and each tranche's interest due
from an exact rational accrual of outstanding x rate x time.

Cash identities, in stablecoin units, from Waterfall.sol. One close, with R
its revenue cash and T, V the trapped cash and reserve before it:

    cashIn = R + T
    cashIn + reserveDrawn = fees + seniorInterest + juniorInterest
                            + seniorPrincipal + juniorPrincipal
                            + reserveAdded + sweep + equity + trapped
    reserveBalance = V - reserveDrawn + reserveAdded

reserveDrawn is paid out inside seniorInterest / juniorInterest (it is not
a separate output); in the wind-down reserveAdded = sweep = 0. Adding the
last two lines, reserveDrawn and reserveAdded cancel:
R + T + V = outputs + trapped + reserveBalance. Summed over closes, with
stepIn() moving the cash collateral C and the reserve into trapped cash and
releaseCollateral() moving reserve and trapped cash to the operator:

  (I1) sum RevenueReceived.amount + sum SteppedIn.cashCollateralApplied
         + cash collateral posted after step-in (it joins the trapped cash)
         == sum over closed periods of (fees + seniorInterest + juniorInterest
                + seniorPrincipal + juniorPrincipal + sweep + equity)
            + reserveBalance() + trappedCash() + periodRevenueCash()
            + reserve and trapped cash returned by releaseCollateral()

  (I2) usd.balanceOf(servicer)
         == drawn capital (17M: DrawnDown sends it here, nothing moves it)
            + reserveBalance() + trappedCash() + cash collateral
            + periodRevenueCash() + withdrawable(fee recipient)
            + withdrawable(operator)

  (I3) sum fees == withdrawable + withdrawn of the fee recipient;
       sum equity + released == withdrawable + withdrawn of the operator;
       per tranche, sum interest paid == couponCash funded + held,
       principalOutstanding == model, and
       usd.balanceOf(tranche) == funded - claimed + held
                                 + principal paid - principal redeemed.

Also after every step: currentRateBps() in [floorRateBps, capRateBps] and
equal to clamp(reference + spread + step); for every PeriodClosed, sweepOn
implies a DSCR, top-up or default breach, equityBlocked implies a breach,
sweep > 0 implies sweepOn and equity > 0 implies not equityBlocked (or the
wind-down repaid both tranches); no holder paid more than owed: couponCash
claimed <= funded, and per lender claimed + couponOwed <= face / supply x
exact accrual (and within rounding dust of it), redeemed +
principalClaimable <= face / supply x principal paid; stepState(), topUp(),
status(), nextPeriodToClose(), feeArrears() and the registry valuation
equal the model's.

Mechanics. The machine is a plain Hypothesis RuleBasedStateMachine (as in
test_registry_stateful.py): brownie 1.22's mypyc-compiled `state_machine`
base class rejects the subclass it generates. Each run reverts to the
snapshot of the drawn deal; blocks are one second apart and time jumps
only by mining at an exact timestamp (`advance_to`), so a run replays
exactly; the views behind the invariants are read in one JSON-RPC
batch per check. Only the generate phase runs (no example database, no
shrinking, as in brownie's profile). Defaults: 20 full-length runs of 25
steps, about a minute; scale with GPUCREDIT_FUZZ_EXAMPLES and
GPUCREDIT_FUZZ_STEPS.
"""

import math
from fractions import Fraction

import pytest
from brownie import chain, web3
from brownie_patches import read_views
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gpucredit.audit.model import WATERFALL_FIELDS, Due, waterfall
from gpucredit.protocol import (
    DAY,
    USD,
    YEAR,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    open_deal,
    pledge_fleet,
    sign_report,
)
from gpucredit.reports import period_bounds

BPS = 10_000
QUARTER = 7_889_400
CLASS1_MARKDOWN_BPS = 500
GPU_COST = 25_000 * USD
FLEET_SIZE = 1_000
MAX_BATCHES_PER_NOTE = 32
UINT32_MAX = 2**32 - 1
UINT8_MAX = 255

DSCR, LTV, UPTIME, STALE, LOW, TOPUP, DEFAULT = 1, 2, 4, 8, 16, 32, 64
PERFORMING, DEFAULTED, STEPPED_IN = 0, 1, 2
REPORTED, MISSED = 1, 2
NOTE_OPEN, NOTE_STEPPED_IN, NOTE_RELEASED = "open", "stepped in", "released"

SENIOR_FACES = (7_000_000 * USD, 4_000_000 * USD, 3_000_000 * USD)
JUNIOR_FACES = (2_000_000 * USD, 1_000_000 * USD, 0)
ESCROW_LENDER = 2  # leaves its senior face in escrow until a rule claims it
# Timing-sensitive calls (cure, default) are only made when their outcome is
# the same now and this many seconds later.
MARGIN = 300

OUTPUT_FIELDS = (
    "fees",
    "seniorInterest",
    "juniorInterest",
    "seniorPrincipal",
    "juniorPrincipal",
    "sweep",
    "equity",
)


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Reverts the chain to the module's deal after the test."""


@pytest.fixture(scope="module")
def block_clock():
    """Every block one second after the last, whatever the wall clock does.

    Runs then replay exactly (Hypothesis re-runs a failing example to report
    it), and `advance_to` is the only way time jumps.
    """
    response = web3.provider.make_request("anvil_setBlockTimestampInterval", [1])
    assert "error" not in response, response
    yield
    web3.provider.make_request("anvil_removeBlockTimestampInterval", [])


@pytest.fixture(scope="module")
def deal(
    block_clock,
    core,
    admin,
    issuer,
    operator,
    attestor,
    trustee,
    lenders,
    spv,
    signers,
    signer_keys,
):
    """A drawn deal: senior 14M and junior 3M over 1,000 GPUs, three lenders."""
    spec = DealSpec(
        tranches=[
            TrancheSpec(
                "GPU Senior", "GPU-A", 0, 14_000_000 * USD, spread_bps=450, floor_rate_bps=800
            ),
            TrancheSpec(
                "GPU Junior", "GPU-B", 1, 3_000_000 * USD, spread_bps=900, cap_rate_bps=1_500
            ),
        ],
        quorum=3,
    )
    core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
    )
    deal.signer_keys = signer_keys[:3]
    deal.in_service_at = chain[-1].timestamp - 1
    pledge_fleet(
        core,
        deal,
        make_fleet(FLEET_SIZE, in_service_at=deal.in_service_at),
        issuer,
        operator,
        attestor,
    )
    deal.drawn_at = []
    pairs = ((deal.senior, SENIOR_FACES), (deal.junior, JUNIOR_FACES))
    for tranche, faces in pairs:
        for lender, face in zip(lenders, faces, strict=True):
            if face:
                core.usd.approve(tranche, face, {"from": lender})
                tranche.requestDeposit(face, lender, lender, {"from": lender})
    for tranche, faces in pairs:
        funded = [(lender, face) for lender, face in zip(lenders, faces, strict=True) if face]
        close_subscription(tranche, issuer)
        tranche.fulfil([lender for lender, _ in funded], {"from": issuer})
        deal.drawn_at.append(tranche.drawdown({"from": issuer}).timestamp)
        for lender, _ in funded:
            if not (tranche == deal.senior and lender == lenders[ESCROW_LENDER]):
                tranche.claimShares({"from": lender})
    # enough for any number of steps
    core.usd.mint(operator, 10**12 * USD, {"from": admin})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    return deal


def report(core, deal, period, utilization, uptime, revenue, submitter):
    """Signs (by the deal's three signers) and submits a period's report, after its end."""
    _, end = period_bounds(deal.genesis, deal.spec.period_length, period)
    advance_to(end)  # exactly: the machine's clock is the model's
    observations = sign_report(
        core,
        deal,
        period,
        deal.signer_keys,
        utilization=utilization,
        uptime=uptime,
        revenue=revenue,
    )
    return core.oracle.submitReport(deal.note_id, period, observations, {"from": submitter})


def advance_to(ts):
    """Mines a block at `ts` unless the chain is already there.

    Time jumps only this way (brownie's `chain.sleep` / `chain.time()` track
    the wall clock, which the `block_clock` fixture takes out of the chain,
    and anvil rejects brownie's `evm_mine` timestamp argument). Later blocks
    follow one second apart.
    """
    if chain[-1].timestamp < ts:
        response = web3.provider.make_request("evm_setNextBlockTimestamp", [ts])
        assert "error" not in response, response
        chain.mine()
        assert chain[-1].timestamp == ts


def events_of(tx, name, address):
    """The events `name` that `address` emitted in `tx`."""
    return [event for event in tx.events if event.name == name and event.address == address]


class TrancheModel:
    """What the model knows of one tranche: faces, rate, principal, exact accrual."""

    def __init__(self, contract, faces, drawn_at):
        terms = contract.terms()
        self.contract = contract
        self.faces = dict(enumerate(faces))
        self.supply = sum(faces)
        self.base_rate = terms["referenceRateBps"] + terms["spreadBps"]
        self.floor = terms["floorRateBps"]
        self.cap = terms["capRateBps"]
        self.maturity = terms["maturity"]
        self.outstanding = self.supply
        self.step = 0
        self.accrued = Fraction(0)  # exact coupon accrued to all holders
        self.accrued_at = drawn_at
        self.interest_paid = 0  # funded + held in the tranche
        self.principal_paid = 0
        self.claimed = dict.fromkeys(self.faces, 0)
        self.redeemed = dict.fromkeys(self.faces, 0)
        self.settles = dict.fromkeys(self.faces, 0)

    @property
    def rate(self):
        return min(max(self.base_rate + self.step, self.floor), self.cap)

    def accrued_until(self, ts):
        """Exact accrual (no rounding) up to `ts` at the current rate and principal."""
        return self.accrued + Fraction(
            self.outstanding * self.rate * (ts - self.accrued_at), BPS * YEAR
        )

    def accrue_to(self, ts):
        self.accrued = self.accrued_until(ts)
        self.accrued_at = ts

    def interest_due(self):
        """The tranche's interestDue() after accrue_to: accrued rounded up, minus paid."""
        return max(math.ceil(self.accrued) - self.interest_paid, 0)

    def principal_due(self, ts):
        """No amortization schedule: everything at maturity, nothing before."""
        return self.outstanding if ts >= self.maturity else 0


ST_REVENUE = st.one_of(
    st.just(0),
    st.integers(min_value=1, max_value=300_000 * USD),
    st.integers(min_value=1, max_value=3_000_000 * USD),
)
ST_REPORTED = st.integers(min_value=0, max_value=3_000_000 * USD)
ST_UTILIZATION = st.one_of(
    st.sampled_from([0, 5_999, 6_000, 8_999, 9_000, 10_000]),
    st.integers(min_value=0, max_value=10_000),
)
ST_UPTIME = st.integers(min_value=9_000, max_value=10_000)
# a good month (the seeds' fleet earns ~1.2M): utilization >= 60 %, uptime within the SLA
ST_HEALTHY_REVENUE = st.integers(min_value=1_000_000 * USD, max_value=3_000_000 * USD)
ST_HEALTHY_UTILIZATION = st.one_of(
    st.sampled_from([6_000, 9_000, 10_000]), st.integers(min_value=6_000, max_value=10_000)
)
ST_HEALTHY_UPTIME = st.integers(min_value=9_900, max_value=10_000)
ST_CASH = st.one_of(st.just(0), st.integers(min_value=1, max_value=2_000_000 * USD))
ST_GPUS = st.integers(min_value=1, max_value=200)
ST_SECONDS = st.integers(min_value=3_600, max_value=40 * DAY)
ST_LENDER = st.integers(min_value=0, max_value=2)
ST_FLAG = st.booleans()


class ServicerStateMachine(RuleBasedStateMachine):
    """Random sequences of servicing events against a Python model of the note."""

    @classmethod
    def configure(
        cls,
        core,
        deal,
        issuer,
        operator,
        attestor,
        trustee,
        lenders,
        fee_recipient,
        rando,
        reverts_with,
    ):
        cls.core = core
        cls.usd = core.usd
        cls.registry = core.registry
        cls.deal = deal
        cls.servicer = deal.servicer
        cls.issuer = issuer
        cls.operator = operator
        cls.attestor = attestor
        cls.trustee = trustee
        cls.lenders = lenders
        cls.fee_recipient = fee_recipient
        cls.rando = rando
        cls.reverts_with = staticmethod(reverts_with)
        cls.terms = deal.servicer.covenantTerms()
        cls.drawn_capital = sum(SENIOR_FACES) + sum(JUNIOR_FACES)
        cls.heartbeat = deal.spec.heartbeat

    def __init__(self):
        super().__init__()
        chain.revert()  # every run starts from the snapshot of the drawn deal
        self.senior = TrancheModel(self.deal.senior, SENIOR_FACES, self.deal.drawn_at[0])
        self.junior = TrancheModel(self.deal.junior, JUNIOR_FACES, self.deal.drawn_at[1])
        self.tranches = (self.senior, self.junior)
        self.escrow_claimed = False
        # servicer cash buckets and tallies
        self.revenue_in = 0
        self.period_revenue = 0
        self.reserve = 0
        self.trapped = 0
        self.cash_collateral = 0
        self.applied_at_step_in = 0
        self.outputs = 0
        self.fees_out = 0
        self.equity_out = 0
        self.released_buckets = 0  # reserve + trapped returned by releaseCollateral
        self.released_total = 0
        self.withdrawable = {self.fee_recipient: 0, self.operator: 0}
        self.withdrawn = {self.fee_recipient: 0, self.operator: 0}
        # covenant engine
        self.next_period = 0
        self.status = PERFORMING
        self.high_streak = 0
        self.low_streak = 0
        self.step = 0
        self.low_step_on = False
        self.topup_required = 0
        self.topup_deadline = 0
        self.fee_arrears = 0
        # collateral
        self.note = NOTE_OPEN
        self.batches = [(FLEET_SIZE * GPU_COST, self.deal.in_service_at)]
        self.serial_batch = 0
        self.closes = []

    # ------------------------------------------------------------------
    # model helpers
    # ------------------------------------------------------------------

    def _collateral_value(self, ts):
        if self.note == NOTE_RELEASED:
            return 0
        value = 0
        for cost, in_service_at in self.batches:
            quarters = (ts - in_service_at) // QUARTER if ts > in_service_at else 0
            factor = max(0, BPS - quarters * CLASS1_MARKDOWN_BPS)
            value += cost * factor * BPS // (BPS * BPS)
        return value

    def _collateral_total(self, ts):
        return self._collateral_value(ts) + self.cash_collateral

    def _settled_time(self, outcome):
        """Waits until `outcome(ts)` is the same now and MARGIN seconds later."""
        for _ in range(5):
            now = chain[-1].timestamp
            if outcome(now) == outcome(now + MARGIN):
                return
            advance_to(now + MARGIN + 1)
        raise AssertionError("outcome keeps changing")

    def _cure_outcome(self, ts):
        if self.topup_deadline == 0:
            return "NoTopUpOutstanding"
        if self._collateral_total(ts) < self.topup_required:
            return "TopUpNotCured"
        return None

    def _default_outcome(self, ts):
        if self.status != PERFORMING:
            return "NotPerforming"
        if self.topup_deadline == 0:
            return "NoTopUpOutstanding"
        if ts <= self.topup_deadline or self._collateral_total(ts) >= self.topup_required:
            return "CureNotLapsed"
        return None

    def _cure(self, only_if_possible):
        """cureTopUp, asserting the outcome the model predicts."""
        self._settled_time(self._cure_outcome)
        expected = self._cure_outcome(chain[-1].timestamp)
        if expected is not None:
            if only_if_possible:
                return
            with self.reverts_with(expected):
                self.servicer.cureTopUp({"from": self.rando})
            return
        tx = self.servicer.cureTopUp({"from": self.operator})
        cured = tx.events["TopUpCured"]
        assert cured["requiredCollateral"] == self.topup_required
        assert cured["collateral"] == self._collateral_total(tx.timestamp) >= self.topup_required
        assert cured["curedAt"] == tx.timestamp
        self.topup_required = 0
        self.topup_deadline = 0

    # ------------------------------------------------------------------
    # period close
    # ------------------------------------------------------------------

    def _close(self, reported_at=None, utilization=0, uptime=0, revenue=0):
        """Closes the next period (reported at `reported_at`, or missed) and replays it."""
        reported = reported_at is not None
        _, end = period_bounds(self.deal.genesis, self.deal.spec.period_length, self.next_period)
        late = reported and reported_at > end + self.heartbeat
        tx = self.servicer.closePeriod({"from": self.rando})
        ts = tx.timestamp
        closed = tx.events["PeriodClosed"]
        inputs, result = closed["inputs"], closed["result"]
        w = tx.events["WaterfallDistributed"]["result"]
        assert closed["period"] == inputs["period"] == self.next_period
        assert tx.events["WaterfallDistributed"]["period"] == self.next_period
        assert ("ReportMissed" in tx.events) == (not reported)

        # ---- inputs ----
        for tranche in self.tranches:
            tranche.accrue_to(ts)
        assert inputs["reportStatus"] == (REPORTED if reported else MISSED)
        assert inputs["reportRecordedAt"] == (reported_at if reported else 0)
        assert inputs["reportLate"] == late
        assert inputs["utilizationBps"] == utilization
        assert inputs["uptimeBps"] == uptime
        assert inputs["revenueReported"] == revenue
        assert inputs["revenueCash"] == self.period_revenue
        assert inputs["collateralValue"] == self._collateral_value(ts)
        assert inputs["cashCollateral"] == self.cash_collateral
        outstanding = self.senior.outstanding + self.junior.outstanding
        assert inputs["outstanding"] == outstanding

        fees_due = self.terms["feePerPeriod"] + self.fee_arrears
        sp_due = self.senior.principal_due(ts)
        jp_due = self.junior.principal_due(ts)
        interest_total = inputs["debtService"] - fees_due - sp_due - jp_due
        paid = {t: events_of(tx, "Paid", t.contract.address) for t in self.tranches}
        due = {}
        for tranche in self.tranches:
            if paid[tranche]:
                (event,) = paid[tranche]
                due[tranche] = event["interest"] + event["interestDueAfter"]
        if self.senior not in due:
            due[self.senior] = (
                interest_total - due[self.junior]
                if self.junior in due
                else min(self.senior.interest_due(), interest_total)
            )
        if self.junior not in due:
            due[self.junior] = interest_total - due[self.senior]
        # a real check when both tranches were paid (both dues then come from events)
        assert due[self.senior] + due[self.junior] == interest_total
        for tranche in self.tranches:
            # the contract rounds the accrual up from a sum of rounded-down steps
            assert tranche.interest_due() - 1 <= due[tranche] <= tranche.interest_due()

        # ---- covenants, coupon step, remedies (documented rules) ----
        t = self.terms
        # a report after the heartbeat is used, but a stale period is never a good one
        high = reported and not late and utilization >= t["stepDownUtilBps"]
        low = not reported or utilization < t["stepUpUtilBps"]
        self.high_streak = min(self.high_streak + 1, UINT8_MAX) if high else 0
        self.low_streak = min(self.low_streak + 1, UINT8_MAX) if low else 0
        collateral_total = inputs["collateralValue"] + inputs["cashCollateral"]
        cured = defaulted = False
        required_before = self.topup_required
        deadline_before = self.topup_deadline
        if self.topup_deadline != 0:
            if collateral_total >= self.topup_required:
                cured = True
                self.topup_required = self.topup_deadline = 0
            elif ts > self.topup_deadline and self.status == PERFORMING:
                defaulted = True
                self.status = DEFAULTED
        if self.low_streak >= t["stepUpPeriods"]:
            self.low_step_on = True
        elif self.low_step_on and not low and self.topup_deadline == 0:
            self.low_step_on = False
        old_step = self.step
        self.step = (t["stepDownBps"] if self.high_streak >= t["stepDownPeriods"] else 0) + (
            t["stepUpBps"] if self.low_step_on else 0
        )
        ltv_limit = t["lowUtilMaxLtvBps"] if self.low_step_on else t["maxLtvBps"]
        if outstanding == 0:
            ltv = 0
        elif collateral_total == 0:
            ltv = UINT32_MAX
        else:
            ltv = min(-(-outstanding * BPS // collateral_total), UINT32_MAX)
        raised = ltv > ltv_limit and self.topup_deadline == 0 and self.status == PERFORMING
        if raised:
            self.topup_required = -(-outstanding * BPS // ltv_limit)
            self.topup_deadline = ts + t["curePeriod"]
        debt_service = inputs["debtService"]
        covered = min(inputs["revenueReported"], inputs["revenueCash"])
        dscr = UINT32_MAX if debt_service == 0 else min(covered * BPS // debt_service, UINT32_MAX)
        breaches = 0
        breaches |= DSCR if dscr < t["dscrMinBps"] else 0
        breaches |= LTV if ltv > ltv_limit else 0
        breaches |= UPTIME if reported and uptime < t["uptimeSlaBps"] else 0
        breaches |= STALE if not reported or late else 0
        breaches |= LOW if low else 0
        breaches |= TOPUP if self.topup_deadline != 0 else 0
        breaches |= DEFAULT if self.status != PERFORMING else 0
        sweep_on = breaches & (DSCR | TOPUP | DEFAULT) != 0
        equity_blocked = breaches != 0
        expected_result = {
            "dscrBps": dscr,
            "ltvBps": ltv,
            "ltvLimitBps": ltv_limit,
            "highStreak": self.high_streak,
            "lowStreak": self.low_streak,
            "oldStepBps": old_step,
            "newStepBps": self.step,
            "breaches": breaches,
            "sweepOn": sweep_on,
            "equityBlocked": equity_blocked,
        }
        assert {k: result[k] for k in expected_result} == expected_result

        assert ("TopUpCured" in tx.events) == cured
        if cured:
            event = tx.events["TopUpCured"]
            assert (event["requiredCollateral"], event["collateral"]) == (
                required_before,
                collateral_total,
            )
        assert ("DefaultDeclared" in tx.events) == defaulted
        if defaulted:
            event = tx.events["DefaultDeclared"]
            assert (event["requiredCollateral"], event["collateral"], event["deadline"]) == (
                required_before,
                collateral_total,
                deadline_before,
            )
        assert ("TopUpRequired" in tx.events) == raised
        if raised:
            event = tx.events["TopUpRequired"]
            assert event["requiredCollateral"] == self.topup_required
            assert event["shortfall"] == self.topup_required - collateral_total
            assert event["deadline"] == self.topup_deadline

        # ---- waterfall ----
        wind_down = self.status == STEPPED_IN
        expected_w = waterfall(  # the auditor's model: gpucredit/audit/model.py
            Due(
                cash_in=self.period_revenue + self.trapped,
                reserve_balance=self.reserve,
                reserve_target=-(
                    -self.senior.outstanding * self.senior.rate * t["reserveMonths"] // (12 * BPS)
                ),
                fees=fees_due,
                senior_interest=due[self.senior],
                junior_interest=due[self.junior],
                senior_principal=sp_due,
                junior_principal=jp_due,
                senior_outstanding=self.senior.outstanding,
                junior_outstanding=self.junior.outstanding,
                sweep_share_bps=t["sweepShareBps"],
                sweep_on=sweep_on,
                equity_blocked=equity_blocked,
                wind_down=wind_down,
            )
        )
        assert {k: w[k] for k in WATERFALL_FIELDS} == expected_w
        # the per-close cash identity, from the event alone
        assert w["cashIn"] == inputs["revenueCash"] + self.trapped
        assert (
            w["cashIn"] + w["reserveDrawn"]
            == sum(w[k] for k in OUTPUT_FIELDS) + w["reserveAdded"] + w["trapped"]
        )
        assert w["reserveBalance"] == self.reserve - w["reserveDrawn"] + w["reserveAdded"]

        # ---- apply ----
        self.outputs += sum(w[k] for k in OUTPUT_FIELDS)
        self.fees_out += w["fees"]
        self.equity_out += w["equity"]
        self.period_revenue = 0
        self.reserve = w["reserveBalance"]
        self.trapped = w["trapped"]
        self.fee_arrears = fees_due - w["fees"]
        self.withdrawable[self.fee_recipient] += w["fees"]
        self.withdrawable[self.operator] += w["equity"]
        self.next_period += 1
        pays = (
            (self.senior, w["seniorInterest"], w["seniorPrincipal"] + w["sweep"]),
            (self.junior, w["juniorInterest"], w["juniorPrincipal"]),
        )
        for tranche, interest, principal in pays:
            tranche.step = self.step
            tranche.interest_paid += interest
            tranche.principal_paid += principal
            tranche.outstanding -= principal
            assert len(paid[tranche]) == (1 if interest or principal else 0)
            if paid[tranche]:
                event = paid[tranche][0]
                assert (event["interest"], event["principal"]) == (interest, principal)
                assert event["outstandingAfter"] == tranche.outstanding
        assert ("CouponStepped" in tx.events) == (self.step != old_step)
        if self.step != old_step:
            event = tx.events["CouponStepped"]
            assert (event["oldStepBps"], event["newStepBps"]) == (old_step, self.step)
            assert (event["seniorRateBps"], event["juniorRateBps"]) == (
                self.senior.rate,
                self.junior.rate,
            )
        self.closes.append(
            {
                "period": inputs["period"],
                "breaches": result["breaches"],
                "sweepOn": result["sweepOn"],
                "equityBlocked": result["equityBlocked"],
                "sweep": w["sweep"],
                "equity": w["equity"],
                "windDown": wind_down,
                "repaidAfter": self.senior.outstanding == 0 and self.junior.outstanding == 0,
            }
        )

    # ------------------------------------------------------------------
    # rules
    # ------------------------------------------------------------------

    @rule(amount=ST_REVENUE)
    def pay_revenue(self, amount):
        """The operator pays revenue into the SPV account."""
        self._pay_revenue(amount)

    def _pay_revenue(self, amount):
        if amount == 0:
            with self.reverts_with("AmountZero"):
                self.servicer.payRevenue(0, {"from": self.operator})
            return
        tx = self.servicer.payRevenue(amount, {"from": self.operator})
        self.revenue_in += amount
        self.period_revenue += amount
        event = tx.events["RevenueReceived"]
        assert (event["from"], event["amount"]) == (self.operator, amount)
        assert event["periodRevenueCash"] == self.period_revenue

    @rule(
        cash=ST_REVENUE,
        utilization=ST_UTILIZATION,
        uptime=ST_UPTIME,
        revenue=ST_REPORTED,
        after_heartbeat=ST_FLAG,
    )
    def report_and_close(self, cash, utilization, uptime, revenue, after_heartbeat):
        """The operator pays revenue, the oracles report the period, anyone closes it.

        With `after_heartbeat` the report arrives late (nobody marked the period missed).
        """
        if after_heartbeat:
            _, end = period_bounds(
                self.deal.genesis, self.deal.spec.period_length, self.next_period
            )
            advance_to(end + self.heartbeat + 1)
        self._report_and_close(cash, utilization, uptime, revenue)

    def _report_and_close(self, cash, utilization, uptime, revenue):
        if cash:
            self._pay_revenue(cash)
        tx = report(
            self.core, self.deal, self.next_period, utilization, uptime, revenue, self.rando
        )
        self._close(tx.timestamp, utilization, uptime, revenue)

    @rule(
        cash=ST_HEALTHY_REVENUE,
        utilization=ST_HEALTHY_UTILIZATION,
        uptime=ST_HEALTHY_UPTIME,
        revenue=ST_HEALTHY_REVENUE,
    )
    def report_healthy_period_and_close(self, cash, utilization, uptime, revenue):
        """Same, for a period that meets the DSCR, utilization and uptime covenants."""
        self._report_and_close(cash, utilization, uptime, revenue)

    @rule()
    def miss_and_close(self):
        """No report arrives; once the heartbeat has passed the period closes as missed."""
        _, end = period_bounds(self.deal.genesis, self.deal.spec.period_length, self.next_period)
        stale_after = end + self.heartbeat
        advance_to(stale_after + 1)
        self._close()

    @rule(amount=ST_CASH)
    def post_cash_collateral(self, amount):
        """The operator posts stablecoin collateral and cures a top-up if it can."""
        if amount == 0:
            with self.reverts_with("AmountZero"):
                self.servicer.postCashCollateral(0, {"from": self.operator})
            return
        tx = self.servicer.postCashCollateral(amount, {"from": self.operator})
        event = tx.events["CashCollateralPosted"]
        assert (event["from"], event["amount"]) == (self.operator, amount)
        if self.status == STEPPED_IN:  # after step-in it goes into the wind-down
            self.trapped += amount
            self.applied_at_step_in += amount
            assert event["cashCollateral"] == 0
            return
        self.cash_collateral += amount
        assert event["cashCollateral"] == self.cash_collateral
        self._cure(only_if_possible=True)

    @rule(count=ST_GPUS)
    def pledge_gpus(self, count):
        """The operator pledges a small batch of new GPUs and cures a top-up if it can."""
        self.serial_batch += 1
        in_service_at = chain[-1].timestamp - 1
        leaves = make_fleet(
            count, in_service_at=in_service_at, serial_prefix=f"H100-TOPUP{self.serial_batch}-"
        )
        args = (self.core, self.deal, leaves, self.issuer, self.operator, self.attestor)
        if self.note != NOTE_OPEN:
            with self.reverts_with("NoteNotOpen"):
                pledge_fleet(*args)
            return
        if len(self.batches) >= MAX_BATCHES_PER_NOTE:
            with self.reverts_with("NoteBatchLimitReached"):
                pledge_fleet(*args)
            return
        pledge_fleet(*args)
        self.batches.append((count * GPU_COST, in_service_at))
        self._cure(only_if_possible=True)

    @rule()
    def cure_top_up(self):
        """Anyone asks for a cure: it succeeds exactly when collateral suffices."""
        self._cure(only_if_possible=False)

    @rule(seconds=ST_SECONDS, past_cure_deadline=ST_FLAG)
    def time_passes(self, seconds, past_cure_deadline):
        """Time passes; or the operator lets an outstanding top-up's cure period lapse."""
        now = chain[-1].timestamp
        if past_cure_deadline and self.topup_deadline > now:
            advance_to(self.topup_deadline + 1)
        else:
            advance_to(now + seconds)

    @rule(then_step_in=ST_FLAG)
    def declare_default(self, then_step_in):
        """Anyone declares the default: it succeeds exactly when a cure period lapsed.

        With `then_step_in` the trustee steps in straight away if the note is in default.
        """
        self._declare_default()
        if then_step_in and self.status == DEFAULTED:
            self._step_in()

    def _declare_default(self):
        self._settled_time(self._default_outcome)
        expected = self._default_outcome(chain[-1].timestamp)
        if expected is not None:
            with self.reverts_with(expected):
                self.servicer.declareDefault({"from": self.rando})
            return
        tx = self.servicer.declareDefault({"from": self.rando})
        assert self._default_outcome(tx.timestamp) is None
        event = tx.events["DefaultDeclared"]
        assert (event["requiredCollateral"], event["collateral"], event["deadline"]) == (
            self.topup_required,
            self._collateral_total(tx.timestamp),
            self.topup_deadline,
        )
        self.status = DEFAULTED

    @rule()
    def step_in(self):
        """The trustee steps in once the note is in default."""
        self._step_in()

    def _step_in(self):
        if self.status != DEFAULTED:
            with self.reverts_with("NotDefaulted", self.status):
                self.servicer.stepIn({"from": self.trustee})
            return
        tx = self.servicer.stepIn({"from": self.trustee})
        event = tx.events["SteppedIn"]
        assert (event["trustee"], event["cashCollateralApplied"]) == (
            self.trustee,
            self.cash_collateral,
        )
        assert tx.events["LiensTransferred"]["trustee"] == self.trustee
        self.applied_at_step_in += self.cash_collateral
        self.trapped += self.cash_collateral + self.reserve
        self.cash_collateral = 0
        self.reserve = 0
        self.status = STEPPED_IN
        self.note = NOTE_STEPPED_IN

    @rule(index=ST_LENDER, senior=ST_FLAG)
    def lender_claims(self, index, senior):
        """A lender claims its coupon and redeems its repaid principal."""
        lender = self.lenders[index]
        if index == ESCROW_LENDER and not self.escrow_claimed:
            tx = self.deal.senior.claimShares({"from": lender})
            event = tx.events["SharesClaimed"]
            assert (event["shares"], event["refunded"]) == (SENIOR_FACES[index], 0)
            self.escrow_claimed = True
        model = self.senior if senior or not self.junior.faces[index] else self.junior
        tranche = model.contract
        claimable = tranche.couponClaimable(lender)
        if claimable == 0:
            with self.reverts_with("NothingToClaim"):
                tranche.claimCoupon({"from": lender})
        else:
            before = self.usd.balanceOf(lender)
            tx = tranche.claimCoupon({"from": lender})
            assert tx.events["CouponClaimed"]["amount"] == claimable
            assert self.usd.balanceOf(lender) == before + claimable
            model.claimed[index] += claimable
            model.settles[index] += 1
        principal = tranche.principalClaimable(lender)
        if principal or (model.outstanding == 0 and tranche.balanceOf(lender)):
            tx = tranche.redeem({"from": lender})
            assert tx.events["PrincipalRedeemed"]["amount"] == principal
            model.redeemed[index] += principal
            model.settles[index] += 1

    @rule(fees=ST_FLAG)
    def withdraw(self, fees):
        """The fee recipient or the operator withdraws what the waterfall released."""
        account = self.fee_recipient if fees else self.operator
        amount = self.withdrawable[account]
        if amount == 0:
            with self.reverts_with("NothingToWithdraw", account):
                self.servicer.withdraw({"from": account})
            return
        before = self.usd.balanceOf(account)
        tx = self.servicer.withdraw({"from": account})
        event = tx.events["Withdrawn"]
        assert (event["to"], event["amount"], event["fees"]) == (account, amount, bool(fees))
        assert self.usd.balanceOf(account) == before + amount
        self.withdrawable[account] = 0
        self.withdrawn[account] += amount

    @rule()
    def release_collateral(self):
        """Anyone releases a fully repaid note: collateral and leftover cash go back."""
        repaid = self.senior.outstanding == 0 and self.junior.outstanding == 0
        if not repaid:
            with self.reverts_with("NoteNotRepaid"):
                self.servicer.releaseCollateral({"from": self.rando})
            return
        if self.note == NOTE_RELEASED:
            with self.reverts_with("NoteNotOpen"):
                self.servicer.releaseCollateral({"from": self.rando})
            return
        tx = self.servicer.releaseCollateral({"from": self.rando})
        returned = self.cash_collateral + self.reserve + self.trapped
        assert tx.events["NoteReleased"]["cashCollateralReturned"] == returned
        self.released_buckets += self.reserve + self.trapped
        self.released_total += returned
        self.withdrawable[self.operator] += returned
        self.cash_collateral = self.reserve = self.trapped = 0
        self.note = NOTE_RELEASED

    # ------------------------------------------------------------------
    # invariants
    # ------------------------------------------------------------------

    @invariant()
    def cash_conservation(self):
        """(I1): revenue in (+ collateral applied at step-in) is all accounted for."""
        sv = self.servicer
        reserve, trapped, period_revenue = read_views(
            (sv.reserveBalance,), (sv.trappedCash,), (sv.periodRevenueCash,)
        )
        assert (reserve, trapped, period_revenue) == (
            self.reserve,
            self.trapped,
            self.period_revenue,
        )
        assert (
            self.revenue_in + self.applied_at_step_in
            == self.outputs + reserve + trapped + period_revenue + self.released_buckets
        )

    @invariant()
    def servicer_balance(self):
        """(I2): the servicer holds exactly its buckets and what it owes."""
        sv = self.servicer
        balance, reserve, trapped, period_revenue, (_, cash_collateral), *owed = read_views(
            (self.usd.balanceOf, sv),
            (sv.reserveBalance,),
            (sv.trappedCash,),
            (sv.periodRevenueCash,),
            (sv.collateral,),
            *((sv.withdrawable, account) for account in self.withdrawable),
        )
        assert cash_collateral == self.cash_collateral
        assert dict(zip(self.withdrawable, owed, strict=True)) == self.withdrawable
        assert balance == (
            self.drawn_capital + reserve + trapped + cash_collateral + period_revenue + sum(owed)
        )

    @invariant()
    def outputs_reach_their_payees(self):
        """(I3): fees, equity, interest and principal went where the waterfall said."""
        fee, op = self.fee_recipient, self.operator
        assert self.fees_out == self.withdrawable[fee] + self.withdrawn[fee]
        assert self.equity_out + self.released_total == self.withdrawable[op] + self.withdrawn[op]
        for model in self.tranches:
            tranche = model.contract
            (funded, claimed, held), outstanding, balance = read_views(
                (tranche.couponCash,),
                (tranche.principalOutstanding,),
                (self.usd.balanceOf, tranche),
            )
            assert funded + held == model.interest_paid
            assert outstanding == model.outstanding
            assert balance == (
                funded - claimed + held + model.principal_paid - sum(model.redeemed.values())
            )

    @invariant()
    def rate_within_floor_and_cap(self):
        for model in self.tranches:
            rate, step = read_views((model.contract.currentRateBps,), (model.contract.rateStepBps,))
            assert model.floor <= rate <= model.cap
            assert rate == model.rate
            assert step == model.step

    @invariant()
    def no_sweep_or_equity_block_without_breach(self):
        for close in self.closes:
            if close["sweepOn"]:
                assert close["breaches"] & (DSCR | TOPUP | DEFAULT), close
            if close["equityBlocked"]:
                assert close["breaches"] != 0, close
            if close["sweep"]:
                assert close["sweepOn"], close
            if close["equity"]:
                assert not close["equityBlocked"] or (close["windDown"] and close["repaidAfter"]), (
                    close
                )

    @invariant()
    def no_holder_paid_more_than_owed(self):
        """No lender is paid, or owed, more than its exact share of what accrued.

        Per lender: claimed + couponOwed <= face / supply x exact accrual, and
        redeemed + principalClaimable <= face / supply x principal paid, up to
        one unit: the last lender out of escrow takes the rounding remainder of
        what the escrowed face earned. All lenders together: never more than
        the exact accrual, nor than the principal paid.
        """
        now = chain[-1].timestamp  # views run at the latest block
        for model in self.tranches:
            tranche = model.contract
            holders = [index for index, face in model.faces.items() if face]
            (funded, claimed, _), accrued_on_chain, *owed = read_views(
                (tranche.couponCash,),
                (tranche.interestAccrued,),
                *(
                    (method, self.lenders[index])
                    for index in holders
                    for method in (tranche.couponOwed, tranche.principalClaimable)
                ),
            )
            assert claimed <= funded
            assert claimed == sum(model.claimed.values())
            accrued = model.accrued_until(now)
            # the contract rounds the total up from a sum of rounded-down steps
            assert 0 <= math.ceil(accrued) - accrued_on_chain <= 1
            coupons = principals = 0
            for position, index in enumerate(holders):
                coupon_owed, principal_claimable = owed[2 * position : 2 * position + 2]
                face = model.faces[index]
                # rounding dust: two round-downs (funded and pending parts) at the
                # escrow release, at each of the lender's own settlements and in the view
                dust = 2 * (model.settles[index] + 2) + 1
                entitled = accrued * face / model.supply
                coupon = model.claimed[index] + coupon_owed
                assert entitled - dust <= coupon <= entitled + 1, (index, coupon, entitled)
                share = Fraction(face * model.principal_paid, model.supply)
                principal = model.redeemed[index] + principal_claimable
                assert share - dust <= principal <= share + 1, (index, principal, share)
                coupons += coupon
                principals += principal
            assert coupons <= accrued, (coupons, accrued)
            assert principals <= model.principal_paid, (principals, model.principal_paid)

    @invariant()
    def engine_matches_model(self):
        sv = self.servicer
        step_state, top_up, status, next_period, arrears, value = read_views(
            (sv.stepState,),
            (sv.topUp,),
            (sv.status,),
            (sv.nextPeriodToClose,),
            (sv.feeArrears,),
            (self.registry.collateralValue, self.deal.note_id),
        )
        assert tuple(step_state) == (
            self.step,
            self.high_streak,
            self.low_streak,
            self.low_step_on,
        )
        assert tuple(top_up) == (self.topup_required, self.topup_deadline)
        assert status == self.status
        assert next_period == self.next_period
        assert arrears == self.fee_arrears
        assert value == self._collateral_value(chain[-1].timestamp)


def test_servicer_stateful(
    run_machine, core, deal, issuer, operator, attestor, trustee, lenders, spv, rando, reverts_with
):
    ServicerStateMachine.configure(
        core, deal, issuer, operator, attestor, trustee, lenders, spv, rando, reverts_with
    )
    chain.snapshot()
    run_machine(ServicerStateMachine, examples=10, steps=25)
