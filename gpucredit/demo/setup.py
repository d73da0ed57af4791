"""The demo's set-up, told with the CLI: anvil and the deployment, the oracle nodes,
the parties' keys and mock stablecoin, the note from the example term sheet, the
lenders' subscriptions (one cut pro rata), the fleet registered, attested and pledged,
the window closed, the capital drawn and taken by the operator.

`story.Demo` plays the year on top of it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import yaml
from eth_account import Account
from web3.logs import DISCARD

from gpucredit.chain import Client
from gpucredit.demo.commands import Cli, amount_arg
from gpucredit.demo.display import Display, usd
from gpucredit.demo.processes import (
    ATTESTOR,
    DEPLOYER,
    ISSUER,
    NODE_NAMES,
    OPERATOR,
    REPO,
    TRUSTEE,
    DemoError,
    OracleNodes,
    Supervisor,
    deploy,
    dev_account,
    start_chain,
)
from gpucredit.demo.telemetry import load_make_fleet
from gpucredit.demo.timeline import NoteContracts, Row
from gpucredit.story import GPUS, SUBSCRIPTIONS, USD

DAY = 86_400


class SetUp:
    """The deal before its first period: the chain, the deployment, the oracle nodes, the
    parties' keys and money, the note, the subscriptions, the pledged fleet, the drawdown."""

    def __init__(self, run_dir: Path, display: Display, period_timeout: float) -> None:
        self.run_dir = run_dir
        self.display = display
        self.step = display.step
        self.period_timeout = period_timeout
        self.supervisor = Supervisor(run_dir)
        self.rows: list[Row] = []
        self.summary: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.accounts = {i: dev_account(i) for i in range(10)}
        self.node_accounts = [Account.create() for _ in NODE_NAMES]
        self.note_id = 0

    # ---- set-up -----------------------------------------------------------

    def start_chain(self) -> None:
        self.chain, child = start_chain(self.supervisor, self.run_dir)
        self.step(f"anvil on {self.chain.url} (pid {child.proc.pid}, chain id 31337)")

    def deploy(self) -> None:
        roles = {
            "issuers": [self.accounts[ISSUER].address],
            "operators": [self.accounts[OPERATOR].address],
            "attestors": [self.accounts[ATTESTOR].address],
            "trustee": self.accounts[TRUSTEE].address,
            "oracle_signers": [a.address for a in self.node_accounts],
            "stablecoin": "mock",
            "deployments_dir": str(self.run_dir / "deployments"),
        }
        manifest = deploy(self.supervisor, self.chain, self.run_dir, roles)
        self.manifest = manifest
        self.client = Client.connect(self.chain.url, manifest)
        contracts = self.client.manifest.contracts
        self.step(
            f"deployed with scripts/deploy.py: oracle {contracts['telemetry_oracle'].address}, "
            f"registry {contracts['collateral_registry'].address} (manifest {manifest})"
        )

    def start_nodes(self) -> None:
        self.nodes = OracleNodes(self.supervisor, self.chain, self.run_dir, self.node_accounts)
        self.nodes.start(self.client.manifest.contracts["telemetry_oracle"].address)

    def wait_for_nodes(self) -> None:
        self.nodes.wait(self.step)

    def fund(self) -> None:
        usd_token = self.client.core("stablecoin")
        deployer = self.accounts[DEPLOYER]
        for address in [*self.lenders, self.accounts[OPERATOR].address]:
            self.client.send(
                usd_token.functions.mint(address, 50_000_000 * USD), deployer, "mint mock USDC"
            )

    def setup_keys(self) -> None:
        os.environ["GPUCREDIT_ISSUER_KEY"] = self.accounts[ISSUER].key.hex()
        os.environ["GPUCREDIT_OPERATOR_KEY"] = self.accounts[OPERATOR].key.hex()
        os.environ["GPUCREDIT_ATTESTOR_KEY"] = self.accounts[ATTESTOR].key.hex()
        os.environ["GPUCREDIT_TRUSTEE_KEY"] = self.accounts[TRUSTEE].key.hex()
        with (REPO / "examples" / "lenders.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        by_address = {a.address.lower(): a for a in self.accounts.values()}
        self.lenders: list[str] = []
        self.lender_keys: list[str] = []
        for i, row in enumerate(rows):
            account = by_address.get(row["address"].strip().lower())
            if account is None:
                raise DemoError(
                    f"examples/lenders.csv row {i + 2}: {row['address']} is not one of anvil's "
                    "development accounts, so the demo has no key for it"
                )
            variable = f"GPUCREDIT_DEMO_LENDER_{i + 1}_KEY"
            os.environ[variable] = account.key.hex()
            self.lenders.append(account.address)
            self.lender_keys.append(variable)

    # ---- the note ---------------------------------------------------------

    def termsheet(self) -> Path:
        """examples/termsheet.yaml with one change: bullet senior principal. The
        example amortizes a third of the senior tranche at days 180, 270 and 360,
        which a $265k-a-month fleet cannot pay out of revenue; the seeds' story is
        a bullet note refinanced at maturity."""
        data = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
        for tranche in data["tranches"]:
            tranche.pop("amortization", None)
        data["amortization"] = "bullet"
        path = self.run_dir / "termsheet.yaml"
        header = "# examples/termsheet.yaml, with bullet senior principal (written by the demo)\n"
        path.write_text(header + yaml.safe_dump(data, sort_keys=False))
        return path

    def create_note(self) -> None:
        self.cli = Cli(self.chain.url, self.manifest, (self.run_dir / "cli.log").open("a"))
        note = self.cli("issuer", "create-note", str(self.termsheet()))
        self.note_id = note["note_id"]
        self.genesis, self.maturity_at = note["subscription_end"], note["maturity"]
        self.client.reload_manifest()
        record = self.client.manifest.note(self.note_id)
        self.period_length = record.fleet.period_length
        self.quorum = record.fleet.quorum
        self.servicer = self.client.record(record.servicer)
        self.tranches = {s: self.client.record(r) for s, r in record.tranches.items()}
        self.oracle = self.client.core("telemetry_oracle")
        self.note_block = record.block
        self.contracts = NoteContracts(
            w3=self.client.w3,
            note_id=self.note_id,
            block=self.note_block,
            servicer=self.servicer,
            tranches=self.tranches,
            oracle=self.oracle,
            signer_name=self.nodes.name_of,
        )
        symbols = ", ".join(note["tranches"])
        self.step(
            f"issuer created note {self.note_id} ({symbols}) from the example term sheet: "
            f"servicer {note['servicer']}, oracle quorum {self.quorum} of {len(note['signers'])} "
            "signers"
        )
        listed = self.cli(
            "issuer", "whitelist", str(REPO / "examples" / "lenders.csv"), "--days", "730"
        )
        self.step(
            f"issuer whitelisted {len(listed['whitelisted'])} lenders from examples/lenders.csv"
        )

    def subscribe(self) -> None:
        for row, tranche, amount in SUBSCRIPTIONS:
            self.cli(
                "lender",
                "subscribe",
                str(self.note_id),
                amount_arg(amount),
                "--tranche",
                tranche,
                key_env=self.lender_keys[row],
            )
        asked = ", ".join(
            f"{self.lenders[r][:8]} {usd(amount)} {tranche}" for r, tranche, amount in SUBSCRIPTIONS
        )
        self.step(f"lenders subscribed: {asked}")

    def pledge(self, count: int, prefix: str, folder: str) -> dict[str, Any]:
        """Writes a fleet CSV (examples/make_fleet.py), registers, attests, returns the batch."""
        make_fleet = load_make_fleet()
        in_service = self.chain.now() - 30 * DAY
        fleet_csv = make_fleet.write_fleet(
            self.run_dir / folder, count, prefix=prefix, in_service=in_service
        )
        batch_file = fleet_csv.with_name("fleet.batch.json")
        batch = self.cli(
            "operator",
            "register",
            str(fleet_csv),
            "--note",
            str(self.note_id),
            "--out",
            str(batch_file),
        )
        self.cli("attestor", "attest", str(batch["batch_id"]), "--batch-file", str(batch_file))
        batch["csv"] = str(fleet_csv)
        return batch

    def collateralize_and_draw(self) -> None:
        batch = self.pledge(GPUS, "H100-", "fleet")
        pledged = self.cli(
            "operator", "pledge", str(batch["batch_id"]), "--note", str(self.note_id)
        )
        self.step(
            f"operator registered {batch['gpus']:,} GPUs from {batch['csv']} (one batch, root "
            f"{batch['root'][:12]}..., {batch['transactions']} transactions), attestor attested, "
            f"operator pledged (counts after the 3-day challenge window): collateral "
            f"{usd(pledged['note_collateral_value'])}"
        )
        # the window closes only at its end (fixed once lenders commit): the
        # issuer closes it then and draws down
        self.chain.warp_to(self.genesis)
        closed = self.cli("issuer", "close", str(self.note_id))
        drawn = ", ".join(
            f"{s} {usd(t['principal'])}" for s, t in closed["tranches"].items() if t["drawn"]
        )
        self.step(f"issuer closed the subscription window, fulfilled and drew down: {drawn}")
        # the capital drawn sits in the servicer (the SPV's account) until the operator takes
        # it to pay for the GPUs: from here on the servicer holds only what the note allocates
        receipt = self.client.send(
            self.servicer.functions.disburseCapital(), self.accounts[OPERATOR], "disburse"
        )
        paid = self.servicer.events.CapitalDisbursed().process_receipt(receipt, errors=DISCARD)
        amount = paid[0]["args"]["amount"]
        self.summary["capital_disbursed"] = amount
        self.step(f"operator took the drawn capital ({usd(amount)}) from the servicer")
        self.subscriptions = []
        for row, _, amount in SUBSCRIPTIONS:
            claims = self.cli(
                "lender", "claim-notes", str(self.note_id), key_env=self.lender_keys[row]
            )["claims"]
            for claim in claims:
                self.subscriptions.append(
                    {
                        "lender": self.lenders[row],
                        "tranche": claim["tranche"],
                        "asked": amount,
                        "notes": claim["shares"],
                        "refunded": claim["refunded"],
                    }
                )
        cut = [s for s in self.subscriptions if s["refunded"]]
        for s in cut:
            self.step(
                f"{s['lender'][:8]} asked {usd(s['asked'])} of {s['tranche']}: cut pro rata to "
                f"{usd(s['notes'])}, {usd(s['refunded'])} refunded"
            )
        self.summary["subscriptions"] = self.subscriptions
