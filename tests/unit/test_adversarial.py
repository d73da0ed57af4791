"""Adversarial tests: the attacks of docs/threat-model.md, tried against the contracts.

- reentrancy through the stablecoin: `CallbackStablecoin` (contracts/test/)
  re-enters every guarded function of the tranche and the servicer from
  inside each money-moving call;
- forged and replayed telemetry (zero, cross-period and cross-fleet
  signatures; high-s and malformed signatures are in test_telemetry_oracle.py);
- a signer-set change racing a report;
- rounding farms (1-unit transfers, many tiny claims), dust subscriptions,
  donations (no first-depositor inflation), a late request racing the
  subscription close;
- double pledges of one GPU across two issuers.

Everything runs on one protocol whose stablecoin is the hostile token: two
notes, `active` (drawn: lenders 0 and 1 hold 500k face each) and
`subscribing` (window open), both built before the first test.
"""

from dataclasses import replace

import brownie
import pytest
from brownie import chain, web3
from eth_account import Account
from eth_utils import keccak

from gpucredit.protocol import (
    DAY,
    USD,
    Core,
    DealSpec,
    TrancheSpec,
    close_subscription,
    grant_roles,
    make_fleet,
    open_deal,
    open_note,
    pledge_fleet,
    register_batch,
    submit_report,
    whitelist,
)
from gpucredit.reports import (
    SignedObservation,
    order_by_signer,
    period_bounds,
    recover_observation_signer,
    sign_observation,
)

GUARD_ERROR = keccak(text="ReentrancyGuardReentrantCall()")[:4]
SIZE = 1_000_000 * USD
MIN_SUBSCRIPTION = 1_000 * USD
SIGNER_CHANGE_DELAY = 2 * DAY


@pytest.fixture(scope="module")
def token(CallbackStablecoin, admin):
    return CallbackStablecoin.deploy({"from": admin})


@pytest.fixture(scope="module")
def hostile(
    token,
    IdentityRegistry,
    CollateralRegistry,
    TelemetryOracle,
    admin,
    issuer,
    operator,
    attestor,
    lenders,
    spv,
    rando,
):
    """A protocol whose stablecoin calls back into it on every transfer."""
    tx = {"from": admin}
    core = Core(
        usd=token,
        identities=IdentityRegistry.deploy(admin, tx),
        registry=CollateralRegistry.deploy(admin, tx),
        oracle=TelemetryOracle.deploy(admin, tx),
    )
    grant_roles(core, admin, issuer, operator, attestor)
    whitelist(core, admin, [*lenders, token])
    for account in [*lenders, operator, spv, rando]:
        token.mint(account, 100_000_000 * USD, {"from": admin})
    return core


def _spec():
    return DealSpec(
        tranches=[
            TrancheSpec("GPU Senior", "GPU-S", 0, SIZE, 450, min_subscription=MIN_SUBSCRIPTION)
        ],
        quorum=3,
    )


def _open(hostile, prefix, admin, issuer, operator, attestor, trustee, spv, signers, token):
    deal = open_deal(
        hostile,
        _spec(),
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
    )
    fleet = make_fleet(100, in_service_at=chain[-1].timestamp - 1, serial_prefix=prefix)
    deal.batch_id, deal.tree = pledge_fleet(hostile, deal, fleet, issuer, operator, attestor)
    deal.fleet = fleet
    # The token may call everything a role protects, so only a guard can stop it.
    # (pay and setRateStep answer to the servicer's address, not a role)
    deal.senior.grantRole(deal.senior.ISSUER_ROLE(), token, {"from": issuer})
    return deal


@pytest.fixture(scope="module")
def active(
    hostile, token, admin, issuer, operator, attestor, trustee, lenders, spv, signers, rando
):
    """Drawn note: lenders 0 and 1 hold 500k face each; `rando` may pay it directly."""
    deal = _open(hostile, "ACT-", admin, issuer, operator, attestor, trustee, spv, signers, token)
    senior = deal.senior
    for lender in lenders[:2]:
        token.approve(senior, 2**256 - 1, {"from": lender})
        senior.requestDeposit(SIZE // 2, lender, lender, {"from": lender})
    close_subscription(senior, issuer)
    senior.fulfil(lenders[:2], {"from": issuer})
    senior.drawdown({"from": issuer})
    for lender in lenders[:2]:
        senior.claimShares({"from": lender})
    deal.payer = _servicer_account(deal, token, admin)
    token.approve(deal.servicer, 2**256 - 1, {"from": operator})
    return deal


@pytest.fixture(scope="module")
def subscribing(
    active, hostile, token, admin, issuer, operator, attestor, trustee, lenders, spv, signers
):
    """A second note of the same protocol whose subscription window is open."""
    deal = _open(hostile, "SUB-", admin, issuer, operator, attestor, trustee, spv, signers, token)
    for lender in lenders:
        token.approve(deal.senior, 2**256 - 1, {"from": lender})
    return deal


# ---------------------------------------------------------------- reentrancy

TRANCHE_GUARDED = [
    ("requestDeposit", lambda token: (MIN_SUBSCRIPTION, token, token)),
    ("cancelDepositRequest", lambda token: ()),
    ("claimShares", lambda token: ()),
    ("drawdown", lambda token: ()),
    ("pay", lambda token: (0, 0)),
    ("claimCoupon", lambda token: ()),
    ("redeem", lambda token: ()),
]
SERVICER_GUARDED = [
    ("payRevenue", lambda token: (1,)),
    ("postCashCollateral", lambda token: (1,)),
    ("closePeriod", lambda token: ()),
    ("releaseCollateral", lambda token: ()),
    ("withdraw", lambda token: ()),
    ("disburseCapital", lambda token: ()),
]


def _calls(contract, guarded, token):
    return [(contract, getattr(contract, f).encode_input(*args(token))) for f, args in guarded]


def _assert_all_reentries_blocked(token, calls, tx):
    assert not token.armed(), "the hook never fired"
    attempts = token.attempts()
    assert len(attempts) == len(calls) == len(tx.events["CallbackAttempted"])
    for (target, data), (called, sent, success, returned) in zip(calls, attempts, strict=True):
        assert (called, bytes(sent)) == (target.address, bytes.fromhex(data[2:]))
        assert not success
        assert bytes(returned) == GUARD_ERROR


def _servicer_account(deal, token, admin):
    """The note's servicer as a sender (anvil impersonation), funded: only the
    servicer may pay a tranche, and these tests pay it directly."""
    address = deal.servicer.address
    web3.provider.make_request("anvil_impersonateAccount", [address])
    web3.provider.make_request("anvil_setBalance", [address, hex(10**21)])
    token.mint(address, 10_000_000 * USD, {"from": admin})
    return brownie.accounts.at(address, force=True)


def _report_period_0(hostile, deal, signer_keys):
    return submit_report(
        hostile,
        deal,
        0,
        signer_keys[:3],
        utilization=8_000,
        uptime=9_950,
        revenue=200_000 * USD,
        sender=brownie.accounts[9],
    )


def _pay_all_due(tranche, payer, principal=0):
    """Pays exactly the interest due: the payment lands at the timestamp the
    view was read at (anvil allows a block to repeat its parent's time)."""
    web3.provider.make_request("evm_setNextBlockTimestamp", [chain[-1].timestamp])
    return tranche.pay(tranche.interestDue(), principal, {"from": payer})


def _fund_coupon(deal):
    chain.sleep(30 * DAY)
    chain.mine()
    _pay_all_due(deal.senior, deal.payer)


def _money_moving_cases():
    """name -> (prepare(ctx), act(ctx) -> tx, which contracts' guards to attack)."""

    def request(ctx):
        lender = ctx.lenders[0]
        return ctx.subscribing.senior.requestDeposit(5_000 * USD, lender, lender, {"from": lender})

    def prep_cancel(ctx):
        request(ctx)

    def cancel(ctx):
        return ctx.subscribing.senior.cancelDepositRequest({"from": ctx.lenders[0]})

    def prep_claim_shares(ctx):  # oversubscribed: each lender gets a refund
        s = ctx.subscribing.senior
        for lender in ctx.lenders[:2]:
            s.requestDeposit(800_000 * USD, lender, lender, {"from": lender})
        close_subscription(s, ctx.issuer)
        s.fulfil(ctx.lenders[:2], {"from": ctx.issuer})

    def claim_shares(ctx):
        return ctx.subscribing.senior.claimShares({"from": ctx.lenders[0]})

    def prep_drawdown(ctx):
        s = ctx.subscribing.senior
        s.requestDeposit(400_000 * USD, ctx.lenders[0], ctx.lenders[0], {"from": ctx.lenders[0]})
        close_subscription(s, ctx.issuer)
        s.fulfil([ctx.lenders[0]], {"from": ctx.issuer})

    def drawdown(ctx):
        return ctx.subscribing.senior.drawdown({"from": ctx.issuer})

    def prep_pay(ctx):
        chain.sleep(30 * DAY)
        chain.mine()

    def pay(ctx):
        return _pay_all_due(ctx.active.senior, ctx.active.payer, 10_000 * USD)

    def prep_claim_coupon(ctx):
        _fund_coupon(ctx.active)

    def claim_coupon(ctx):
        return ctx.active.senior.claimCoupon({"from": ctx.lenders[0]})

    def prep_redeem(ctx):
        ctx.active.senior.pay(0, 100_000 * USD, {"from": ctx.active.payer})

    def redeem(ctx):
        return ctx.active.senior.redeem({"from": ctx.lenders[0]})

    def pay_revenue(ctx):
        return ctx.active.servicer.payRevenue(50_000 * USD, {"from": ctx.operator})

    def post_cash(ctx):
        return ctx.active.servicer.postCashCollateral(50_000 * USD, {"from": ctx.operator})

    def prep_close(ctx):
        ctx.active.servicer.payRevenue(200_000 * USD, {"from": ctx.operator})
        _report_period_0(ctx.hostile, ctx.active, ctx.signer_keys)

    def close(ctx):
        return ctx.active.servicer.closePeriod({"from": ctx.rando})

    def prep_withdraw(ctx):
        prep_close(ctx)
        close(ctx)
        assert ctx.active.servicer.withdrawable(ctx.spv) > 0

    def withdraw(ctx):
        return ctx.active.servicer.withdraw({"from": ctx.spv})

    def disburse(ctx):  # the drawn capital still sits in the servicer
        return ctx.active.servicer.disburseCapital({"from": ctx.rando})

    def nothing(ctx):
        pass

    tranche, servicer = "tranche", "servicer"
    return {
        "requestDeposit": (nothing, request, [tranche]),
        "cancelDepositRequest": (prep_cancel, cancel, [tranche]),
        "claimShares": (prep_claim_shares, claim_shares, [tranche]),
        "drawdown": (prep_drawdown, drawdown, [tranche]),
        "pay": (prep_pay, pay, [tranche]),
        "claimCoupon": (prep_claim_coupon, claim_coupon, [tranche]),
        "redeem": (prep_redeem, redeem, [tranche]),
        "payRevenue": (nothing, pay_revenue, [servicer]),
        "postCashCollateral": (nothing, post_cash, [servicer]),
        # the servicer pays the tranche inside closePeriod: both guards are held
        "closePeriod": (prep_close, close, [servicer, tranche]),
        "withdraw": (prep_withdraw, withdraw, [servicer]),
        "disburseCapital": (nothing, disburse, [servicer]),
    }


CASES = _money_moving_cases()


class Context:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_reentry_from_the_stablecoin_is_blocked(
    name, token, hostile, active, subscribing, issuer, operator, lenders, spv, rando, signer_keys
):
    """Inside each money-moving call, the token's transfer hook re-enters every
    guarded function of the contracts on the stack; each re-entry reverts with
    ReentrancyGuardReentrantCall while the outer call completes."""
    ctx = Context(
        hostile=hostile,
        active=active,
        subscribing=subscribing,
        issuer=issuer,
        operator=operator,
        lenders=lenders,
        spv=spv,
        rando=rando,
        signer_keys=signer_keys,
    )
    prepare, act, guarded = CASES[name]
    prepare(ctx)
    subscription = ("requestDeposit", "cancelDepositRequest", "claimShares", "drawdown")
    deal = subscribing if name in subscription else active
    calls = []
    if "servicer" in guarded:
        calls += _calls(deal.servicer, SERVICER_GUARDED, token)
    if "tranche" in guarded:
        calls += _calls(deal.senior, TRANCHE_GUARDED, token)
    token.arm([c.address for c, _ in calls], [data for _, data in calls], {"from": rando})
    moved = deal.senior if "tranche" in guarded else deal.servicer
    balance_before = token.balanceOf(moved)
    tx = act(ctx)
    assert tx.status == 1
    _assert_all_reentries_blocked(token, calls, tx)
    assert token.balanceOf(moved) != balance_before  # the outer call really moved money


# ---------------------------------------------------------------- forged and replayed telemetry


def _signed(hostile, deal, key, fleet_id, period, values, genesis=None):
    start, end = period_bounds(genesis or deal.genesis, deal.spec.period_length, period)
    signature = sign_observation(
        key, chain.id, hostile.oracle.address, fleet_id, period, start, end, *values
    )
    return Account.from_key(key).address, SignedObservation(*values, signature)


def _wait_for_period_end(deal, period):
    _, end = period_bounds(deal.genesis, deal.spec.period_length, period)
    if chain[-1].timestamp <= end:
        chain.sleep(end - chain[-1].timestamp + 1)
        chain.mine()


def _recovered(hostile, deal, observation, period):
    """Who the oracle recovers `observation` to, for `deal`'s fleet and `period`."""
    start, end = period_bounds(deal.genesis, deal.spec.period_length, period)
    return recover_observation_signer(
        observation.signature,
        chain.id,
        hostile.oracle.address,
        deal.note_id,
        period,
        start,
        end,
        *observation[:3],
    )


def test_zero_signature_is_rejected(hostile, active, signer_keys, rando, reverts_with):
    _wait_for_period_end(active, 0)
    values = (8_000, 9_950, 1_000)
    observations = order_by_signer(
        _signed(hostile, active, key, active.note_id, 0, values) for key in signer_keys[:3]
    )
    observations[1] = observations[1]._replace(signature=bytes(64) + bytes([27]))  # r = s = 0
    with reverts_with("SignatureInvalid", 1):
        hostile.oracle.submitReport(active.note_id, 0, observations, {"from": rando})


def test_observation_replayed_for_another_period_or_fleet_is_rejected(
    hostile, active, subscribing, signer_keys, rando, reverts_with
):
    """Period, fleet and bounds are in the signed struct: a signature of
    period 0 of one fleet recovers to a stranger anywhere else."""
    _wait_for_period_end(active, 1)
    values = (9_500, 9_990, 5_000)
    period0 = order_by_signer(
        _signed(hostile, active, key, active.note_id, 0, values) for key in signer_keys[:3]
    )
    hostile.oracle.submitReport(active.note_id, 0, period0, {"from": rando})
    # the same observations for the next period recover to strangers
    stranger = _recovered(hostile, active, period0[0], 1)
    assert stranger not in [Account.from_key(k).address for k in signer_keys]
    with reverts_with("SignerUnknown", stranger):
        hostile.oracle.submitReport(active.note_id, 1, period0, {"from": rando})
    # and cannot be replayed for their own period either
    with reverts_with("PeriodNotNext", 0, 1):
        hostile.oracle.submitReport(active.note_id, 0, period0, {"from": rando})
    # the other fleet has the same signers, but its own id and period bounds
    _wait_for_period_end(subscribing, 0)
    stranger = _recovered(hostile, subscribing, period0[0], 0)
    with reverts_with("SignerUnknown", stranger):
        hostile.oracle.submitReport(subscribing.note_id, 0, period0, {"from": rando})


# ---------------------------------------------------------------- signer change racing a report


def _observations(hostile, deal, keys, period, values=(8_000, 9_950, 1_000)):
    return order_by_signer(
        _signed(hostile, deal, key, deal.note_id, period, values) for key in keys
    )


def test_signer_change_racing_a_report(
    hostile, active, admin, signer_keys, signers, rando, reverts_with
):
    """Reports are checked against the set in force when they land: a report
    of the old set that lands before the change executes counts; the same
    observations landing after it do not, and the new set must sign again."""
    oracle, fleet = hostile.oracle, active.note_id
    removed = signers[0]
    _wait_for_period_end(active, 0)
    oracle.queueSignerChange(fleet, signers[1:5], 3, {"from": admin})

    # period 0 lands during the delay, signed by the old set: accepted
    old_pair = signer_keys[:3]
    oracle.submitReport(fleet, 0, _observations(hostile, active, old_pair, 0), {"from": rando})

    # the change cannot be pulled forward to sandwich a report
    with reverts_with("SignerChangeNotReady"):
        oracle.executeSignerChange(fleet, {"from": admin})

    # period 1, signed by signers 0 and 1 while the old set was in force ...
    stale = _observations(hostile, active, old_pair, 1)
    # the change executes inside its window [eta, eta + 7 days] (it expires after)
    eta = oracle.pendingSignerChange(fleet)[2]
    chain.sleep(max(0, eta - chain[-1].timestamp))
    chain.mine()
    oracle.executeSignerChange(fleet, {"from": admin})
    # ... lands after the change, once period 1 ended: the removed signer no longer counts
    _wait_for_period_end(active, 1)
    with reverts_with("SignerUnknown", removed.address):
        oracle.submitReport(fleet, 1, stale, {"from": rando})
    fresh = _observations(hostile, active, [signer_keys[1], signer_keys[3], signer_keys[4]], 1)
    oracle.submitReport(fleet, 1, fresh, {"from": rando})
    assert oracle.report(fleet, 1)[0] == 1


def test_signer_change_outside_the_fault_rule_never_queues(
    hostile, active, admin, signer_keys, signers, rando, reverts_with
):
    """A set that would let fewer than f + 1 honest signers decide is refused
    when queued, so no race can install it: the fleet stays 3-of-4 (f = 1)."""
    oracle, fleet = hostile.oracle, active.note_id
    _wait_for_period_end(active, 0)
    with reverts_with("QuorumRuleBroken", 4, 2, "quorum must be 2f + 1: odd"):
        oracle.queueSignerChange(fleet, signers[:4], 2, {"from": admin})
    with reverts_with("QuorumRuleBroken", 5, 5, "signers must be at least 3f + 1"):
        oracle.queueSignerChange(fleet, signers[:5], 5, {"from": admin})
    assert oracle.pendingSignerChange(fleet)[2] == 0
    two = _observations(hostile, active, signer_keys[:2], 0)
    with reverts_with("QuorumNotMet", 2, 3):
        oracle.submitReport(fleet, 0, two, {"from": rando})
    three = _observations(hostile, active, signer_keys[:3], 0)
    oracle.submitReport(fleet, 0, three, {"from": rando})
    config = oracle.fleet(fleet)
    assert (config["quorum"], config["signerCount"], config["faultBound"]) == (3, 4, 1)
    assert oracle.report(fleet, 0)[5] == 3  # observations


# ---------------------------------------------------------------- rounding, dust and inflation


def test_one_unit_transfers_never_farm_rounding(active, lenders, rando):
    """Lender 0 shuffles 1 unit to a sybil (lender 2) and back 15 times while
    interest accrues; lender 1 holds the same face and does nothing. Each
    settlement rounds down, so the shuffler ends with at most what the
    passive holder gets."""
    senior = active.senior
    farmer, passive, sybil = lenders[0], lenders[1], lenders[2]
    for _ in range(15):
        chain.sleep(3 * 3_600 + 7)
        senior.transfer(sybil, 1, {"from": farmer})
        chain.sleep(5 * 3_600 + 11)
        senior.transfer(farmer, 1, {"from": sybil})
    assert senior.balanceOf(farmer) == senior.balanceOf(passive)
    _pay_all_due(senior, active.payer)
    farmed = senior.couponClaimable(farmer) + senior.couponClaimable(sybil)
    honest = senior.couponClaimable(passive)
    assert farmed <= honest
    assert honest - farmed <= 60  # under one unit lost per settlement (30 transfers x 2 sides)
    assert senior.couponClaimable(sybil) == 0  # 1 unit for hours earns less than 1 unit
    paid = [_claimed(senior, account) for account in (farmer, passive)]
    funded, claimed, _ = senior.couponCash()
    assert sum(paid) == claimed <= funded


def _claimed(tranche, holder):
    return tranche.claimCoupon({"from": holder}).events["CouponClaimed"]["amount"]


def test_many_tiny_claims_never_exceed_the_entitlement(active, token, lenders, rando, reverts_with):
    senior = active.senior
    eager, patient = lenders[0], lenders[1]  # equal face
    total = 0
    for _ in range(12):
        chain.sleep(DAY + 13)
        chain.mine()
        _pay_all_due(senior, active.payer)
        total += _claimed(senior, eager)
        with reverts_with("NothingToClaim", eager.address):
            senior.claimCoupon({"from": eager})  # nothing twice
    once = _claimed(senior, patient)
    assert total <= once and once - total <= 12
    funded, claimed, _ = senior.couponCash()
    assert claimed == total + once <= funded
    # the tranche still holds everything it owes (principal is with the SPV)
    assert token.balanceOf(senior) >= funded - claimed


def test_dust_and_spam_subscriptions(subscribing, token, lenders, reverts_with):
    senior = subscribing.senior
    attacker, victim = lenders[2], lenders[1]
    for dust in (0, 1, MIN_SUBSCRIPTION - 1):
        with reverts_with("SubscriptionBelowMinimum", dust, MIN_SUBSCRIPTION):
            senior.requestDeposit(dust, attacker, attacker, {"from": attacker})
    # many minimum requests add up in one slot per controller: nothing to loop over
    for _ in range(5):
        senior.requestDeposit(MIN_SUBSCRIPTION, attacker, attacker, {"from": attacker})
    assert senior.pendingDepositRequest(0, attacker) == 5 * MIN_SUBSCRIPTION
    # requests in someone else's name are the attacker's gift: the victim takes it back
    senior.requestDeposit(MIN_SUBSCRIPTION, victim, attacker, {"from": attacker})
    before = token.balanceOf(victim)
    senior.cancelDepositRequest({"from": victim})
    assert token.balanceOf(victim) - before == MIN_SUBSCRIPTION
    # nor can anyone pull funds from another owner's allowance
    with reverts_with("OwnerNotSender", victim.address, attacker.address):
        senior.requestDeposit(MIN_SUBSCRIPTION, attacker, victim, {"from": attacker})
    # or subscribe for someone without KYC
    stranger = Account.create().address
    with reverts_with("IdentityUnknown", stranger):
        senior.requestDeposit(MIN_SUBSCRIPTION, stranger, attacker, {"from": attacker})


def test_donation_does_not_inflate_anything(subscribing, token, lenders, issuer, reverts_with):
    """Face is minted 1:1 with filled stablecoin, never priced off the
    tranche's balance: a first depositor who donates to the tranche moves
    no one's fill, face or claims, and cannot take the donation back."""
    senior = subscribing.senior
    attacker, lender = lenders[2], lenders[0]
    senior.requestDeposit(MIN_SUBSCRIPTION, attacker, attacker, {"from": attacker})
    token.transfer(senior, 900_000 * USD, {"from": attacker})  # the donation
    senior.requestDeposit(400_000 * USD, lender, lender, {"from": lender})
    close_subscription(senior, issuer)
    senior.fulfil([attacker, lender], {"from": issuer})
    assert tuple(senior.fillOf(lender)) == (400_000 * USD, 0)
    senior.drawdown({"from": issuer})
    for account in (attacker, lender):
        senior.claimShares({"from": account})
    assert senior.balanceOf(lender) == 400_000 * USD
    assert senior.balanceOf(attacker) == MIN_SUBSCRIPTION
    assert senior.principalOutstanding() == 401_000 * USD
    for account in (attacker, lender):
        assert senior.couponClaimable(account) == senior.principalClaimable(account) == 0
        with reverts_with("NothingToClaim", account.address):
            senior.redeem({"from": account})
    assert token.balanceOf(senior) == 900_000 * USD  # stranded, owed to nobody


def test_late_whale_before_the_close_gets_only_its_pro_rata_fill(
    subscribing, lenders, issuer, reverts_with
):
    """Front-running the subscription close buys no priority: an oversubscribed
    tranche fills every request at the same ratio, whenever it arrived."""
    senior = subscribing.senior
    early, whale = lenders[0], lenders[1]
    senior.requestDeposit(600_000 * USD, early, early, {"from": early})
    senior.requestDeposit(1_400_000 * USD, whale, whale, {"from": whale})  # just before the close
    close_subscription(senior, issuer)
    with reverts_with("StateIs", 1, 0):
        senior.requestDeposit(MIN_SUBSCRIPTION, whale, whale, {"from": whale})
    senior.fulfil([whale, early], {"from": issuer})
    total = 2_000_000 * USD
    for lender, requested in ((early, 600_000 * USD), (whale, 1_400_000 * USD)):
        filled = requested * SIZE // total
        assert tuple(senior.fillOf(lender)) == (filled, requested - filled)


def test_front_running_a_period_close_only_makes_it_stricter(
    hostile, active, operator, signer_keys, rando
):
    """A close reads on-chain state only and anyone may call it once the
    report is in. Closing before the operator pays the period's revenue
    cannot loosen anything: DSCR counts min(reported, paid) revenue, so the
    period breaches (sweep on, equity blocked), and the late payment counts
    in the next period."""
    servicer = active.servicer
    _report_period_0(hostile, active, signer_keys)  # reports 200k of revenue
    tx = servicer.closePeriod({"from": rando})  # before the operator paid anything
    inputs, result = tx.events["PeriodClosed"]["inputs"], tx.events["PeriodClosed"]["result"]
    assert inputs["revenueReported"] == 200_000 * USD and inputs["revenueCash"] == 0
    assert result["dscrBps"] == 0 and result["breaches"] & 1  # BREACH_DSCR
    assert result["sweepOn"] and result["equityBlocked"]
    servicer.payRevenue(200_000 * USD, {"from": operator})
    assert servicer.periodRevenueCash() == 200_000 * USD  # counts for period 1
    assert servicer.nextPeriodToClose() == 1


# ---------------------------------------------------------------- double pledges across issuers


def test_double_pledge_across_issuers(
    hostile, active, operator, attestor, accounts, admin, rando, reverts_with, TrancheStub
):
    """Issuer B's operator registers GPUs already pledged to issuer A's note:
    the registration reverts at the first such GPU, naming it and A's batch,
    so B's note never holds them and A's note keeps its collateral. B's
    operator cannot pledge into A's note either (no consent)."""
    registry = hostile.registry
    issuer_b, operator_b = accounts.add(), accounts.add()
    for account in (issuer_b, operator_b):
        admin.transfer(account, "1 ether")
    registry.grantRole(registry.ISSUER_ROLE(), issuer_b, {"from": admin})
    registry.grantRole(registry.OPERATOR_ROLE(), operator_b, {"from": admin})
    note_b = open_note(hostile, admin, issuer_b)
    stub = TrancheStub.deploy({"from": admin})
    registry.bindNote(note_b, rando, [stub], [operator_b], {"from": admin})
    value_a = registry.collateralValue(active.note_id)

    # B's batch re-uses 3 of A's GPUs (same vendor and serial) among new ones
    reused = active.fleet[10:13]
    fresh = make_fleet(5, in_service_at=chain[-1].timestamp - 1, serial_prefix="B-")
    leaves = [replace(leaf, index=i) for i, leaf in enumerate(fresh + reused)]
    with reverts_with("GpuHeld", reused[0].gpu_key, active.batch_id):
        register_batch(hostile, issuer_b, operator_b, leaves)
    assert tuple(registry.holderOf(reused[0].gpu_key)) == (active.batch_id, True)

    # its fresh GPUs alone go through; the wrong operator or note cannot take them
    batch_b, _, _ = register_batch(hostile, issuer_b, operator_b, fresh)
    docs = registry.batchInfo(batch_b)["attestationHash"]
    registry.attestBatch(batch_b, docs, {"from": attestor})
    with reverts_with("CallerNotBatchOperator", batch_b, operator.address):
        registry.pledgeBatch(batch_b, note_b, {"from": operator})
    with reverts_with("CallerNotNoteOperator", active.note_id, operator_b.address):
        registry.pledgeBatch(batch_b, active.note_id, {"from": operator_b})
    registry.pledgeBatch(batch_b, note_b, {"from": operator_b})
    assert registry.collateralValue(active.note_id) == value_a
