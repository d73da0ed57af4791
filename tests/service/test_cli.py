"""The `gpucredit` CLI against a real chain: one anvil (a separate process), the
protocol deployed by scripts/deploy.py on it as a live brownie network, and a note
walked through its life by the CLI's commands (run in-process with typer's
CliRunner), with the error paths a person hits: bad CSV rows, a lender who is not
whitelisted, the wrong key, a drawdown before the collateral is pledged.

The tests of this module share the chain and run in order, like the note's life.
Run with `python -m pytest -p no:pytest-brownie tests/service/test_cli.py`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from deal import dev_account
from eth_account import Account
from harness import Anvil, OracleNode, ensure_artifacts, node_env
from livenet import ANVIL_KEY_0, REPO, LiveNetwork
from typer.main import get_command
from typer.testing import CliRunner

from gpucredit.cli import app
from gpucredit.merkle import MerkleTree
from gpucredit.protocol import USD
from gpucredit.reports import order_by_signer, sign_observation

CHAIN_ID = 778_000 + os.getpid() % 1000
DAY = 86_400
runner = CliRunner()


def _load_make_fleet():
    spec = importlib.util.spec_from_file_location("make_fleet", REPO / "examples" / "make_fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Env:
    """The chain, the deployment and the actors' keys."""

    def __init__(self, tmp: Path) -> None:
        # Chain time starts 10 days behind the wall clock, so the fleet's period 0
        # (which starts when the 2-day subscription window ends) contains "now" for
        # the oracle node, which dates telemetry by the wall clock.
        self.anvil = Anvil(
            "--chain-id", str(CHAIN_ID), "--timestamp", str(int(time.time()) - 10 * DAY)
        )
        try:
            self._deploy(tmp)
        except BaseException:
            self.stop()  # a failed set-up stops the anvil it started
            raise

    def _deploy(self, tmp: Path) -> None:
        self.w3 = self.anvil.w3
        self.tmp = tmp
        self.issuer, self.operator, self.attestor = dev_account(1), dev_account(2), dev_account(3)
        self.trustee = dev_account(4)
        self.lender_a, self.lender_b, self.rando = dev_account(6), dev_account(7), dev_account(9)
        self.signer_keys = [Account.create().key.hex() for _ in range(4)]  # quorum 3: f = 1
        self.signers = [Account.from_key(k).address for k in self.signer_keys]
        self.net = LiveNetwork(self.anvil.url, CHAIN_ID, tmp / "net", f"gpucredit-cli-{CHAIN_ID}")
        config = tmp / "deploy.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "issuers": [self.issuer.address],
                    "operators": [self.operator.address],
                    "attestors": [self.attestor.address],
                    "trustee": self.trustee.address,
                    "oracle_signers": self.signers,
                    "stablecoin": "mock",
                }
            )
        )
        result = self.net.deploy(str(config), GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        self.manifest_path = self.net.manifest_path
        manifest = self.manifest()
        self.usd = self.contract("MockStablecoin", manifest["contracts"]["stablecoin"]["address"])
        admin = self.w3.eth.accounts[0]
        for who in (self.lender_a, self.lender_b, self.operator, self.rando):
            self.anvil.transact(self.usd.functions.mint(who.address, 50_000_000 * USD), admin)

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def contract(self, name: str, address: str):
        abi = json.loads((REPO / "build" / "contracts" / f"{name}.json").read_text())["abi"]
        return self.w3.eth.contract(address=address, abi=abi)

    def keys(self) -> dict[str, str]:
        return {
            "GPUCREDIT_ISSUER_KEY": self.issuer.key.hex(),
            "GPUCREDIT_OPERATOR_KEY": self.operator.key.hex(),
            "GPUCREDIT_ATTESTOR_KEY": self.attestor.key.hex(),
            "GPUCREDIT_LENDER_KEY": self.lender_a.key.hex(),
        }

    def cli(self, *args: str, ok: bool = True, **env: str):
        merged = {**self.keys(), "COLUMNS": "200", **env}  # pytest-xdist exports COLUMNS=80
        result = runner.invoke(
            app,
            ["--rpc-url", self.anvil.url, "--manifest", str(self.manifest_path), *args],
            env=merged,
            catch_exceptions=False,
        )
        if ok:
            assert result.exit_code == 0, f"{args}:\n{result.output}"
        else:
            assert result.exit_code != 0, f"{args} should have failed:\n{result.output}"
        return result

    def json(self, *args: str, **env: str) -> dict:
        return json.loads(self.cli(*args, "--json", **env).stdout)

    def nonce(self, account) -> int:
        return self.w3.eth.get_transaction_count(account.address)

    def note(self, note_id: int = 1) -> dict:
        return self.manifest()["notes"][str(note_id)]

    def tranche(self, symbol: str):
        return self.contract("NoteTranche", self.note()["tranches"][symbol]["address"])

    def servicer(self):
        return self.contract("Servicer", self.note()["servicer"]["address"])

    def stop(self) -> None:
        self.anvil.stop()
        shutil.rmtree(REPO / "build" / "deployments" / str(CHAIN_ID), ignore_errors=True)
        map_path = REPO / "build" / "deployments" / "map.json"
        if map_path.exists():
            data = json.loads(map_path.read_text())
            if data.pop(str(CHAIN_ID), None) is not None:
                map_path.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ensure_artifacts("NoteTranche", "Servicer", "CollateralRegistry", "TelemetryOracle")
    e = Env(tmp_path_factory.mktemp("cli"))
    yield e
    e.stop()


@pytest.fixture(scope="module")
def termsheet(tmp_path_factory) -> Path:
    """The example term sheet with a 2-day window and a 10 % senior instalment after a day."""
    data = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
    data["subscription"]["length"] = "2d"
    data["tranches"][0]["amortization"] = {
        "type": "schedule",
        "schedule": [{"after": "1d", "cumulative": "10%"}, {"after": "180d", "cumulative": "50%"}],
    }
    path = tmp_path_factory.mktemp("sheet") / "termsheet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------
# help and term sheets (no chain)
# ---------------------------------------------------------------------------


def test_every_command_and_flag_has_help():
    root = get_command(app)
    commands = []

    def walk(command, path):
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            commands.append((path, command))

    walk(root, [])
    names = {" ".join(p) for p, _ in commands}
    for expected in (
        "issuer create-note",
        "issuer whitelist",
        "issuer close",
        "issuer status",
        "lender subscribe",
        "lender cancel",
        "lender claim-notes",
        "lender claim-coupons",
        "lender redeem",
        "lender position",
        "operator register",
        "operator pledge",
        "operator top-up",
        "operator push-telemetry",
        "operator pay-revenue",
        "attestor attest",
        "attestor reject",
        "lender transfer",
        "lender cancel-offering",
        "servicer close-period",
        "servicer disburse",
        "servicer cure",
        "servicer declare-default",
        "servicer record-defects",
        "servicer release-collateral",
        "servicer withdraw",
        "trustee step-in",
        "trustee finish-wind-down",
        "trustee transfer",
        "fleet show",
        "fleet queue-operator",
        "fleet execute-operator",
        "fleet cancel-operator",
        "fleet queue-signers",
        "fleet execute-signers",
        "fleet cancel-signers",
        "fleet mark-missed",
        "challenge bad-leaf",
        "challenge key-mismatch",
        "valuer set-model",
        "valuer execute-model",
        "valuer cancel-model",
        "valuer set-class",
        "valuer execute-class",
        "valuer cancel-class",
        "kyc show",
        "kyc freeze",
        "kyc unfreeze",
        "kyc remove",
        "issuer pause",
        "issuer unpause",
        "dev fund",
        "dev next-period",
        "dev advance",
    ):
        assert expected in names
    for path, command in commands:
        assert command.help, path
        for param in command.params:
            assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0
        for param in command.params:
            if param.param_type_name == "option":
                assert param.opts[0] in result.output, (path, param.opts)


def test_validate_the_example_termsheet():
    result = runner.invoke(
        app, ["issuer", "validate", str(REPO / "examples" / "termsheet.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    sheet = json.loads(result.stdout)
    assert [t["symbol"] for t in sheet["tranches"]] == ["GPUS-27", "GPUJ-27"]
    assert sheet["size"] == 17_000_000 * USD
    assert sheet["tranches"][0]["reference_rate_bps"] == 430
    assert sheet["tranches"][0]["min_collateral_ratio_bps"] == 13_000
    assert sheet["covenants"]["step_up_bps"] == 300
    table = runner.invoke(app, ["issuer", "validate", str(REPO / "examples" / "termsheet.yaml")])
    assert "term sheet is valid" in table.output


def test_validate_reports_every_problem_with_its_field(tmp_path):
    data = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
    data["tranches"][1]["spread"] = "9.005%"
    data["tranches"][0]["floor"] = "30%"
    data["covenants"]["low_utilization_max_ltv"] = "80%"
    data["oracle"] = {"signers": ["0xnot-an-address"], "quorum": 1}
    data["heartbeat"] = 7
    data["tranche"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["issuer", "validate", str(path)])
    assert result.exit_code == 1
    for expected in (
        "6 problem(s)",
        "tranches[1].spread: 9.005% is not a whole number of basis points",
        "tranches[0]: floor 3000 bps is above cap 2500 bps",
        "covenants: low_utilization_max_ltv 8000 bps is above max_ltv 7500 bps",
        "oracle.signers[0]: '0xnot-an-address' is not an address",
        "heartbeat: 7: give a unit",
        "tranche: unknown field",
    ):
        assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    "quorum, signers, reason",
    [
        (2, 3, "quorum 2 tolerates no lying or silent signer"),
        (4, 4, "quorum 4 is even: the quorum must be 2f + 1"),
        (3, 3, "quorum 3 means f = 1 tolerated lying or silent signers, which needs at least"),
    ],
)
def test_validate_refuses_a_quorum_outside_the_fault_rule(tmp_path, quorum, signers, reason):
    data = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
    data["oracle"] = {
        "signers": [Account.create().address for _ in range(signers)],
        "quorum": quorum,
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["issuer", "validate", str(path)])
    assert result.exit_code == 1
    assert reason in result.stderr, result.stderr
    four = {"signers": [Account.create().address for _ in range(4)], "quorum": 3}
    path.write_text(yaml.safe_dump(data | {"oracle": four}))
    ok = runner.invoke(app, ["issuer", "validate", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "quorum 3 of 4 signers: tolerates f = 1 lying or silent" in ok.output


# ---------------------------------------------------------------------------
# a note's life
# ---------------------------------------------------------------------------


def test_create_note_refuses_a_key_without_the_issuer_role(env, termsheet):
    before = env.nonce(env.lender_a)
    result = env.cli(
        "issuer",
        "create-note",
        str(termsheet),
        ok=False,
        GPUCREDIT_ISSUER_KEY=env.lender_a.key.hex(),
    )
    assert f"{env.lender_a.address} lacks ISSUER_ROLE on the collateral registry" in result.stderr
    assert env.nonce(env.lender_a) == before
    result = env.cli(
        "issuer", "create-note", str(termsheet), ok=False, GPUCREDIT_ISSUER_KEY="0x1234"
    )
    assert "GPUCREDIT_ISSUER_KEY is not a private key" in result.stderr


def test_create_note_from_the_termsheet(env, termsheet):
    note = env.json("issuer", "create-note", str(termsheet))
    assert note["note_id"] == 1
    assert note["operator"] == env.operator.address  # the deployment's only operator
    assert note["trustee"] == env.trustee.address
    assert note["signers"] == sorted(env.signers, key=lambda a: int(a, 16))
    assert note["subscription_end"] - note["subscription_start"] == 2 * DAY
    assert note["maturity"] - note["subscription_end"] == 360 * DAY
    record = env.note()
    assert list(record["tranches"]) == ["GPUS-27", "GPUJ-27"]
    assert record["fleet"]["genesis"] == note["subscription_end"]
    senior, junior = env.tranche("GPUS-27"), env.tranche("GPUJ-27")
    servicer = env.servicer()
    for tranche in (senior, junior):
        assert tranche.functions.spv().call() == servicer.address
        assert tranche.functions.state().call() == 0
    terms = senior.functions.terms().call()
    assert terms[0] == 1 and terms[2] == 14_000_000 * USD and terms[8] == 450
    schedule = senior.functions.amortizationSchedule().call()
    assert [tuple(s) for s in schedule] == [
        (note["subscription_end"] + DAY, 1_000),
        (note["subscription_end"] + 180 * DAY, 5_000),
    ]
    assert junior.functions.amortizationSchedule().call() == []
    oracle = env.contract(
        "TelemetryOracle", env.manifest()["contracts"]["telemetry_oracle"]["address"]
    )
    fleet = oracle.functions.fleet(1).call()
    assert fleet[0] == env.operator.address and fleet[1] == servicer.address
    assert fleet[2] == note["subscription_end"] and fleet[5] == 3
    assert tuple(fleet)[8:] == (4, 1)  # n signers, fault bound f
    assert servicer.functions.covenantTerms().call()[9] == 300


def test_whitelist_rejects_bad_rows_before_sending(env, tmp_path):
    path = tmp_path / "lenders.csv"
    path.write_text(
        "address,country,expires\n"
        f"{env.lender_a.address},840,2031-01-01\n"
        "0xnope,840,\n"
        f"{env.lender_b.address},USA,\n"
        f"{env.lender_a.address},826,\n"
    )
    before = env.nonce(env.issuer)
    result = env.cli("issuer", "whitelist", str(path), ok=False)
    for expected in (
        "3 problem(s)",
        "row 3, column address: '0xnope' is not an address",
        "row 4, column country: 'USA': an ISO 3166-1 numeric code",
        f"row 5, column address: {env.lender_a.address} is already on row 2",
    ):
        assert expected in result.stderr, result.stderr
    assert env.nonce(env.issuer) == before


def test_whitelist_lenders(env, tmp_path):
    path = tmp_path / "lenders.csv"
    path.write_text(
        f"address,country,expires\n{env.lender_a.address},840,2031-01-01\n{env.lender_b.address},826,\n"
    )
    result = env.json("issuer", "whitelist", str(path))
    assert [x["address"] for x in result["whitelisted"]] == [
        env.lender_a.address,
        env.lender_b.address,
    ]
    identities = env.contract(
        "IdentityRegistry", env.manifest()["contracts"]["identity_registry"]["address"]
    )
    assert identities.functions.isVerified(env.lender_a.address).call()
    assert identities.functions.identityOf(env.lender_b.address).call()[0] == 826
    assert not identities.functions.isVerified(env.rando.address).call()


def test_subscribe_refuses_a_lender_who_is_not_whitelisted(env):
    before = env.nonce(env.rando)
    result = env.cli(
        "lender",
        "subscribe",
        "1",
        "100k",
        "--tranche",
        "senior",
        ok=False,
        GPUCREDIT_LENDER_KEY=env.rando.key.hex(),
    )
    assert (
        f"lender {env.rando.address} is not whitelisted on the identity registry" in result.stderr
    )
    assert "gpucredit issuer whitelist" in result.stderr
    assert env.nonce(env.rando) == before
    result = env.cli("lender", "subscribe", "1", "lots", ok=False)
    assert "amount 'lots'" in result.stderr
    result = env.cli("lender", "subscribe", "1", "100k", "--tranche", "mezzanine", ok=False)
    assert "note 1 has no tranche 'mezzanine'" in result.stderr


def test_subscribe_and_cancel(env):
    a = env.json("lender", "subscribe", "1", "1M", "--tranche", "senior")
    assert a["requested"] == a["pending"] == 1_000_000 * USD
    b_key = {"GPUCREDIT_LENDER_KEY": env.lender_b.key.hex()}
    b = env.json("lender", "subscribe", "1", "500,000", "--tranche", "GPUJ-27", **b_key)
    assert b["pending"] == 500_000 * USD
    env.json("lender", "subscribe", "1", "200k", "--tranche", "senior", **b_key)
    balance = env.usd.functions.balanceOf(env.lender_b.address).call()
    cancelled = env.json("lender", "cancel", "1", "--tranche", "senior", **b_key)
    assert cancelled["refunded"] == 200_000 * USD
    assert env.usd.functions.balanceOf(env.lender_b.address).call() == balance + 200_000 * USD
    result = env.cli("lender", "cancel", "1", "--tranche", "senior", ok=False, **b_key)
    assert "has no pending subscription in GPUS-27" in result.stderr
    position = env.json("lender", "position", "1")
    senior = position["tranches"][0]
    assert senior["pending_request"] == 1_000_000 * USD and senior["face"] == 0
    assert position["explanation"].startswith("no period closed yet")


def test_close_before_collateral_is_pledged_names_the_conditions_precedent(env):
    # the window closes only at its end: move the chain there first
    end = env.note()["subscription_end"]
    now = env.w3.eth.get_block("latest")["timestamp"]
    if now < end:
        env.anvil.rpc("evm_increaseTime", end - now + 1)
        env.anvil.rpc("evm_mine")
    result = env.cli("issuer", "close", "1", ok=False)
    assert (
        "drawdown failed: ConditionsPrecedentNotMet(collateralValue=0, requiredValue="
        in result.stderr
    )
    assert "pledges more GPUs" in result.stderr
    senior, junior = env.tranche("GPUS-27"), env.tranche("GPUJ-27")
    assert senior.functions.state().call() == 1  # closed and fulfilled, not drawn
    assert senior.functions.pendingDepositRequest(0, env.lender_a.address).call() == 0
    assert tuple(senior.functions.fillOf(env.lender_a.address).call()) == (1_000_000 * USD, 0)
    assert tuple(junior.functions.fillOf(env.lender_b.address).call()) == (500_000 * USD, 0)


@pytest.fixture(scope="module")
def fleet_csv(env, tmp_path_factory) -> Path:
    make_fleet = _load_make_fleet()
    now = env.w3.eth.get_block("latest")["timestamp"]
    return make_fleet.write_fleet(tmp_path_factory.mktemp("fleet"), 1_000, in_service=now - DAY)


def test_register_reports_every_bad_row(env, fleet_csv, tmp_path):
    rows = list(csv.reader(fleet_csv.open()))
    rows[4][4] = "abc"  # line 5: cost
    rows[6][2] = "NVIDIA A100 80GB"  # line 7: another model
    rows[8][6] = "attestations/missing.json"  # line 9
    rows[10][1] = rows[1][1]  # line 11: serial of line 2
    shutil.copytree(fleet_csv.parent / "attestations", tmp_path / "attestations")
    bad = tmp_path / "fleet.csv"
    with bad.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    before = env.nonce(env.operator)
    result = env.cli("operator", "register", str(bad), "--note", "1", ok=False)
    for expected in (
        "4 problem(s)",
        "row 5, column cost: 'abc'",
        "row 7, column model: 'NVIDIA A100 80GB' differs from the batch's model",
        "row 9, column attestation: cannot read attestations/missing.json",
        "row 11, column serial: GPU NVIDIA H100-000000 is already on row 2",
    ):
        assert expected in result.stderr, result.stderr
    assert env.nonce(env.operator) == before


def test_register_attest_and_pledge_1000_gpus(env, fleet_csv, tmp_path):
    batch_path = tmp_path / "batch.json"
    result = env.json(
        "operator", "register", str(fleet_csv), "--note", "1", "--out", str(batch_path)
    )
    assert result["batch_id"] == 1 and result["gpus"] == 1_000
    assert result["total_cost"] == 1_000 * 25_000 * USD
    registry = env.contract(
        "CollateralRegistry", env.manifest()["contracts"]["collateral_registry"]["address"]
    )
    header = registry.functions.batchInfo(1).call()
    assert "0x" + bytes(header[0]).hex() == result["root"]
    # count, every key registered (two chunks of 500), Registered, the issuer
    assert header[2] == 1_000 and header[3] == 1_000
    assert header[4] == 2 and header[5] == env.issuer.address
    assert result["transactions"] == 3  # the header and two chunks of keys
    # a re-run finds the batch on chain and skips every chunk
    again = env.json(
        "operator", "register", str(fleet_csv), "--note", "1", "--out", str(batch_path)
    )
    assert again["batch_id"] == 1 and again["transactions"] == 0
    saved = json.loads(batch_path.read_text())
    assert len(saved["gpus"]) == 1_000 and saved["root"] == result["root"]
    # the root is the Merkle root of the CSV's leaves, attestation files hashed in
    from gpucredit.cli_inputs import read_fleet

    leaves = read_fleet(fleet_csv).leaves
    assert MerkleTree(leaves).root == bytes(header[0])
    assert registry.functions.verifyGpu(1, leaves[7].as_tuple(), MerkleTree(leaves).proof(7)).call()

    result = env.cli("operator", "pledge", "1", "--note", "1", ok=False)
    assert "batch 1 is not Attested yet" in result.stderr
    result = env.cli(
        "attestor", "attest", "1", ok=False, GPUCREDIT_ATTESTOR_KEY=env.operator.key.hex()
    )
    denied = f"AccessControlUnauthorizedAccount(account={env.operator.address}, "
    assert denied + "neededRole=ATTESTOR_ROLE)" in result.stderr
    attested = env.json("attestor", "attest", "1", "--batch-file", str(batch_path))
    assert attested["attestation_hash"] == saved["registration"]["attestation_hash"]
    pledged = env.json("operator", "pledge", "1", "--note", "1")
    # pledged, counted once the 3-day challenge window after the attestation has passed
    assert pledged["note_collateral_value"] == registry.functions.collateralValue(1).call() == 0
    env.anvil.rpc("evm_increaseTime", 3 * 86_400 + 1)
    env.anvil.rpc("evm_mine")
    assert registry.functions.collateralValue(1).call() > 0


def test_close_fulfils_draws_down_and_lenders_claim(env):
    result = env.json("issuer", "close", "1")
    assert result["tranches"]["GPUS-27"]["drawn"] and result["tranches"]["GPUJ-27"]["drawn"]
    assert result["tranches"]["GPUS-27"]["state"] == "Active"
    assert result["tranches"]["GPUS-27"]["principal"] == 1_000_000 * USD
    again = env.json("issuer", "close", "1")  # idempotent
    assert again["tranches"]["GPUS-27"] == {
        "closed": False,
        "fulfilled": 0,
        "drawn": False,
        "state": "Active",
        "principal": 1_000_000 * USD,
    }
    claims = env.json("lender", "claim-notes", "1")
    assert claims["claims"] == [{"tranche": "GPUS-27", "shares": 1_000_000 * USD, "refunded": 0}]
    b = env.json("lender", "claim-notes", "1", GPUCREDIT_LENDER_KEY=env.lender_b.key.hex())
    assert b["claims"] == [{"tranche": "GPUJ-27", "shares": 500_000 * USD, "refunded": 0}]
    assert (
        env.tranche("GPUS-27").functions.balanceOf(env.lender_a.address).call() == 1_000_000 * USD
    )
    nothing = env.cli("lender", "claim-notes", "1")
    assert "nothing to claim notes" in nothing.stdout


def test_push_telemetry_to_an_oracle_node(env, tmp_path):
    node_account = Account.from_key(env.signer_keys[0])
    env.anvil.fund(node_account.address)
    workdir = tmp_path / "node"
    workdir.mkdir()
    oracle_address = env.manifest()["contracts"]["telemetry_oracle"]["address"]
    node = OracleNode(
        "node-a", node_account, workdir, node_env(env.anvil, oracle_address, node_account, workdir)
    )
    node.start()
    try:
        now = int(time.time())
        body = {
            "batch_id": "0x" + "ab" * 32,
            "samples": [
                {
                    "ts": now - 7200,
                    "interval_seconds": 3600,
                    "gpu_count": 1000,
                    "gpu_hours_available": "1000",
                    "gpu_hours_used": "915.5",
                    "uptime_seconds": 3600,
                }
            ],
            "revenue": [
                {
                    "ts": now - 3600,
                    "invoice_id": "INV-1",
                    "amount": 125_000 * USD,
                    "customer": "Acme AI",
                    "contract_type": "take_or_pay",
                }
            ],
        }
        path = tmp_path / "telemetry.json"
        path.write_text(json.dumps(body))
        pushed = env.json(
            "operator", "push-telemetry", str(path), "--note", "1", "--node", node.url
        )
        assert [(x["status"], x["code"]) for x in pushed["results"]] == [(201, "accepted")]
        current = node.get("/v1/fleets/1/periods/current").json()
        assert json.dumps(current).count("915") or current  # the node holds the samples
        # the same batch again (from stdin): the node answers 409 batch_replayed, not an error
        again = runner.invoke(
            app,
            [
                "--rpc-url",
                env.anvil.url,
                "--manifest",
                str(env.manifest_path),
                "operator",
                "push-telemetry",
                "-",
                "--note",
                "1",
                "--node",
                node.url,
                "--json",
            ],
            input=json.dumps(body),
            env=env.keys(),
        )
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["results"][0]["code"] == "batch_replayed"
        # a batch id reused for other content is rejected by the node: exit 1
        body["samples"][0]["gpu_hours_used"] = "999"
        path.write_text(json.dumps(body))
        rejected = env.cli(
            "operator", "push-telemetry", str(path), "--note", "1", "--node", node.url, ok=False
        )
        assert "batch_id_reused" in rejected.stdout
        # the wrong key is caught before anything is sent
        wrong = env.cli(
            "operator",
            "push-telemetry",
            str(path),
            "--note",
            "1",
            "--node",
            node.url,
            ok=False,
            GPUCREDIT_OPERATOR_KEY=env.lender_a.key.hex(),
        )
        assert f"this key ({env.lender_a.address}) is not fleet 1's operator" in wrong.stderr
        path.write_text("{not json")
        bad = env.cli(
            "operator", "push-telemetry", str(path), "--note", "1", "--node", node.url, ok=False
        )
        assert "not JSON" in bad.stderr
    finally:
        node.stop()


def test_pay_revenue_close_a_period_and_explain_the_rate(env):
    paid = env.json("operator", "pay-revenue", "--note", "1", "250k")
    assert paid["paid"] == paid["period_revenue_cash"] == 250_000 * USD
    # period 0 ends; two signers report 50 % utilization; anyone closes the period
    note = env.note()
    start, end = note["fleet"]["genesis"], note["fleet"]["genesis"] + note["fleet"]["period_length"]
    now = env.w3.eth.get_block("latest")["timestamp"]
    env.anvil.rpc("evm_increaseTime", end - now + 10)
    env.anvil.rpc("evm_mine")
    oracle = env.contract(
        "TelemetryOracle", env.manifest()["contracts"]["telemetry_oracle"]["address"]
    )
    signed = []
    for key in env.signer_keys[:3]:
        signature = sign_observation(
            key, CHAIN_ID, oracle.address, 1, 0, start, end, 5_000, 9_950, 250_000 * USD
        )
        signed.append((Account.from_key(key).address, (5_000, 9_950, 250_000 * USD, signature)))
    admin = env.w3.eth.accounts[0]
    env.anvil.transact(oracle.functions.submitReport(1, 0, order_by_signer(signed)), admin)
    env.anvil.transact(env.servicer().functions.closePeriod(), admin)

    position = env.json("lender", "position", "1")
    senior = position["tranches"][0]
    assert senior["rate_bps"] == 430 + 450 + 300
    assert senior["step_bps"] == 300
    why = position["why"]
    assert why["last_step"] == {
        "period": 0,
        "old_step_bps": 0,
        "new_step_bps": 300,
        "block": why["last_step"]["block"],
    }
    assert why["last_period"]["utilization_bps"] == 5_000
    assert "low utilization" in why["last_period"]["breaches"]
    assert "coupon step +0 -> +300 bps at period 0" in position["explanation"]
    assert senior["principal_claimable"] == 100_000 * USD  # 10 % instalment paid
    assert senior["coupon_claimable"] > 0
    table = env.cli("lender", "position", "1")
    assert "why: period 0 closed (reported): utilization 50.00%" in table.stdout


def test_claim_coupons_and_redeem(env):
    usd_before = env.usd.functions.balanceOf(env.lender_a.address).call()
    claimable = env.tranche("GPUS-27").functions.couponClaimable(env.lender_a.address).call()
    coupons = env.json("lender", "claim-coupons", "1")
    assert coupons["claims"][0]["tranche"] == "GPUS-27"
    assert coupons["claims"][0]["amount"] == claimable > 0
    redeemed = env.json("lender", "redeem", "1", "--tranche", "senior")
    assert redeemed["claims"][0]["amount"] == 100_000 * USD
    assert (
        env.usd.functions.balanceOf(env.lender_a.address).call()
        == usd_before + claimable + 100_000 * USD
    )
    position = env.json("lender", "position", "1")
    assert position["tranches"][0]["coupon_claimed"] == claimable
    assert position["tranches"][0]["principal_redeemed"] == 100_000 * USD
    assert position["tranches"][0]["principal_outstanding"] == 900_000 * USD
    nothing = env.cli("lender", "redeem", "1")
    assert "nothing to redeem" in nothing.stdout


def test_top_up_with_cash(env):
    result = env.cli("operator", "top-up", "--note", "1", ok=False)
    assert "give exactly one of --batch ID or --cash AMOUNT" in result.stderr
    topped = env.json("operator", "top-up", "--note", "1", "--cash", "10k")
    assert topped["collateral_after"] == topped["collateral_before"] + 10_000 * USD
    assert topped["required_collateral"] == 0 and not topped["cured"]
    assert env.servicer().functions.collateral().call()[1] == 10_000 * USD


def test_status_and_deployment(env):
    status = env.json("issuer", "status", "1")
    assert [t["state"] for t in status["tranches"]] == ["Active", "Active"]
    assert status["servicer"]["next_period_to_close"] == 1
    assert status["servicer"]["cash_collateral"] == 10_000 * USD
    assert status["batches"] == [
        {"batch_id": 1, "count": 1_000, "status": "Pledged", "value": status["batches"][0]["value"]}
    ]
    assert status["fleet"]["operator"] == env.operator.address
    fleet = status["fleet"]
    assert (fleet["quorum"], fleet["signer_count"], fleet["fault_bound"]) == (3, 4, 1)
    table = env.cli("issuer", "status", "1")
    assert "GPUS-27" in table.stdout and "servicer (SPV account)" in table.stdout
    flat = " ".join(table.stdout.split())  # rich wraps long lines at spaces
    assert "quorum 3 of n = 4 signers, tolerating f = 1 lying or silent" in flat
    deployment = env.json("deployment")
    assert deployment["chain_id"] == CHAIN_ID
    assert set(deployment["notes"]) == {"1"}
    result = env.cli("issuer", "status", "7", ok=False)
    assert "note 7 is not in the manifest" in result.stderr


def test_keystore_keys_and_missing_manifest(env, tmp_path):
    keystore = tmp_path / "lender.json"
    keystore.write_text(
        json.dumps(Account.encrypt(env.lender_b.key, "s3cret-pass", iterations=2**10))
    )
    password = tmp_path / "password"
    password.write_text("s3cret-pass\n")
    position = env.json(
        "lender", "position", "1", "--keystore", str(keystore), "--password-file", str(password)
    )
    assert position["holder"] == env.lender_b.address
    assert position["tranches"][1]["face"] == 500_000 * USD
    password.write_text("wrong\n")
    result = env.cli(
        "lender",
        "position",
        "1",
        "--keystore",
        str(keystore),
        "--password-file",
        str(password),
        ok=False,
    )
    assert f"wrong password for keystore {keystore}" in result.stderr
    result = env.cli("lender", "position", "1", ok=False, GPUCREDIT_LENDER_KEY="")
    assert "set the environment variable GPUCREDIT_LENDER_KEY" in result.stderr
    missing = runner.invoke(
        app, ["--rpc-url", env.anvil.url, "--manifest", str(tmp_path / "none.json"), "deployment"]
    )
    assert missing.exit_code == 1
    assert "no deployment manifest at" in missing.stderr
