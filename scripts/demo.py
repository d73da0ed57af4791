"""A year of a GPU-backed note played directly on the contracts (brownie).

The story of gpucredit/story.py (the one `make demo` tells through the
oracle nodes and the CLI), without the service: contract developers see
every period's close, the coupon steps, the top-up and its cure, the sweep
and the payouts at maturity in one table.

Run: `python -m gpucredit.run scripts/demo.py`. The chain ends with the run,
so the year is archived for the audit first: `var/contract-demo/manifest.json`
and `events.jsonl` (what `gpucredit audit export` writes), replayed offline by
the printed command.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from brownie import accounts, chain, web3
from rich.console import Console
from rich.table import Table

from gpucredit.audit.export import Manifest, export_events, write_jsonl
from gpucredit.audit.replay import replay_events
from gpucredit.story import GPUS, USD, play_year

ARCHIVE = Path("var/contract-demo")

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
    for account in (accounts[5], accounts[2]):  # play_year's fee recipient, then its operator
        if deal.servicer.withdrawable(account):
            deal.servicer.withdraw({"from": account})
    archive(console, year)
    console.print(
        "every decision above is in the chain's events (PeriodClosed, WaterfallDistributed, ...)"
    )


def archive(console: Console, year) -> None:
    """Writes the year's audit archive and checks that it replays clean."""
    ARCHIVE.mkdir(parents=True, exist_ok=True)
    manifest = year.audit_manifest(chain.id)
    manifest_file, events_file = ARCHIVE / "manifest.json", ARCHIVE / "events.jsonl"
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    exported = export_events(web3, Manifest.from_dict(manifest))
    write_jsonl(exported, events_file)
    result = replay_events(exported.header, exported.events)
    verdict = "PASS" if result.ok else f"{len(result.mismatches)} mismatches"
    console.print(
        f"audit archive: {events_file} ({len(exported.events)} events, {result.closes} closes "
        f"replayed: {verdict}); replay it with\n  "
        + shlex.join(["gpucredit", "audit", "replay", "--events", str(events_file)])
    )
    if not result.ok:
        raise SystemExit(1)
