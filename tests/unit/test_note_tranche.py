"""NoteTranche: subscriptions (ERC-7540 shape), whitelisting, coupon accrual,
repayment and redemption. The tranche is a bare clone wired by hand with a
plain wallet as its servicer (`spv`), so the servicing calls are made
directly; the factory wires real notes (tests/regressions)."""

import pytest
from brownie import chain

from gpucredit.protocol import (
    DAY,
    USD,
    YEAR,
    close_subscription,
    make_fleet,
    register_batch,
    wait_challenge_window,
)

RATE = 430 + 450  # reference + spread, bps
MAX_SIZE = 10_000_000 * USD


@pytest.fixture(scope="module")
def note_id(open_note):
    return open_note()


def _terms(note_id):
    now = chain[-1].timestamp
    terms = (note_id, 0, MAX_SIZE, 1_000 * USD, now, now + 14 * DAY, now + 14 * DAY + 3 * YEAR)
    return terms + (430, 450, 500, 2_500, 13_000)


@pytest.fixture(scope="module")
def tranche(make_tranche, open_note, spv, note_id):
    tranche = make_tranche(_terms(note_id), spv)
    open_note.bind(note_id, spv, [tranche])
    return tranche


@pytest.fixture(scope="module")
def pledged(core, issuer, operator, attestor, note_id, tranche):
    """600 GPUs at $25k (class 1, in service now): $15M of collateral."""
    leaves = make_fleet(600, in_service_at=chain[-1].timestamp - 1)
    batch_id, _, _ = register_batch(core, issuer, operator, leaves)
    core.registry.attestBatch(
        batch_id, core.registry.batchInfo(batch_id)["attestationHash"], {"from": attestor}
    )
    core.registry.pledgeBatch(batch_id, note_id, {"from": operator})
    wait_challenge_window()
    return batch_id


def subscribe(core, tranche, lender, amount):
    core.usd.approve(tranche, amount, {"from": lender})
    return tranche.requestDeposit(amount, lender, lender, {"from": lender})


@pytest.fixture
def active(core, tranche, issuer, lenders, spv, pledged):
    """Three lenders 2M / 3M / 5M, drawn down, approvals for the SPV."""
    for lender, amount in zip(lenders, [2, 3, 5], strict=True):
        subscribe(core, tranche, lender, amount * 1_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil(lenders, {"from": issuer})
    tranche.drawn_at = tranche.drawdown({"from": issuer}).timestamp
    for lender in lenders:
        tranche.claimShares({"from": lender})
    core.usd.approve(tranche, 2**256 - 1, {"from": spv})
    return tranche


def expected_interest(face, seconds, rate=RATE):
    return face * rate * seconds // (10_000 * YEAR)


# ---- subscriptions ----


def test_request_deposit_locks_stablecoin(core, tranche, lenders):
    lender = lenders[0]
    before = core.usd.balanceOf(lender)
    tx = subscribe(core, tranche, lender, 2_000 * USD)
    assert tranche.pendingDepositRequest(0, lender) == 2_000 * USD
    assert core.usd.balanceOf(lender) == before - 2_000 * USD
    assert tx.events["DepositRequest"]["assets"] == 2_000 * USD


def test_request_deposit_rejects_non_whitelisted_controller(core, tranche, rando, reverts_with):
    core.usd.approve(tranche, 5_000 * USD, {"from": rando})
    with reverts_with("IdentityUnknown", rando.address):
        tranche.requestDeposit(5_000 * USD, rando, rando, {"from": rando})


def test_request_deposit_rejects_frozen_and_expired(core, tranche, admin, lenders, reverts_with):
    core.identities.setFrozen(lenders[0], True, {"from": admin})
    core.usd.approve(tranche, 5_000 * USD, {"from": lenders[0]})
    with reverts_with("IdentityIsFrozen", lenders[0].address):
        tranche.requestDeposit(5_000 * USD, lenders[0], lenders[0], {"from": lenders[0]})
    core.identities.registerIdentity(lenders[1], 840, chain.time() + 3 * DAY, {"from": admin})
    chain.sleep(4 * DAY)
    core.usd.approve(tranche, 5_000 * USD, {"from": lenders[1]})
    with reverts_with("IdentityExpired"):
        tranche.requestDeposit(5_000 * USD, lenders[1], lenders[1], {"from": lenders[1]})


def test_request_deposit_rejects_small_other_owner_and_closed_window(
    core, tranche, lenders, reverts_with
):
    with reverts_with("SubscriptionBelowMinimum", 999 * USD, 1_000 * USD):
        tranche.requestDeposit(999 * USD, lenders[0], lenders[0], {"from": lenders[0]})
    with reverts_with("OwnerNotSender", lenders[1].address, lenders[0].address):
        tranche.requestDeposit(5_000 * USD, lenders[0], lenders[1], {"from": lenders[0]})
    chain.sleep(15 * DAY)
    chain.mine()
    with reverts_with("SubscriptionWindowClosed"):
        tranche.requestDeposit(5_000 * USD, lenders[0], lenders[0], {"from": lenders[0]})


def test_cancel_deposit_request_refunds(core, tranche, lenders, reverts_with):
    lender = lenders[0]
    before = core.usd.balanceOf(lender)
    subscribe(core, tranche, lender, 4_000 * USD)
    tx = tranche.cancelDepositRequest({"from": lender})
    assert tx.return_value == 4_000 * USD
    assert core.usd.balanceOf(lender) == before
    assert tranche.pendingDepositRequest(0, lender) == 0
    with reverts_with("NoPendingRequest", lender.address):
        tranche.cancelDepositRequest({"from": lender})


def test_cancel_after_close_reverts(core, tranche, issuer, lenders, reverts_with):
    subscribe(core, tranche, lenders[0], 4_000 * USD)
    close_subscription(tranche, issuer)
    with reverts_with("StateIs", 1, 0):
        tranche.cancelDepositRequest({"from": lenders[0]})


def test_issuer_only_functions(tranche, rando, issuer, reverts_with):
    for call in (
        lambda: tranche.closeSubscription({"from": rando}),
        lambda: tranche.fulfil([rando], {"from": rando}),
        lambda: tranche.drawdown({"from": rando}),
    ):
        with reverts_with("AccessControlUnauthorizedAccount"):
            call()
    with reverts_with("DrawdownDeadlineNotPassed"):
        tranche.cancelOffering({"from": rando})


def test_only_the_servicer_pays_and_steps_not_even_the_admin(tranche, rando, issuer, reverts_with):
    for caller in (rando, issuer):
        with reverts_with("NotServicer", caller.address):
            tranche.setRateStep(100, {"from": caller})
        with reverts_with("NotServicer", caller.address):
            tranche.pay(0, 0, {"from": caller})
        with reverts_with("NotServicer", caller.address):
            tranche.writeOff({"from": caller})
    for setter in ("setSpv", "setAmortizationSchedule", "setReferenceRate"):
        assert not hasattr(tranche, setter)


def test_initialize_runs_once(tranche, issuer, rando, reverts_with):
    with reverts_with("AlreadyInitialized"):
        tranche.initialize("x", "x", rando, rando, tranche.terms(), [], [], {"from": rando})


def test_window_closes_only_at_its_end(tranche, issuer, reverts_with):
    end = tranche.terms()["subscriptionEnd"]
    with reverts_with("SubscriptionWindowOpen"):
        tranche.closeSubscription({"from": issuer})
    close_subscription(tranche, issuer)
    assert tranche.state() == 1 and chain[-1].timestamp >= end


def test_anyone_unwinds_an_offering_not_drawn_by_the_deadline(
    core, tranche, issuer, lenders, rando, reverts_with
):
    subscribe(core, tranche, lenders[0], 4_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    chain.sleep(tranche.DRAWDOWN_WINDOW() + 1)
    chain.mine()
    with reverts_with("DrawdownDeadlinePassed"):
        tranche.drawdown({"from": issuer})
    tranche.cancelOffering({"from": rando})
    before = core.usd.balanceOf(lenders[0])
    tranche.claimShares({"from": lenders[0]})
    assert core.usd.balanceOf(lenders[0]) - before == 4_000 * USD


def test_oversubscription_is_cut_pro_rata(core, tranche, issuer, lenders):
    amounts = [3_000_000 * USD, 4_000_000 * USD, 7_000_000 * USD]  # 14M for a 10M tranche
    for lender, amount in zip(lenders, amounts, strict=True):
        subscribe(core, tranche, lender, amount)
    close_subscription(tranche, issuer)
    tx = tranche.fulfil(lenders, {"from": issuer})
    fills = [tranche.fillOf(lender) for lender in lenders]
    for (shares, refund), amount in zip(fills, amounts, strict=True):
        assert shares == amount * MAX_SIZE // sum(amounts)
        assert shares + refund == amount
    assert sum(f[0] for f in fills) <= MAX_SIZE
    assert len(tx.events["RequestFulfilled"]) == 3
    # a repeated fulfil of the same controllers changes nothing
    tranche.fulfil(lenders, {"from": issuer})
    assert [tranche.fillOf(lender) for lender in lenders] == fills


def test_refund_claimable_before_drawdown(core, tranche, issuer, lenders):
    subscribe(core, tranche, lenders[0], 8_000_000 * USD)
    subscribe(core, tranche, lenders[1], 8_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil(lenders[:2], {"from": issuer})
    before = core.usd.balanceOf(lenders[0])
    shares, refunded = tranche.claimShares({"from": lenders[0]}).return_value
    assert (shares, refunded) == (0, 3_000_000 * USD)
    assert core.usd.balanceOf(lenders[0]) == before + 3_000_000 * USD
    assert tranche.balanceOf(lenders[0]) == 0


def test_drawdown_requires_conditions_precedent(core, tranche, issuer, lenders, reverts_with):
    subscribe(core, tranche, lenders[0], 5_000_000 * USD)
    close_subscription(tranche, issuer)
    with reverts_with("RequestsUnfulfilled", 5_000_000 * USD):
        tranche.drawdown({"from": issuer})
    tranche.fulfil([lenders[0]], {"from": issuer})
    # no collateral pledged: value 0, required 130 % of 5M
    with reverts_with("ConditionsPrecedentNotMet", 0, 6_500_000 * USD):
        tranche.drawdown({"from": issuer})


def test_drawdown_rejects_collateral_below_ratio(
    core, tranche, issuer, operator, attestor, note_id, lenders, reverts_with
):
    leaves = make_fleet(200, in_service_at=chain[-1].timestamp - 1)  # $5M
    batch_id, _, _ = register_batch(core, issuer, operator, leaves)
    core.registry.attestBatch(
        batch_id, core.registry.batchInfo(batch_id)["attestationHash"], {"from": attestor}
    )
    core.registry.pledgeBatch(batch_id, note_id, {"from": operator})
    wait_challenge_window()
    subscribe(core, tranche, lenders[0], 5_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    with reverts_with("ConditionsPrecedentNotMet", 5_000_000 * USD, 6_500_000 * USD):
        tranche.drawdown({"from": issuer})


def test_drawdown_sends_capital_to_spv_and_escrows_face(
    core, tranche, issuer, lenders, spv, pledged
):
    subscribe(core, tranche, lenders[0], 4_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    before = core.usd.balanceOf(spv)
    tx = tranche.drawdown({"from": issuer})
    assert core.usd.balanceOf(spv) == before + 4_000_000 * USD
    assert tranche.state() == 2
    assert tranche.balanceOf(tranche) == 4_000_000 * USD
    assert tranche.principalOutstanding() == 4_000_000 * USD
    assert tx.events["DrawnDown"]["requiredValue"] == 5_200_000 * USD
    assert tranche.claimableDepositRequest(0, lenders[0]) == 4_000_000 * USD
    tranche.claimShares({"from": lenders[0]})
    assert tranche.balanceOf(lenders[0]) == 4_000_000 * USD
    assert tranche.balanceOf(tranche) == 0


def test_cancelled_offering_refunds_everything(core, tranche, issuer, lenders, reverts_with):
    subscribe(core, tranche, lenders[0], 6_000_000 * USD)
    subscribe(core, tranche, lenders[1], 6_000_000 * USD)
    before = [core.usd.balanceOf(lender) for lender in lenders[:2]]
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    tranche.cancelOffering({"from": issuer})
    tranche.claimShares({"from": lenders[0]})  # fulfilled: fill + refund back
    tranche.cancelDepositRequest({"from": lenders[1]})  # never fulfilled
    assert [core.usd.balanceOf(lender) for lender in lenders[:2]] == [
        b + 6_000_000 * USD for b in before
    ]
    with reverts_with("NothingToClaim", lenders[0].address):
        tranche.claimShares({"from": lenders[0]})


# ---- whitelisted transfers ----


def test_transfer_to_non_whitelisted_reverts(active, lenders, rando, reverts_with):
    assert not active.canTransfer(lenders[0], rando, 1)
    with reverts_with("IdentityUnknown", rando.address):
        active.transfer(rando, 1_000 * USD, {"from": lenders[0]})


def test_frozen_holder_cannot_transfer(core, active, admin, lenders, reverts_with):
    core.identities.setFrozen(lenders[0], True, {"from": admin})
    with reverts_with("IdentityIsFrozen", lenders[0].address):
        active.transfer(lenders[1], 1_000 * USD, {"from": lenders[0]})


def test_transfer_to_escrow_reverts(active, lenders, reverts_with):
    with reverts_with("TransferToEscrow"):
        active.transfer(active, 1_000 * USD, {"from": lenders[0]})


# ---- coupons ----


def test_coupon_accrues_per_second_and_survives_transfer(active, lenders):
    t0 = active.drawn_at
    chain.sleep(100 * DAY)
    tx = active.transfer(lenders[1], 1_000_000 * USD, {"from": lenders[0]})
    t1 = tx.timestamp
    chain.sleep(50 * DAY)
    chain.mine()
    t2 = chain[-1].timestamp
    # lender 0: 2M until the transfer, 1M after; lender 1: 3M then 4M.
    expect0 = expected_interest(2_000_000 * USD, t1 - t0) + expected_interest(
        1_000_000 * USD, t2 - t1
    )
    expect1 = expected_interest(3_000_000 * USD, t1 - t0) + expected_interest(
        4_000_000 * USD, t2 - t1
    )
    assert abs(active.couponOwed(lenders[0]) - expect0) <= 2
    assert abs(active.couponOwed(lenders[1]) - expect1) <= 2


def test_claim_coupon_pays_funded_interest(core, active, lenders, spv, reverts_with):
    chain.sleep(30 * DAY)
    chain.mine()
    with reverts_with("NothingToClaim", lenders[0].address):
        active.claimCoupon({"from": lenders[0]})  # accrued, not yet funded
    pay_tx = active.pay(2**256 - 1, 0, {"from": spv})
    expect = expected_interest(2_000_000 * USD, pay_tx.timestamp - active.drawn_at)
    assert abs(active.couponClaimable(lenders[0]) - expect) <= 1
    before = core.usd.balanceOf(lenders[0])
    paid = active.claimCoupon({"from": lenders[0]}).return_value
    assert abs(paid - expect) <= 1
    assert core.usd.balanceOf(lenders[0]) == before + paid
    funded, claimed, held = active.couponCash()
    assert claimed == paid <= funded and held == 0
    # accrual after the payment is owed but not claimable until funded
    chain.sleep(DAY)
    chain.mine()
    assert active.couponClaimable(lenders[0]) == 0 < active.couponOwed(lenders[0])


def test_partial_payment_is_held_until_interest_is_covered(active, lenders, spv, reverts_with):
    chain.sleep(60 * DAY)
    chain.mine()
    due = active.interestDue()
    active.pay(due // 2, 0, {"from": spv})
    assert active.couponCash()[2] == due // 2  # held, not allocated
    for lender in lenders:
        assert active.couponClaimable(lender) == 0
        with reverts_with("NothingToClaim", lender.address):
            active.claimCoupon({"from": lender})
    rest = active.interestDue()
    assert rest >= due - due // 2  # the unpaid half is carried forward, plus new accrual
    tx = active.pay(2**256 - 1, 0, {"from": spv})
    paid = [active.claimCoupon({"from": lender}).return_value for lender in lenders]
    expect = [
        expected_interest(f * 1_000_000 * USD, tx.timestamp - active.drawn_at) for f in (2, 3, 5)
    ]
    assert all(abs(p - e) <= 1 for p, e in zip(paid, expect, strict=True))
    funded, claimed, held = active.couponCash()
    assert claimed == sum(paid) <= funded and held == 0


def test_pay_rejects_overpayment(active, spv, reverts_with):
    chain.sleep(DAY)
    chain.mine()
    due = active.interestDue()
    with reverts_with("InterestOverpaid"):
        active.pay(due + 10 * USD, 0, {"from": spv})
    with reverts_with("PrincipalOverpaid", 10_000_000 * USD + 1, 10_000_000 * USD):
        active.pay(0, 10_000_000 * USD + 1, {"from": spv})


def test_rate_step_is_clamped_and_emitted(active, spv, reverts_with):
    tx = active.setRateStep(-200, {"from": spv})
    assert active.currentRateBps() == RATE - 200
    assert tx.events["RateChanged"]["newRateBps"] == RATE - 200
    active.setRateStep(-2_000, {"from": spv})
    assert active.currentRateBps() == 500  # floor
    active.setRateStep(2_000, {"from": spv})
    assert active.currentRateBps() == 2_500  # cap
    with reverts_with("RateStepOutOfRange", 2_001):
        active.setRateStep(2_001, {"from": spv})


def test_rate_change_applies_from_that_second(active, spv, lenders):
    t0 = active.drawn_at
    chain.sleep(30 * DAY)
    tx = active.setRateStep(300, {"from": spv})
    chain.sleep(30 * DAY)
    chain.mine()
    t2 = chain[-1].timestamp
    face = 5_000_000 * USD
    expect = expected_interest(face, tx.timestamp - t0) + expected_interest(
        face, t2 - tx.timestamp, RATE + 300
    )
    assert abs(active.couponOwed(lenders[2]) - expect) <= 2


# ---- principal ----


def test_prepayment_is_pro_rata_and_redeemable(core, active, lenders, spv):
    active.pay(0, 1_000_000 * USD, {"from": spv})  # 10 % of 10M
    assert active.principalOutstanding() == 9_000_000 * USD
    assert [active.principalClaimable(lender) for lender in lenders] == [
        200_000 * USD,
        300_000 * USD,
        500_000 * USD,
    ]
    assert active.principalOutstandingOf(lenders[2]) == 4_500_000 * USD
    before = core.usd.balanceOf(lenders[2])
    tx = active.redeem({"from": lenders[2]})
    assert tx.return_value == 500_000 * USD
    assert core.usd.balanceOf(lenders[2]) == before + 500_000 * USD
    assert active.balanceOf(lenders[2]) == 5_000_000 * USD  # face stays until fully repaid


def test_full_repayment_burns_face_on_redeem(core, active, lenders, spv, reverts_with):
    active.pay(2**256 - 1, 10_000_000 * USD, {"from": spv})
    assert active.state() == 3 and active.isRepaid()
    for lender, face in zip(lenders, [2, 3, 5], strict=True):
        tx = active.redeem({"from": lender})
        assert tx.return_value == face * 1_000_000 * USD
        assert active.balanceOf(lender) == 0
    assert active.totalSupply() == 0
    with reverts_with("NothingToClaim", lenders[0].address):
        active.redeem({"from": lenders[0]})


def test_amortization_schedule(
    core, make_tranche, note_id, spv, issuer, lenders, pledged, reverts_with
):
    terms = _terms(note_id)
    maturity = terms[6]
    now = chain[-1].timestamp
    with reverts_with("ScheduleInvalid", 1):
        make_tranche(terms, spv, schedule=([now + 90 * DAY, now + 60 * DAY], [1000, 2000]))
    with reverts_with("ScheduleInvalid", 0):
        make_tranche(terms, spv, schedule=([maturity + 1], [1000]))
    dates = [now + 60 * DAY, now + 120 * DAY, now + 180 * DAY]
    tranche = make_tranche(terms, spv, schedule=(dates, [1_000, 2_500, 4_000]))
    assert [tuple(x) for x in tranche.amortizationSchedule()] == list(
        zip(dates, [1_000, 2_500, 4_000], strict=True)
    )
    subscribe(core, tranche, lenders[0], 8_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    tranche.drawdown({"from": issuer})
    assert tranche.principalDue() == 0
    chain.sleep(125 * DAY)
    chain.mine()
    assert tranche.principalDue() == 2_000_000 * USD  # 25 % of 8M
    chain.sleep(maturity - chain.time() + 1)
    chain.mine()
    assert tranche.principalDue() == 8_000_000 * USD


def test_write_off_shares_held_interest_among_holders(core, active, lenders, spv):
    chain.sleep(30 * DAY)
    active.pay(10_000 * USD, 0, {"from": spv})  # partial: held
    assert active.couponCash()[2] == 10_000 * USD
    tx = active.writeOff({"from": spv})
    assert tx.events["WrittenOff"]["heldReleased"] == 10_000 * USD
    assert tx.events["WrittenOff"]["principalLost"] == 10_000_000 * USD
    assert active.state() == 5
    paid = 0
    for lender in lenders:
        before = core.usd.balanceOf(lender)
        active.redeem({"from": lender})
        paid += core.usd.balanceOf(lender) - before
        assert active.balanceOf(lender) == 0
    assert 10_000 * USD - 3 <= paid <= 10_000 * USD
    assert core.usd.balanceOf(active) <= 3


def test_expired_kyc_claims_escrowed_face_but_frozen_does_not(
    core, tranche, issuer, admin, lenders, pledged, reverts_with
):
    for lender in lenders[:2]:
        subscribe(core, tranche, lender, 4_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil(lenders[:2], {"from": issuer})
    tranche.drawdown({"from": issuer})
    core.identities.setFrozen(lenders[1], True, {"from": admin})
    expiry = core.identities.identityOf(lenders[0])[1]
    chain.sleep(expiry - chain.time() + 1)
    chain.mine()
    tranche.claimShares({"from": lenders[0]})
    assert tranche.balanceOf(lenders[0]) == 4_000_000 * USD
    with reverts_with("IdentityIsFrozen", lenders[1].address):
        tranche.claimShares({"from": lenders[1]})


def test_claim_coupon_takes_escrowed_face_first(core, tranche, issuer, lenders, spv, pledged):
    """A lender who never called claimShares still gets the coupon its face
    earned: couponClaimable is what claimCoupon pays."""
    subscribe(core, tranche, lenders[0], 6_000_000 * USD)
    close_subscription(tranche, issuer)
    tranche.fulfil([lenders[0]], {"from": issuer})
    drawn_at = tranche.drawdown({"from": issuer}).timestamp
    core.usd.approve(tranche, 2**256 - 1, {"from": spv})
    chain.sleep(30 * DAY)
    pay_tx = tranche.pay(2**256 - 1, 0, {"from": spv})  # all interest due
    assert tranche.interestDue() == 0 and tranche.couponCash()[2] == 0
    claimable = tranche.couponClaimable(lenders[0])
    assert abs(claimable - expected_interest(6_000_000 * USD, pay_tx.timestamp - drawn_at)) <= 1
    tx = tranche.claimCoupon({"from": lenders[0]})
    assert tx.return_value == claimable
    assert tx.events["EscrowedFaceClaimed"]["shares"] == 6_000_000 * USD
    assert tranche.balanceOf(lenders[0]) == 6_000_000 * USD
    assert tranche.balanceOf(tranche) == 0


def test_initialisation_event_carries_the_terms(tranche, make_tranche, spv, note_id):
    terms = _terms(note_id)
    fresh = make_tranche(terms, spv)
    created = fresh.init_tx.events["TrancheInitialised"]
    assert created["terms"][0] == note_id == fresh.terms()[0]
    assert created["terms"][2] == MAX_SIZE == fresh.terms()[2]
    assert created["terms"][6] - created["terms"][5] == terms[6] - terms[5]
    assert created["spv"] == spv
    assert (fresh.name(), fresh.symbol()) == ("GPU Senior", "GPU-A")
    assert created["rateBps"] == RATE
    assert created["terms"] == fresh.terms()
