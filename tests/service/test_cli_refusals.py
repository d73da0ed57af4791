"""Every command issue 17 added refuses bad input with a clear error, exit code 1
and no transaction sent (the signer's nonce does not move).

One anvil (chain id 31337) with the protocol deployed by scripts/deploy.py and
one note created with the CLI, still in its subscription window, one lender
subscribed and one small batch registered and attested; a second anvil on a
chain id that is not a local one for the `dev` refusals.

Run with `python -m pytest -p no:pytest-brownie tests/service/test_cli_refusals.py`.
"""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_utils import keccak
from harness import Anvil, ensure_artifacts
from livenet import REPO
from test_cli_journey import Journey, _load_make_fleet

from gpucredit.cli import app


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    ensure_artifacts("NoteTranche", "Servicer", "CollateralRegistry", "TelemetryOracle")
    tmp = tmp_path_factory.mktemp("refusals")
    j = Journey(tmp)
    try:
        j.deploy()
        funded = j.json("dev", "fund", j.lenders[0].address, "1M", "--eth", "5")
        assert funded["minted"] == funded["balance"] == 10**12
        assert funded["eth"] == 5 * 10**18
        j.run("issuer", "create-note", str(REPO / "examples" / "termsheet.yaml"))
        csv = tmp / "lenders.csv"
        csv.write_text(f"address,country\n{j.lenders[0].address},840\n")
        j.run("issuer", "whitelist", str(csv), "--days", "30")
        j.run("lender", "subscribe", "1", "100k", **j.lender(0))
        now = j.status()["chain_time"]
        fleet = _load_make_fleet().write_fleet(tmp / "fleet", 4, in_service=now - 86_400)
        j.batch_file = tmp / "batch.json"
        j.run("operator", "register", str(fleet), "--note", "1", "--out", str(j.batch_file))
        j.run("attestor", "attest", "1", "--batch-file", str(j.batch_file))
        other = _load_make_fleet().write_fleet(
            tmp / "other", 4, prefix="OTHER-", in_service=now - 86_400
        )
        j.other_file = tmp / "other.json"
        j.run("operator", "register", str(other), "--note", "1", "--out", str(j.other_file))
        yield j
    finally:
        j.stop()


def _accounts(j: Journey) -> dict[str, object]:
    return {
        "issuer": j.issuer,
        "operator": j.operator,
        "attestor": j.attestor,
        "trustee": j.trustee,
        "lender": j.lenders[0],
        "keeper": j.lenders[2],
    }


NOBODY = "0x000000000000000000000000000000000000dEaD"
# (command, who signs, what the error says); `{lender0}` etc. are filled in
CASES = [
    (["lender", "transfer", "1", "0x1234", "1k"], "lender", "TO '0x1234' is not an address"),
    (["lender", "transfer", "1", NOBODY, "1k"], "lender", "holds 0.00 of GPUS-27"),
    (["lender", "transfer", "1", NOBODY, "0"], "lender", "amount must be above zero"),
    (["lender", "transfer", "1", "{lender0}", "1k"], "lender", "a transfer to yourself"),
    (["lender", "cancel-offering", "1"], "lender", "the issuer may still draw down until"),
    (["servicer", "release-collateral", "1"], "keeper", "is not repaid (GPUS-27 Subscription"),
    (["servicer", "withdraw", "1"], "keeper", "nothing to withdraw for"),
    (["servicer", "cure", "1"], "keeper", "has no top-up requirement outstanding"),
    (["servicer", "declare-default", "1"], "keeper", "no top-up requirement outstanding"),
    (["servicer", "record-defects", "1"], "keeper", "no new defect (0 proven, 0 recorded)"),
    (["servicer", "disburse", "1"], "keeper", "disburse the capital failed: NothingToWithdraw("),
    (["servicer", "close-period", "1"], "keeper", "close period 0 failed: "),
    (["servicer", "withdraw", "7"], "keeper", "7"),
    (["trustee", "step-in", "1"], "keeper@trustee", "is not note 1's trustee"),
    (["trustee", "step-in", "1"], "trustee", "step-in needs a declared default"),
    (["trustee", "finish-wind-down", "1"], "trustee", "only a stepped-in note is wound down"),
    (["trustee", "transfer", "1", "{trustee}"], "trustee", "is the trustee already"),
    (["trustee", "transfer", "1", "0x0"], "trustee", "NEW_TRUSTEE '0x0' is not an address"),
    (["fleet", "queue-operator", "1", "{operator}"], "issuer", "is fleet 1's operator already"),
    (["fleet", "queue-operator", "1", NOBODY], "keeper@issuer", "lacks FLEET_ADMIN_ROLE"),
    (["fleet", "execute-operator", "1"], "issuer", "has no operator change queued"),
    (["fleet", "cancel-signers", "1"], "issuer", "has no signers change queued"),
    (
        ["fleet", "queue-signers", "1", "--signer", NOBODY, "--quorum", "2"],
        "issuer",
        "quorum 2 of 1 signers breaks the rule",
    ),
    (["fleet", "mark-missed", "1"], "keeper", "period 0 is stale only after"),
    (["fleet", "show", "9"], None, "fleet 9 is not registered on the oracle"),
    (["attestor", "reject", "99"], "attestor", "batch 99 does not exist"),
    (["attestor", "attest", "99"], "attestor", "batch 99 does not exist"),
    (["operator", "pledge", "99", "--note", "1"], "operator", "batch 99 does not exist"),
    (
        ["challenge", "bad-leaf", "1", "--batch-file", "{batch}", "--index", "0"],
        "keeper",
        "agrees with batch 1's header",
    ),
    (
        ["challenge", "key-mismatch", "1", "--batch-file", "{batch}", "--index", "2"],
        "keeper",
        "registered the leaf's own key at index 2",
    ),
    (
        ["challenge", "bad-leaf", "1", "--batch-file", "{other}", "--index", "0"],
        "keeper",
        "no proof can be built from it",
    ),
    (
        ["challenge", "bad-leaf", "1", "--batch-file", "{batch}", "--index", "9"],
        "keeper",
        "--index 9: ",
    ),
    (["valuer", "set-model", "H200", "200", "500"], "issuer", "class 200 does not exist"),
    (["valuer", "set-model", "H200", "1", "12000"], "issuer", "HAIRCUT_BPS 12000 is not"),
    (["valuer", "set-class", "3", "100", "10001"], "issuer", "FLOOR_BPS 10001 is not"),
    (["valuer", "execute-model", "H200"], "issuer", "model H200: no change is queued"),
    (["valuer", "cancel-class", "1"], "issuer", "class 1: no change is queued"),
    (["kyc", "freeze", NOBODY], "issuer", "has no identity on the registry"),
    (["kyc", "unfreeze", "{lender0}"], "issuer", "is not frozen"),
    (["kyc", "remove", "nope"], "issuer", "ACCOUNT 'nope' is not an address"),
    (["issuer", "unpause", "1"], "issuer", "unpaused already"),
    (["dev", "advance", "soon"], None, "DURATION 'soon'"),
    (["dev", "next-period", "1", "--plus", "-5"], None, "--plus must not be negative"),
    (["dev", "fund", NOBODY, "lots"], None, "amount 'lots'"),
]


JSON_CHECKED = [["lender", "transfer"], ["servicer", "disburse"], ["challenge", "bad-leaf"]]


@pytest.mark.parametrize(
    "args,who,message", CASES, ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_refused_before_anything_is_sent(chain, args, who, message):
    j = chain
    fill = {
        "lender0": j.lenders[0].address,
        "trustee": j.trustee.address,
        "operator": j.operator.address,
        "batch": str(j.batch_file),
        "other": str(j.other_file),
    }
    argv = [a.format(**fill) if "{" in a else a for a in args]
    message = message.format(**fill)
    env = {}
    if who is not None:  # "keeper@trustee": the keeper's key where the trustee's belongs
        who, _, role = who.partition("@")
        account = _accounts(j)[who]
        role = role or {"keeper": "servicer"}.get(who, who)
        for variable in (
            f"GPUCREDIT_{role.upper()}_KEY",
            "GPUCREDIT_CHALLENGER_KEY",
            "GPUCREDIT_VALUER_KEY",
        ):
            env[variable] = account.key.hex()
    accounts = list(_accounts(j).values())
    nonces = [j.anvil.w3.eth.get_transaction_count(a.address) for a in accounts]
    result = j.run(*argv, ok=False, **env)
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert f"error: {message}" in text or message in text, text
    assert "Traceback" not in result.output
    assert [j.anvil.w3.eth.get_transaction_count(a.address) for a in accounts] == nonces
    if args[:2] in JSON_CHECKED:  # with --json the error is one JSON document on stdout
        as_json = j.run(*argv, "--json", ok=False, **env)
        error = json.loads(as_json.stdout)["error"]
        assert message in error["message"], error


@pytest.fixture(scope="module")
def remote_chain():
    """An anvil on a chain id no local development chain uses (a stand-in for a testnet)."""
    chain = Anvil("--chain-id", "11155111")
    try:
        yield chain
    finally:
        chain.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["dev", "fund", NOBODY, "1M"],
        ["dev", "next-period", "1"],
        ["dev", "advance", "1d"],
    ],
    ids=["fund", "next-period", "advance"],
)
def test_dev_refuses_a_chain_that_is_not_local(remote_chain, tmp_path, args):
    from typer.testing import CliRunner

    before = remote_chain.w3.eth.get_block("latest")["timestamp"]
    manifest = tmp_path / "none.json"  # never read: the refusal comes first
    result = CliRunner().invoke(
        app, ["--rpc-url", remote_chain.url, "--manifest", str(manifest), *args]
    )
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert "refusing: `gpucredit dev` runs on a local development chain only" in text
    assert "is chain 11155111" in text
    after = remote_chain.w3.eth.get_block("latest")["timestamp"]
    assert after - before < 60  # no time travel


def test_dev_refuses_a_local_chain_id_on_a_node_that_is_not_a_dev_node(tmp_path):
    """Chain id 31337 but an unknown node (a JSON-RPC stub) is refused too."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from typer.testing import CliRunner

    class Stub(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answers = {"eth_chainId": "0x7a69", "web3_clientVersion": "Geth/v1.14.0"}
            reply = {"jsonrpc": "2.0", "id": body["id"], "result": answers.get(body["method"])}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = CliRunner().invoke(app, ["--rpc-url", url, "dev", "advance", "1d"])
        assert result.exit_code == 1, result.output
        assert "served by 'Geth/v1.14.0'" in " ".join(result.stderr.split())
    finally:
        server.shutdown()


def _crafted_batch(j: Journey, tmp, prefix: str, *, late_header: bool, swap_key: bool):
    """A batch an operator lies in, registered with web3 (not through the CLI, which
    only registers honest batches): its header dates the batch a day after GPU 0
    went into service, or its key list swaps GPU 1's key for another serial's.
    Returns (batch id, batch file)."""
    from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, text_id

    w3 = j.anvil.w3
    manifest = json.loads(j.manifest.read_text())
    abi = json.loads((REPO / "build" / "contracts" / "CollateralRegistry.json").read_text())["abi"]
    registry = w3.eth.contract(
        address=manifest["contracts"]["collateral_registry"]["address"], abi=abi
    )
    now = j.status()["chain_time"]
    model = "NVIDIA H100 SXM5 80GB"
    gpus = [
        {
            "vendor": "NVIDIA",
            "serial": f"{prefix}{i}",
            "model": model,
            "site": "ashburn-1",
            "attestation_hash": "0x" + bytes([i + 1]).hex() * 32,
            "cost": 25_000 * 10**6,
            "in_service_at": now - 10 * 86_400,
        }
        for i in range(4)
    ]
    leaves = [
        GpuLeaf(
            i,
            gpu_key(g["vendor"], g["serial"]),
            text_id(model),
            text_id(g["site"]),
            bytes.fromhex(g["attestation_hash"][2:]),
            g["cost"],
            g["in_service_at"],
        )
        for i, g in enumerate(gpus)
    ]
    tree = MerkleTree(leaves)
    keys = [leaf.gpu_key for leaf in leaves]
    if swap_key:
        keys[1] = gpu_key("NVIDIA", f"{prefix}other")
    header_date = now - 9 * 86_400 if late_header else now - 10 * 86_400
    issuer = registry.functions.noteInfo(1).call()[0]
    registration = (
        issuer,
        tree.root,
        4,
        4 * 25_000 * 10**6,
        text_id(model),
        header_date,
        keccak(b"".join(leaf.attestation_hash for leaf in leaves)),
    )
    sender = {"from": j.operator.address}
    tx = registry.functions.registerBatch(registration).transact(sender)
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    batch_id = registry.events.BatchRegistered().process_receipt(receipt)[0]["args"]["batchId"]
    w3.eth.wait_for_transaction_receipt(
        registry.functions.registerGpus(batch_id, keys).transact(sender)
    )
    path = tmp / f"{prefix}batch.json"
    path.write_text(json.dumps({"batch_id": batch_id, "gpus": gpus}))
    return batch_id, path


def test_challenges_void_a_lying_batch(chain, tmp_path):
    j = chain
    key = {"GPUCREDIT_CHALLENGER_KEY": j.lenders[2].key.hex()}
    late, late_file = _crafted_batch(j, tmp_path, "LATE-", late_header=True, swap_key=False)
    args = ["--batch-file", str(late_file), "--index", "0"]
    voided = j.json("challenge", "bad-leaf", str(late), *args, **key)
    assert voided["batch_id"] == late and voided["reason"] == "in service before batch"
    again = j.run("challenge", "bad-leaf", str(late), *args, ok=False, **key)
    assert f"batch {late} is Voided: nothing to challenge" in again.stderr
    swapped, swap_file = _crafted_batch(j, tmp_path, "SWAP-", late_header=False, swap_key=True)
    args = ["--batch-file", str(swap_file), "--index", "1"]
    header_ok = j.run("challenge", "bad-leaf", str(swapped), *args, ok=False, **key)
    assert "agrees with batch" in header_ok.stderr
    voided = j.json("challenge", "key-mismatch", str(swapped), *args, **key)
    assert voided["batch_id"] == swapped and voided["reason"] == "key mismatch"


def test_role_commands_do_what_they_say(chain):
    """After the refusals (this test runs last on the module's chain): the same
    commands with good input change the chain's state as their output says."""
    j = chain
    lender = j.lenders[0].address
    keeper = j.lenders[2]
    # tables: amounts in stablecoin units, times in UTC
    funded = j.run("dev", "fund", keeper.address, "2.5k").stdout
    assert "minted" in funded and "2,500.00" in funded
    assert " UTC" in j.run("dev", "advance", "1h").stdout
    assert "collateral_value" in j.run("servicer", "show", "1").stdout
    assert j.operator.address in j.run("fleet", "show", "1").stdout
    # KYC agent: freeze and unfreeze
    assert j.json("kyc", "freeze", lender)["frozen"] is True
    assert j.json("kyc", "show", lender)["verified"] is False
    assert j.json("kyc", "unfreeze", lender)["frozen"] is False
    # guardian: pause and unpause
    assert j.json("issuer", "pause", "1")["paused"] is True
    j.run("issuer", "pause", "1", ok=False)  # paused already
    assert j.json("issuer", "unpause", "1")["paused"] is False
    # fleet admin: a queued operator change waits its delay, then applies
    queued = j.json("fleet", "queue-operator", "1", NOBODY)
    shown = j.json("fleet", "show", "1")
    assert shown["pending_operator"] == {"operator": NOBODY, "eta": queued["eta"]}
    early = j.run("fleet", "execute-operator", "1", ok=False)
    assert "executable from" in early.stderr
    signers = [Account.create().address for _ in range(4)]
    args = [a for s in signers for a in ("--signer", s)]
    j.json("fleet", "queue-signers", "1", *args, "--quorum", "3")
    assert j.json("fleet", "show", "1")["pending_signers"]["quorum"] == 3
    j.json("fleet", "cancel-signers", "1")
    assert j.json("fleet", "show", "1")["pending_signers"] is None
    j.json("dev", "advance", "2d")
    j.json("fleet", "execute-operator", "1")
    shown = j.json("fleet", "show", "1")
    assert shown["operator"] == NOBODY and shown["pending_operator"] is None
    # valuer (the deployer holds VALUATION_ROLE): a new model is queued, then cancelled
    valuer = {"GPUCREDIT_VALUER_KEY": j.deployer.key.hex()}
    model = j.json("valuer", "set-model", "NVIDIA B200", "1", "1000", **valuer)
    assert model["queued_until"] > 0
    j.json("valuer", "cancel-model", "NVIDIA B200", **valuer)
    j.run("valuer", "cancel-model", "NVIDIA B200", ok=False, **valuer)  # nothing queued now
    # attestor: reject the second (unattested) batch
    assert j.json("attestor", "reject", "2")["status"] == "Rejected"
    # trustee: hand the role over
    moved = j.json("trustee", "transfer", "1", keeper.address)
    assert moved["new"] == keeper.address
    assert j.json("servicer", "show", "1")["trustee"] == keeper.address
    # nobody drew down: after the drawdown window anyone cancels and lenders get refunds
    status = j.status()
    j.json(
        "dev",
        "advance",
        str(status["subscription"]["end"] + 30 * 86_400 - status["chain_time"] + 1),
    )
    cancelled = j.json("lender", "cancel-offering", "1", **j.lender(2))
    assert cancelled["cancelled"] == ["GPUS-27", "GPUJ-27"]
    refunded = j.json("lender", "cancel", "1", **j.lender(0))
    assert refunded["refunded"] == 100_000 * 10**6
