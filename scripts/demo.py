"""A year of a GPU-backed note played directly on the contracts (brownie).

The story of gpucredit/story.py (the one `make demo` tells through the
oracle nodes and the CLI), without the service: contract developers see
every period's close, the coupon steps, the top-up and its cure, the sweep
and the payouts at maturity in one table.

Run: `python -m gpucredit.run scripts/demo.py`.
"""

from __future__ import annotations

from brownie import chain
from rich.console import Console
from rich.table import Table

from gpucredit.story import GPUS, USD, play_year

SIGNER_KEYS = [f"0x{(0xD3110 + i):064x}" for i in range(4)]  # quorum 3: f = 1
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
    console.rule("[bold]gpucredit: one year of a GPU-backed note, on the contracts")
    table = Table(title="timeline (one row per 30-day period)")
    for column in ("period", "util", "uptime", "revenue", "DSCR", "LTV", "senior", "junior"):
        table.add_column(column, justify="right")
    table.add_column("events")

    def on_close(deal, period: int, row: tuple[int, int, str], tx) -> None:
        utilization, uptime, _ = row
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
        senior, junior = (tranche.currentRateBps() for tranche in deal.tranches)
        table.add_row(
            str(period),
            f"{utilization / 100:.0f}%",
            f"{uptime / 100:.1f}%",
            usd(inputs["revenueCash"]),
            dscr,
            f"{result['ltvBps'] / 100:.1f}%",
            f"{senior / 100:.2f}%",
            f"{junior / 100:.2f}%",
            "; ".join(events),
        )

    with console.status(f"deploying, pledging {GPUS:,} GPUs and playing twelve periods"):
        year = play_year(SIGNER_KEYS, on_close)
    core, deal = year.core, year.deal
    senior, junior = deal.tranches
    console.print(f"note {deal.note_id}: senior {senior.address}, junior {junior.address}")
    console.print(f"servicer (the SPV account) {deal.servicer.address}")
    root = year.fleet_root.hex()[:16]
    console.print(f"batch {year.batch_id}: {GPUS:,} GPUs under root 0x{root}...")
    for tranche, lender, asked, shares, refund in year.subscriptions:
        who = f"{lender.address[:10]} asked {usd(asked)} of {tranche.symbol()}"
        console.print(f"{who}: got {usd(shares)}, refunded {usd(refund)}")
    console.print(table)

    summary = Table(title="lenders at maturity")
    for column in ("lender", "tranche", "principal redeemed", "coupons claimed"):
        summary.add_column(column, justify="right")
    for (tranche, lender, *_), (principal, coupons) in zip(
        year.subscriptions, year.payouts, strict=True
    ):
        summary.add_row(lender.address[:10], tranche.symbol(), usd(principal), usd(coupons))
    console.print(summary)
    console.print(
        f"senior repaid: {senior.isRepaid()}, junior repaid: {junior.isRepaid()}; "
        f"collateral released, note status {core.registry.noteInfo(deal.note_id)[2]} (2 = Released)"
    )
    console.print(f"chain: anvil (chain id {chain.id}), {chain.height} blocks")
    console.print(
        "every decision above is in the chain's events (PeriodClosed, WaterfallDistributed, ...)"
    )
