"""Issue 3 scenarios with the seeds' numbers, each asserting exact rates and amounts.

Deal: 1,000 H100 at $25,000 (class 1: 5 % markdown a quarter) = $25M of
collateral; senior 14M at 430 + 450 bps, junior 3M at 430 + 900 bps; LTV
covenant 75 %, tightened to 65 % while the low-utilization step is on; steps
-200 bps after 3 periods >= 90 %, +300 bps after a period < 60 %.
"""

import pytest
from brownie import accounts, chain

from gpucredit.protocol import (
    DAY,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    open_deal,
    pledge_fleet,
    submit_report,
)
from gpucredit.reports import period_bounds

QUARTER = 7_889_400
SENIOR_RATE = 880
JUNIOR_RATE = 1_330
STALE, LOW, TOPUP, DEFAULT, DSCR, LTV, UPTIME = 8, 16, 32, 64, 1, 2, 4


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the module's deal."""


@pytest.fixture(scope="module")
def deal(core, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys):
    spec = DealSpec(
        tranches=[
            TrancheSpec("GPU Senior", "GPU-A", 0, 14_000_000 * USD, spread_bps=450),
            TrancheSpec("GPU Junior", "GPU-B", 1, 3_000_000 * USD, spread_bps=900),
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
        core, deal, make_fleet(1_000, in_service_at=deal.in_service_at), issuer, operator, attestor
    )
    senior, junior = deal.tranches
    for tranche, amount in ((senior, 14_000_000 * USD), (junior, 3_000_000 * USD)):
        core.usd.approve(tranche, amount, {"from": lenders[0]})
        tranche.requestDeposit(amount, lenders[0], lenders[0], {"from": lenders[0]})
    for tranche in (senior, junior):
        close_subscription(tranche, issuer)
        tranche.fulfil([lenders[0]], {"from": issuer})
        tranche.drawdown({"from": issuer})
        tranche.claimShares({"from": lenders[0]})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    return deal


def report(core, deal, period, utilization, uptime=9_950, revenue=1_200_000 * USD):
    """Signs (by the deal's three signers) and submits a period's report, after its end."""
    return submit_report(
        core,
        deal,
        period,
        deal.signer_keys,
        utilization=utilization,
        uptime=uptime,
        revenue=revenue,
        sender=accounts[9],
    )


def close(core, deal, operator, period, utilization, revenue_cash=1_200_000 * USD, **kwargs):
    """Operator pays the period's revenue in, oracles report, anyone closes."""
    deal.servicer.payRevenue(revenue_cash, {"from": operator})
    report(core, deal, period, utilization, **kwargs)
    return deal.servicer.closePeriod({"from": accounts[9]})


def collateral_value(core, deal, when):
    """Independent valuation: $25M x (1 - 5 % per full quarter in service)."""
    quarters = (when - deal.in_service_at) // QUARTER
    return 25_000_000 * USD * max(0, 10_000 - 500 * quarters) // 10_000


def test_three_periods_at_92_percent_step_down_200_bps(core, deal, operator):
    for period in range(2):
        tx = close(core, deal, operator, period, 9_200)
        assert "CouponStepped" not in tx.events
        assert deal.senior.currentRateBps() == SENIOR_RATE
    tx = close(core, deal, operator, 2, 9_200)
    stepped = tx.events["CouponStepped"]
    assert (stepped["oldStepBps"], stepped["newStepBps"]) == (0, -200)
    assert deal.senior.currentRateBps() == SENIOR_RATE - 200 == stepped["seniorRateBps"]
    assert deal.junior.currentRateBps() == JUNIOR_RATE - 200 == stepped["juniorRateBps"]
    result = tx.events["PeriodClosed"]["result"]
    assert result["highStreak"] == 3 and result["breaches"] == 0 and not result["equityBlocked"]
    # the step-down is removed at the first period below 90 %
    tx = close(core, deal, operator, 3, 8_500)
    assert tx.events["CouponStepped"]["newStepBps"] == 0
    assert deal.senior.currentRateBps() == SENIOR_RATE


def test_period_at_55_percent_steps_up_and_requires_a_top_up(core, deal, operator):
    tx = close(core, deal, operator, 0, 5_500)
    assert tx.events["CouponStepped"]["newStepBps"] == 300
    assert deal.senior.currentRateBps() == SENIOR_RATE + 300
    assert deal.junior.currentRateBps() == JUNIOR_RATE + 300

    outstanding = 17_000_000 * USD
    value = collateral_value(core, deal, tx.timestamp)
    required = -(-outstanding * 10_000 // 6_500)  # LTV back to 65 %, rounded up
    topup = tx.events["TopUpRequired"]
    assert topup["requiredCollateral"] == required
    assert topup["shortfall"] == required - value
    assert topup["deadline"] == tx.timestamp + 30 * DAY
    result = tx.events["PeriodClosed"]["result"]
    assert result["ltvLimitBps"] == 6_500
    assert result["ltvBps"] == -(-outstanding * 10_000 // value)
    assert result["breaches"] & (LOW | LTV | TOPUP) == LOW | LTV | TOPUP
    assert result["sweepOn"] and result["equityBlocked"]


def test_waterfall_with_sweep_and_equity_block_matches_the_rules(core, deal, operator):
    tx = close(core, deal, operator, 0, 5_500, revenue_cash=1_000_000 * USD)
    inputs = tx.events["PeriodClosed"]["inputs"]
    w = tx.events["WaterfallDistributed"]["result"]
    fees = 5_000 * USD
    cash = 1_000_000 * USD - fees
    senior_interest, junior_interest = w["seniorInterest"], w["juniorInterest"]
    # interest due is read at the close: both tranches are paid in full
    assert deal.senior.interestDue() == 0 and deal.junior.interestDue() == 0
    cash -= senior_interest + junior_interest
    reserve_target = -(-14_000_000 * USD * SENIOR_RATE * 3 // (12 * 10_000))  # at the pre-step rate
    assert w["reserveAdded"] == reserve_target
    cash -= reserve_target
    assert w["sweep"] == cash * 5_000 // 10_000
    cash -= w["sweep"]
    assert w["equity"] == 0 and w["trapped"] == cash
    assert w["fees"] == fees and w["cashIn"] == inputs["revenueCash"] == 1_000_000 * USD
    # the sweep prepaid senior principal
    assert deal.senior.principalOutstanding() == 14_000_000 * USD - w["sweep"]
    # conservation: everything paid in is in a bucket
    total = sum(
        w[k]
        for k in ("fees", "seniorInterest", "juniorInterest", "seniorPrincipal", "juniorPrincipal")
    )
    total += w["reserveAdded"] + w["sweep"] + w["equity"] + w["trapped"]
    assert total == 1_000_000 * USD


def test_top_up_cured_in_time_removes_the_step(core, deal, issuer, operator, attestor):
    close(core, deal, operator, 0, 5_500)
    # operator pledges 150 more GPUs ($3.75M) within the cure period
    extra = make_fleet(150, in_service_at=chain[-1].timestamp - 1, serial_prefix="H100-TOPUP-")
    pledge_fleet(core, deal, extra, issuer, operator, attestor)
    cure = deal.servicer.cureTopUp({"from": operator})
    assert (
        cure.events["TopUpCured"]["collateral"] >= cure.events["TopUpCured"]["requiredCollateral"]
    )
    assert [int(x) for x in deal.servicer.topUp()] == [0, 0]
    # the step-up stays until a period closes at >= 60 % with no top-up outstanding
    assert deal.senior.currentRateBps() == SENIOR_RATE + 300
    tx = close(core, deal, operator, 1, 7_500)
    assert tx.events["CouponStepped"]["newStepBps"] == 0
    assert deal.senior.currentRateBps() == SENIOR_RATE
    result = tx.events["PeriodClosed"]["result"]
    assert (
        result["ltvLimitBps"] == 7_500 and result["breaches"] == 0 and not result["equityBlocked"]
    )
    assert tx.events["WaterfallDistributed"]["result"]["equity"] > 0


def test_top_up_posted_as_cash_collateral_cures(core, deal, operator):
    tx = close(core, deal, operator, 0, 5_500)
    shortfall = tx.events["TopUpRequired"]["shortfall"]
    deal.servicer.postCashCollateral(shortfall, {"from": operator})
    deal.servicer.cureTopUp({"from": operator})
    assert deal.servicer.collateral()[1] == shortfall


def test_top_up_not_cured_defaults_then_trustee_steps_in(
    core, deal, operator, trustee, reverts_with
):
    close(core, deal, operator, 0, 5_500)
    with reverts_with("CureNotLapsed"):
        deal.servicer.declareDefault({"from": operator})
    with reverts_with("NotDefaulted", 0):
        deal.servicer.stepIn({"from": trustee})
    chain.sleep(31 * DAY)
    tx = deal.servicer.declareDefault({"from": operator})
    assert "DefaultDeclared" in tx.events
    assert deal.servicer.status() == 1
    with reverts_with("NotTrustee", operator.address):
        deal.servicer.stepIn({"from": operator})
    tx = deal.servicer.stepIn({"from": trustee})
    assert tx.events["LiensTransferred"]["trustee"] == trustee
    info = core.registry.noteInfo(deal.note_id)
    assert info[2] == 3  # NoteStatus.SteppedIn
    assert deal.servicer.status() == 2
    # wind-down: after fees and senior interest, all cash goes to senior principal
    senior_before = deal.senior.principalOutstanding()
    tx = close(core, deal, operator, 1, 8_000, revenue_cash=2_000_000 * USD)
    w = tx.events["WaterfallDistributed"]["result"]
    assert w["reserveAdded"] == 0 and w["sweep"] == 0 and w["equity"] == 0
    expected_principal = w["cashIn"] - w["fees"] - w["seniorInterest"]
    assert w["seniorPrincipal"] == expected_principal
    assert deal.senior.principalOutstanding() == senior_before - expected_principal
    assert tx.events["PeriodClosed"]["result"]["breaches"] & DEFAULT


def test_missing_report_is_stale_and_a_covenant_event(core, deal, operator, reverts_with):
    deal.servicer.payRevenue(1_200_000 * USD, {"from": operator})
    _, end = period_bounds(deal.genesis, deal.spec.period_length, 0)
    chain.sleep(end - chain[-1].timestamp + 1)
    chain.mine()
    with reverts_with("PeriodNotClosable", 0, 0):
        deal.servicer.closePeriod({"from": operator})  # within the heartbeat: wait
    chain.sleep(deal.spec.heartbeat)
    tx = deal.servicer.closePeriod({"from": operator})
    assert tx.events["ReportMissed"]["period"] == 0
    inputs = tx.events["PeriodClosed"]["inputs"]
    result = tx.events["PeriodClosed"]["result"]
    assert inputs["reportStatus"] == 2
    assert result["breaches"] & STALE and result["equityBlocked"]
    assert result["dscrBps"] == 0  # no reported revenue counts
    assert tx.events["CouponStepped"]["newStepBps"] == 300  # a missed period counts as low
    assert deal.servicer.nextPeriodToClose() == 1


def test_late_report_is_a_freshness_breach_and_not_a_good_period(core, deal, operator):
    # two good periods, then period 2 reported after its heartbeat (nobody marked it missed)
    close(core, deal, operator, 0, 9_500)
    close(core, deal, operator, 1, 9_500)
    _, end = period_bounds(deal.genesis, deal.spec.period_length, 2)
    chain.sleep(end + deal.spec.heartbeat - chain[-1].timestamp + 10)
    chain.mine()
    tx = close(core, deal, operator, 2, 9_500)
    inputs = tx.events["PeriodClosed"]["inputs"]
    result = tx.events["PeriodClosed"]["result"]
    assert inputs["reportStatus"] == 1 and inputs["reportLate"]
    assert inputs["reportRecordedAt"] > end + deal.spec.heartbeat
    assert result["breaches"] == STALE and result["equityBlocked"]
    assert result["highStreak"] == 0  # three high periods, but the late one breaks the run
    assert "CouponStepped" not in tx.events
    assert deal.senior.currentRateBps() == SENIOR_RATE


def test_close_before_the_report_reverts(core, deal, operator, reverts_with):
    with reverts_with("PeriodNotClosable", 0, 0):
        deal.servicer.closePeriod({"from": operator})


def test_uptime_below_sla_blocks_equity(core, deal, operator):
    tx = close(core, deal, operator, 0, 8_000, uptime=9_700)
    result = tx.events["PeriodClosed"]["result"]
    assert result["breaches"] == UPTIME
    assert result["equityBlocked"] and not result["sweepOn"]
    assert tx.events["WaterfallDistributed"]["result"]["trapped"] > 0


def test_low_dscr_turns_the_sweep_on(core, deal, operator):
    # revenue cash far below debt service: DSCR < 1.25x
    tx = close(core, deal, operator, 0, 8_000, revenue_cash=100_000 * USD)
    result = tx.events["PeriodClosed"]["result"]
    inputs = tx.events["PeriodClosed"]["inputs"]
    assert result["dscrBps"] == 100_000 * USD * 10_000 // inputs["debtService"]
    assert result["breaches"] & DSCR and result["sweepOn"]
    w = tx.events["WaterfallDistributed"]["result"]
    # a shortfall: interest not covered is carried forward in the tranche
    assert w["seniorInterest"] + w["juniorInterest"] + w["fees"] <= 100_000 * USD
    assert deal.junior.interestDue() > 0


def test_drawn_capital_is_disbursed_to_the_operator_once(core, deal, operator, reverts_with):
    deal.servicer.payRevenue(500_000 * USD, {"from": operator})
    before = core.usd.balanceOf(operator)
    tx = deal.servicer.disburseCapital({"from": accounts[9]})
    assert tx.return_value == tx.events["CapitalDisbursed"]["amount"] == 17_000_000 * USD
    assert core.usd.balanceOf(operator) == before + 17_000_000 * USD
    assert deal.servicer.periodRevenueCash() == 500_000 * USD  # revenue is not capital
    with reverts_with("NothingToWithdraw"):
        deal.servicer.disburseCapital({"from": accounts[9]})


def test_cash_posted_after_step_in_joins_the_wind_down(core, deal, operator, trustee):
    close(core, deal, operator, 0, 5_500)
    chain.sleep(31 * DAY)
    deal.servicer.declareDefault({"from": operator})
    deal.servicer.stepIn({"from": trustee})
    trapped = deal.servicer.trappedCash()
    deal.servicer.postCashCollateral(1_000_000 * USD, {"from": operator})
    assert deal.servicer.trappedCash() == trapped + 1_000_000 * USD
    assert deal.servicer.collateral()[1] == 0
