"""Issue 2's scenario: a year of a 15M senior tranche over 1,000 GPUs,
checked against closed-form expectations computed from the timeline alone.

Collateral: 1,000 H100 at $25,000 (class 1), registered as one batch,
attested and pledged: $25M against the 130 % x 15M = $19.5M the drawdown
needs. Tranche: 15M, 430 + 450 bps (floor 500, cap 2,500), subscription
window 14 days, maturity = window end + 365 days.

Subscriptions: lenders A, B, C request 4M (day 1), 5M (day 3) and 9M (day 10):
18M for 15M. The offering is oversubscribed, and the contract's only cut is
pro rata over all requests, so every request is filled at 15/18 (rounded
down: 3,333,333.333333 / 4,166,666.666666 / 7,500,000 USD, one unit short of
15M in total) and the rest refunded. C's 9M alone is 60 % of the tranche and
is cut by 1.5M.

Timeline (days after drawdown D, which is the window end; maturity is
D + 365): A and C claim their face and refund on days 0 and 9; B never calls
for its face: its first coupon claim (day 90) takes it out of escrow, where
it earned for B all along, and B collects its refund on day 91. The SPV pays
all interest due at every 30-day period end (days 30 ... 360). Transfers:
A->B 1M (day 45), C->A 2.5M (day 100), B->C 1,234,567.891234 (day 200),
A->B 777,777.777777 (day 300). The covenant role steps the rate +300 bps
(day 120: 1,180 bps), then -200 bps (day 240: 680 bps). The SPV prepays 3M
of principal on day 182, mid-period. A claims its coupon every period, B
every quarter, C only at maturity; A redeems prepaid principal on day 183,
B on day 250. At maturity the SPV pays all interest due (`pay(max, ...)`)
and all principal; everyone claims and redeems (face burned).

Closed form (`closed_form`): a lender's coupon is the sum over the intervals
between changes of its face x rate x seconds x outstanding / (total face x
10,000 x 365 days), its principal is face x repayment / total face at each
repayment; the face counts from drawdown whether or not it has left the
escrow yet.

Tolerance: exact equality cannot hold (the closed form is a fraction; the
contract pays whole units from accumulators and rounds every credit down,
never up). A lender's total falls short of the closed form by less than one
unit per accrual segment, counted exactly by `Roundings`: each settlement
(claiming shares, a transfer in or out, a coupon claim, a redemption) closes
one segment, or two when the funded index moved inside it (a claimable and a
pending piece); add the escrow's segments while it held the lender's face and
the lender's share of the escrow when it left (2). Principal: one unit per
settlement after a repayment, plus one. Over the year that allows 18 / 17 /
9 units of coupon and 3 / 3 / 3 of principal; A, B and C actually receive
5.8 / 5.2 / 3.8 and 1.4 / 0.4 / 0.2 units less than the closed form.

The one way above the closed form: when a lender's face leaves the escrow it
takes floor(escrow's coupon x its face / escrow face) and the escrow keeps
the remainder, which goes to whoever leaves last (here B gets < 1 unit of C's
rounding per amount, and still ends below its closed form). The lenders
together are never paid more than the closed form, and the SPV's interest
payments add up to the exact accrual rounded up, to the unit.
"""

import math
from collections import Counter
from fractions import Fraction

import pytest
from brownie import chain, web3

from gpucredit.protocol import (
    DAY,
    USD,
    YEAR,
    bind_note,
    clone_tranche,
    close_subscription,
    make_fleet,
    open_note,
    register_batch,
    wait_challenge_window,
)

GPUS = 1_000
GPU_COST = 25_000 * USD
MAX_SIZE = 15_000_000 * USD
REQUESTS = [4_000_000 * USD, 5_000_000 * USD, 9_000_000 * USD]  # A, B, C
REQUEST_DAYS = [1, 3, 10]  # after the window opens
SUBSCRIPTION_DAYS = 14
TERM_DAYS = 365
REFERENCE_BPS, SPREAD_BPS, FLOOR_BPS, CAP_BPS, MIN_COLLATERAL_BPS = 430, 450, 500, 2_500, 13_000
BPS = 10_000
A, B, C = 0, 1, 2

# days after drawdown
# A and C claim their face (and refund) on days 0 and 9; B never claims its
# face: its first coupon claim (day 90) takes it out of escrow, and B collects
# its refund with claimShares on day 91
CLAIM_SHARES_DAYS = [0, 91, 9]
PERIOD_END_DAYS = list(range(30, TERM_DAYS, 30))  # 30 ... 360
TRANSFERS = [  # (day, from, to, face)
    (45, A, B, 1_000_000 * USD),
    (100, C, A, 2_500_000 * USD),
    (200, B, C, 1_234_567_891_234),
    (300, A, B, 777_777_777_777),
]
RATE_STEPS = [(120, 300), (240, -200)]  # (day, step bps)
PREPAYMENT_DAY, PREPAYMENT = 182, 3_000_000 * USD
COUPON_CLAIM_DAYS = [PERIOD_END_DAYS, [90, 180, 270, 360], []]
REDEEM_DAYS = [[183], [250], []]


def _rate(step_bps):
    return min(max(REFERENCE_BPS + SPREAD_BPS + step_bps, FLOOR_BPS), CAP_BPS)


def closed_form(fills):
    """(coupon, principal) owed to each lender, as exact fractions, from the
    timeline alone: no contract arithmetic, no rounding."""
    total = sum(fills)
    face = list(fills)
    rate = _rate(0)
    outstanding = total
    coupon = [Fraction(0)] * 3
    principal = [Fraction(0)] * 3
    boundaries = sorted(
        {0, TERM_DAYS, PREPAYMENT_DAY}
        | {day for day, *_ in TRANSFERS}
        | {day for day, _ in RATE_STEPS}
    )
    for start, end in zip(boundaries, boundaries[1:], strict=False):
        # the changes that take effect at `start`
        for day, src, dst, amount in TRANSFERS:
            if day == start:
                face[src] -= amount
                face[dst] += amount
        for day, step in RATE_STEPS:
            if day == start:
                rate = _rate(step)
        if start == PREPAYMENT_DAY:
            for h in range(3):
                principal[h] += Fraction(face[h] * PREPAYMENT, total)
            outstanding -= PREPAYMENT
        seconds = (end - start) * DAY
        for h in range(3):
            coupon[h] += Fraction(face[h] * rate * seconds * outstanding, total * BPS * YEAR)
    for h in range(3):  # the rest at maturity
        principal[h] += Fraction(face[h] * outstanding, total)
    return coupon, principal


def closed_form_interest(fills, day):
    """Exact interest accrued on the whole tranche by `day`."""
    total = sum(fills)
    accrued = Fraction(0)
    rate, outstanding, last = _rate(0), total, 0
    changes = sorted([(d, "rate", s) for d, s in RATE_STEPS] + [(PREPAYMENT_DAY, "pay", 0)])
    for change_day, kind, step in [*changes, (TERM_DAYS, "end", 0)]:
        until = min(change_day, day)
        if until > last:
            accrued += Fraction(outstanding * rate * (until - last) * DAY, BPS * YEAR)
            last = until
        if change_day >= day:
            break
        if kind == "rate":
            rate = _rate(step)
        elif kind == "pay":
            outstanding -= PREPAYMENT
    return accrued


class Roundings:
    """Counts the round-downs the contract makes on each account's money.

    Crediting an account (a settlement) rounds its coupon down once, or twice
    when the funded index moved strictly inside the interval since its last
    settlement (one piece claimable, one pending), and its principal once if
    principal was repaid since. Pending pieces become claimable at the next
    full funding without another rounding. Accounts: lender indexes and
    "escrow".
    """

    def __init__(self):
        self.fundings = []  # times the funded index caught up with accrual
        self.repayments = []  # times principal was repaid
        self.since = {}  # account -> time of its last settlement while holding
        self.coupon = Counter()
        self.principal = Counter()

    def settle(self, account, timestamp):
        """The account is credited; it holds a balance from then on."""
        start = self.since.get(account)
        self.since[account] = timestamp
        if start is None:
            return
        if timestamp > start:
            straddles = any(start < funded < timestamp for funded in self.fundings)
            self.coupon[account] += 2 if straddles else 1
        if any(start < repaid <= timestamp for repaid in self.repayments):
            self.principal[account] += 1


def _at(timestamp):
    """The next transaction is mined at `timestamp`."""
    response = web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
    assert "error" not in response, response


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the module's finished year."""


@pytest.fixture(scope="module")
def covenant(spv):
    """Stands in for the covenant engine: the tranche's servicer (`spv`) is
    the only address that may step the coupon."""
    return spv


@pytest.fixture(scope="module")
def tranche(core, admin, issuer, operator, attestor, spv, covenant):
    """The senior tranche over its pledged fleet; the window opens now. The
    fleet is registered and attested first and its challenge window lets
    pass, so it counts from the pledge on."""
    leaves = make_fleet(GPUS, cost=GPU_COST, in_service_at=chain[-1].timestamp - 1)
    batch_id, _, _ = register_batch(core, issuer, operator, leaves)
    attestation = core.registry.batchInfo(batch_id)["attestationHash"]
    core.registry.attestBatch(batch_id, attestation, {"from": attestor})
    wait_challenge_window()
    opened = chain[-1].timestamp
    note_id = open_note(core, admin, issuer)
    window_end = opened + SUBSCRIPTION_DAYS * DAY
    terms = (note_id, 0, MAX_SIZE, 1_000 * USD, opened, window_end, window_end + TERM_DAYS * DAY)
    terms += (REFERENCE_BPS, SPREAD_BPS, FLOOR_BPS, CAP_BPS, MIN_COLLATERAL_BPS)
    tranche = clone_tranche(core, admin, issuer, spv, terms)
    bind_note(core, admin, note_id, spv, [tranche], [operator])
    core.registry.pledgeBatch(batch_id, note_id, {"from": operator})
    core.usd.approve(tranche, 2**256 - 1, {"from": spv})
    tranche.opened = opened
    tranche.note_id = note_id
    tranche.batch_id = batch_id
    return tranche


@pytest.fixture(scope="module")
def year(core, tranche, issuer, lenders, spv, covenant):
    """Runs the timeline and records what every lender received."""
    usd = core.usd
    rounding = Roundings()
    record = {
        "start_balance": [usd.balanceOf(lender) for lender in lenders],
        "spv_start": usd.balanceOf(spv),
        "coupons": [0, 0, 0],
        "principal": [0, 0, 0],
        "refunds": [0, 0, 0],
        "interest_paid": [],  # (day, amount) at each payment
        "rounding": rounding,
        # the escrow's round-downs up to each lender's claim, shared by the
        # lenders still in it
        "escrow_coupon": [0, 0, 0],
        "escrow_principal": [0, 0, 0],
        # claims by others, after accrual began, while a lender was in escrow
        "splits": [0, 0, 0],
    }
    for lender, amount, day in zip(lenders, REQUESTS, REQUEST_DAYS, strict=True):
        usd.approve(tranche, amount, {"from": lender})
        _at(tranche.opened + day * DAY)
        tranche.requestDeposit(amount, lender, lender, {"from": lender})

    drawn_at = tranche.opened + SUBSCRIPTION_DAYS * DAY
    record["drawn_at"] = drawn_at
    _at(drawn_at)
    close_subscription(tranche, issuer)
    _at(drawn_at)
    tranche.fulfil(lenders, {"from": issuer})
    record["fills"] = [tranche.fillOf(lender) for lender in lenders]
    _at(drawn_at)
    record["drawdown"] = tranche.drawdown({"from": issuer}).events["DrawnDown"]
    rounding.settle("escrow", drawn_at)
    in_escrow = {A, B, C}
    now = [drawn_at]  # timestamp of the action being run

    def leave_escrow(h):
        """h's face (and what the escrow earned for it) moves to h."""
        rounding.settle("escrow", now[0])
        record["escrow_coupon"][h] = rounding.coupon["escrow"]
        record["escrow_principal"][h] = rounding.principal["escrow"]
        in_escrow.discard(h)
        if now[0] > drawn_at:
            for other in in_escrow:
                record["splits"][other] += 1
        rounding.settle(h, now[0])

    def claim_shares(h):
        tx = tranche.claimShares({"from": lenders[h]})
        event = tx.events["SharesClaimed"]
        record["refunds"][h] += event["refunded"]
        assert (event["shares"] > 0) == (h in in_escrow)
        if h in in_escrow:
            leave_escrow(h)

    def claim_coupon(h):
        tx = tranche.claimCoupon({"from": lenders[h]})
        if h in in_escrow:  # the claim takes the escrowed face first
            assert tranche.balanceOf(lenders[h]) >= record["fills"][h][0]
            leave_escrow(h)
        record["coupons"][h] += tx.events["CouponClaimed"]["amount"]
        rounding.settle(h, now[0])

    def redeem(h):
        assert h not in in_escrow  # (redeem would take it too; not in this timeline)
        tx = tranche.redeem({"from": lenders[h]})
        record["principal"][h] += tx.events["PrincipalRedeemed"]["amount"]
        rounding.settle(h, now[0])

    def pay_interest(day):
        due = tranche.interestDue()  # at the latest block: this second
        tranche.pay(due, 0, {"from": spv})
        record["interest_paid"].append((day, due))
        rounding.fundings.append(now[0])

    def transfer(src, dst, amount):
        tranche.transfer(lenders[dst], amount, {"from": lenders[src]})
        rounding.settle(src, now[0])
        rounding.settle(dst, now[0])

    def step_rate(step):
        tranche.setRateStep(step, {"from": covenant})

    def prepay():
        tranche.pay(0, PREPAYMENT, {"from": spv})
        rounding.repayments.append(now[0])

    # (day, order within the day, action)
    timeline = [(day, 0, lambda h=h: claim_shares(h)) for h, day in enumerate(CLAIM_SHARES_DAYS)]
    timeline += [(day, 1, lambda day=day: pay_interest(day)) for day in PERIOD_END_DAYS]
    timeline += [(day, 2, lambda s=s, d=d, a=a: transfer(s, d, a)) for day, s, d, a in TRANSFERS]
    timeline += [(day, 2, lambda step=step: step_rate(step)) for day, step in RATE_STEPS]
    timeline += [(PREPAYMENT_DAY, 2, prepay)]
    for h in range(3):
        timeline += [(day, 3, lambda h=h: claim_coupon(h)) for day in COUPON_CLAIM_DAYS[h]]
        timeline += [(day, 3, lambda h=h: redeem(h)) for day in REDEEM_DAYS[h]]
    for day, _, action in sorted(timeline, key=lambda event: event[:2]):
        now[0] = drawn_at + day * DAY
        if chain[-1].timestamp < now[0]:
            web3.provider.make_request("evm_mine", [now[0]])  # views see this second
        _at(now[0])
        action()

    # maturity: the SPV pays everything; everyone claims and redeems
    now[0] = maturity = drawn_at + TERM_DAYS * DAY
    web3.provider.make_request("evm_mine", [maturity])
    due = tranche.interestDue()
    _at(maturity)
    final = tranche.pay(2**256 - 1, tranche.principalOutstanding(), {"from": spv})
    assert final.events["Paid"]["interest"] == due  # max: exactly what is due
    record["interest_paid"].append((TERM_DAYS, due))
    rounding.fundings.append(maturity)
    rounding.repayments.append(maturity)
    for h in range(3):
        _at(maturity)
        claim_coupon(h)
        _at(maturity)
        redeem(h)
    record["end_balance"] = [usd.balanceOf(lender) for lender in lenders]
    record["spv_end"] = usd.balanceOf(spv)
    return record


def _coupon_segments(year, h):
    """Round-downs on lender h's coupon: its own settlements' pieces, the
    escrow's while it held h's face, and h's share of the escrow (claimable
    and pending) when it left."""
    return year["rounding"].coupon[h] + year["escrow_coupon"][h] + 2


def _principal_segments(year, h):
    return year["rounding"].principal[h] + year["escrow_principal"][h] + 1


def test_collateral_and_drawdown(core, tranche, year):
    batch = core.registry.batchInfo(tranche.batch_id)
    assert (batch["count"], batch["noteId"], batch["totalCost"]) == (
        GPUS,
        tranche.note_id,
        GPUS * GPU_COST,
    )
    event = year["drawdown"]
    assert event["collateralValue"] == GPUS * GPU_COST == 25_000_000 * USD
    principal = sum(shares for shares, _ in year["fills"])
    assert event["principal"] == principal
    assert event["requiredValue"] == math.ceil(Fraction(principal * MIN_COLLATERAL_BPS, BPS))
    assert tranche.originalPrincipal() == principal


def test_oversubscription_is_cut_pro_rata_and_refunded(year):
    total_requested = sum(REQUESTS)
    for (shares, refund), requested, refunded in zip(
        year["fills"], REQUESTS, year["refunds"], strict=True
    ):
        assert shares == requested * MAX_SIZE // total_requested
        assert refund == refunded == requested - shares
    assert [shares for shares, _ in year["fills"]] == [
        3_333_333_333_333,
        4_166_666_666_666,
        7_500_000_000_000,
    ]
    assert sum(shares for shares, _ in year["fills"]) == MAX_SIZE - 1


def test_spv_pays_the_exact_accrual_rounded_up(year):
    fills = [shares for shares, _ in year["fills"]]
    paid = 0
    for day, amount in year["interest_paid"]:
        paid += amount
        assert paid == math.ceil(closed_form_interest(fills, day)), day


def test_every_lender_receives_the_closed_form_coupon(year):
    fills = [shares for shares, _ in year["fills"]]
    expected, _ = closed_form(fills)
    received = year["coupons"]
    for h in range(3):
        shortfall = expected[h] - received[h]
        # short by less than a unit per accrual segment; above only by what
        # the escrow's remainder handed over (< 1 unit per amount per split)
        assert -2 * year["splits"][h] <= shortfall < _coupon_segments(year, h), (
            h,
            received[h],
            float(expected[h]),
        )
        if year["splits"][h] == 0:
            assert shortfall >= 0
    # together: never more than the closed form
    assert 0 <= sum(expected) - sum(received) < sum(_coupon_segments(year, h) for h in range(3))


def test_every_lender_receives_the_closed_form_principal(tranche, year):
    fills = [shares for shares, _ in year["fills"]]
    _, expected = closed_form(fills)
    received = year["principal"]
    for h in range(3):
        shortfall = expected[h] - received[h]
        assert -year["splits"][h] <= shortfall < _principal_segments(year, h), (
            h,
            received[h],
            float(expected[h]),
        )
    assert sum(received) <= sum(expected)
    assert tranche.state() == 3 and tranche.totalSupply() == 0  # Repaid, every face burned


def test_stablecoin_is_conserved(core, tranche, year):
    fills = [shares for shares, _ in year["fills"]]
    interest = sum(amount for _, amount in year["interest_paid"])
    # the SPV received the capital and paid it back: it is out the interest
    assert year["spv_start"] - year["spv_end"] == interest
    for h in range(3):
        net = year["end_balance"][h] - year["start_balance"][h]
        assert net == year["coupons"][h] + year["principal"][h] - fills[h]
    dust = core.usd.balanceOf(tranche)
    paid_out = sum(year["coupons"]) + sum(year["principal"])
    assert interest + sum(fills) == paid_out + dust
    # what stays behind is round-downs only: every coupon and principal
    # piece of every account (escrow included), plus the final interest
    # rounded up (< 1) and the principal index's own rounding (< 1)
    rounding = year["rounding"]
    assert 0 <= dust <= sum(rounding.coupon.values()) + sum(rounding.principal.values()) + 2
