"""The demo's printing: a line per step, the timeline table, the lenders at
maturity and where the run's files are."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from gpucredit.demo.archive import Archive, shown
from gpucredit.story import USD

if TYPE_CHECKING:
    from gpucredit.demo.timeline import Row


def usd(amount: int) -> str:
    return f"${amount / USD:,.0f}"


def pct(bps: int, digits: int = 0) -> str:
    return f"{bps / 100:.{digits}f}%"


def dscr(bps: int) -> str:
    return "max" if bps >= 2**32 - 1 else f"{bps / 10_000:.2f}x"


class Display:
    """Everything the demo prints goes through here."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def step(self, text: str) -> None:
        self.console.print(f"[green]>[/] {text}", highlight=False)

    def timeline(
        self,
        rows: list[Row],
        lenders: list[dict[str, Any]],
        subscriptions: list[dict[str, Any]],
        story: str = "good",
    ) -> None:
        """The year, one row per period, and what each lender got at maturity."""
        table = Table(
            title="timeline: one row per 30-day period (chain time)", title_justify="left"
        )
        for column in (
            "period",
            "util",
            "uptime",
            "revenue",
            "DSCR",
            "LTV",
            "senior",
            "junior",
            "oracle",
        ):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("events", justify="left")
        for row in rows:
            reported = row.report_status == "reported"
            table.add_row(
                str(row.period),
                pct(row.utilization_bps) if reported else "missed",
                pct(row.uptime_bps, 1) if reported else "missed",
                usd(row.revenue_reported) if reported else "missed",
                dscr(row.dscr_bps),
                pct(row.ltv_bps, 1),
                pct(row.senior_rate_bps, 2),
                pct(row.junior_rate_bps, 2),
                f"{row.report_by} {row.observations}/4"
                if row.report_status == "reported"
                else "MISSED",
                "; ".join(row.events),
            )
        self.console.print(table)
        title = "lenders at maturity" if story == "good" else "lenders after the wind-down"
        table = Table(title=title, title_justify="left")
        for column in ("lender", "tranche", "asked", "notes", "refunded", "principal", "coupons"):
            table.add_column(column, justify="right")
        for entry in lenders:
            sub = next(
                s
                for s in subscriptions
                if s["lender"] == entry["lender"] and s["tranche"] == entry["tranche"]
            )
            table.add_row(
                entry["lender"][:10],
                entry["tranche"],
                usd(sub["asked"]),
                usd(sub["notes"]),
                usd(sub["refunded"]),
                usd(entry["principal_redeemed"]),
                usd(entry["coupons_claimed"]),
            )
        self.console.print(table)
        self.console.print(
            "oracle = the node that posted the period's report and how many of the 4 signers' "
            "observations it carried (quorum 3, f = 1: one node may lie or be down), MISSED = "
            "no quorum by the heartbeat (marked missed: a stale breach); the close was sent by "
            "a node too. Revenue is the oracle's (signed invoices); the waterfall runs on the "
            "cash paid in."
        )

    def logs(self, run_dir: Path) -> None:
        """Where the run's files are."""
        self.console.print(f"logs and data: {shown(run_dir)}/")
        entries = [
            ("anvil.log", "the chain"),
            ("deploy.log", "scripts/deploy.py"),
            ("node-a/node.log, node-b/..., node-c/...", "the oracle nodes (and their oracle.db)"),
            ("cli.log", "every gpucredit command and its JSON answer"),
            ("telemetry/", "the signed-telemetry bodies pushed each period"),
            ("timeline.json", "the timeline above, machine-readable"),
            ("deployments/31337.json", "the deployment manifest (scripts/deploy.py)"),
            ("audit/manifest.json", "the audit manifest (docs/audit.md)"),
            ("audit/events.jsonl", "every event of the deployment: the auditable archive"),
            ("audit/audit.html", "the replay's report (and audit.md, charts/)"),
            ("index.sqlite", "the web app's index of the chain"),
        ]
        for path, what in entries:
            if (run_dir / path.split(",")[0]).exists():
                self.console.print(f"  {path:<42} {what}")

    def archive(self, archive: Archive, rpc_url: str | None) -> None:
        """The archive, its replay's verdict and the commands to check and browse it."""
        verdict = (
            "[green]clean[/]"
            if archive.ok
            else f"[bold red]{len(archive.mismatches)} mismatch(es)[/]"
        )
        self.console.print(
            f"auditable archive: {shown(archive.events_file)} ({archive.events:,} events; "
            f"manifest {shown(archive.manifest_file)}); replayed: {verdict}, "
            f"{archive.closes} closes, {archive.fields_checked:,} fields and rules checked"
        )
        self.console.print("  replay it (offline, exit 0 when every decision agrees):")
        self.console.print(f"    {archive.replay_command()}", soft_wrap=True)
        if rpc_url is not None:
            self.console.print("  and line by line against the chain while it runs:")
            self.console.print(f"    {archive.replay_command(rpc_url)}", soft_wrap=True)
        self.console.print(
            f"  open it in the web app (indexed into {shown(archive.index_db)} as `gpucredit "
            "index` does; then http://127.0.0.1:8400):"
        )
        self.console.print(f"    {archive.serve_command()}", soft_wrap=True)

    def keeping(self, rpc_url: str, manifest: Path, archive: Archive) -> None:
        """--keep: what runs, and how to use it."""
        self.console.print(
            f"[bold]still running[/] (--keep): anvil on {rpc_url}, the four oracle nodes. "
            "Explore with the gpucredit CLI, e.g."
        )
        base = shlex.join(["gpucredit", "--rpc-url", rpc_url, "--manifest", shown(manifest)])
        self.console.print(f"    {base} issuer status 1", soft_wrap=True)
        self.console.print("  keep the web app's index following the chain:")
        self.console.print(f"    {archive.index_command(rpc_url)}", soft_wrap=True)
        self.console.print("[bold]Ctrl-C[/] stops them all.")
