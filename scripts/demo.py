"""The end-to-end demo (`make demo`): a year of a GPU-backed note on a local chain.

An SPV finances 1,000 H100s ($25M) with a 14M senior and a 3M junior tranche.
Three lenders subscribe (the junior one is oversubscribed and cut pro rata),
the operator registers and pledges the fleet, and three oracle signers report
twelve 30-day periods following the seeds' story:

    strong utilization -> the coupon steps down 200 bps;
    a demand shock (< 60 %) -> the coupon steps up 300 bps, a collateral
    top-up is required, cash is swept to senior principal, equity is blocked;
    the operator pledges more GPUs (cure) -> the step is removed;
    maturity -> principal repaid, lenders redeem and claim their coupons.

Run: `make demo` (or `python -m gpucredit.localchain run scripts/demo.py`).
"""

from __future__ import annotations

from brownie import accounts, chain
from rich.console import Console
from rich.table import Table

from gpucredit.protocol import (
    USD,
    DealSpec,
    TrancheSpec,
    deploy_core,
    grant_roles,
    make_fleet,
    open_deal,
    pledge_fleet,
    submit_report,
    whitelist,
)

SIGNER_KEYS = [f"0x{(0xD3110 + i):064x}" for i in range(3)]
NET_REVENUE_PER_GPU_HOUR = 0.40  # after power, colocation and staff, USD
GPUS = 1_000
# (utilization bps, uptime bps) per 30-day period
STORY = [
    (9_200, 9_960),
    (9_400, 9_970),
    (9_300, 9_950),
    (9_100, 9_940),
    (5_200, 9_910),  # demand shock
    (5_600, 9_920),
    (7_800, 9_950),  # recovery
    (8_500, 9_960),
    (8_800, 9_960),
    (9_200, 9_970),
    (9_300, 9_980),
    (9_400, 9_980),
]
BREACH_NAMES = {
    1: "DSCR",
    2: "LTV",
    4: "uptime",
    8: "stale",
    16: "low-util",
    32: "top-up open",
    64: "default",
}


def usd(amount: int) -> str:
    return f"${amount / USD:,.0f}"


def main() -> None:
    console = Console(width=170)
    admin, issuer, operator, attestor, trustee, fees = accounts[:6]
    lender_a, lender_b, lender_c = accounts[6:9]
    anyone = accounts[9]

    console.rule("[bold]gpucredit demo: one year of a GPU-backed note")
    core = deploy_core(admin)
    grant_roles(core, admin, issuer, operator, attestor)
    core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    whitelist(core, admin, [lender_a, lender_b, lender_c])
    for account in (lender_a, lender_b, lender_c, operator):
        core.usd.mint(account, 50_000_000 * USD, {"from": admin})

    spec = DealSpec(
        tranches=[
            TrancheSpec("GPU Fleet Senior 2027", "GPUS-27", 0, 14_000_000 * USD, spread_bps=450),
            TrancheSpec("GPU Fleet Junior 2027", "GPUJ-27", 1, 3_000_000 * USD, spread_bps=900),
        ],
        term_days=360,
        quorum=2,
    )
    signers = [accounts.add(key) for key in SIGNER_KEYS]
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=fees,
        signers=signers,
    )
    senior, junior = deal.tranches
    console.print(f"note {deal.note_id}: senior {senior.address}, junior {junior.address}")
    console.print(f"servicer (the SPV account) {deal.servicer.address}")

    with console.status(f"registering and pledging {GPUS:,} GPUs"):
        leaves = make_fleet(GPUS, in_service_at=chain[-1].timestamp - 1)
        batch_id, tree = pledge_fleet(core, deal, leaves, issuer, operator, attestor)
    value = core.registry.collateralValue(deal.note_id)
    root = tree.root.hex()[:16]
    console.print(f"batch {batch_id}: {GPUS:,} GPUs under root 0x{root}..., value {usd(value)}")

    subscriptions = [
        (senior, lender_a, 8_000_000),
        (senior, lender_b, 6_000_000),
        (junior, lender_c, 4_500_000),
    ]
    for tranche, lender, amount in subscriptions:
        core.usd.approve(tranche, amount * USD, {"from": lender})
        tranche.requestDeposit(amount * USD, lender, lender, {"from": lender})
    for tranche in (senior, junior):
        tranche.closeSubscription({"from": issuer})
        tranche.fulfil([lender_a, lender_b, lender_c], {"from": issuer})
        tranche.drawdown({"from": issuer})
    for tranche, lender, amount in subscriptions:
        shares, refund = tranche.claimShares({"from": lender}).return_value
        asked = f"{lender.address[:10]} asked {usd(amount * USD)} of {tranche.symbol()}"
        console.print(f"{asked}: got {usd(shares)}, refunded {usd(refund)}")

    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    table = Table(title="timeline (one row per 30-day period)")
    for column in (
        "period",
        "util",
        "uptime",
        "revenue",
        "DSCR",
        "LTV",
        "senior",
        "junior",
        "events",
    ):
        table.add_column(column, justify="right" if column != "events" else "left")

    topup_cured = False
    for period, (utilization, uptime) in enumerate(STORY):
        revenue = int(GPUS * utilization / 10_000 * 720 * NET_REVENUE_PER_GPU_HOUR * USD)
        deal.servicer.payRevenue(revenue, {"from": operator})
        if period == len(STORY) - 1:  # maturity: refinancing proceeds repay the principal
            deal.servicer.payRevenue(17_500_000 * USD, {"from": operator})
        submit_report(
            core,
            deal,
            period,
            SIGNER_KEYS,
            utilization=utilization,
            uptime=uptime,
            revenue=revenue,
            sender=anyone,
        )
        tx = deal.servicer.closePeriod({"from": anyone})
        closed = tx.events["PeriodClosed"]
        inputs, result = closed["inputs"], closed["result"]
        w = tx.events["WaterfallDistributed"]["result"]
        events = []
        if "CouponStepped" in tx.events:
            step = tx.events["CouponStepped"]
            events.append(f"step {step['oldStepBps']:+d} -> {step['newStepBps']:+d} bps")
        if "TopUpRequired" in tx.events:
            events.append(f"top-up {usd(tx.events['TopUpRequired']['shortfall'])} due")
        if "TopUpCured" in tx.events:
            events.append("top-up cured")
        if w["sweep"]:
            events.append(f"sweep {usd(w['sweep'])}")
        if result["equityBlocked"]:
            events.append("equity blocked")
        elif w["equity"]:
            events.append(f"equity {usd(w['equity'])}")
        breaches = [name for bit, name in BREACH_NAMES.items() if result["breaches"] & bit]
        if breaches:
            events.append("breach: " + ", ".join(breaches))
        if w["seniorPrincipal"] or w["juniorPrincipal"]:
            events.append(f"principal {usd(w['seniorPrincipal'] + w['juniorPrincipal'])}")
        dscr = "max" if result["dscrBps"] >= 2**32 - 1 else f"{result['dscrBps'] / 10_000:.2f}x"
        table.add_row(
            str(period),
            f"{utilization / 100:.0f}%",
            f"{uptime / 100:.1f}%",
            usd(inputs["revenueCash"]),
            dscr,
            f"{result['ltvBps'] / 100:.1f}%",
            f"{senior.currentRateBps() / 100:.2f}%",
            f"{junior.currentRateBps() / 100:.2f}%",
            "; ".join(events),
        )
        required, _ = deal.servicer.topUp()
        if required and not topup_cured:
            # the operator cures: 250 more GPUs pledged within the cure period
            extra = make_fleet(
                250, in_service_at=chain[-1].timestamp - 1, serial_prefix="H100-CURE-"
            )
            pledge_fleet(core, deal, extra, issuer, operator, attestor)
            deal.servicer.cureTopUp({"from": operator})
            topup_cured = True
    console.print(table)

    summary = Table(title="lenders at maturity")
    for column in ("lender", "tranche", "principal redeemed", "coupons claimed"):
        summary.add_column(column, justify="right")
    for tranche, lender, _ in subscriptions:
        principal = tranche.redeem({"from": lender}).return_value
        coupons = tranche.claimCoupon({"from": lender}).return_value
        summary.add_row(lender.address[:10], tranche.symbol(), usd(principal), usd(coupons))
    console.print(summary)
    deal.servicer.releaseCollateral({"from": anyone})
    console.print(
        f"senior repaid: {senior.isRepaid()}, junior repaid: {junior.isRepaid()}; "
        f"collateral released, note status {core.registry.noteInfo(deal.note_id)[2]} (2 = Released)"
    )
    console.print(f"chain: anvil (chain id {chain.id}), {chain.height} blocks")
    console.print(
        "every decision above is in the chain's events (PeriodClosed, WaterfallDistributed, ...)"
    )
