"""The demo's story, told with the CLI: the year, maturity, the archive.

The story itself (figures, who lies, who is down) is gpucredit/story.py; this
module plays it through the processes of `processes.py` and the commands of
`commands.py`, and reads each close back into a timeline row (`timeline.py`).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from gpucredit.demo.archive import write_archive
from gpucredit.demo.commands import amount_arg
from gpucredit.demo.display import dscr, pct, usd
from gpucredit.demo.ledger import check_ledger, count
from gpucredit.demo.processes import (
    ISSUER,
    NODE_NAMES,
    OPERATOR,
    QUORUM_NUDGE_AFTER,
    QUORUM_WAIT_SECONDS,
    SETTLE_SECONDS,
    TRUSTEE,
    DemoError,
)
from gpucredit.demo.setup import SetUp
from gpucredit.demo.telemetry import telemetry_batch
from gpucredit.demo.timeline import Row, read_row
from gpucredit.story import (  # the story the demo tells: gpucredit/story.py
    CURE_GPUS,
    DOWN_PERIOD,
    LIE,
    LYING_PERIOD,
    REFINANCING,
    STORY,
    SUBSCRIPTIONS,
    period_revenue,
)

DAY = 86_400
CHALLENGE_WINDOW = 3 * DAY  # CollateralRegistry.CHALLENGE_WINDOW
LYING_NODE = "node-d"  # signs doctored figures in LYING_PERIOD
DOWN_NODE = "node-c"  # stopped for DOWN_PERIOD, restarted after its report


class Demo(SetUp):
    """One run: the set-up (`setup.py`), then the year, the end and the archive.

    This class tells the good year (`STORY`); `default.DefaultDemo` the bad one.
    """

    name = "good"
    story: list[tuple[Any, Any, str]] = STORY
    lying_period: int | None = LYING_PERIOD
    down_period: int | None = DOWN_PERIOD
    refinancing_period: int | None = len(STORY) - 1

    # ---- the year ---------------------------------------------------------

    def run_period(self, period: int, pending_events: list[str]) -> Row:
        utilization, uptime, story = self.story[period]
        started = time.monotonic()
        start = self.genesis + period * self.period_length
        end = start + self.period_length
        # the period is over: the operator uploads its metering and pays the revenue in
        self.chain.warp_to(end)
        path = self.run_dir / "telemetry" / f"period-{period:02d}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(telemetry_batch(period, start, utilization, uptime), indent=1))
        events = list(pending_events)
        if period == self.down_period:
            self.stop_node(DOWN_NODE)
            events.append(f"{DOWN_NODE} down")
        lying = period == self.lying_period
        honest_urls = [
            u
            for n, u in zip(NODE_NAMES, self.nodes.urls, strict=True)
            if not lying or n != LYING_NODE
        ]
        results = self.push(path, honest_urls)
        if lying:  # node-d holds doctored metering and signs what it says
            lie = self.run_dir / "telemetry" / f"{LYING_NODE}-lie-period-{period:02d}.json"
            lie.write_text(json.dumps(telemetry_batch(period, start, *LIE), indent=1))
            results += self.push(lie, [self.nodes.url(LYING_NODE)])
        refused = [r for r in results if not r["ok"]]
        if len(refused) > len(NODE_NAMES) - self.quorum:  # fewer than a quorum hold the telemetry
            raise DemoError(f"period {period}: telemetry refused: {refused}")
        for r in refused:
            name = NODE_NAMES[self.nodes.urls.index(r["node"])]
            events.append(f"{name} missed the telemetry ({r['code']})")
        self.cli(
            "operator",
            "pay-revenue",
            "--note",
            str(self.note_id),
            amount_arg(period_revenue(utilization)),
        )
        if period == self.refinancing_period:
            self.cli(
                "operator", "pay-revenue", "--note", str(self.note_id), amount_arg(REFINANCING)
            )
            events.append(f"refinancing {usd(REFINANCING)} paid in")
        # the settle window ends: the nodes sign, reach a quorum, post and close
        self.chain.warp_to(self.report_time(period, end))
        self.wait_closed(period, end)
        if lying:
            events.append(self.outvoted(period))
        if period == self.down_period:
            self.restart_node(DOWN_NODE)
            events.append(f"{DOWN_NODE} restarted")
        return read_row(self.contracts, period, story, events, time.monotonic() - started)

    def report_time(self, period: int, end: int) -> int:
        """The chain time the demo moves to once the period's telemetry and revenue are in:
        the settle window's end, when the nodes sign, post and close."""
        return end + SETTLE_SECONDS + 1

    def push(self, path: Path, urls: list[str]) -> list[dict[str, Any]]:
        nodes = [arg for url in urls for arg in ("--node", url)]
        pushed = self.cli(
            "operator",
            "push-telemetry",
            str(path),
            "--note",
            str(self.note_id),
            *nodes,
            "--timeout",
            "10",
            partial=True,
        )
        return pushed["results"]

    def stop_node(self, name: str) -> None:
        self.nodes.stop(name)
        self.step(f"{name} stopped: the other three nodes must still report")

    def restart_node(self, name: str) -> None:
        self.nodes.restart(name)

    def outvoted(self, period: int) -> str:
        """What the lying node signed against what was stored: the lie was outvoted."""
        signed = self.nodes.observation(LYING_NODE, self.note_id, period)
        stored = self.oracle.functions.report(self.note_id, period).call()
        if stored[1] == signed["utilization_bps"]:
            raise DemoError(f"period {period}: {LYING_NODE}'s figures were stored: {signed}")
        return (
            f"{LYING_NODE} signed {pct(signed['utilization_bps'])} utilization: outvoted, "
            f"{pct(stored[1])} stored"
        )

    def wait_closed(self, period: int, end: int) -> None:
        """Waits until the nodes have posted the period's report and closed it. The
        nodes first wait for all four signers' observations; if one is slow, chain
        time is moved past the quorum wait, so three of four post."""
        deadline = time.monotonic() + self.period_timeout
        nudge_at: float | None = time.monotonic() + QUORUM_NUDGE_AFTER
        while self.servicer.functions.nextPeriodToClose().call() <= period:
            self.supervisor.check()
            if nudge_at is not None and time.monotonic() > nudge_at:
                self.chain.warp_to(end + SETTLE_SECONDS + QUORUM_WAIT_SECONDS + 1)
                nudge_at = None
            if time.monotonic() > deadline:
                raise DemoError(
                    f"timed out after {self.period_timeout:g} s waiting for the oracle nodes "
                    f"to report and close period {period}\n{self.diagnose(period)}"
                )
            time.sleep(0.05)

    def diagnose(self, period: int) -> str:
        """Added to a time-out: what the chain and each node hold for the period."""
        lines = [f"chain time {self.chain.now()}"]
        with contextlib.suppress(Exception):
            report = self.oracle.functions.report(self.note_id, period).call()
            lines.append(f"on-chain report of period {period}: status {report[0]} (1 = reported)")
        lines += self.nodes.diagnose(self.note_id, period)
        return "\n".join(lines)

    def cure(self) -> str:
        """The operator answers the top-up: 250 more GPUs, registered, attested, pledged
        once their challenge window (3 days after attestation) has passed: collateral that
        can still be voided cures nothing."""
        batch = self.pledge(CURE_GPUS, "H100-CURE-", "fleet-cure")
        self.chain.warp_to(self.chain.now() + CHALLENGE_WINDOW + 1)
        topped = self.cli(
            "operator", "top-up", "--note", str(self.note_id), "--batch", str(batch["batch_id"])
        )
        if not topped["cured"]:
            raise DemoError(f"the top-up with {CURE_GPUS} GPUs did not cure: {topped}")
        self.step(
            f"operator pledged {CURE_GPUS} more GPUs (batch {batch['batch_id']}): collateral "
            f"{usd(topped['collateral_before'])} -> {usd(topped['collateral_after'])}, "
            f"requirement {usd(topped['required_collateral'])}: top-up cured"
        )
        return f"+{CURE_GPUS} GPUs pledged: top-up cured"

    def year(self) -> None:
        pending: list[str] = []
        for period in range(len(self.story)):
            row = self.run_period(period, pending)
            self.closed(row)
            pending = []
            required, _ = self.servicer.functions.topUp().call()
            if required:
                pending.append(self.cure())

    def closed(self, row: Row) -> None:
        """Records and prints a closed period."""
        self.rows.append(row)
        if row.report_status == "missed":
            oracle = f"report missed (marked by {row.report_by})"
        else:
            oracle = f"report by {row.report_by} ({row.observations} of 4 signatures)"
        self.step(
            f"period {row.period:>2} ({row.story}): utilization {pct(row.utilization_bps)}, "
            f"{oracle}, closed by {row.closed_by}; DSCR {dscr(row.dscr_bps)}, senior "
            f"{pct(row.senior_rate_bps, 2)} [{row.seconds:.1f} s]"
        )

    def maturity(self) -> None:
        """The notes are repaid: the collateral is released, everyone takes what is theirs."""
        self.client.send(
            self.servicer.functions.releaseCollateral(),
            self.accounts[ISSUER],
            "release the collateral",
        )
        self.step("issuer released the collateral (every tranche repaid): liens freed")
        self.settle_up()
        status = self.cli("issuer", "status", str(self.note_id))
        self.summary["tranches"] = {t["symbol"]: t["state"] for t in status["tranches"]}
        self.summary["collateral_status"] = status["collateral_status"]
        self.step(
            "lenders redeemed and claimed their coupons "
            f"({', '.join(f'{s} {state}' for s, state in self.summary['tranches'].items())}, "
            f"collateral {status['collateral_status']})"
        )

    def settle_up(self) -> None:
        """Every stablecoin unit ends somewhere: what the servicer and the tranches hold is
        claimable by named parties (checked before they take it, and after: only rounding
        dust is left); the lenders redeem and claim their coupons, then the fee recipient,
        the operator and the trustee withdraw what the servicer owes them."""
        before = self.ledger()
        check_ledger(before, "once the note is released")
        self.claims()
        withdrawals = []
        for role, account in self.parties().items():
            owed = self.servicer.functions.withdrawable(account.address).call()
            if not owed:
                continue
            self.client.send(self.servicer.functions.withdraw(), account, f"{role} withdraws")
            withdrawals.append({"party": role, "address": account.address, "amount": owed})
            self.step(f"{role} withdrew {usd(owed)} from the servicer")
        after = self.ledger()
        check_ledger(after, "after every claim and withdrawal")
        self.summary["withdrawals"] = withdrawals
        self.summary["ledger"] = {"released": before, "settled": after}

    def ledger(self) -> dict[str, Any]:
        return count(
            self.client.core("stablecoin"),
            self.servicer,
            self.tranches,
            self.parties(),
            self.lenders,
        )

    def claims(self) -> None:
        """Each lender redeems its principal and claims its coupons (CLI)."""
        lenders = []
        for row, _, _ in SUBSCRIPTIONS:
            key = self.lender_keys[row]
            redeemed = self.cli("lender", "redeem", str(self.note_id), key_env=key)["claims"]
            coupons = self.cli("lender", "claim-coupons", str(self.note_id), key_env=key)["claims"]
            for claim in redeemed:
                paid = sum(c["amount"] for c in coupons if c["tranche"] == claim["tranche"])
                lenders.append(
                    {
                        "lender": self.lenders[row],
                        "tranche": claim["tranche"],
                        "principal_redeemed": claim["amount"],
                        "coupons_claimed": paid,
                    }
                )
        self.summary["lenders"] = lenders

    def parties(self) -> dict[str, Any]:
        """The servicer's named payees: fee recipient (the issuer, as the term sheet
        leaves it), operator (equity) and trustee (recovery after a wind-down)."""
        return {
            "fee recipient": self.accounts[ISSUER],
            "operator": self.accounts[OPERATOR],
            "trustee": self.accounts[TRUSTEE],
        }

    # ---- run --------------------------------------------------------------

    def run(self) -> None:
        began = time.monotonic()
        self.setup_keys()
        self.start_chain()
        self.deploy()
        self.timings["deploy_done"] = time.monotonic() - began
        self.start_nodes()
        self.fund()
        self.create_note()
        self.subscribe()
        self.collateralize_and_draw()
        self.wait_for_nodes()
        self.timings["setup"] = time.monotonic() - began
        self.year()
        self.maturity()
        self.timings["year"] = time.monotonic() - began - self.timings["setup"]
        archived = time.monotonic()
        self.archive = write_archive(self.client.w3, self.manifest, self.run_dir)
        self.summary["archive"] = self.archive.to_dict()
        self.timings["total"] = time.monotonic() - began
        self.timings["archive"] = time.monotonic() - archived
        self.write_timeline()

    def wait_for_ctrl_c(self) -> None:
        """--keep: the chain and the nodes run until Ctrl-C (KeyboardInterrupt)."""
        while True:
            self.supervisor.check()
            time.sleep(0.5)

    def write_timeline(self) -> None:
        data = {
            "story": self.name,
            "note_id": self.note_id,
            "rows": [row.__dict__ for row in self.rows],
            "summary": self.summary,
            "timings_seconds": {k: round(v, 1) for k, v in self.timings.items()},
            "logs": self.logs(),
        }
        (self.run_dir / "timeline.json").write_text(json.dumps(data, indent=1) + "\n")

    def logs(self) -> dict[str, str]:
        found = {"anvil": "anvil.log", "deploy": "deploy.log", "cli": "cli.log"}
        found.update({name: f"{name}/node.log" for name in NODE_NAMES})
        found["telemetry"] = "telemetry/"
        found["manifest"] = "deployments/31337.json"
        found["archive"] = "audit/events.jsonl"
        found["audit_manifest"] = "audit/manifest.json"
        found["report"] = "audit/audit.html"
        found["index"] = "index.sqlite"
        return found
