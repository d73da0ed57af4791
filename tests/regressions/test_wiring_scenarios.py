"""Issue 13: fixed wiring and a way out for every stablecoin unit.

One test per scenario the outside review proved on the old contracts (1-7),
then the findings from reading. Each is written from the attacker's side:
the issuer (or anyone) tries the attack through what it can still call, and
the test asserts the attack no longer reaches its outcome. The old-API
versions of 1-7 failed on main's contracts (see the branch's report).

Deal: senior 1M and junior 1M over 1.3M of GPUs (130 % of ONE tranche),
oracle quorum 3 of 4 (f = 1), periods of 30 days starting at the subscription end.
"""

import contextlib

import brownie
import pytest
from brownie import accounts, chain

from gpucredit.protocol import (
    DAY,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    note_params,
    open_deal,
    pledge_fleet,
    submit_report,
    wait_for_period_end,
)

SIZE = 1_000_000 * USD
ACTIVE, REPAID, CANCELLED, WRITTEN_OFF = 2, 3, 4, 5
RELEASED = 3  # IServicer.Status.Released
DUST = 10  # stablecoin units a contract may keep after everyone claimed


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the module's deal."""


def _spec(term_days=3 * 365, gpus=52):
    return DealSpec(
        tranches=[
            TrancheSpec("GPU Senior", "GPU-S", 0, SIZE, 450),
            TrancheSpec("GPU Junior", "GPU-J", 1, SIZE, 900),
        ],
        term_days=term_days,
        quorum=3,
    )


def _open(core, admin, issuer, operator, attestor, trustee, spv, signers, signer_keys, **kw):
    gpus = kw.pop("gpus", 52)
    if not core.oracle.hasRole(core.oracle.FLEET_ADMIN_ROLE(), admin):
        core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    deal = open_deal(
        core,
        _spec(**kw),
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
    )
    deal.signer_keys = signer_keys[:3]
    fleet = make_fleet(
        gpus, in_service_at=chain[-1].timestamp - 1, serial_prefix=f"N{deal.note_id}-"
    )
    deal.batch_id, deal.tree = pledge_fleet(core, deal, fleet, issuer, operator, attestor)
    return deal


@pytest.fixture(scope="module")
def deal(core, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys):
    """Both tranches fully subscribed by lender 0, window still open."""
    deal = _open(core, admin, issuer, operator, attestor, trustee, spv, signers, signer_keys)
    for tranche in deal.tranches:
        core.usd.approve(tranche, 2**256 - 1, {"from": lenders[0]})
        tranche.requestDeposit(SIZE, lenders[0], lenders[0], {"from": lenders[0]})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    return deal


def _draw(tranche, issuer, lender):
    close_subscription(tranche, issuer)
    tranche.fulfil([lender], {"from": issuer})
    tranche.drawdown({"from": issuer})
    tranche.claimShares({"from": lender})


def _close(core, deal, period, utilization, revenue_cash):
    if revenue_cash:
        deal.servicer.payRevenue(revenue_cash, {"from": accounts[2]})
    submit_report(
        core,
        deal,
        period,
        deal.signer_keys,
        utilization=utilization,
        uptime=9_950,
        revenue=max(revenue_cash, 1),
        sender=accounts[9],
    )
    return deal.servicer.closePeriod({"from": accounts[9]})


def _claim_all(tranche, holder):
    for claim in (tranche.claimShares, tranche.claimCoupon, tranche.redeem):
        with contextlib.suppress(brownie.exceptions.VirtualMachineError):
            claim({"from": holder})


# ---- 1. the issuer becomes lienholder ----


def test_1_issuer_can_never_move_or_release_the_liens(core, deal, issuer, lenders, trustee):
    senior = deal.senior
    _draw(senior, issuer, lenders[0])
    registry = core.registry
    # every lever the issuer had: re-pointing the note, moving or releasing liens
    for attempt in (
        lambda: registry.transferLiens(deal.note_id, issuer, {"from": issuer}),
        lambda: registry.releaseNote(deal.note_id, {"from": issuer}),
        lambda: registry.bindNote(deal.note_id, issuer, [senior], [issuer], {"from": issuer}),
        lambda: deal.servicer.stepIn({"from": issuer}),
        lambda: deal.servicer.transferTrustee(issuer, {"from": issuer}),
    ):
        with brownie.reverts():
            attempt()
    assert not hasattr(registry, "setNoteManager") and not hasattr(registry, "setNoteTranches")
    info = registry.noteInfo(deal.note_id)
    assert info["lienholder"] in (deal.servicer.address, "0x" + "00" * 20)
    assert info["status"] == 1  # Open: the liens are still the lenders'
    assert deal.servicer.trustee() == trustee


# ---- 2. double drawdown on one collateral pool ----


def test_2_one_collateral_pool_cannot_back_two_drawdowns(core, deal, issuer, lenders):
    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    close_subscription(junior, issuer)
    junior.fulfil([lenders[0]], {"from": issuer})
    # 2M would need 2.6M of collateral; 1.3M is pledged and the tranche list is fixed
    with brownie.reverts():
        junior.drawdown({"from": issuer})
    assert list(core.registry.noteTranches(deal.note_id)) == [senior, junior]
    assert core.usd.balanceOf(junior) == SIZE  # the junior's money is still the lender's
    assert junior.terms()[0] == deal.note_id == senior.terms()[0]


# ---- 3. terms change after lenders can no longer cancel ----


def test_3_window_closes_only_at_its_end_and_nothing_can_be_rewired(core, deal, issuer, lenders):
    senior = deal.senior
    with brownie.reverts():
        senior.closeSubscription({"from": issuer})  # window still open: lenders may still leave
    for setter in ("setSpv", "setAmortizationSchedule", "setReferenceRate", "grantRole"):
        if setter == "grantRole":
            continue  # roles exist for the issuer and guardian only; see test 4
        assert not hasattr(senior, setter)
    with brownie.reverts():
        senior.initialize("x", "x", issuer, issuer, senior.terms(), [], [], {"from": issuer})
    with brownie.reverts():
        deal.servicer.initialize(issuer, deal.servicer.covenantTerms(), {"from": issuer})
    _draw(senior, issuer, lenders[0])
    # drawn capital reached the note's servicer, nobody else
    assert core.usd.balanceOf(deal.servicer) == SIZE
    assert senior.spv() == deal.servicer


# ---- 4. the issuer stops the covenant engine ----


def test_4_no_role_can_stop_a_period_close(core, deal, issuer, lenders):
    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    admin_role = senior.DEFAULT_ADMIN_ROLE()
    for tranche in (senior, junior):
        for role in (tranche.ISSUER_ROLE(), tranche.GUARDIAN_ROLE()):
            tranche.revokeRole(role, deal.servicer, {"from": issuer})  # never held: no effect
            tranche.grantRole(role, issuer, {"from": issuer})
        tranche.pause({"from": issuer})
    assert senior.hasRole(admin_role, issuer)
    tx = _close(core, deal, 0, 5_500, 50_000 * USD)  # low utilization: coupon steps up
    assert tx.events["CouponStepped"]["newStepBps"] == 300
    assert tx.events["Paid"]["interest"] > 0


# ---- 5. a closed offering that is never drawn ----


def test_5_an_undrawn_offering_unwinds_for_anyone_after_the_deadline(
    core, deal, issuer, lenders, rando
):
    senior, junior = deal.tranches
    close_subscription(senior, issuer)
    senior.fulfil([lenders[0]], {"from": issuer})
    with brownie.reverts():
        senior.cancelOffering({"from": rando})  # before the deadline only the issuer may
    chain.sleep(senior.DRAWDOWN_WINDOW() + 1)
    chain.mine()
    with brownie.reverts():
        senior.drawdown({"from": issuer})  # too late to draw
    before = core.usd.balanceOf(lenders[0])
    for tranche in (senior, junior):
        tranche.cancelOffering({"from": rando})
    senior.claimShares({"from": lenders[0]})  # fulfilled: refunded through the fill
    junior.cancelDepositRequest({"from": lenders[0]})  # never closed: the pending request
    assert core.usd.balanceOf(lenders[0]) - before == 2 * SIZE
    assert core.usd.balanceOf(senior) == core.usd.balanceOf(junior) == 0


# ---- 6. partial interest held in a default ----


def test_6_partial_interest_reaches_holders_when_the_note_winds_down(
    core, deal, issuer, lenders, trustee, operator
):
    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    junior.cancelDepositRequest({"from": lenders[0]})
    deal.servicer.disburseCapital({"from": operator})
    paid_in = 0
    for period in range(6):
        # 12k a period: 5k of fees, 7k of the senior's ~9.2k of interest
        tx = _close(core, deal, period, 5_500, 12_000 * USD)
        paid_in += sum(e["interest"] for e in tx.events["Paid"]) if "Paid" in tx.events else 0
    assert deal.servicer.status() in (1, 2)  # defaulted: the top-up lapsed
    if deal.servicer.status() == 1:
        deal.servicer.stepIn({"from": trustee})
    _, _, held = senior.couponCash()
    assert held > 0
    deal.servicer.finishWindDown({"from": trustee})
    assert senior.state() == WRITTEN_OFF
    assert deal.servicer.status() == RELEASED
    before = core.usd.balanceOf(lenders[0])
    _claim_all(senior, lenders[0])
    received = core.usd.balanceOf(lenders[0]) - before
    assert received >= paid_in - DUST  # every unit of interest paid in reached the holder
    assert core.usd.balanceOf(senior) <= DUST


# ---- 7. a cancelled junior locks the reserve and cash collateral ----


def test_7_a_cancelled_junior_never_locks_reserve_or_cash_collateral(
    core, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys
):
    deal = _open(
        core, admin, issuer, operator, attestor, trustee, spv, signers, signer_keys, term_days=50
    )
    senior, junior = deal.tranches
    for tranche in deal.tranches:
        core.usd.approve(tranche, 2**256 - 1, {"from": lenders[0]})
        tranche.requestDeposit(SIZE, lenders[0], lenders[0], {"from": lenders[0]})
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    deal.servicer.disburseCapital({"from": operator})
    deal.servicer.postCashCollateral(10_000 * USD, {"from": operator})
    _close(core, deal, 0, 9_500, 200_000 * USD)
    assert deal.servicer.reserveBalance() > 0
    _close(core, deal, 1, 9_500, 1_200_000 * USD)  # past maturity: the senior repays
    assert senior.state() == REPAID
    deal.servicer.releaseCollateral({"from": accounts[9]})
    assert deal.servicer.reserveBalance() == deal.servicer.trappedCash() == 0
    for account in (operator, spv):
        deal.servicer.withdraw({"from": account})
    assert core.usd.balanceOf(deal.servicer) == 0
    junior.cancelDepositRequest({"from": lenders[0]})
    _claim_all(senior, lenders[0])
    assert core.usd.balanceOf(junior) == 0 and core.usd.balanceOf(senior) <= DUST


def test_7b_reserve_above_target_is_released_into_the_waterfall(
    core, deal, issuer, lenders, operator
):
    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    deal.servicer.disburseCapital({"from": operator})
    _close(core, deal, 0, 9_500, 200_000 * USD)  # the reserve fills to its target
    # low utilization: a top-up requirement switches the sweep on and prepays senior principal
    _close(core, deal, 1, 5_500, 800_000 * USD)
    reserve = deal.servicer.reserveBalance()
    assert senior.principalOutstanding() < SIZE * 7 // 10
    tx = _close(core, deal, 2, 9_500, 100_000 * USD)  # cash covers all interest due
    result = tx.events["WaterfallDistributed"]["result"]
    # the target fell with the outstanding: the excess is drawn back into the cash
    assert result["reserveBalance"] < reserve
    assert result["reserveDrawn"] >= reserve - result["reserveBalance"]


# ---- findings from reading ----


def test_factory_refuses_a_zero_trustee(core, issuer, operator, spv):
    params = list(
        note_params(
            _spec(), chain.time() + 10, operator=operator, fee_recipient=spv, trustee=operator
        )
    )
    params[3] = "0x" + "00" * 20
    with brownie.reverts():
        core.factory.createNote(params, {"from": issuer})


def test_cash_after_a_default_reaches_the_wind_down(
    core, deal, issuer, lenders, trustee, operator, spv
):
    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    # capital never disbursed; the note defaults with it still in the servicer
    _close(core, deal, 0, 5_500, 0)
    chain.sleep(31 * DAY)
    deal.servicer.declareDefault({"from": accounts[9]})
    core.usd.transfer(deal.servicer, 5_000 * USD, {"from": operator})  # a plain transfer
    deal.servicer.disburseCapital({"from": accounts[9]})  # no longer to the operator
    assert deal.servicer.trappedCash() >= SIZE + 5_000 * USD
    deal.servicer.stepIn({"from": trustee})
    deal.servicer.finishWindDown({"from": trustee})
    _claim_all(senior, lenders[0])
    assert core.usd.balanceOf(senior) <= DUST
    # late cash after the wind-down goes to the trustee, after fee arrears
    core.usd.transfer(deal.servicer, 1_000 * USD, {"from": operator})
    deal.servicer.disburseCapital({"from": accounts[9]})
    for account in (trustee, spv, operator):
        with contextlib.suppress(brownie.exceptions.VirtualMachineError):
            deal.servicer.withdraw({"from": account})
    assert core.usd.balanceOf(deal.servicer) == 0


def test_late_cash_after_release_pays_fee_arrears_then_the_operator(
    core, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys
):
    deal = _open(
        core, admin, issuer, operator, attestor, trustee, spv, signers, signer_keys, term_days=50
    )
    senior, junior = deal.tranches
    core.usd.approve(senior, 2**256 - 1, {"from": lenders[0]})
    senior.requestDeposit(SIZE, lenders[0], lenders[0], {"from": lenders[0]})
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    deal.servicer.disburseCapital({"from": operator})
    with brownie.reverts():
        deal.servicer.releaseCollateral({"from": accounts[9]})  # senior not repaid yet
    _close(core, deal, 0, 9_500, 0)  # no cash: the fee goes into arrears

    wait_for_period_end(deal, 1)
    # enough for the fee, the interest and the principal. Interest accrues by the second
    # (about 1,400 units a second here) and anvil's clock follows the wall clock, so the
    # margin covers a minute of a loaded CI machine between this read and the close.
    need = 5_000 * USD + deal.servicer.feeArrears() + senior.interestDue() + SIZE + 100 * USD
    _close(core, deal, 1, 9_500, need)  # past maturity: the senior repays
    assert senior.state() == REPAID
    for period in (2, 3):
        _close(core, deal, period, 9_500, 0)  # fees keep falling due, no cash
    arrears = deal.servicer.feeArrears()
    assert arrears > 0
    if deal.servicer.withdrawable(operator):
        deal.servicer.withdraw({"from": operator})  # equity released so far
    held = core.usd.balanceOf(deal.servicer) - deal.servicer.withdrawable(spv)
    deal.servicer.releaseCollateral({"from": accounts[9]})
    kept = deal.servicer.feeArrears()
    assert kept == max(0, arrears - held)  # paid from what was held, the rest kept
    # a plain transfer after the note ends pays the arrears, then the operator
    core.usd.transfer(deal.servicer, kept + 1_000 * USD, {"from": operator})
    deal.servicer.disburseCapital({"from": accounts[9]})
    assert deal.servicer.feeArrears() == 0
    for account in (operator, spv):
        if deal.servicer.withdrawable(account):
            deal.servicer.withdraw({"from": account})
    assert core.usd.balanceOf(deal.servicer) == 0


def test_frozen_identity_stays_frozen_across_remove_and_register(core, admin, lenders):
    ids = core.identities
    ids.setFrozen(lenders[-1], True, {"from": admin})
    ids.removeIdentity(lenders[-1], {"from": admin})
    ids.registerIdentity(lenders[-1], 840, chain.time() + 365 * DAY, {"from": admin})
    assert not ids.isVerified(lenders[-1])
    assert ids.identityOf(lenders[-1])[2]


def test_expired_kyc_still_claims_the_face_it_is_owed(core, deal, issuer, lenders, admin):
    senior = deal.senior
    close_subscription(senior, issuer)
    senior.fulfil([lenders[0]], {"from": issuer})
    senior.drawdown({"from": issuer})
    expiry = core.identities.identityOf(lenders[0])[1]
    chain.sleep(expiry - chain.time() + 1)
    chain.mine()
    assert not core.identities.isVerified(lenders[0])
    senior.claimShares({"from": lenders[0]})
    assert senior.balanceOf(lenders[0]) == SIZE


def test_a_proven_defect_is_an_immediate_top_up_whose_deadline_never_moves(
    core, deal, issuer, lenders, operator, attestor, rando
):
    from dataclasses import replace

    from gpucredit.merkle import text_id
    from gpucredit.protocol import register_batch

    senior, junior = deal.tranches
    _draw(senior, issuer, lenders[0])
    junior.cancelOffering({"from": issuer})
    # after drawdown, a second batch of 16 GPUs pledged as a top-up, one leaf
    # inconsistent with its header (model); proven within its challenge window
    leaves = make_fleet(16, in_service_at=chain[-1].timestamp - 1, serial_prefix="BAD-")
    leaves[15] = replace(leaves[15], model=text_id("NVIDIA A100 80GB"))
    batch_id, tree, _ = register_batch(core, issuer, operator, leaves)
    core.registry.attestBatch(
        batch_id, core.registry.batchInfo(batch_id)["attestationHash"], {"from": attestor}
    )
    core.registry.pledgeBatch(batch_id, deal.note_id, {"from": operator})
    with brownie.reverts():
        deal.servicer.recordDefects({"from": rando})  # nothing proven yet
    core.registry.proveBadLeaf(batch_id, leaves[15].as_tuple(), tree.proof(15), {"from": rando})
    # the voided batch no longer counts: 1.3M left for 1M outstanding (LTV 77 % > 75 %)
    tx = deal.servicer.recordDefects({"from": rando})
    required, deadline = deal.servicer.topUp()
    assert tx.events["TopUpRequired"]["deadline"] == deadline == tx.timestamp + 30 * DAY
    assert required > core.registry.collateralValue(deal.note_id)
    # a later, larger requirement (low utilization: 65 % limit) keeps the deadline
    _close(core, deal, 0, 5_500, 50_000 * USD)
    assert deal.servicer.topUp()[1] == deadline
    # cash counts like final collateral for the cure
    required = deal.servicer.topUp()[0]
    short = required - core.registry.collateralValue(deal.note_id)
    deal.servicer.postCashCollateral(short, {"from": operator})
    deal.servicer.cureTopUp({"from": rando})
    assert [int(x) for x in deal.servicer.topUp()] == [0, 0]
