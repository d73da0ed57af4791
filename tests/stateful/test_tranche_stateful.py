"""Stateful test of NoteTranche's money flows against an exact model.

Set-up: a 10M USD tranche, oversubscribed (3M + 4M + 7M requested, all cut
pro rata), drawn down; holder 0 claims its face in the drawdown's second.
Holders 1 and 2 leave theirs in escrow until they claim shares, a coupon or
principal (claimCoupon and redeem take escrowed face first), so the escrow
and its split between claimers are exercised with time, repayments and rate
changes in between.

Rules (every action first lets 1 s to 60 days pass about half of the time):
time passes; a holder transfers any amount up to its balance to any holder
(itself included); the SPV pays interest (all that is due, or part of it,
which is held until the rest arrives); the SPV prepays principal (up to all
of it), or pays everything due at once, as at maturity (the tranche is then
Repaid, accrual stops and redeeming burns the face); a holder claims its
coupon, redeems, or claims its shares and refund; the covenant role sets the
rate step anywhere in +-2,000 bps (the rate clamps to [floor, cap]).

The model keeps, with `fractions.Fraction`, each holder's exact per-second
coupon (face x rate x seconds x outstanding / (totalFace x 10,000 x 365
days)), exact pro rata principal, and the number of settlements each account
has been through (each may round an amount down by < 1 unit). After every
step:

- totalSupply == sum of balances (holders + escrow) == the model's face;
- coupons: paid in == funded + held (held == the model's partial payments);
  funded == claimed + sum(couponClaimable) + dust with
  0 <= dust <= `_coupon_dust_bound()`;
- principal: paid in == redeemed + sum(principalClaimable) + dust with
  0 <= dust <= `_principal_dust_bound()`;
- per holder: claimed + claimable coupon <= the exact coupon accrued up to
  the last full funding; claimed + owed <= the exact coupon accrued up to
  now; redeemed + claimable principal <= its exact share (plus
  `_escrow_allowance()`, see there), and short of each by round-downs only;
  all holders together never above the exact totals;
- interest paid + interestDue is the exact accrual rounded up (less than
  one unit above it): the SPV is asked for neither less nor more;
- the tranche's stablecoin balance is exactly unclaimed refunds + (funded -
  claimed) + held + (principal paid - redeemed), and covers everything
  holders can claim (never insolvent).

The machine is a plain Hypothesis `RuleBasedStateMachine`: brownie 1.22's
`state_machine` fixture rejects the subclass it generates (its base class is
compiled with mypyc). The chain handling is the fixture's: a snapshot after
the set-up, a revert at the start of every sequence. Every transaction is
pinned to the model's clock with `evm_setNextBlockTimestamp`, so the model
knows the second each one accrues to.

By default 60 full-length sequences of 25 steps (tests/stateful/conftest.py
counts them). A long campaign:

    GPUCREDIT_FUZZ_EXAMPLES=1000 GPUCREDIT_FUZZ_STEPS=50 \\
        brownie test tests/stateful/test_tranche_stateful.py -s

(`-s` prints what the sequences did: escrow splits, partial fundings,
repayments, burns, ...).
"""

from collections import Counter
from fractions import Fraction

import brownie
import pytest
from brownie import chain, web3
from brownie_patches import read_views
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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
    whitelist,
)

MAX_SIZE = 10_000_000 * USD
REQUESTS = [3_000_000 * USD, 4_000_000 * USD, 7_000_000 * USD]  # 14M for 10M: all cut
REFERENCE_BPS, SPREAD_BPS, FLOOR_BPS, CAP_BPS = 430, 450, 500, 2_500
MAX_STEP_BPS = 2_000
BPS = 10_000
PPM = 10**6
HOLDERS = 3
ESCROW = HOLDERS  # index of the escrow in the settlement counts
ACTIVE, REPAID = 2, 3
# The indexes round each increase down by < 1e-27 per unit of face: over a
# whole sequence (~1e13 face, <= 100 accruals) that is < 1e-12 units, so
# what the contract accrued may sit this far below the exact model.
INDEX_SLACK = Fraction(1, 10**6)

st_holder = st.integers(min_value=0, max_value=HOLDERS - 1)
st_seconds = st.integers(min_value=1, max_value=60 * DAY)
# About half of the actions let time pass first, so coupons are nearly
# always due and a sequence spans months, not seconds.
st_wait = st.one_of(st.just(0), st_seconds)
st_ppm = st.integers(min_value=0, max_value=PPM)

# What the sequences did, printed at the end (`brownie test -s`).
OUTCOMES: Counter = Counter()


def tally(outcome):
    OUTCOMES[outcome] += 1


def _rpc(method, params):
    response = web3.provider.make_request(method, params)
    if "error" in response:
        raise RuntimeError(f"{method}{params}: {response['error']}")
    return response.get("result")


def _send(method, *args):
    """`method(*args)` as a quiet transaction (a receipt brownie's confirmation
    thread sees late is handled by tests/brownie_patches.py)."""
    return method(*args, silent=True)


def _clamped_rate(step_bps):
    return min(max(REFERENCE_BPS + SPREAD_BPS + step_bps, FLOOR_BPS), CAP_BPS)


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Reverts the chain after the test."""


@pytest.fixture(scope="module")
def covenant(spv):
    """Stands in for the covenant engine: the tranche's servicer (`spv`) is
    the only address that may step the coupon."""
    return spv


@pytest.fixture(scope="module")
def tranche(core, admin, issuer, operator, attestor, lenders, spv, covenant):
    """A 10M tranche over 600 pledged GPUs ($15M); holders whitelisted long
    enough that no campaign of 60-day waits outlives their KYC."""
    whitelist(core, admin, lenders, days=100 * 365)
    note_id = open_note(core, admin, issuer)
    now = chain[-1].timestamp
    terms = (note_id, 0, MAX_SIZE, 1_000 * USD, now, now + 14 * DAY, now + 14 * DAY + 3 * YEAR)
    terms += (REFERENCE_BPS, SPREAD_BPS, FLOOR_BPS, CAP_BPS, 13_000)
    tranche = clone_tranche(core, admin, issuer, spv, terms)
    bind_note(core, admin, note_id, spv, [tranche], [operator])
    leaves = make_fleet(600, in_service_at=now - 1)
    batch_id, _, _ = register_batch(core, issuer, operator, leaves)
    attestation = core.registry.batchInfo(batch_id)["attestationHash"]
    core.registry.attestBatch(batch_id, attestation, {"from": attestor})
    core.registry.pledgeBatch(batch_id, note_id, {"from": operator})
    wait_challenge_window()
    core.usd.approve(tranche, 2**256 - 1, {"from": spv})
    return tranche


@pytest.fixture(scope="module")
def drawn(core, tranche, issuer, lenders):
    """Subscribed, cut, drawn down; holder 0 claims in the drawdown's second.
    Returns the fills, refunds and drawdown time."""
    for lender, amount in zip(lenders, REQUESTS, strict=True):
        core.usd.approve(tranche, amount, {"from": lender})
        tranche.requestDeposit(amount, lender, lender, {"from": lender})
    close_subscription(tranche, issuer)
    tranche.fulfil(lenders, {"from": issuer})
    drawn_at = chain[-1].timestamp + 1
    _rpc("evm_setNextBlockTimestamp", [drawn_at])
    tranche.drawdown({"from": issuer})
    fills = [tranche.fillOf(lender) for lender in lenders]
    _rpc("evm_setNextBlockTimestamp", [drawn_at])
    tranche.claimShares({"from": lenders[0]})
    return {
        "fills": [int(shares) for shares, _ in fills],
        "refunds": [int(refund) for _, refund in fills],
        "drawn_at": drawn_at,
    }


class TrancheMachine(RuleBasedStateMachine):
    """Rules and invariants; contracts and accounts are bound by the test."""

    tranche = None
    usd = None
    spv = None
    covenant = None
    holders: list = []
    start: dict = {}

    def __init__(self):
        chain.revert()  # back to the snapshot taken after the set-up
        super().__init__()
        tally("sequence")
        fills, refunds = self.start["fills"], self.start["refunds"]
        self.escrow = self.tranche.address
        self.now = chain[-1].timestamp
        assert self.now == self.start["drawn_at"]
        self.state = ACTIVE
        self.rate = _clamped_rate(0)
        self.supply = sum(fills)
        self.outstanding = self.supply
        # economic face (balance + unclaimed fill), token balances, escrow
        self.face = list(fills)
        self.balance = [fills[0], 0, 0]
        self.unclaimed = [0, fills[1], fills[2]]
        self.refund = [0, refunds[1], refunds[2]]
        self.escrow_balance = fills[1] + fills[2]
        # exact entitlements
        self.exact_coupon = [Fraction(0)] * HOLDERS  # accrued up to now
        self.exact_funded = [Fraction(0)] * HOLDERS  # ... up to the last full funding
        self.exact_accrued = Fraction(0)  # all holders, up to now
        self.exact_principal = [Fraction(0)] * HOLDERS
        # cash
        self.interest_paid = 0  # funded + held
        self.held = 0
        self.principal_paid = 0
        self.repayments = 0
        self.claimed = [0] * HOLDERS
        self.redeemed = [0] * HOLDERS
        # settlements per account, escrow last; holder 0's claimShares
        # settled it and the escrow at a zero index (counted anyway)
        self.settlements = [1, 0, 0, 1]
        # escrow splits each holder's face went through (`_escrow_allowance`)
        self.splits = [0] * HOLDERS

    # ---- clock ----

    def _pin(self):
        """The next transaction is mined at the model's clock."""
        _rpc("evm_setNextBlockTimestamp", [self.now])

    def _wait(self, seconds):
        if seconds == 0:
            return
        if self.state == ACTIVE:
            per_face = Fraction(self.outstanding * self.rate * seconds, BPS * YEAR * self.supply)
            for h in range(HOLDERS):
                self.exact_coupon[h] += self.face[h] * per_face
            self.exact_accrued += self.supply * per_face
        self.now += seconds
        _rpc("evm_mine", [self.now])  # views see the new second
        tally("time passed")

    @rule(seconds=st_seconds)
    def sleep(self, seconds):
        self._wait(seconds)

    # ---- holders ----

    def _face(self, h):
        """Face the holder would hold out of escrow (what redeem would burn)."""
        return self.balance[h] + self.unclaimed[h]

    def _pick(self, h, view):
        """Holder `h` among those with something in `view` (or a face to
        burn), so that claims mostly succeed; `h` itself if nobody has
        anything (and the claim must revert)."""
        amounts = read_views(*[(view, holder) for holder in self.holders])
        burnable = [self.state == REPAID and self._face(g) > 0 for g in range(HOLDERS)]
        eligible = [g for g in range(HOLDERS) if amounts[g] or burnable[g]]
        return eligible[h % len(eligible)] if eligible else h

    @rule(wait=st_wait, src=st_holder, dst=st_holder, ppm=st_ppm)
    def transfer(self, wait, src, dst, ppm):
        self._wait(wait)
        amount = self.balance[src] * ppm // PPM
        self._pin()
        tx = _send(self.tranche.transfer, self.holders[dst], amount, {"from": self.holders[src]})
        if self.unclaimed[dst]:  # receiving takes the holder's face out of escrow first
            assert tx.events["EscrowedFaceClaimed"]["shares"] == self.unclaimed[dst]
            self._release(dst)
        self.balance[src] -= amount
        self.balance[dst] += amount
        self.face[src] -= amount
        self.face[dst] += amount
        self.settlements[src] += 1
        self.settlements[dst] += 1
        tally("transfer" if amount else "transfer of nothing")

    def _release(self, h):
        """Holder h's face leaves the escrow, with what it earned there."""
        self.balance[h] += self.unclaimed[h]
        self.escrow_balance -= self.unclaimed[h]
        self.unclaimed[h] = 0
        for g in range(HOLDERS):
            if self.unclaimed[g]:
                self.splits[g] += 1
        self.settlements[ESCROW] += 1
        tally("face left escrow, others still in it" if self.escrow_balance else "escrow emptied")

    def _claimed_escrowed_face(self, h):
        """claimCoupon and redeem take the caller's face out of escrow first
        (the refund stays for claimShares)."""
        if self.unclaimed[h]:
            ((shares, refund),) = read_views((self.tranche.fillOf, self.holders[h]))
            assert (shares, refund) == (0, self.refund[h])
            self._release(h)

    @rule(wait=st_wait, h=st_holder)
    def claim_coupon(self, wait, h):
        self._wait(wait)
        h = self._pick(h, self.tranche.couponClaimable)
        holder = self.holders[h]
        reads = [(self.tranche.couponClaimable, holder), (self.usd.balanceOf, holder)]
        claimable, before = read_views(*reads)
        self._pin()
        if claimable == 0:
            tally("no coupon to claim")
            with brownie.reverts(revert_pattern=r"NothingToClaim(:.*)?"):
                _send(self.tranche.claimCoupon, {"from": holder})
            return
        tx = _send(self.tranche.claimCoupon, {"from": holder})
        self._claimed_escrowed_face(h)
        amount = tx.events["CouponClaimed"]["amount"]
        assert amount == claimable  # escrowed face's coupon included
        assert read_views(*reads) == [0, before + amount]
        self.claimed[h] += amount
        self.settlements[h] += 1
        tally("coupon claimed")

    @rule(wait=st_wait, h=st_holder)
    def redeem(self, wait, h):
        self._wait(wait)
        h = self._pick(h, self.tranche.principalClaimable)
        holder = self.holders[h]
        reads = [(self.tranche.principalClaimable, holder), (self.usd.balanceOf, holder)]
        claimable, before = read_views(*reads)
        burn = self._face(h) if self.state == REPAID else 0
        self._pin()
        if claimable == 0 and burn == 0:
            tally("no principal to redeem")
            with brownie.reverts(revert_pattern=r"NothingToClaim(:.*)?"):
                _send(self.tranche.redeem, {"from": holder})
            return
        tx = _send(self.tranche.redeem, {"from": holder})
        self._claimed_escrowed_face(h)
        amount = tx.events["PrincipalRedeemed"]["amount"]
        assert (amount, tx.events["PrincipalRedeemed"]["faceBurned"]) == (claimable, burn)
        assert read_views(*reads) == [0, before + amount]
        self.redeemed[h] += amount
        self.balance[h] -= burn
        self.face[h] -= burn
        self.supply -= burn
        self.settlements[h] += 1
        tally("face burned" if burn else "principal redeemed")

    @rule(wait=st_wait, h=st_holder)
    def claim_shares(self, wait, h):
        self._wait(wait)
        eligible = [g for g in range(HOLDERS) if self.unclaimed[g] or self.refund[g]]
        if eligible:  # otherwise anyone, and it must revert
            h = eligible[h % len(eligible)]
        holder = self.holders[h]
        self._pin()
        if self.unclaimed[h] == 0 and self.refund[h] == 0:
            tally("no shares to claim")
            with brownie.reverts(revert_pattern=r"NothingToClaim(:.*)?"):
                _send(self.tranche.claimShares, {"from": holder})
            return
        reads = [
            (self.tranche.couponClaimable, holder),
            (self.tranche.couponOwed, holder),
            (self.tranche.principalClaimable, holder),
            (self.usd.balanceOf, holder),
        ]
        coupon, owed, principal, before = read_views(*reads)
        tx = _send(self.tranche.claimShares, {"from": holder})
        event = tx.events["SharesClaimed"]
        assert (event["shares"], event["refunded"]) == (self.unclaimed[h], self.refund[h])
        # what the escrow earned for this face moves with it, unchanged
        assert read_views(*reads) == [coupon, owed, principal, before + self.refund[h]]
        self.refund[h] = 0
        if self.unclaimed[h]:
            self._release(h)
        self.settlements[h] += 1
        tally("refund claimed" if event["shares"] == 0 else "shares claimed")

    # ---- servicing ----

    @rule(wait=st_wait, full=st.booleans(), ppm=st_ppm)
    def pay_interest(self, wait, full, ppm):
        self._wait(wait)
        (due,) = read_views((self.tranche.interestDue,))
        if due == 0 or (not full and due < 2):
            tally("no interest due")
            return
        amount = due if full else 1 + (due - 2) * ppm // PPM  # partial: 1 .. due - 1
        self._pin()
        tx = _send(self.tranche.pay, amount, 0, {"from": self.spv})
        assert tx.events["Paid"]["interestDueAfter"] == due - amount
        self.interest_paid += amount
        if amount == due:
            self.held = 0
            self.exact_funded = list(self.exact_coupon)
            tally("interest paid in full")
        else:
            self.held += amount
            tally("interest paid in part")

    @rule(wait=st_wait, ppm=st.integers(min_value=1, max_value=PPM))
    def prepay_principal(self, wait, ppm):
        self._wait(wait)
        if self.outstanding == 0:
            tally("nothing outstanding")
            return
        amount = max(1, self.outstanding * ppm // PPM)
        self._pin()
        tx = _send(self.tranche.pay, 0, amount, {"from": self.spv})
        for h in range(HOLDERS):
            self.exact_principal[h] += Fraction(self.face[h] * amount, self.supply)
        self.principal_paid += amount
        self.repayments += 1
        self.outstanding -= amount
        assert tx.events["Paid"]["outstandingAfter"] == self.outstanding
        tally("principal prepaid")
        if self.outstanding == 0:
            assert "Repaid" in tx.events
            self.state = REPAID
            tally("repaid")

    @rule(wait=st_wait)
    def repay_everything(self, wait):
        """Maturity: the SPV pays all interest due (`pay(max, ...)`: exactly
        what is due in that block) and all principal in one call."""
        self._wait(wait)
        if self.outstanding == 0:
            tally("nothing outstanding")
            return
        (due,) = read_views((self.tranche.interestDue,))
        self._pin()
        tx = _send(self.tranche.pay, 2**256 - 1, self.outstanding, {"from": self.spv})
        assert tx.events["Paid"]["interest"] == due
        assert tx.events["Paid"]["interestDueAfter"] == 0
        assert tx.events["Paid"]["outstandingAfter"] == 0
        assert "Repaid" in tx.events
        if due:
            self.interest_paid += due
            self.held = 0
            self.exact_funded = list(self.exact_coupon)
        for h in range(HOLDERS):
            self.exact_principal[h] += Fraction(self.face[h] * self.outstanding, self.supply)
        self.principal_paid += self.outstanding
        self.repayments += 1
        self.outstanding = 0
        self.state = REPAID
        tally("repaid")

    @rule(wait=st_wait, step=st.integers(min_value=-MAX_STEP_BPS, max_value=MAX_STEP_BPS))
    def set_rate_step(self, wait, step):
        self._wait(wait)
        self._pin()
        tx = _send(self.tranche.setRateStep, step, {"from": self.covenant})
        self.rate = _clamped_rate(step)
        assert tx.events["RateChanged"]["newRateBps"] == self.rate
        tally({FLOOR_BPS: "rate at floor", CAP_BPS: "rate at cap"}.get(self.rate, "rate stepped"))

    # ---- bounds ----

    def _coupon_dust_bound(self):
        """funded - claimed - sum(couponClaimable) is round-downs only.

        `funded` is ceil(A), A the exact sum over accruals of (index increase
        x total face) up to the funded index: it exceeds A by < 1. Holders
        are credited A in pieces, each rounded down (< 1 lost): a settlement
        of an account cuts at most two (below the funded index: claimable;
        above it: pending until the next full funding), a couponClaimable
        view one more for the account's balance and one for its share of the
        escrow, the escrow's own view one. Handing escrowed coupon to a
        claimer loses nothing (the escrow keeps the remainder). So
        dust < 1 + 2 x settlements (all accounts) + 2 x holders + 1.

        This grows with settlements, not with fundings: a holder settling n
        times between two fundings is rounded down n times on that period's
        coupon, so a bound of "holders x fundings + 1" does not hold.
        """
        return 1 + 2 * sum(self.settlements) + 2 * HOLDERS + 1

    def _principal_dust_bound(self):
        """paid - redeemed - sum(principalClaimable) is round-downs only.

        Each repayment raises the index by floor(p x 1e27 / supply): all of
        them lose < repayments x supply / 1e27 < 1 unit together. An
        account's principal is rounded down by the first settlement after a
        repayment only (later ones find the index unchanged), so at most
        min(settlements, accounts x repayments) times in all; a
        principalClaimable view rounds once for the balance and once for the
        share of the escrow. Hence dust < 1 + that + 2 x holders + 1.
        """
        roundings = min(sum(self.settlements), (HOLDERS + 1) * self.repayments)
        return 1 + roundings + 2 * HOLDERS + 1

    def _shortfall_bound(self, h, per_settlement):
        """Round-downs a holder's coupon (2 per settlement) or principal (1
        per settlement) has been through: its own settlements, the escrow's
        while it held the holder's face, its share of the escrow when
        claimed, and the views (< 4 more)."""
        return per_settlement * (self.settlements[h] + self.settlements[ESCROW]) + 5

    def _escrow_allowance(self, h, per_split):
        """What a holder can receive above its exact share through the escrow.

        A claimShares hands the claimer floor(escrowOwed x shares /
        escrowBalance) and the escrow keeps the rest, which ends with the
        holders still in escrow (the last claimer takes the remainder). Each
        split so gives them < 1 unit of the claimer's rounding per amount
        (coupon: claimable and pending, 2; principal: 1). The contract's
        rounding favours the last claimer, not the protocol; the group is
        never paid more than its exact total (checked separately).
        """
        return per_split * self.splits[h]

    # ---- invariants ----

    @invariant()
    def supply_is_sum_of_balances(self):
        tranche = self.tranche
        *balances, escrow, supply = read_views(
            *[(tranche.balanceOf, holder) for holder in self.holders],
            (tranche.balanceOf, self.escrow),
            (tranche.totalSupply,),
        )
        assert balances == self.balance
        assert escrow == self.escrow_balance
        assert supply == sum(balances) + escrow == self.supply

    @invariant()
    def money_is_conserved_and_exact(self):
        tranche, holders = self.tranche, self.holders
        values = read_views(
            (tranche.couponCash,),
            (tranche.interestDue,),
            (tranche.principalOutstanding,),
            (tranche.state,),
            (tranche.currentRateBps,),
            (self.usd.balanceOf, tranche),
            *[(tranche.couponClaimable, holder) for holder in holders],
            *[(tranche.couponOwed, holder) for holder in holders],
            *[(tranche.principalClaimable, holder) for holder in holders],
        )
        (funded, claimed, held), due, outstanding, state, rate, cash = values[:6]
        coupon_claimable = values[6 : 6 + HOLDERS]
        coupon_owed = values[6 + HOLDERS : 6 + 2 * HOLDERS]
        principal_claimable = values[6 + 2 * HOLDERS :]
        assert (outstanding, state, rate) == (self.outstanding, self.state, self.rate)

        # coupons: paid in = funded + held; funded = claimed + claimable + dust
        assert funded + held == self.interest_paid
        assert held == self.held
        assert claimed == sum(self.claimed)
        coupon_dust = funded - claimed - sum(coupon_claimable)
        assert 0 <= coupon_dust <= self._coupon_dust_bound()

        # principal: paid in = redeemed + claimable + dust
        principal_dust = self.principal_paid - sum(self.redeemed) - sum(principal_claimable)
        assert 0 <= principal_dust <= self._principal_dust_bound()

        # the SPV is asked for the exact accrual rounded up
        asked = self.interest_paid + due
        assert self.exact_accrued - INDEX_SLACK <= asked < self.exact_accrued + 1

        for h in range(HOLDERS):
            funded_h = self.claimed[h] + coupon_claimable[h]
            accrued_h = self.claimed[h] + coupon_owed[h]
            principal_h = self.redeemed[h] + principal_claimable[h]
            # never more than the exact per-second entitlement ...
            if self.splits[h] == 0:
                assert funded_h <= self.exact_funded[h], (h, funded_h, self.exact_funded[h])
                assert accrued_h <= self.exact_coupon[h], (h, accrued_h, self.exact_coupon[h])
                assert principal_h <= self.exact_principal[h], (h, principal_h)
            else:
                extra = self._escrow_allowance(h, 2)
                assert funded_h < self.exact_funded[h] + extra, (h, funded_h)
                assert accrued_h < self.exact_coupon[h] + extra, (h, accrued_h)
                extra = self._escrow_allowance(h, 1)
                assert principal_h < self.exact_principal[h] + extra, (h, principal_h)
            # ... and short of it by round-downs only
            assert funded_h > self.exact_funded[h] - self._shortfall_bound(h, 2)
            assert accrued_h > self.exact_coupon[h] - self._shortfall_bound(h, 2)
            assert principal_h > self.exact_principal[h] - self._shortfall_bound(h, 1)

        # all holders together: never more than the exact totals
        assert sum(self.claimed) + sum(coupon_claimable) <= sum(self.exact_funded)
        assert sum(self.claimed) + sum(coupon_owed) <= sum(self.exact_coupon)
        assert sum(self.redeemed) + sum(principal_claimable) <= sum(self.exact_principal)

        # solvency: the cash is exactly what is owed out, and covers it
        refunds = sum(self.refund)
        unpaid_principal = self.principal_paid - sum(self.redeemed)
        assert cash == refunds + (funded - claimed) + held + unpaid_principal
        assert cash >= refunds + sum(coupon_claimable) + held + sum(principal_claimable)


def test_tranche_money_flows(run_machine, core, tranche, drawn, lenders, spv, covenant):
    TrancheMachine.tranche = tranche
    TrancheMachine.usd = core.usd
    TrancheMachine.spv = spv
    TrancheMachine.covenant = covenant
    TrancheMachine.holders = list(lenders)
    TrancheMachine.start = drawn
    OUTCOMES.clear()
    chain.snapshot()
    run_machine(TrancheMachine, examples=25, steps=25)
    print(f"\nwhat the sequences did: {dict(sorted(OUTCOMES.items()))}")
