"""Emergency controls: the guardian's pause, two-step admin hand-overs, and
timelocks on the changes that weaken lender protection (oracle signer set
and quorum, value-raising valuation changes), plus the servicer's fixed
terms and self-administered trustee role.

Policy and reasoning: docs/threat-model.md ("Emergency controls").
"""

import brownie
import pytest
from brownie import chain, web3
from eth_account import Account
from eth_utils import keccak

from gpucredit.protocol import (
    DAY,
    H100,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    open_deal,
    pledge_fleet,
    submit_report,
)
from gpucredit.reports import SignedObservation, order_by_signer, period_bounds, sign_observation

ADMIN_DELAY = 2 * DAY
TIMELOCK = 2 * DAY
DEFAULT_ADMIN_ROLE = "0x" + "00" * 32
GUARDIAN_ROLE = "0x" + keccak(text="GUARDIAN_ROLE").hex()
TRUSTEE_ROLE = "0x" + keccak(text="TRUSTEE_ROLE").hex()
FLEET_ADMIN_ROLE = "0x" + keccak(text="FLEET_ADMIN_ROLE").hex()
SIZE = 1_000_000 * USD


def set_next_timestamp(timestamp):
    web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])


@pytest.fixture(scope="module")
def denied(typed_error):
    """`with denied(account, role):` expects AccessControlUnauthorizedAccount."""

    def expect(account, role):
        return brownie.reverts(typed_error("AccessControlUnauthorizedAccount", account, role))

    return expect


@pytest.fixture(scope="module")
def deal(core, admin, issuer, operator, attestor, trustee, lenders, spv, signers):
    """A one-tranche note in its subscription window, with collateral pledged."""
    spec = DealSpec(tranches=[TrancheSpec("GPU Senior", "GPU-S", 0, SIZE, 450)], quorum=3)
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
    fleet = make_fleet(100, in_service_at=chain[-1].timestamp - 1, serial_prefix="EMG-")
    pledge_fleet(core, deal, fleet, issuer, operator, attestor)
    for lender in lenders:
        core.usd.approve(deal.senior, 2**256 - 1, {"from": lender})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    return deal


@pytest.fixture(scope="module")
def guardian(accounts, deal, issuer):
    """A dedicated guardian key (the issuer holds the role from deployment too)."""
    account = accounts.add()
    accounts[0].transfer(account, "1 ether")
    deal.senior.grantRole(GUARDIAN_ROLE, account, {"from": issuer})
    return account


def _subscribe_and_draw(deal, lenders, issuer, amounts=(600_000 * USD, 400_000 * USD)):
    senior = deal.senior
    for lender, amount in zip(lenders, amounts, strict=False):
        senior.requestDeposit(amount, lender, lender, {"from": lender})
    close_subscription(senior, issuer)
    senior.fulfil(lenders[: len(amounts)], {"from": issuer})
    senior.drawdown({"from": issuer})


# ---------------------------------------------------------------- guardian pause


def test_pause_stops_new_subscriptions_and_keeps_refunds_open(
    deal, guardian, lenders, core, reverts_with
):
    senior = deal.senior
    senior.requestDeposit(50_000 * USD, lenders[0], lenders[0], {"from": lenders[0]})
    tx = senior.pause({"from": guardian})
    assert tx.events["Paused"]["account"] == guardian
    assert senior.paused()
    with reverts_with("EnforcedPause"):
        senior.requestDeposit(50_000 * USD, lenders[1], lenders[1], {"from": lenders[1]})
    before = core.usd.balanceOf(lenders[0])
    senior.cancelDepositRequest({"from": lenders[0]})  # what a lender is owed stays claimable
    assert core.usd.balanceOf(lenders[0]) - before == 50_000 * USD
    tx = senior.unpause({"from": guardian})
    assert tx.events["Unpaused"]["account"] == guardian
    senior.requestDeposit(50_000 * USD, lenders[1], lenders[1], {"from": lenders[1]})
    assert senior.pendingDepositRequest(0, lenders[1]) == 50_000 * USD


def test_pause_stops_drawdown_but_not_refunds_of_an_oversubscribed_fill(
    deal, guardian, lenders, issuer, core, reverts_with
):
    senior = deal.senior
    for lender in lenders[:2]:
        senior.requestDeposit(800_000 * USD, lender, lender, {"from": lender})
    close_subscription(senior, issuer)
    senior.fulfil(lenders[:2], {"from": issuer})
    senior.pause({"from": guardian})
    with reverts_with("EnforcedPause"):
        senior.drawdown({"from": issuer})
    before = core.usd.balanceOf(lenders[0])
    senior.claimShares({"from": lenders[0]})  # the unfilled part comes back while paused
    assert core.usd.balanceOf(lenders[0]) - before == 300_000 * USD
    senior.unpause({"from": guardian})
    senior.drawdown({"from": issuer})
    assert senior.state() == 2


def test_pause_stops_transfers_but_claims_and_servicing_go_on(
    core, deal, guardian, lenders, issuer, operator, signer_keys, rando, reverts_with
):
    senior = deal.senior
    _subscribe_and_draw(deal, lenders, issuer)
    senior.claimShares({"from": lenders[0]})
    senior.pause({"from": guardian})
    with reverts_with("EnforcedPause"):
        senior.transfer(lenders[2], 1, {"from": lenders[0]})
    senior.approve(rando, 10, {"from": lenders[0]})
    with reverts_with("EnforcedPause"):
        senior.transferFrom(lenders[0], lenders[2], 1, {"from": rando})
    assert not senior.canTransfer(lenders[0], lenders[2], 1)
    # face still leaves escrow for a lender who had not claimed it yet
    senior.claimShares({"from": lenders[1]})
    assert senior.balanceOf(lenders[1]) == 400_000 * USD
    # the servicer closes the period and pays the tranche; holders claim coupon
    deal.servicer.payRevenue(200_000 * USD, {"from": operator})
    submit_report(
        core,
        deal,
        0,
        signer_keys[:3],
        utilization=8_000,
        uptime=9_950,
        revenue=200_000 * USD,
        sender=rando,
    )
    tx = deal.servicer.closePeriod({"from": rando})
    assert "Paid" in tx.events
    for lender in lenders[:2]:
        senior.claimCoupon({"from": lender})
    senior.unpause({"from": guardian})
    assert senior.canTransfer(lenders[0], lenders[2], 1)
    senior.transfer(lenders[2], 1, {"from": lenders[0]})
    assert senior.balanceOf(lenders[2]) == 1


def test_redeem_and_the_burn_work_while_paused(deal, guardian, lenders, issuer, core):
    senior = deal.senior
    _subscribe_and_draw(deal, lenders, issuer)
    senior.claimShares({"from": lenders[0]})
    senior.pause({"from": guardian})
    # only the note's servicer pays: impersonate it (anvil) and fund it
    payer = deal.servicer.address
    web3.provider.make_request("anvil_impersonateAccount", [payer])
    web3.provider.make_request("anvil_setBalance", [payer, hex(10**21)])
    payer = brownie.accounts.at(payer, force=True)
    core.usd.mint(payer, SIZE * 2, {"from": core.usd.owner()})
    web3.provider.make_request("evm_setNextBlockTimestamp", [chain[-1].timestamp])
    senior.pay(senior.interestDue(), SIZE, {"from": payer})
    assert senior.isRepaid()
    before = core.usd.balanceOf(lenders[0])
    senior.redeem({"from": lenders[0]})
    assert core.usd.balanceOf(lenders[0]) - before == 600_000 * USD
    assert senior.balanceOf(lenders[0]) == 0  # face burned while paused


def test_only_the_guardian_pauses_and_states_are_checked(
    deal, guardian, issuer, rando, lenders, reverts_with, denied
):
    senior = deal.senior
    for caller in (rando, lenders[0]):
        with denied(caller, GUARDIAN_ROLE):
            senior.pause({"from": caller})
    with reverts_with("ExpectedPause"):
        senior.unpause({"from": guardian})
    senior.pause({"from": issuer})  # the issuer holds the role from deployment
    with reverts_with("EnforcedPause"):
        senior.pause({"from": guardian})
    with denied(rando, GUARDIAN_ROLE):
        senior.unpause({"from": rando})
    senior.unpause({"from": guardian})
    assert not senior.paused()


def test_the_servicer_has_no_pause(deal):
    """Lender protections keep running: no pause, no setter of covenant terms."""
    names = {item["name"] for item in deal.servicer.abi if item["type"] == "function"}
    assert not names & {"pause", "unpause", "paused"}
    assert not [name for name in names if name.startswith("set")]


# ---------------------------------------------------------------- two-step admin hand-over


def _admin_contracts(core, deal):
    return [
        (core.identities, "admin"),
        (core.registry, "admin"),
        (core.oracle, "admin"),
        (deal.senior, "issuer"),
    ]


def test_every_contract_has_one_default_admin_moved_in_two_steps(
    core, deal, admin, issuer, rando, reverts_with
):
    holders = {"admin": admin, "issuer": issuer}
    for contract, who in _admin_contracts(core, deal):
        current = holders[who]
        assert contract.defaultAdmin() == current
        assert contract.defaultAdminDelay() == ADMIN_DELAY
        assert contract.owner() == current
        # no shortcut around the two steps
        with reverts_with("AccessControlEnforcedDefaultAdminRules"):
            contract.grantRole(DEFAULT_ADMIN_ROLE, rando, {"from": current})
        with reverts_with("AccessControlEnforcedDefaultAdminRules"):
            contract.revokeRole(DEFAULT_ADMIN_ROLE, current, {"from": current})


@pytest.mark.parametrize("index", range(4))
def test_admin_hand_over_waits_for_the_delay_and_the_new_key(
    core, deal, admin, issuer, rando, accounts, index, reverts_with, denied
):
    contract, who = _admin_contracts(core, deal)[index]
    current = {"admin": admin, "issuer": issuer}[who]
    successor = accounts[6]
    tx = contract.beginDefaultAdminTransfer(successor, {"from": current})
    schedule = tx.timestamp + ADMIN_DELAY
    assert tuple(contract.pendingDefaultAdmin()) == (successor.address, schedule)
    set_next_timestamp(schedule)
    with reverts_with("AccessControlEnforcedDefaultAdminDelay", schedule):
        contract.acceptDefaultAdminTransfer({"from": successor})
    with reverts_with("AccessControlInvalidDefaultAdmin", rando.address):
        contract.acceptDefaultAdminTransfer({"from": rando})
    set_next_timestamp(schedule + 1)
    contract.acceptDefaultAdminTransfer({"from": successor})
    assert contract.hasRole(DEFAULT_ADMIN_ROLE, successor)
    assert not contract.hasRole(DEFAULT_ADMIN_ROLE, current)
    # the old key has lost every admin power, including starting another hand-over
    with denied(current, DEFAULT_ADMIN_ROLE):
        contract.beginDefaultAdminTransfer(rando, {"from": current})


def test_a_pending_hand_over_can_be_cancelled(core, admin, accounts, reverts_with):
    registry = core.registry
    registry.beginDefaultAdminTransfer(accounts[6], {"from": admin})
    tx = registry.cancelDefaultAdminTransfer({"from": admin})
    assert "DefaultAdminTransferCanceled" in tx.events
    chain.sleep(ADMIN_DELAY + 1)
    with reverts_with("AccessControlInvalidDefaultAdmin", accounts[6].address):
        registry.acceptDefaultAdminTransfer({"from": accounts[6]})
    assert registry.defaultAdmin() == admin


# ---------------------------------------------------------------- servicer: trustee and terms


def test_the_servicer_has_no_admin(deal):
    names = {item["name"] for item in deal.servicer.abi if item["type"] == "function"}
    assert not names & {"defaultAdmin", "grantRole", "revokeRole", "beginDefaultAdminTransfer"}


def test_only_a_trustee_appoints_a_trustee(deal, issuer, trustee, rando, reverts_with):
    servicer = deal.servicer
    assert servicer.trustee() == trustee
    # the issuer cannot make itself the lienholder
    with reverts_with("NotTrustee", issuer.address):
        servicer.transferTrustee(issuer, {"from": issuer})
    with reverts_with("TermsInvalid"):
        servicer.transferTrustee("0x" + "00" * 20, {"from": trustee})  # never zero
    tx = servicer.transferTrustee(rando, {"from": trustee})  # a successor trustee
    assert tx.events["TrusteeSet"]["trustee"] == rando
    assert servicer.trustee() == rando
    with reverts_with("NotTrustee", trustee.address):
        servicer.stepIn({"from": trustee})


# ---------------------------------------------------------------- timelocked oracle changes


def test_compromised_fleet_admin_cannot_swap_signers_before_anyone_notices(
    core, deal, admin, signers, signer_keys, rando, accounts, reverts_with, denied
):
    """A stolen fleet-admin key queues its own signer set: nothing changes
    for 2 days (its reports do not count), the queue is public, and the
    oracle's admin revokes the key and cancels the change in time."""
    oracle, fleet = core.oracle, deal.note_id
    thief = accounts[7]
    oracle.grantRole(oracle.FLEET_ADMIN_ROLE(), thief, {"from": admin})  # the key later stolen
    forged_keys = [Account.create().key.hex() for _ in range(4)]
    forged_set = sorted(
        (Account.from_key(k).address for k in forged_keys), key=lambda a: int(a, 16)
    )
    start, end = period_bounds(deal.genesis, deal.spec.period_length, 0)
    set_next_timestamp(max(end + 1, chain[-1].timestamp + 1))  # period 0 is reportable
    tx = oracle.queueSignerChange(fleet, forged_set, 3, {"from": thief})
    eta = tx.timestamp + TIMELOCK
    assert tx.events["SignerChangeQueued"]["eta"] == eta

    # the thief's own report of period 0 does not count during the delay
    values = (10_000, 10_000, 10**12)
    forged = order_by_signer(
        (
            Account.from_key(key).address,
            SignedObservation(
                *values,
                sign_observation(key, chain.id, oracle.address, fleet, 0, start, end, *values),
            ),
        )
        for key in forged_keys
    )
    with reverts_with("SignerUnknown", forged_set[0]):
        oracle.submitReport(fleet, 0, forged, {"from": thief})
    with reverts_with("SignerChangeNotReady"):
        oracle.executeSignerChange(fleet, {"from": thief})

    # response: the admin revokes the key and cancels the queued change
    oracle.revokeRole(oracle.FLEET_ADMIN_ROLE(), thief, {"from": admin})
    oracle.cancelSignerChange(fleet, {"from": admin})
    set_next_timestamp(eta + 1)
    with denied(thief, FLEET_ADMIN_ROLE):
        oracle.executeSignerChange(fleet, {"from": thief})
    assert list(oracle.signers(fleet)) == sorted(
        [s.address for s in signers[:4]], key=lambda a: int(a, 16)
    )
    submit_report(
        core,
        deal,
        0,
        signer_keys[:3],
        utilization=8_000,
        uptime=9_950,
        revenue=1,
        sender=rando,
    )


# ---------------------------------------------------------------- timelocked valuation changes


def test_haircut_cut_waits_raise_applies_at_once(core, admin, reverts_with):
    registry = core.registry
    registry.setModel(H100, 1, 3_000, {"from": admin})  # a raise: immediate
    assert registry.modelInfo(H100)["haircutBps"] == 3_000
    tx = registry.setModel(H100, 1, 1_000, {"from": admin})  # a cut raises values
    eta = tx.timestamp + TIMELOCK
    queued = tx.events["ModelQueued"]
    assert (queued["classId"], queued["haircutBps"], queued["eta"]) == (1, 1_000, eta)
    assert "ModelSet" not in tx.events
    assert registry.modelInfo(H100)["haircutBps"] == 3_000
    assert tuple(registry.pendingModel(H100)) == (1, 1_000, eta)
    set_next_timestamp(eta - 1)
    with reverts_with("ValuationChangeNotReady", eta, eta - 1):
        registry.executeModel(H100, {"from": admin})
    set_next_timestamp(eta)
    tx = registry.executeModel(H100, {"from": admin})
    assert tx.events["ModelSet"]["haircutBps"] == 1_000
    assert registry.modelInfo(H100)["haircutBps"] == 1_000
    with reverts_with("ValuationChangeNotQueued"):
        registry.executeModel(H100, {"from": admin})


def test_conservative_change_drops_a_queued_weakening(core, admin, reverts_with):
    registry = core.registry
    registry.setModel(H100, 1, 3_000, {"from": admin})
    registry.setModel(H100, 1, 0, {"from": admin})  # queued cut
    tx = registry.setModel(H100, 1, 4_000, {"from": admin})  # later, a raise
    assert "ModelCancelled" in tx.events
    assert registry.modelInfo(H100)["haircutBps"] == 4_000
    chain.sleep(TIMELOCK + 1)
    with reverts_with("ValuationChangeNotQueued"):
        registry.executeModel(H100, {"from": admin})
    with reverts_with("ValuationChangeNotQueued"):
        registry.cancelModel(H100, {"from": admin})


@pytest.mark.parametrize(
    "markdown, floor, queued",
    [
        (500, 0, False),  # unchanged
        (600, 0, False),  # faster markdown: lower values, at once
        (400, 0, True),  # slower markdown: higher values, queued
        (500, 1_000, True),  # higher floor: queued
        (600, 1_000, True),  # mixed: anything that can raise a value waits
    ],
)
def test_class_changes_that_raise_values_are_queued(core, admin, markdown, floor, queued):
    registry = core.registry
    assert tuple(registry.depreciationClass(1)) == (500, 0, True)
    tx = registry.setDepreciationClass(1, markdown, floor, {"from": admin})
    assert ("DepreciationClassQueued" in tx.events) is queued
    assert ("DepreciationClassSet" in tx.events) is not queued
    now = tuple(registry.depreciationClass(1))
    assert now == ((500, 0, True) if queued else (markdown, floor, True))
    if queued:
        eta = tx.timestamp + TIMELOCK
        assert tuple(registry.pendingDepreciationClass(1)) == (markdown, floor, eta)
        chain.sleep(TIMELOCK)
        registry.executeDepreciationClass(1, {"from": admin})
        assert tuple(registry.depreciationClass(1)) == (markdown, floor, True)


def test_new_class_is_immediate_and_a_queued_class_change_can_be_cancelled(
    core, admin, reverts_with
):
    registry = core.registry
    tx = registry.setDepreciationClass(9, 100, 500, {"from": admin})  # no batch can use it yet
    assert "DepreciationClassSet" in tx.events
    registry.setDepreciationClass(9, 50, 500, {"from": admin})
    tx = registry.cancelDepreciationClass(9, {"from": admin})
    assert tx.events["DepreciationClassCancelled"]["classId"] == 9
    chain.sleep(TIMELOCK + 1)
    with reverts_with("ValuationChangeNotQueued"):
        registry.executeDepreciationClass(9, {"from": admin})
    assert tuple(registry.depreciationClass(9)) == (100, 500, True)


def test_collateral_value_moves_only_when_the_cut_executes(core, deal, admin):
    registry = core.registry
    full = registry.collateralValue(deal.note_id)  # no haircut yet
    registry.setModel(H100, 1, 2_000, {"from": admin})  # a raise: at once
    cut = registry.collateralValue(deal.note_id)
    assert cut < full
    registry.setModel(H100, 1, 0, {"from": admin})
    chain.sleep(TIMELOCK)
    chain.mine()
    assert registry.collateralValue(deal.note_id) == cut
    registry.executeModel(H100, {"from": admin})
    assert registry.collateralValue(deal.note_id) == full
