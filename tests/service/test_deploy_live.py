"""scripts/deploy.py on a *live* brownie network: a persistent anvil started as a
separate process and added with `brownie networks add`, exactly the path a
Sepolia or Holesky deployment takes (see docs/deploy.md).

Run with `python -m pytest -p no:pytest-brownie tests/service/test_deploy_live.py`.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from eth_account import Account
from eth_utils import keccak
from harness import ARTIFACTS, Anvil, ensure_artifacts
from livenet import ANVIL_KEY_0, REPO, LiveNetwork

from gpucredit.deployment import abi_hash

CHAIN_ID = 777_000 + os.getpid() % 1000
ROLES = {
    "AGENT_ROLE": "identity_registry",
    "ISSUER_ROLE": "collateral_registry",
    "OPERATOR_ROLE": "collateral_registry",
    "ATTESTOR_ROLE": "collateral_registry",
    "FLEET_ADMIN_ROLE": "telemetry_oracle",
}


def _abi(name: str):
    return json.loads((ARTIFACTS / f"{name}.json").read_text())["abi"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ensure_artifacts("CollateralRegistry", "IdentityRegistry", "TelemetryOracle", "MockStablecoin")
    chain = Anvil("--chain-id", str(CHAIN_ID))
    net = LiveNetwork(
        chain.url, CHAIN_ID, tmp_path_factory.mktemp("live"), f"gpucredit-live-{CHAIN_ID}"
    )
    yield chain, net
    chain.stop()
    # brownie keeps its own copies of live deployments under build/deployments
    shutil.rmtree(REPO / "build" / "deployments" / str(CHAIN_ID), ignore_errors=True)
    map_path = REPO / "build" / "deployments" / "map.json"
    if map_path.exists():
        data = json.loads(map_path.read_text())
        if data.pop(str(CHAIN_ID), None) is not None:
            map_path.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def roles(live):
    chain, _ = live
    accounts = chain.w3.eth.accounts
    signers = [Account.create().address for _ in range(3)]
    return {
        "issuers": [accounts[1]],
        "operators": [accounts[2]],
        "attestors": [accounts[3]],
        "trustee": accounts[4],
        "oracle_signers": signers,
        "stablecoin": "mock",
    }


@pytest.fixture(scope="module")
def first(live, roles, tmp_path_factory):
    """The first deployment, from a config file and a deployer key in the environment."""
    chain, net = live
    config = tmp_path_factory.mktemp("config") / "deploy.yaml"
    config.write_text(yaml.safe_dump(roles))
    result = net.deploy(str(config), GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, net.manifest()


def test_live_deploy_writes_the_manifest(live, roles, first):
    chain, net = live
    result, manifest = first
    deployer = Account.from_key(ANVIL_KEY_0).address
    assert manifest["chain_id"] == CHAIN_ID
    assert manifest["network"] == net.name
    assert manifest["deployer"] == deployer
    assert manifest["compiler"]["solc"].startswith("0.8.37")
    assert set(manifest["contracts"]) == {
        "stablecoin",
        "identity_registry",
        "collateral_registry",
        "telemetry_oracle",
        "note_tranche_implementation",
        "servicer_implementation",
        "note_factory",
    }
    for record in manifest["contracts"].values():
        code = bytes(chain.w3.eth.get_code(record["address"]))
        assert code, record
        assert record["code_hash"] == "0x" + keccak(code).hex()
        assert record["abi_hash"] == abi_hash(_abi(record["contract"]))
        assert record["deployer"] == deployer
        receipt = chain.w3.eth.get_transaction_receipt(record["tx"])
        assert receipt["blockNumber"] == record["block"]
        assert receipt["contractAddress"] == record["address"]
    assert manifest["contracts"]["collateral_registry"]["constructor_args"] == [deployer]
    assert manifest["contracts"]["stablecoin"]["constructor_args"] == ["Mock USD Coin", "mUSDC"]
    assert manifest["roles"]["issuers"] == roles["issuers"]
    assert manifest["roles"]["trustee"] == roles["trustee"]
    assert manifest["roles"]["oracle_signers"] == roles["oracle_signers"]
    # issuers are KYC agents and fleet admins by default
    assert manifest["roles"]["kyc_agents"] == roles["issuers"]
    assert manifest["roles"]["fleet_admins"] == roles["issuers"]
    assert "deployed MockStablecoin" in result.stdout


def test_live_deploy_grants_the_roles_on_chain(live, roles, first):
    chain, _ = live
    _, manifest = first
    who = {
        "AGENT_ROLE": roles["issuers"][0],
        "ISSUER_ROLE": roles["issuers"][0],
        "OPERATOR_ROLE": roles["operators"][0],
        "ATTESTOR_ROLE": roles["attestors"][0],
        "FLEET_ADMIN_ROLE": roles["issuers"][0],
    }
    for role, key in ROLES.items():
        record = manifest["contracts"][key]
        contract = chain.w3.eth.contract(address=record["address"], abi=_abi(record["contract"]))
        role_id = getattr(contract.functions, role)().call()
        assert contract.functions.hasRole(role_id, who[role]).call(), role
        assert not contract.functions.hasRole(role_id, chain.w3.eth.accounts[9]).call()


def test_live_rerun_reuses_the_deployment(live, first):
    """Second run: a brownie keystore account (same deployer), one more issuer. Nothing is
    deployed again; only the new issuer's four roles are granted."""
    chain, net = live
    _, manifest = first
    deployer = net.add_keystore("gpucredit-deployer", ANVIL_KEY_0, "correct horse battery")
    nonce = chain.w3.eth.get_transaction_count(deployer)
    extra = chain.w3.eth.accounts[5]
    issuers = ",".join([*manifest["roles"]["issuers"], extra])
    result = net.deploy(
        f"issuers={issuers}",
        GPUCREDIT_DEPLOYER_ACCOUNT="gpucredit-deployer",
        GPUCREDIT_DEPLOYER_PASSWORD="correct horse battery",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    again = net.manifest()
    for key, record in manifest["contracts"].items():
        assert again["contracts"][key]["address"] == record["address"]
        assert again["contracts"][key]["tx"] == record["tx"]
        assert f"{key}: reusing" in result.stdout
    assert "deployed at" not in result.stdout  # brownie prints "X deployed at: 0x..."
    assert again["roles"]["issuers"] == [*manifest["roles"]["issuers"], extra]
    assert again["roles"]["operators"] == manifest["roles"]["operators"]  # kept from the manifest
    assert again["roles"]["oracle_signers"] == manifest["roles"]["oracle_signers"]
    # the new issuer's ISSUER_ROLE on the registry, KYC agent on the identity
    # registry and fleet admin on the oracle; NOTE_FACTORY_ROLE stays the factory's
    assert chain.w3.eth.get_transaction_count(deployer) == nonce + 3
    assert "roles: 3 granted" in result.stdout


def test_live_deploy_refuses_a_mock_stablecoin_unasked(live, tmp_path):
    """A chain that is not local needs a real stablecoin address (or stablecoin=mock)."""
    _, net = live
    result = net.deploy(f"deployments_dir={tmp_path}", GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
    assert result.returncode != 0
    assert f"chain {CHAIN_ID} is not a local chain: set stablecoin=<address>" in result.stderr
    assert not (tmp_path / f"{CHAIN_ID}.json").exists()


def test_live_deploy_needs_a_deployer_key(live, tmp_path):
    _, net = live
    result = net.deploy(f"deployments_dir={tmp_path}", "stablecoin=mock")
    assert result.returncode != 0
    assert "no deployer key on a live network" in result.stderr
    assert not (tmp_path / f"{CHAIN_ID}.json").exists()


def test_live_deploy_rejects_a_bad_setting(live, tmp_path):
    _, net = live
    result = net.deploy("issuers=0x1234", GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
    assert result.returncode != 0
    assert "issuers: '0x1234' is not an address" in result.stderr
    result = net.deploy("isuers=0x1234", GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
    assert "unknown deploy setting(s) isuers" in result.stderr
