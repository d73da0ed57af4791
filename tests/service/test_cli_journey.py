"""A year of a note with the `gpucredit` CLI alone (issue 17).

No web3 in this test: the protocol is deployed with scripts/deploy.py (the
documented recipe, through `gpucredit.run`), four oracle nodes run as in the
other service tests (`python -m oracle`, following the chain's clock), and
every other step is a `gpucredit ...` command run in-process with typer's
CliRunner: fund the accounts (`dev fund`), create the note, whitelist,
subscribe (the senior tranche oversubscribed and cut pro rata), register,
attest and pledge the GPUs, close and draw down, claim the notes, transfer
notes between lenders, then twelve 30-day periods in which the operator
pushes signed telemetry and pays revenue, chain time moves to each period
end (`dev next-period`) and the nodes report and close the period; one
period breaches the uptime SLA, a demand shock calls for a top-up that the
operator answers with cash. At maturity the lenders redeem and claim, anyone
releases the collateral, the operator and the fee recipient withdraw. The
chain's views (through `issuer status`, `lender position`, `kyc show`,
`fleet show`, each with --json) are checked at every step, and so is every
progress bar (never past its total: issue 17 saw "12/11").

Run with `python -m pytest -p no:pytest-brownie tests/service/test_cli_journey.py`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from deal import dev_account
from eth_account import Account
from harness import Anvil, OracleNode, ensure_artifacts, node_env, wait_until
from livenet import REPO
from typer.testing import CliRunner

from gpucredit.cli import app

DAY = 86_400
USD = 10**6
GPUS = 200
COST = 125_000  # per GPU: 25M of cost for a 17M note at a 130 % minimum collateral ratio
SETTLE_SECONDS = 20  # chain seconds after a period's end in which nodes still take telemetry
QUORUM_WAIT_SECONDS = 4
UPTIME_BREACH_PERIOD = 3  # uptime 97 %: below the 99 % SLA
SHOCK_PERIOD = 5  # utilization 50 %: the step-up, and the tighter LTV limit calls a top-up
REVENUE = 300_000  # a month of revenue, whole USD
SUBSCRIPTIONS = [  # (lender index, tranche, whole USD): the senior asks 16M of 14M
    (0, "senior", 10_000_000),
    (1, "senior", 6_000_000),
    (2, "junior", 3_000_000),
]
PROGRESS = re.compile(r"(\d[\d,]*)/(\d[\d,]*)")


def _load_make_fleet():
    spec = importlib.util.spec_from_file_location("make_fleet", REPO / "examples" / "make_fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Journey:
    """The chain, the deployment, the nodes, and `gpucredit` in-process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runner = CliRunner()
        self.deployer = dev_account(0)
        self.issuer, self.operator, self.attestor = dev_account(1), dev_account(2), dev_account(3)
        self.trustee = dev_account(4)
        self.lenders = [dev_account(6), dev_account(7), dev_account(8)]
        self.node_accounts = [Account.create() for _ in range(4)]  # quorum 3: f = 1
        self.nodes: list[OracleNode] = []
        self.bars: list[tuple[str, str]] = []
        self.timings: list[tuple[str, float]] = []  # every progress bar a command drew
        self.anvil = Anvil("--block-base-fee-per-gas", "0")  # brownie sends 0-gwei legacy txs

    # ---- set-up -------------------------------------------------------------

    def deploy(self) -> None:
        config = self.tmp / "deploy.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "issuers": [self.issuer.address],
                    "operators": [self.operator.address],
                    "attestors": [self.attestor.address],
                    "trustee": self.trustee.address,
                    "oracle_signers": [a.address for a in self.node_accounts],
                    "stablecoin": "mock",
                    "deployments_dir": str(self.tmp / "deployments"),
                }
            )
        )
        code = (
            "from gpucredit.run import run_script; "
            f"run_script({str(REPO / 'scripts' / 'deploy.py')!r}, 'main', [{str(config)!r}], "
            f"network='development', port={self.anvil.port})"
        )
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith("GPUCREDIT_")},
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:"
            + __import__("os").environ.get("PATH", ""),
            "SOLCX_BINARY_PATH": str(REPO / "tools" / "solc" / "bin"),
            "PYTHONPATH": str(REPO),
        }
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        self.manifest = self.tmp / "deployments" / "31337.json"
        assert self.manifest.exists(), result.stdout[-3000:]

    def start_nodes(self) -> None:
        oracle = json.loads(self.manifest.read_text())["contracts"]["telemetry_oracle"]["address"]
        for i, account in enumerate(self.node_accounts):
            workdir = self.tmp / f"node-{i}"
            workdir.mkdir()
            self.anvil.fund(account.address)
            self.nodes.append(
                OracleNode(
                    f"node-{i}",
                    account,
                    workdir,
                    node_env(self.anvil, oracle, account, workdir, node_name=f"node-{i}"),
                )
            )
        urls = [n.url for n in self.nodes]
        for node in self.nodes:
            node.env.update(
                {
                    "GPUCREDIT_ORACLE_CLOCK": "chain",
                    "GPUCREDIT_ORACLE_CLOCK_CACHE_SECONDS": "0.2",
                    "GPUCREDIT_ORACLE_SETTLE_SECONDS": str(SETTLE_SECONDS),
                    "GPUCREDIT_ORACLE_QUORUM_WAIT_SECONDS": str(QUORUM_WAIT_SECONDS),
                    "GPUCREDIT_ORACLE_POLL_INTERVAL_SECONDS": "0.2",
                    "GPUCREDIT_ORACLE_PEERS": ",".join(u for u in urls if u != node.url),
                    "GPUCREDIT_ORACLE_FLEETS": "1",
                }
            )
            node.start(wait=False)
        for node in self.nodes:
            wait_until(node.healthy, 60, what=f"{node.name} to serve")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.anvil.stop()

    # ---- the CLI ------------------------------------------------------------

    def keys(self) -> dict[str, str]:
        env = {
            "GPUCREDIT_ISSUER_KEY": self.issuer.key.hex(),
            "GPUCREDIT_OPERATOR_KEY": self.operator.key.hex(),
            "GPUCREDIT_ATTESTOR_KEY": self.attestor.key.hex(),
            "GPUCREDIT_TRUSTEE_KEY": self.trustee.key.hex(),
            "GPUCREDIT_SERVICER_KEY": self.lenders[2].key.hex(),  # a keeper: anyone
            "GPUCREDIT_LENDER_KEY": self.lenders[0].key.hex(),
        }
        for i, lender in enumerate(self.lenders):
            env[f"GPUCREDIT_LENDER_{i}_KEY"] = lender.key.hex()
        return env

    def run(self, *args: str, ok: bool = True, **env: str):
        t0 = time.monotonic()
        result = self.runner.invoke(
            app,
            ["--rpc-url", self.anvil.url, "--manifest", str(self.manifest), *args],
            env={**self.keys(), "COLUMNS": "200", **env},
            catch_exceptions=False,
        )
        self.timings.append((" ".join(args[:2]), time.monotonic() - t0))
        for done, total in PROGRESS.findall(result.stderr):
            self.bars.append((" ".join(args[:2]), f"{done}/{total}"))
            assert int(done.replace(",", "")) <= int(total.replace(",", "")), (
                f"{args}: a progress bar at {done}/{total}:\n{result.stderr}"
            )
        if ok:
            assert result.exit_code == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
        else:
            assert result.exit_code != 0, f"{args} should have failed:\n{result.stdout}"
        return result

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.run(*args, "--json", **env).stdout)

    def lender(self, i: int) -> dict[str, str]:
        return {"GPUCREDIT_LENDER_KEY": self.lenders[i].key.hex()}

    def status(self) -> dict[str, Any]:
        return self.json("issuer", "status", "1")

    def position(self, i: int) -> dict[str, Any]:
        return self.json("lender", "position", "1", "--address", self.lenders[i].address)


def telemetry(period: int, start: int, utilization: int, uptime: int) -> dict[str, Any]:
    """One period's metering: a fleet sample a day and two invoices."""
    return {
        "samples": [
            {
                "ts": start + day * DAY,
                "interval_seconds": DAY,
                "gpu_count": GPUS,
                "gpu_hours_available": str(GPUS * 24),
                "gpu_hours_used": str(GPUS * 24 * utilization / 10_000),
                "uptime_seconds": -(-DAY * uptime // 10_000),
            }
            for day in range(30)
        ],
        "revenue": [
            {
                "ts": start + day * DAY,
                "invoice_id": f"INV-{period:02d}-{n}",
                "amount": REVENUE * USD // 2,
                "customer": "Acme AI",
                "contract_type": "take_or_pay",
            }
            for n, day in enumerate((5, 20))
        ],
    }


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    ensure_artifacts("NoteTranche", "Servicer", "CollateralRegistry", "TelemetryOracle")
    j = Journey(tmp_path_factory.mktemp("journey"))
    try:
        t0 = time.monotonic()
        j.deploy()
        j.timings.append(("deploy", time.monotonic() - t0))
        yield j
    finally:  # whatever failed: no anvil and no node left running
        j.stop()
        totals: dict[str, list[float]] = {}
        for name, seconds in j.timings:
            totals.setdefault(name, []).append(seconds)
        for name, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
            print(
                f"{name:32s} {len(values):3d} x {sum(values) / len(values):6.2f} s "
                f"= {sum(values):6.1f} s"
            )


def test_a_year_with_the_cli_alone(journey, tmp_path):
    j = journey
    began = time.monotonic()
    usd = lambda amount: amount * USD  # noqa: E731

    # ---- fund, create, whitelist, subscribe ------------------------------------
    for account in [*j.lenders, j.operator]:
        funded = j.json("dev", "fund", account.address, "50M")
        assert funded["balance"] == usd(50_000_000)
    sheet = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
    for tranche in sheet["tranches"]:
        tranche.pop("amortization", None)  # bullet: principal at maturity
    sheet["amortization"] = "bullet"
    sheet_path = tmp_path / "termsheet.yaml"
    sheet_path.write_text(yaml.safe_dump(sheet, sort_keys=False))
    created = j.run("issuer", "create-note", str(sheet_path))
    assert "2/2" in created.stderr  # the progress bar ends at its total
    j.start_nodes()
    lenders_csv = tmp_path / "lenders.csv"
    lenders_csv.write_text("address,country\n" + "".join(f"{a.address},840\n" for a in j.lenders))
    j.run("issuer", "whitelist", str(lenders_csv), "--days", "730")
    for i in range(3):
        assert j.json("kyc", "show", j.lenders[i].address)["verified"]
    for i, tranche, amount in SUBSCRIPTIONS:
        j.run("lender", "subscribe", "1", str(amount), "--tranche", tranche, **j.lender(i))

    # ---- collateral, close, draw down, claim ---------------------------------
    make_fleet = _load_make_fleet()
    now = j.status()["chain_time"]
    fleet_csv = make_fleet.write_fleet(
        tmp_path / "fleet", GPUS, cost=COST, in_service=now - 30 * DAY
    )
    batch_file = tmp_path / "fleet.batch.json"
    batch = j.json("operator", "register", str(fleet_csv), "--note", "1", "--out", str(batch_file))
    j.run("attestor", "attest", str(batch["batch_id"]), "--batch-file", str(batch_file))
    j.run("operator", "pledge", str(batch["batch_id"]), "--note", "1")
    status = j.status()
    j.json("dev", "advance", str(status["subscription"]["end"] - status["chain_time"] + 1))
    closed = j.json("issuer", "close", "1")
    assert {s: t["state"] for s, t in closed["tranches"].items()} == {
        "GPUS-27": "Active",
        "GPUJ-27": "Active",
    }
    faces = []
    for i in range(3):
        claims = j.json("lender", "claim-notes", "1", **j.lender(i))["claims"]
        faces.append(sum(c["shares"] for c in claims))
    # the senior asked 16M of 14M: cut pro rata, the rest refunded
    assert faces == [usd(14_000_000) * 10 // 16, usd(14_000_000) * 6 // 16, usd(3_000_000)]
    disbursed = j.json("servicer", "disburse", "1")
    assert disbursed["operator"] == j.operator.address
    assert disbursed["amount"] == usd(17_000_000)

    # ---- a transfer between holders --------------------------------------------
    moved = j.json(
        "lender", "transfer", "1", j.lenders[2].address, "1M", "--tranche", "senior", **j.lender(0)
    )
    assert moved["amount"] == usd(1_000_000)
    faces[0] -= usd(1_000_000)
    senior_faces = [faces[0], faces[1], usd(1_000_000)]
    for i in (0, 2):
        assert j.position(i)["tranches"][0]["face"] == senior_faces[i]

    # ---- twelve periods ---------------------------------------------------------
    periods, top_ups = {}, []
    genesis = j.status()["fleet"]["genesis"]
    for period in range(12):
        utilization, uptime = 9_200, 9_950
        if period == UPTIME_BREACH_PERIOD:
            uptime = 9_700
        if period == SHOCK_PERIOD:
            utilization = 5_000
        ended = j.json("dev", "next-period", "1")
        assert ended["period"] == period and ended["now"] >= ended["period_end"]
        path = tmp_path / f"telemetry-{period:02d}.json"
        start = genesis + period * 30 * DAY
        path.write_text(json.dumps(telemetry(period, start, utilization, uptime)))
        nodes = [arg for node in j.nodes for arg in ("--node", node.url)]
        pushed = j.json("operator", "push-telemetry", str(path), "--note", "1", *nodes)
        assert all(r["ok"] for r in pushed["results"]), pushed
        j.run("operator", "pay-revenue", "--note", "1", str(REVENUE))
        if period == 11:  # the refinancing pays the principal at maturity
            j.run("operator", "pay-revenue", "--note", "1", "18M")
        j.json("dev", "next-period", "1", "--plus", str(SETTLE_SECONDS + QUORUM_WAIT_SECONDS + 1))
        servicer: dict[str, Any] = {}

        def closed(p: int = period, seen: dict[str, Any] = servicer) -> bool:
            seen.update(j.json("servicer", "show", "1"))
            return seen["next_period_to_close"] > p

        wait_until(closed, 60, interval=0.2, what=f"the nodes to close period {period}")
        if period in (UPTIME_BREACH_PERIOD - 1, UPTIME_BREACH_PERIOD, SHOCK_PERIOD):
            last = j.position(0)["why"]["last_period"]
            assert last["period"] == period and last["report"] == "reported"
            periods[period] = last
        if servicer["top_up_required"]:
            short = (
                servicer["top_up_required"]
                - servicer["collateral_value"]
                - (servicer["cash_collateral"])
            )
            topped = j.json("operator", "top-up", "--note", "1", "--cash", f"{short / USD + 1:.6f}")
            assert topped["cured"], topped
            top_ups.append((period, topped["collateral_after"] - topped["collateral_before"]))
    assert "uptime SLA" in periods[UPTIME_BREACH_PERIOD]["breaches"]
    assert periods[UPTIME_BREACH_PERIOD - 1]["uptime_bps"] == 9_950
    assert periods[SHOCK_PERIOD]["utilization_bps"] == 5_000
    assert "low utilization" in periods[SHOCK_PERIOD]["breaches"]
    assert periods[SHOCK_PERIOD]["step_bps"] == 300
    assert top_ups and all(amount > 0 for _, amount in top_ups), top_ups

    # ---- maturity: redeem, claim, release, withdraw ---------------------------
    status = j.status()
    assert [t["state"] for t in status["tranches"]] == ["Repaid", "Repaid"]
    senior_face = [senior_faces[0], senior_faces[1], senior_faces[2]]
    for i in range(3):
        redeemed = j.json("lender", "redeem", "1", **j.lender(i))["claims"]
        coupons = j.json("lender", "claim-coupons", "1", **j.lender(i))["claims"]
        got = sum(c["amount"] for c in redeemed)
        face = senior_face[i] + (usd(3_000_000) if i == 2 else 0)
        assert got >= face - 3  # principal per face (rounded down), plus any held interest
        position = j.position(i)  # nothing claimed before maturity: all claims are these
        assert all(t["principal_outstanding"] == 0 for t in position["tranches"])
        assert all(t["coupon_claimable"] == 0 for t in position["tranches"])
        assert sum(t["coupon_claimed"] for t in position["tranches"]) == sum(
            c["amount"] for c in coupons
        )
        assert sum(c["amount"] for c in coupons) > 0
        assert sum(t["principal_redeemed"] for t in position["tranches"]) == got
    released = j.json("servicer", "release-collateral", "1")
    assert released["collateral_status"] == "Released"
    assert j.status()["collateral_status"] == "Released"
    assert j.status()["servicer"]["status"] == "Released"
    equity = j.json("servicer", "withdraw", "1", "--key-env", "GPUCREDIT_OPERATOR_KEY")
    assert equity["account"] == j.operator.address and equity["amount"] > 0
    assert equity["balance_after"] == equity["balance_before"] + equity["amount"]
    fees = j.json("servicer", "withdraw", "1", "--key-env", "GPUCREDIT_ISSUER_KEY")
    assert fees["account"] == j.issuer.address and fees["fees"] and fees["amount"] > 0
    again = j.run("servicer", "withdraw", "1", "--key-env", "GPUCREDIT_OPERATOR_KEY", ok=False)
    assert "nothing to withdraw" in again.stderr
    assert any(bar == ("issuer create-note", "2/2") for bar in j.bars)
    print(f"journey: {time.monotonic() - began:.1f} s")
