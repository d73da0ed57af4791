"""scripts/deploy.py on brownie's development network (anvil), and a term sheet
opened as a deal with gpucredit.protocol.open_deal on the deployed protocol.

The live-network path (a persistent anvil added with `brownie networks add`) is
tested by tests/service/test_deploy_live.py.
"""

import json

import pytest
from brownie import (
    CollateralRegistry,
    IdentityRegistry,
    MockStablecoin,
    TelemetryOracle,
    chain,
    web3,
)
from eth_utils import keccak, to_checksum_address

from gpucredit.deployment import Manifest, abi_hash, load_artifact
from gpucredit.protocol import DAY, USD, Core, open_deal
from gpucredit.termsheet import load_termsheet
from scripts.deploy import DeployConfig, DeployError, deploy

CONTAINERS = {
    "stablecoin": MockStablecoin,
    "identity_registry": IdentityRegistry,
    "collateral_registry": CollateralRegistry,
    "telemetry_oracle": TelemetryOracle,
}


@pytest.fixture(scope="module")
def deployments(tmp_path_factory):
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="module")
def signer_addresses(signers):
    return [s.address for s in signers[:4]]


@pytest.fixture(scope="module")
def first(admin, deployments, signer_addresses):
    """A first deployment with the development defaults plus four oracle signers (f = 1)."""
    config = DeployConfig.parse({"oracle_signers": ",".join(signer_addresses)})
    return deploy(config, admin, deployments)


def _path(deployments):
    return deployments / f"{chain.id}.json"


def test_development_deploy_writes_the_manifest(admin, deployments, first, signer_addresses):
    saved = Manifest.load(_path(deployments))
    assert saved == first
    assert saved.chain_id == chain.id
    assert saved.network == "development"
    assert saved.deployer == admin.address
    assert saved.compiler["solc"].startswith("0.8.37")
    assert saved.roles.oracle_signers == signer_addresses
    for key, container in CONTAINERS.items():
        record = saved.contracts[key]
        assert record.contract == container._name
        code = bytes(web3.eth.get_code(record.address))
        assert record.code_hash == "0x" + keccak(code).hex()
        assert record.abi_hash == abi_hash(load_artifact(container._name)["abi"])
        assert record.block == web3.eth.get_transaction_receipt(record.tx)["blockNumber"]
    assert saved.contracts["telemetry_oracle"].constructor_args == [admin.address]
    assert saved.block <= min(r.block for r in saved.contracts.values())


def test_development_defaults_wire_the_test_roles(accounts, first):
    issuer, operator, attestor, trustee = accounts[1:5]
    registry = CollateralRegistry.at(first.address("collateral_registry"))
    identities = IdentityRegistry.at(first.address("identity_registry"))
    oracle = TelemetryOracle.at(first.address("telemetry_oracle"))
    assert registry.hasRole(registry.ISSUER_ROLE(), issuer)
    assert registry.hasRole(registry.OPERATOR_ROLE(), operator)
    assert registry.hasRole(registry.ATTESTOR_ROLE(), attestor)
    assert not registry.hasRole(registry.ISSUER_ROLE(), operator)
    assert identities.hasRole(identities.AGENT_ROLE(), issuer)
    assert oracle.hasRole(oracle.FLEET_ADMIN_ROLE(), issuer)
    assert first.roles.issuers == [issuer.address]
    assert first.roles.trustee == trustee.address
    assert first.roles.admin == accounts[0].address


def test_rerun_reuses_everything_and_sends_nothing(admin, deployments, first):
    nonce = admin.nonce
    again = deploy(DeployConfig.parse({}), admin, deployments)
    assert admin.nonce == nonce
    for key, record in first.contracts.items():
        assert again.contracts[key] == record
    assert again.roles == first.roles  # kept from the manifest


def test_rerun_redeploys_only_what_has_no_code(admin, rando, deployments, first):
    """A manifest entry whose address holds no code (or other code) is deployed afresh."""
    data = json.loads(_path(deployments).read_text())
    data["contracts"]["identity_registry"]["address"] = rando.address  # an EOA: no code
    data["contracts"]["telemetry_oracle"]["code_hash"] = "0x" + "11" * 32  # other code
    _path(deployments).write_text(json.dumps(data))
    again = deploy(DeployConfig.parse({}), admin, deployments)
    assert again.address("identity_registry") not in (
        rando.address,
        first.address("identity_registry"),
    )
    assert again.address("telemetry_oracle") != first.address("telemetry_oracle")
    assert again.address("collateral_registry") == first.address("collateral_registry")
    assert again.address("stablecoin") == first.address("stablecoin")
    identities = IdentityRegistry.at(again.address("identity_registry"))
    assert identities.hasRole(identities.AGENT_ROLE(), first.roles.issuers[0])  # wired again


def test_renounce_hands_the_protocol_to_the_admin(accounts, tmp_path):
    deployer, new_admin = accounts[0], accounts[8]
    config = DeployConfig.parse({"admin": new_admin.address, "renounce_deployer": "true"})
    manifest = deploy(config, deployer, tmp_path)
    contracts = [
        CONTAINERS[key].at(manifest.address(key))
        for key in ("identity_registry", "collateral_registry", "telemetry_oracle")
    ]
    # two steps: the deployer stays admin until the new admin accepts after the delay
    for contract in contracts:
        assert contract.pendingDefaultAdmin()[0] == new_admin
        assert contract.defaultAdmin() == deployer
    deploy(config, deployer, tmp_path)  # a re-run does not restart the hand-over
    chain.sleep(contracts[0].defaultAdminDelay() + 1)
    for contract in contracts:
        contract.acceptDefaultAdminTransfer({"from": new_admin})
        admin_role = contract.DEFAULT_ADMIN_ROLE()
        assert contract.hasRole(admin_role, new_admin)
        assert not contract.hasRole(admin_role, deployer)
    oracle = TelemetryOracle.at(manifest.address("telemetry_oracle"))
    assert not oracle.hasRole(oracle.FLEET_ADMIN_ROLE(), deployer)
    # a later run that needs a new grant says why it cannot
    with pytest.raises(DeployError, match="is not its admin"):
        deploy(DeployConfig.parse({"operators": accounts[7].address}), deployer, tmp_path)


def test_config_errors_name_the_setting():
    with pytest.raises(DeployError, match="issuers: '0x12' is not an address"):
        DeployConfig.parse({"issuers": "0x12"})
    with pytest.raises(DeployError, match="unknown deploy setting"):
        DeployConfig.parse({"isuers": []})
    with pytest.raises(DeployError, match="renounce_deployer: expected true or false"):
        DeployConfig.parse({"renounce_deployer": "maybe"})
    config = DeployConfig.from_sources("stablecoin=mock", "trustee=" + "0x" + "ab" * 20, env={})
    assert config.stablecoin == "mock"
    assert config.trustee == to_checksum_address("0x" + "ab" * 20)


def test_termsheet_opens_a_deal_on_the_deployed_protocol(accounts, first, signers):
    """The example term sheet, through TermSheet.to_deal_spec, opened with brownie's
    open_deal: amortization, rates and covenants land on-chain as written."""
    admin, issuer, operator, _, trustee = accounts[:5]
    core = Core(
        usd=MockStablecoin.at(first.address("stablecoin")),
        identities=IdentityRegistry.at(first.address("identity_registry")),
        registry=CollateralRegistry.at(first.address("collateral_registry")),
        oracle=TelemetryOracle.at(first.address("telemetry_oracle")),
    )
    sheet = load_termsheet("examples/termsheet.yaml")
    start = chain[-1].timestamp
    spec = sheet.to_deal_spec(start)
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=accounts[8],
        signers=signers[:4],
        start=start,
    )
    senior, junior = deal.tranches
    terms = senior.terms()
    assert int(terms["maxSize"]) == 14_000_000 * USD
    assert int(terms["spreadBps"]) == 450 and int(terms["referenceRateBps"]) == 430
    assert int(terms["subscriptionEnd"]) == start + 14 * DAY == deal.genesis
    assert int(terms["maturity"]) == deal.genesis + 360 * DAY
    schedule = [tuple(int(x) for x in entry) for entry in senior.amortizationSchedule()]
    assert schedule == [
        (deal.genesis + 180 * DAY, 3_333),
        (deal.genesis + 270 * DAY, 6_666),
        (deal.genesis + 360 * DAY, 10_000),
    ]
    assert len(junior.amortizationSchedule()) == 0
    covenants = deal.servicer.covenantTerms()
    assert int(covenants["stepUpBps"]) == 300 and int(covenants["stepDownBps"]) == -200
    assert int(covenants["feePerPeriod"]) == 5_000 * USD
    assert int(core.oracle.fleet(deal.note_id)["quorum"]) == 3
