"""Deploy the shared gpucredit protocol to any brownie network and write its manifest.

    python -m gpucredit.run scripts/deploy.py main [CONFIG.yaml] [key=value ...] --network <network>
    python -m gpucredit.run scripts/deploy.py                # a private anvil

Deploys (or reuses) the stablecoin (a mock only on local chains or when
asked), the identity registry, the collateral registry and the telemetry
oracle; grants the roles to the configured addresses; and writes
`deployments/<chain-id>.json` (see gpucredit/deployment.py and docs/deploy.md).
Re-running against a chain that has a manifest reuses every contract whose
code is still at its address (same code hash) and only deploys what is
missing; role grants are idempotent.

Configuration, later sources winning: a YAML file named by
`GPUCREDIT_DEPLOY_CONFIG`, then a YAML file given as a script argument, then
`GPUCREDIT_DEPLOY_<KEY>` environment variables, then `key=value` arguments.
Keys: admin, issuers, operators, attestors, kyc_agents, fleet_admins,
valuers, trustee, oracle_signers (lists: comma-separated), stablecoin
(`auto`, `mock` or an address), renounce_deployer (true/false),
deployments_dir.

The deployer: `GPUCREDIT_DEPLOYER_KEY` (hex private key), or
`GPUCREDIT_DEPLOYER_ACCOUNT` (a brownie keystore id, password from
`GPUCREDIT_DEPLOYER_PASSWORD` / `GPUCREDIT_DEPLOYER_PASSWORD_FILE` or a
prompt); on a development network `accounts[0]` by default.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from brownie import accounts, chain, network, project, web3
from eth_utils import keccak

from gpucredit import yamltext
from gpucredit.deployment import (
    CORE_CONTRACTS,
    ContractRecord,
    GpucreditError,
    Manifest,
    RoleSet,
    abi_hash,
    bytecode_hash,
    deployments_dir,
    load_artifact,
    manifest_path,
)

LOCAL_CHAIN_IDS = {31337, 1337}
LIST_KEYS = (
    "issuers",
    "operators",
    "attestors",
    "kyc_agents",
    "fleet_admins",
    "valuers",
    "oracle_signers",
)
ADDRESS_KEYS = ("admin", "trustee")
OTHER_KEYS = ("stablecoin", "renounce_deployer", "deployments_dir")
ALL_KEYS = (*LIST_KEYS, *ADDRESS_KEYS, *OTHER_KEYS)
# Registry/identity/oracle role of each configured list.
GRANTS = (
    ("collateral_registry", "ISSUER_ROLE", "issuers"),
    ("collateral_registry", "OPERATOR_ROLE", "operators"),
    ("collateral_registry", "ATTESTOR_ROLE", "attestors"),
    ("collateral_registry", "VALUATION_ROLE", "valuers"),
    ("identity_registry", "AGENT_ROLE", "kyc_agents"),
    ("telemetry_oracle", "FLEET_ADMIN_ROLE", "fleet_admins"),
)
ADMIN_ROLE = "0x" + "00" * 32


class DeployError(GpucreditError):
    """A configuration or chain state the deployment cannot go on with."""


@dataclass
class DeployConfig:
    """Who gets which role and which stablecoin to use (addresses checksummed)."""

    admin: str | None = None
    issuers: list[str] | None = None
    operators: list[str] | None = None
    attestors: list[str] | None = None
    kyc_agents: list[str] | None = None
    fleet_admins: list[str] | None = None
    valuers: list[str] | None = None
    trustee: str | None = None
    oracle_signers: list[str] | None = None
    stablecoin: str = "auto"
    renounce_deployer: bool = False
    deployments_dir: Path | None = None

    @classmethod
    def from_sources(cls, *args: str, env: dict[str, str] | None = None) -> DeployConfig:
        """Merges GPUCREDIT_DEPLOY_CONFIG, YAML args, GPUCREDIT_DEPLOY_* and key=value args."""
        env = dict(os.environ) if env is None else env
        raw: dict[str, Any] = {}
        files = [env["GPUCREDIT_DEPLOY_CONFIG"]] if env.get("GPUCREDIT_DEPLOY_CONFIG") else []
        files += [a for a in args if "=" not in a]
        for file in files:
            raw.update(_read_yaml(Path(file)))
        for key in ALL_KEYS:
            value = env.get(f"GPUCREDIT_DEPLOY_{key.upper()}")
            if value:
                raw[key] = value
        for arg in args:
            if "=" in arg:
                key, _, value = arg.partition("=")
                raw[key.strip()] = value.strip()
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> DeployConfig:
        unknown = sorted(set(raw) - set(ALL_KEYS))
        if unknown:
            raise DeployError(
                f"unknown deploy setting(s) {', '.join(unknown)}; known: {', '.join(ALL_KEYS)}"
            )
        config = cls()
        for key in LIST_KEYS:
            if key in raw and raw[key] is not None:
                setattr(config, key, _addresses(key, raw[key]))
        for key in ADDRESS_KEYS:
            if raw.get(key):
                setattr(config, key, _address(key, raw[key]))
        stablecoin = str(raw.get("stablecoin") or "auto").strip()
        if stablecoin.lower() in ("auto", "mock"):
            config.stablecoin = stablecoin.lower()
        else:
            config.stablecoin = _address("stablecoin", stablecoin)
        renounce = raw.get("renounce_deployer", False)
        if isinstance(renounce, str):
            if renounce.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise DeployError(f"renounce_deployer: expected true or false, got {renounce!r}")
            renounce = renounce.lower() in ("true", "yes", "1")
        config.renounce_deployer = bool(renounce)
        if raw.get("deployments_dir"):
            config.deployments_dir = Path(str(raw["deployments_dir"]))
        return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yamltext.load(path.read_text())  # unquoted 0x addresses stay addresses
    except FileNotFoundError:
        raise DeployError(f"deploy config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise DeployError(f"deploy config {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeployError(f"deploy config {path} must be a mapping of settings")
    return data


def _address(key: str, value: Any) -> str:
    try:
        return yamltext.address(value)
    except ValueError as exc:
        raise DeployError(f"{key}: {exc}") from None


def _addresses(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:  # one address written without a list
        items = [value]
    result = []
    for item in items:
        if str(item).strip():
            address = _address(key, item)
            if address not in result:
                result.append(address)
    return result


def is_development() -> bool:
    return network.show_active() is not None and "cmd" in _active_network()


def _active_network() -> dict[str, Any]:
    from brownie._config import CONFIG

    return CONFIG.active_network


def deployer_account(env: dict[str, str] | None = None) -> Any:
    """The account that sends the deployment transactions (see module docstring)."""
    env = dict(os.environ) if env is None else env
    key = env.get("GPUCREDIT_DEPLOYER_KEY")
    account_id = env.get("GPUCREDIT_DEPLOYER_ACCOUNT")
    if key and account_id:
        raise DeployError("set GPUCREDIT_DEPLOYER_KEY or GPUCREDIT_DEPLOYER_ACCOUNT, not both")
    if key:
        try:
            return accounts.add(key.strip())
        except Exception as exc:  # noqa: BLE001 - eth-account's errors vary by input
            raise DeployError(f"GPUCREDIT_DEPLOYER_KEY is not a private key: {exc}") from None
    if account_id:
        password = env.get("GPUCREDIT_DEPLOYER_PASSWORD")
        if password is None and env.get("GPUCREDIT_DEPLOYER_PASSWORD_FILE"):
            password = Path(env["GPUCREDIT_DEPLOYER_PASSWORD_FILE"]).read_text().strip()
        return accounts.load(account_id, password=password)
    if is_development():
        return accounts[0]
    raise DeployError(
        "no deployer key on a live network: set GPUCREDIT_DEPLOYER_KEY, or "
        "GPUCREDIT_DEPLOYER_ACCOUNT to a brownie account (`brownie accounts new <id>`)"
    )


def development_defaults(config: DeployConfig) -> DeployConfig:
    """On a development chain, the unset roles go to brownie's accounts 1-4
    (issuer, operator, attestor, trustee), as in the test suite."""
    if not is_development():
        return config
    issuer, operator, attestor, trustee = (accounts[i].address for i in range(1, 5))
    config.issuers = config.issuers if config.issuers is not None else [issuer]
    config.operators = config.operators if config.operators is not None else [operator]
    config.attestors = config.attestors if config.attestors is not None else [attestor]
    config.trustee = config.trustee or trustee
    return config


def _code_hash(address: str) -> str | None:
    code = bytes(web3.eth.get_code(address))
    return "0x" + keccak(code).hex() if code else None


def _usable(record: ContractRecord) -> bool:
    """Code is at the address and, when recorded, it is the same code."""
    current = _code_hash(record.address)
    if current is None:
        return False
    return record.code_hash is None or record.code_hash == current


def _deploy(name: str, args: list[Any], deployer: Any) -> ContractRecord:
    loaded = project.get_loaded_projects()[0]
    container = getattr(loaded, name)
    # hashes of the artifact as written by `brownie compile` (brownie edits its in-memory ABI)
    artifact = load_artifact(name, Path(loaded._path) / "build" / "contracts")
    contract = container.deploy(*args, {"from": deployer})
    tx = contract.tx
    return ContractRecord(
        contract=name,
        address=contract.address,
        tx=tx.txid if tx is not None else None,
        block=tx.block_number if tx is not None else web3.eth.block_number,
        deployer=deployer.address,
        constructor_args=[str(a) if not isinstance(a, int | bool) else a for a in args],
        abi_hash=abi_hash(artifact["abi"]),
        bytecode_hash=bytecode_hash(artifact["bytecode"]),
        code_hash=_code_hash(contract.address),
    )


def _constructor_args(key: str, deployer: Any, manifest: Manifest | None = None) -> list[Any]:
    if key == "stablecoin":
        return ["Mock USD Coin", "mUSDC"]
    if manifest is not None and key in _SHARED_ARGS:
        return [manifest.contracts[k].address for k in _SHARED_ARGS[key]]
    return [deployer.address]


# The implementations and the factory are built on the shared contracts.
_SHARED_ARGS = {
    "note_tranche_implementation": ("stablecoin", "identity_registry", "collateral_registry"),
    "servicer_implementation": ("stablecoin", "collateral_registry", "telemetry_oracle"),
    "note_factory": (
        "note_tranche_implementation",
        "servicer_implementation",
        "stablecoin",
        "identity_registry",
        "collateral_registry",
        "telemetry_oracle",
    ),
}


def _contract(record: ContractRecord) -> Any:
    container = getattr(project.get_loaded_projects()[0], record.contract)
    return container.at(record.address, persist=False)


def _compiler_info() -> dict[str, Any]:
    container = project.get_loaded_projects()[0].CollateralRegistry
    build = container._build
    compiler = dict(build.get("compiler", {}))
    return {
        "solc": compiler.get("version"),
        "optimizer": compiler.get("optimizer"),
        "evm_version": compiler.get("evm_version"),
    }


def _stablecoin(
    manifest: Manifest, config: DeployConfig, chain_id: int, deployer: Any, save: Any
) -> None:
    existing = manifest.contracts.get("stablecoin")
    if config.stablecoin not in ("auto", "mock"):
        address = config.stablecoin
        if _code_hash(address) is None:
            raise DeployError(f"stablecoin {address}: no contract code at that address")
        decimals = _contract(ContractRecord(contract="MockStablecoin", address=address)).decimals()
        print(f"stablecoin: using {address} (external, {decimals} decimals)")
        manifest.contracts["stablecoin"] = ContractRecord(
            contract="IERC20Metadata", address=address, external=True
        )
        save()
        return
    if existing is not None and _usable(existing):
        if config.stablecoin == "mock" and existing.external:
            pass  # asked for a mock explicitly: deploy one below
        else:
            print(f"stablecoin: reusing {existing.contract} at {existing.address}")
            return
    if config.stablecoin == "auto" and not (is_development() or chain_id in LOCAL_CHAIN_IDS):
        raise DeployError(
            f"chain {chain_id} is not a local chain: set stablecoin=<address> (e.g. the "
            "network's USDC) or stablecoin=mock to deploy the 6-decimal mock"
        )
    record = _deploy("MockStablecoin", _constructor_args("stablecoin", deployer), deployer)
    print(f"stablecoin: deployed MockStablecoin at {record.address}")
    manifest.contracts["stablecoin"] = record
    save()


def _grant(contract: Any, role_name: str, role: str, who: str, deployer: Any) -> bool:
    if contract.hasRole(role, who):
        return False
    if not contract.hasRole(ADMIN_ROLE, deployer.address):
        raise DeployError(
            f"{role_name} must be granted to {who} on {contract.address}, but the deployer "
            f"{deployer.address} is not its admin (did an earlier run renounce it?)"
        )
    contract.grantRole(role, who, {"from": deployer})
    return True


def _hand_over_admin(contract: Any, admin: str, deployer: Any) -> bool:
    """Starts the two-step transfer of DEFAULT_ADMIN_ROLE to `admin`.

    The contracts allow one default admin, moved in two steps
    (AccessControlDefaultAdminRules): `admin` takes over by calling
    `acceptDefaultAdminTransfer()` once `defaultAdminDelay()` has passed, and
    the deployer then loses the role. True when a transfer was started.
    """
    current = contract.defaultAdmin()
    if current == admin or contract.pendingDefaultAdmin()[0] == admin:
        return False
    if current != deployer.address:
        raise DeployError(
            f"the admin of {contract.address} must move to {admin}, but the deployer "
            f"{deployer.address} is not its admin ({current} is)"
        )
    contract.beginDefaultAdminTransfer(admin, {"from": deployer})
    return True


def _renounce(manifest: Manifest, deployer: Any, wanted: dict[str, list[str]]) -> None:
    """The deployer gives up the roles its constructor calls gave it.

    Its admin role goes when the new admin accepts the hand-over.
    """
    constructor_roles = {
        "identity_registry": [("AGENT_ROLE", "kyc_agents")],
        "collateral_registry": [("VALUATION_ROLE", "valuers")],
        "telemetry_oracle": [("FLEET_ADMIN_ROLE", "fleet_admins")],
    }
    for key, roles in constructor_roles.items():
        contract = _contract(manifest.contracts[key])
        for role_name, list_key in roles:
            role = getattr(contract, role_name)()
            if deployer.address not in wanted[list_key] and contract.hasRole(role, deployer):
                contract.renounceRole(role, deployer, {"from": deployer})


def wire_roles(manifest: Manifest, config: DeployConfig, deployer: Any) -> RoleSet:
    """Grants every configured role (skipping those already held); returns the role set."""
    previous = manifest.roles
    issuers = config.issuers if config.issuers is not None else previous.issuers
    wanted = {
        "issuers": issuers,
        "operators": config.operators if config.operators is not None else previous.operators,
        "attestors": config.attestors if config.attestors is not None else previous.attestors,
        "valuers": config.valuers if config.valuers is not None else previous.valuers,
        # issuers whitelist their lenders and register their notes' fleets by default
        "kyc_agents": config.kyc_agents
        if config.kyc_agents is not None
        else sorted(set(previous.kyc_agents) | set(issuers)),
        "fleet_admins": config.fleet_admins
        if config.fleet_admins is not None
        else sorted(set(previous.fleet_admins) | set(issuers)),
    }
    granted = 0
    # Only the note factory opens and binds notes in the registry.
    registry = _contract(manifest.contracts["collateral_registry"])
    factory = manifest.contracts["note_factory"].address
    role = registry.NOTE_FACTORY_ROLE()
    granted += _grant(registry, "NOTE_FACTORY_ROLE", role, factory, deployer)
    for key, role_name, list_key in GRANTS:
        contract = _contract(manifest.contracts[key])
        role = getattr(contract, role_name)()
        for who in wanted[list_key]:
            granted += _grant(contract, role_name, role, who, deployer)
    admin = config.admin or previous.admin or deployer.address
    handed_over = 0
    for key in ("identity_registry", "collateral_registry", "telemetry_oracle"):
        contract = _contract(manifest.contracts[key])
        handed_over += _hand_over_admin(contract, admin, deployer)
    if handed_over:
        print(
            f"admin hand-over to {admin} started on {handed_over} contract(s): {admin} "
            "calls acceptDefaultAdminTransfer() on each once defaultAdminDelay() (2 days) "
            "has passed"
        )
    if config.renounce_deployer and admin != deployer.address:
        _renounce(manifest, deployer, wanted)
        print(f"deployer {deployer.address} renounced its other roles; admin is {admin}")
    print(f"roles: {granted} granted, the rest already held")
    return RoleSet(
        admin=admin,
        trustee=config.trustee or previous.trustee,
        oracle_signers=config.oracle_signers
        if config.oracle_signers is not None
        else previous.oracle_signers,
        **wanted,
    )


def deploy(config: DeployConfig, deployer: Any, directory: Path | None = None) -> Manifest:
    """Deploys what is missing, wires the roles, writes and returns the manifest."""
    config = development_defaults(config)
    chain_id = chain.id
    path = manifest_path(chain_id, directory or config.deployments_dir or deployments_dir())
    network_id = network.show_active() or "unknown"
    if path.exists():
        manifest = Manifest.load(path)
        if manifest.chain_id != chain_id:
            raise DeployError(f"{path} is for chain {manifest.chain_id}, connected to {chain_id}")
        print(f"manifest {path}: found, reusing what is deployed")
    else:
        manifest = Manifest(
            chain_id=chain_id,
            network=network_id,
            deployer=deployer.address,
            block=web3.eth.block_number,
        )
        print(f"manifest {path}: new")
    manifest.network = network_id
    manifest.compiler = _compiler_info()

    def save() -> None:
        manifest.save(path)

    _stablecoin(manifest, config, chain_id, deployer, save)
    for key, name in CORE_CONTRACTS.items():
        if key == "stablecoin":
            continue
        record = manifest.contracts.get(key)
        if record is not None and _usable(record):
            print(f"{key}: reusing {name} at {record.address}")
            continue
        if record is not None:
            print(f"{key}: no {name} code at {record.address} any more: deploying a new one")
        record = _deploy(name, _constructor_args(key, deployer, manifest), deployer)
        print(f"{key}: deployed {name} at {record.address}")
        manifest.contracts[key] = record
        save()
    manifest.block = min(
        [manifest.block, *(r.block for r in manifest.contracts.values() if r.block is not None)]
    )
    stale = [nid for nid, note in manifest.notes.items() if not _usable(note.servicer)]
    for note_id in stale:
        print(f"note {note_id}: its servicer has no code on this chain any more: dropped")
        del manifest.notes[note_id]
    manifest.roles = wire_roles(manifest, config, deployer)
    save()
    print(f"manifest written: {path}")
    return manifest


def _quiet_brownie_deployment_db() -> None:
    """Brownie 1.22.2 records live deployments in its local database from a
    background thread, which fails with a TypeError (a bug of its compiled
    `state` module). Its build/deployments artifacts and this script's
    manifest are written regardless, so say that in one line instead of a
    traceback per contract."""
    previous = threading.excepthook
    said = []

    def hook(args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback)
        if args.exc_type is TypeError and any(f.name == "_add_from_tx" for f in frames):
            if not said:
                print("note: brownie could not record the deployments in its local database")
                said.append(True)
            return
        previous(args)

    threading.excepthook = hook


def main(*args: str) -> Manifest:
    _quiet_brownie_deployment_db()
    try:
        config = DeployConfig.from_sources(*args)
        deployer = deployer_account()
        print(f"network {network.show_active()} (chain id {chain.id}), deployer {deployer.address}")
        return deploy(config, deployer)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
