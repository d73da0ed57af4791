"""The CLI's view of the chain: web3.py, the deployment manifest and the build ABIs.

    client = Client.connect(rpc_url, manifest_path=None)   # manifest of the chain id
    registry = client.core("collateral_registry")
    receipt = client.send(registry.functions.pledgeBatch(1, 1), operator, "pledge batch 1")

Transactions are signed locally (keys never leave the process), simulated
first, and a revert is decoded from the ABIs into the custom error's name,
arguments and NatSpec notice, plus what to do about it when that is known
(`TxFailed`). No brownie here: the CLI runs anywhere web3.py does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.types import TxParams

from gpucredit.deployment import (
    ContractRecord,
    GpucreditError,
    Manifest,
    ManifestError,
    artifacts_dir,
    load_artifact,
    manifest_path,
)

__all__ = [
    "ChainError",
    "Client",
    "DecodedError",
    "ErrorDecoder",
    "TxFailed",
    "load_key",
    "role_name",
]

ZERO_ADDRESS = "0x" + "00" * 20
ROLE_NAMES = [
    "ISSUER_ROLE",
    "OPERATOR_ROLE",
    "ATTESTOR_ROLE",
    "VALUATION_ROLE",
    "AGENT_ROLE",
    "FLEET_ADMIN_ROLE",
    "SERVICER_ROLE",
    "COVENANT_ROLE",
    "RATE_SETTER_ROLE",
    "TRUSTEE_ROLE",
]
_ROLES = {"0x" + keccak(text=name).hex(): name for name in ROLE_NAMES}
_ROLES["0x" + "00" * 32] = "DEFAULT_ADMIN_ROLE"
PANICS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}
# Contracts whose ABIs hold every custom error the protocol can raise.
ERROR_SOURCES = [
    "IIdentityRegistry",
    "ICollateralRegistry",
    "INoteTranche",
    "ITelemetryOracle",
    "IServicer",
    "NoteTranche",
    "CollateralRegistry",
    "TelemetryOracle",
    "Servicer",
    "IdentityRegistry",
    "MockStablecoin",
    "IAccessControl",
    "IERC20Errors",
    "SafeERC20",
    "SafeCast",
    "ReentrancyGuard",
    "ECDSA",
    "Ownable",
]
# What to do about an error, when the error alone does not say.
HINTS: dict[str, str] = {
    "IdentityUnknown": "the account is not whitelisted: the issuer adds it with "
    "`gpucredit issuer whitelist LENDERS.csv`",
    "IdentityExpired": "the account's KYC expired: the issuer renews it with "
    "`gpucredit issuer whitelist`",
    "IdentityIsFrozen": "the KYC agent froze this identity; contact the issuer",
    "AccessControlUnauthorizedAccount": "this key lacks the role: use the right key "
    "(--key-env / --keystore) or have the admin grant it "
    "(re-run scripts/deploy.py with the address)",
    "SubscriptionWindowClosed": "the subscription window is not open now "
    "(see `gpucredit issuer status`)",
    "SubscriptionBelowMinimum": "subscribe at least the tranche's minimum",
    "StateIs": "the tranche is not in the state this action needs (see `gpucredit issuer status`)",
    "NoPendingRequest": "this account has no pending subscription in that tranche",
    "NothingToClaim": "nothing is claimable for this account yet",
    "ConditionsPrecedentNotMet": "pledged collateral is below the minimum collateral ratio: "
    "the operator registers, attests and pledges more GPUs (`gpucredit operator register/pledge`)",
    "RequestsUnfulfilled": "fulfil every pending request first (`gpucredit issuer close` does it)",
    "BatchNotInStatus": "the batch is not in the status this step needs "
    "(register -> attest -> pledge)",
    "CallerNotBatchOperator": "only the operator that registered the batch may pledge it",
    "BatchIssuerMismatch": "the batch was registered for another issuer than the note's",
    "NoteBatchLimitReached": "the note holds the maximum number of batches: "
    "register bigger batches",
    "ERC20InsufficientBalance": "the account's stablecoin balance is too low",
    "ERC20InsufficientAllowance": "the stablecoin allowance is too low",
    "NoTopUpOutstanding": "no top-up requirement is open on this note",
    "TopUpNotCured": "collateral is still below the requirement: pledge more or post cash",
    "NotPerforming": "the note is not performing (defaulted or stepped in)",
    "PeriodNotClosable": "the period's report is not on-chain yet (and it is not stale)",
    "FleetExists": "the oracle already has a fleet with this note id",
    "BatchInServiceInFuture": "an in-service date in the CSV lies in the future",
}


class ChainError(GpucreditError):
    """A chain interaction that failed in a way a person can act on."""


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: dict[str, Any]
    notice: str | None = None

    def __str__(self) -> str:
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in self.args.items())
        text = f"{self.name}({rendered})"
        if self.notice:
            text += f": {self.notice}"
        hint = HINTS.get(self.name)
        if hint:
            text += f" -> {hint}"
        return text


class TxFailed(ChainError):
    """A transaction that reverted (or would): `error` is the decoded custom error."""

    def __init__(self, action: str, error: DecodedError | str) -> None:
        self.action = action
        self.error = error
        super().__init__(f"{action} failed: {error}")


def role_name(role: bytes | str) -> str:
    key = role if isinstance(role, str) else "0x" + bytes(role).hex()
    return _ROLES.get(key.lower(), key)


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        if len(value) == 32 and "0x" + value.hex() in _ROLES:
            return _ROLES["0x" + value.hex()]
        return "0x" + value.hex()
    return str(value)


_ERROR_TABLES: dict[
    tuple[str, tuple], dict[bytes, tuple[str, list[dict[str, Any]], str | None]]
] = {}


class ErrorDecoder:
    """Custom errors of every protocol ABI, by 4-byte selector, with NatSpec notices
    (one table per artifacts folder and process, rebuilt when an artifact changes)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory or artifacts_dir()

    @cached_property
    def _errors(self) -> dict[bytes, tuple[str, list[dict[str, Any]], str | None]]:
        stamps = []
        for name in ERROR_SOURCES:
            path = self._directory / f"{name}.json"
            if path.exists():
                stat = path.stat()
                stamps.append((name, stat.st_mtime_ns, stat.st_size))
        key = (str(self._directory), tuple(stamps))
        if key not in _ERROR_TABLES:
            _ERROR_TABLES[key] = self._load_errors()
        return _ERROR_TABLES[key]

    def _load_errors(self) -> dict[bytes, tuple[str, list[dict[str, Any]], str | None]]:
        table: dict[bytes, tuple[str, list[dict[str, Any]], str | None]] = {}
        for name in ERROR_SOURCES:
            path = self._directory / f"{name}.json"
            if not path.exists():
                continue
            artifact = json.loads(path.read_text())
            notices = (artifact.get("natspec") or {}).get("errors", {})
            for item in artifact["abi"]:
                if item.get("type") != "error":
                    continue
                types = ",".join(_abi_type(i) for i in item["inputs"])
                signature = f"{item['name']}({types})"
                selector = function_signature_to_4byte_selector(signature)
                notice = None
                for doc in notices.get(signature, []):
                    notice = doc.get("notice") or notice
                if selector not in table or (notice and not table[selector][2]):
                    table[selector] = (item["name"], item["inputs"], notice)
        return table

    def decode(self, data: bytes | str | None) -> DecodedError | str:
        if data is None:
            return "reverted without a reason"
        raw = (
            bytes.fromhex(data[2:] if data.startswith("0x") else data)
            if isinstance(data, str)
            else data
        )
        if len(raw) < 4:
            return "reverted without a reason"
        selector, body = raw[:4], raw[4:]
        if selector == function_signature_to_4byte_selector("Error(string)"):
            return abi_decode(["string"], body)[0]
        if selector == function_signature_to_4byte_selector("Panic(uint256)"):
            code = abi_decode(["uint256"], body)[0]
            return f"panic 0x{code:02x} ({PANICS.get(code, 'unknown')})"
        known = self._errors.get(selector)
        if known is None:
            return f"unknown custom error 0x{raw.hex()}"
        name, inputs, notice = known
        values = abi_decode([_abi_type(i) for i in inputs], body)
        args = {
            i["name"] or f"arg{n}": _plain(v)
            for n, (i, v) in enumerate(zip(inputs, values, strict=True))
        }
        return DecodedError(name, args, notice)


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def load_key(
    *,
    key_env: str,
    keystore: Path | None = None,
    password_file: Path | None = None,
    prompt: Callable[[str], str] | None = None,
) -> LocalAccount:
    """A signing key from a keystore file (password from a file, the environment
    variable GPUCREDIT_KEYSTORE_PASSWORD or a prompt), else from the environment
    variable `key_env` (hex private key)."""
    if keystore is not None:
        try:
            encrypted = json.loads(Path(keystore).read_text())
        except OSError as exc:
            raise ChainError(f"cannot read keystore {keystore}: {exc.strerror}") from None
        except ValueError:
            raise ChainError(
                f"keystore {keystore} is not JSON (an Ethereum keystore v3 file)"
            ) from None
        if password_file is not None:
            password = Path(password_file).read_text().rstrip("\n")
        elif "GPUCREDIT_KEYSTORE_PASSWORD" in os.environ:
            password = os.environ["GPUCREDIT_KEYSTORE_PASSWORD"]
        elif prompt is not None:
            password = prompt(f"password for {keystore}")
        else:
            raise ChainError(
                f"keystore {keystore} needs a password: --password-file or "
                "GPUCREDIT_KEYSTORE_PASSWORD"
            )
        try:
            return Account.from_key(Account.decrypt(encrypted, password))
        except ValueError:
            raise ChainError(f"wrong password for keystore {keystore}") from None
    value = os.environ.get(key_env, "").strip()
    if not value:
        raise ChainError(
            f"no key: set the environment variable {key_env} to the account's private key "
            "(hex), or pass --keystore FILE"
        )
    try:
        return Account.from_key(value)
    except (ValueError, TypeError):
        raise ChainError(
            f"{key_env} is not a private key (expected 32 bytes of hex, 0x followed by 64 digits)"
        ) from None


# A build artifact is megabytes (AST, source maps) around a few kilobytes of
# ABI: a process that runs many commands (the demo, the tests) parses each once,
# again only when the file changes.
_ABI_CACHE: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def cached_abi(name: str, directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / f"{name}.json"
    try:
        stat = path.stat()
    except OSError:
        return load_artifact(name, directory)["abi"]  # raises its ManifestError
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _ABI_CACHE:
        _ABI_CACHE[key] = load_artifact(name, directory)["abi"]
    return _ABI_CACHE[key]


class Client:
    """A web3 connection plus the manifest of its chain."""

    def __init__(self, w3: Web3, manifest: Manifest, path: Path, artifacts: Path | None = None):
        self.w3 = w3
        self.manifest = manifest
        self.manifest_path = path
        self.artifacts = artifacts or artifacts_dir()
        self.errors = ErrorDecoder(self.artifacts)
        self._abis: dict[str, list[dict[str, Any]]] = {}
        self._decimals: int | None = None

    @classmethod
    def connect(
        cls, rpc_url: str, manifest: Path | None = None, artifacts: Path | None = None
    ) -> Client:
        w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        try:
            chain_id = w3.eth.chain_id
        except Exception as exc:  # noqa: BLE001 - requests/OS errors differ by cause
            raise ChainError(f"cannot reach the RPC endpoint {rpc_url}: {exc}") from None
        path = Path(manifest) if manifest else manifest_path(chain_id)
        loaded = Manifest.load(path)
        if loaded.chain_id != chain_id:
            raise ChainError(
                f"manifest {path} is for chain {loaded.chain_id}, but {rpc_url} is chain {chain_id}"
            )
        return cls(w3, loaded, path, artifacts)

    # ---- contracts -------------------------------------------------------

    def abi(self, name: str) -> list[dict[str, Any]]:
        if name not in self._abis:
            self._abis[name] = cached_abi(name, self.artifacts)
        return self._abis[name]

    def at(self, name: str, address: str) -> Any:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self.abi(name))

    def core(self, key: str) -> Any:
        record = self.manifest.contracts.get(key)
        if record is None:
            raise ManifestError(f"the manifest {self.manifest_path} has no {key}")
        name = "MockStablecoin" if record.external else record.contract
        return self.at(name, record.address)

    def record(self, record: ContractRecord) -> Any:
        return self.at(record.contract, record.address)

    @property
    def decimals(self) -> int:
        if self._decimals is None:
            self._decimals = self.core("stablecoin").functions.decimals().call()
        return self._decimals

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    # ---- transactions ----------------------------------------------------

    def _failure(self, action: str, exc: Exception) -> TxFailed:
        data = getattr(exc, "data", None)
        if isinstance(exc, ContractCustomError | ContractPanicError) or (
            isinstance(data, str) and data.startswith("0x")
        ):
            return TxFailed(action, self.errors.decode(data if isinstance(data, str) else None))
        message = getattr(exc, "message", None) or str(exc)
        return TxFailed(action, message.removeprefix("execution reverted: "))

    def _params(self, sender: LocalAccount, value: int = 0) -> dict[str, Any]:
        return {
            "from": sender.address,
            "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.w3.eth.chain_id,
            "value": value,
        }

    def _sign_and_wait(self, tx: dict[str, Any], sender: LocalAccount, action: str) -> Any:
        signed = sender.sign_transaction(tx)
        txid = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(txid, timeout=300)
        if receipt["status"] != 1:
            where = f"in block {receipt['blockNumber']} (tx 0x{txid.hex()})"
            if receipt["gasUsed"] >= tx["gas"]:
                raise TxFailed(action, f"ran out of gas (limit {tx['gas']:,}) {where}")
            raise TxFailed(action, f"reverted {where}: {self._replay(tx, receipt)}")
        return receipt

    def _replay(self, tx: dict[str, Any], receipt: Any) -> DecodedError | str:
        """The revert reason, from re-running the call on the state before its block."""
        call = cast(TxParams, {k: tx[k] for k in ("from", "to", "data", "value") if k in tx})
        try:
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)
        except (ContractLogicError, ContractCustomError, ContractPanicError, ValueError) as exc:
            failure = self._failure("replay", exc)
            return failure.error
        return "reverted (the same call succeeds on the previous block's state)"

    def send(self, fn: Any, sender: LocalAccount, action: str) -> Any:
        """Simulates, signs and sends a contract call; returns the receipt."""
        params = self._params(sender)
        try:
            gas = fn.estimate_gas({"from": sender.address})
            tx = fn.build_transaction({**params, "gas": gas * 3 // 2 + 60_000})
        except (ContractLogicError, ContractCustomError, ContractPanicError, ValueError) as exc:
            raise self._failure(action, exc) from None
        return self._sign_and_wait(tx, sender, action)

    def call(self, fn: Any, sender: LocalAccount | str | None, action: str) -> Any:
        """A read (or a simulated write's return value) with decoded reverts."""
        who = sender.address if isinstance(sender, LocalAccount) else sender
        try:
            return fn.call({"from": who} if who else {})
        except (ContractLogicError, ContractCustomError, ContractPanicError, ValueError) as exc:
            raise self._failure(action, exc) from None

    def deploy(self, name: str, args: list[Any], sender: LocalAccount) -> ContractRecord:
        """Deploys a contract from its build artifact; returns its manifest record."""
        from gpucredit.deployment import abi_hash, bytecode_hash

        artifact = load_artifact(name, self.artifacts)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        action = f"deploy {name}"
        constructor = factory.constructor(*args)
        try:
            gas = constructor.estimate_gas({"from": sender.address})
            tx = constructor.build_transaction({**self._params(sender), "gas": gas * 12 // 10})
        except (ContractLogicError, ContractCustomError, ContractPanicError, ValueError) as exc:
            raise self._failure(action, exc) from None
        receipt = self._sign_and_wait(tx, sender, action)
        address = receipt["contractAddress"]
        code = bytes(self.w3.eth.get_code(address))
        return ContractRecord(
            contract=name,
            address=address,
            tx="0x" + bytes(receipt["transactionHash"]).hex(),
            block=receipt["blockNumber"],
            deployer=sender.address,
            constructor_args=[_jsonable(a) for a in args],
            abi_hash=abi_hash(artifact["abi"]),
            bytecode_hash=bytecode_hash(artifact["bytecode"]),
            code_hash="0x" + keccak(code).hex(),
        )

    def events(self, contract: Any, event: str, from_block: int, **filters: Any) -> list[Any]:
        """Logs of `event` from `from_block` to the latest block (argument filters allowed)."""
        kwargs: dict[str, Any] = {"from_block": from_block, "to_block": "latest"}
        if filters:
            kwargs["argument_filters"] = filters
        return list(getattr(contract.events, event).get_logs(**kwargs))

    def save_manifest(self) -> None:
        self.manifest.save(self.manifest_path)

    def reload_manifest(self) -> None:
        self.manifest = Manifest.load(self.manifest_path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
