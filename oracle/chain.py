"""The node's view of the chain: the TelemetryOracle and each fleet's consumer.

ABIs come from the compiled interfaces (``ITelemetryOracle.json`` and
``IServicer.json`` in ``artifacts_dir``, written by ``brownie compile``), so
the service always speaks the interface the contracts implement.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_typing import HexStr
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, Web3Exception

from oracle.errors import ChainUnavailable, ConfigError, FleetNotServed

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
REPORT_STATUS = {0: "none", 1: "reported", 2: "missed"}
# Failures of the transport or the node, worth retrying; reverts are not in here.
TRANSIENT_ERRORS = (requests.RequestException, OSError, TimeoutError, Web3Exception)


@dataclass(frozen=True)
class FleetConfig:
    fleet_id: int
    operator: str
    consumer: str
    genesis: int
    period_length: int
    heartbeat: int
    quorum: int
    next_period: int
    signer_version: int
    signer_count: int = 0  # n
    fault_bound: int = 0  # f: quorum = 2f + 1, n >= 3f + 1

    def bounds(self, period: int) -> tuple[int, int]:
        start = self.genesis + period * self.period_length
        return start, start + self.period_length

    def period_at(self, ts: int) -> int | None:
        if ts < self.genesis:
            return None
        return (ts - self.genesis) // self.period_length


@dataclass(frozen=True)
class OnChainReport:
    status: str
    utilization_bps: int
    uptime_bps: int
    revenue: int
    recorded_at: int
    observations: int


@dataclass(frozen=True)
class Revert:
    """A decoded revert: the custom error's name and arguments."""

    name: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.name}{self.args}"


def load_abi(artifacts_dir: Path, name: str) -> list[dict[str, Any]]:
    path = Path(artifacts_dir) / f"{name}.json"
    try:
        return json.loads(path.read_text())["abi"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load the ABI {path} (run `brownie compile`): {exc}") from None


class Chain:
    """Thin, typed wrapper over web3.py. One instance per thread."""

    def __init__(
        self, rpc_url: str, oracle_address: str, artifacts_dir: Path, timeout: float = 10.0
    ) -> None:
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.oracle_abi = load_abi(artifacts_dir, "ITelemetryOracle")
        self.servicer_abi = load_abi(artifacts_dir, "IServicer")
        self.oracle = self.w3.eth.contract(
            address=to_checksum_address(oracle_address), abi=self.oracle_abi
        )
        self._errors = _error_table(self.oracle_abi + self.servicer_abi)
        self._chain_id: int | None = None

    # ------------------------------------------------------------------ reads

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._call(lambda: self.w3.eth.chain_id)
        return self._chain_id

    def block_number(self) -> int:
        return self._call(lambda: self.w3.eth.block_number)

    def latest_block_timestamp(self) -> int:
        return self._call(lambda: self.w3.eth.get_block("latest")["timestamp"])

    def fleet(self, fleet_id: int) -> FleetConfig:
        """The fleet's configuration; FleetNotServed if the contract does not know it."""
        try:
            cfg = self._call(lambda: self.oracle.functions.fleet(fleet_id).call())
        except ContractLogicError as exc:
            raise FleetNotServed(f"fleet {fleet_id} is not registered on-chain") from exc
        operator, consumer, genesis, length, heartbeat, quorum, next_period, version = cfg[:8]
        signer_count, fault_bound = cfg[8], cfg[9]
        if length == 0 or operator == ZERO_ADDRESS:
            raise FleetNotServed(f"fleet {fleet_id} is not registered on-chain")
        return FleetConfig(
            fleet_id=fleet_id,
            operator=to_checksum_address(operator),
            consumer=to_checksum_address(consumer),
            genesis=genesis,
            period_length=length,
            heartbeat=heartbeat,
            quorum=quorum,
            next_period=next_period,
            signer_version=version,
            signer_count=signer_count,
            fault_bound=fault_bound,
        )

    def signers(self, fleet_id: int) -> list[str]:
        found = self._call(lambda: self.oracle.functions.signers(fleet_id).call())
        return [to_checksum_address(a) for a in found]

    def report(self, fleet_id: int, period: int) -> OnChainReport:
        status, util, uptime, revenue, recorded_at, count = self._call(
            lambda: self.oracle.functions.report(fleet_id, period).call()
        )
        return OnChainReport(REPORT_STATUS[status], util, uptime, revenue, recorded_at, count)

    def is_stale(self, fleet_id: int) -> bool:
        return self._call(lambda: self.oracle.functions.isStale(fleet_id).call())

    def observation_digest(
        self, fleet_id: int, period: int, utilization_bps: int, uptime_bps: int, revenue: int
    ) -> bytes:
        return self._call(
            lambda: self.oracle.functions.observationDigest(
                fleet_id, period, utilization_bps, uptime_bps, revenue
            ).call()
        )

    def has_code(self, address: str) -> bool:
        return len(self._call(lambda: self.w3.eth.get_code(to_checksum_address(address)))) > 0

    def servicer(self, address: str):
        return self.w3.eth.contract(address=to_checksum_address(address), abi=self.servicer_abi)

    def next_period_to_close(self, consumer: str) -> int:
        return self._call(lambda: self.servicer(consumer).functions.nextPeriodToClose().call())

    def report_event(self, fleet_id: int, period: int, event_name: str, from_block: int):
        """The log that recorded ``period`` (ReportSubmitted or ReportMissed), or None."""
        event = getattr(self.oracle.events, event_name)
        logs = self._call(
            lambda: event.get_logs(
                from_block=from_block,
                to_block="latest",
                argument_filters={"fleetId": fleet_id, "period": period},
            )
        )
        return logs[0] if logs else None

    # ----------------------------------------------------------------- writes

    def pending_nonce(self, address: str) -> int:
        return self._call(
            lambda: self.w3.eth.get_transaction_count(to_checksum_address(address), "pending")
        )

    def latest_nonce(self, address: str) -> int:
        return self._call(
            lambda: self.w3.eth.get_transaction_count(to_checksum_address(address), "latest")
        )

    def fees(self) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) for a new transaction."""
        block = self._call(lambda: self.w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas", 0) or 0
        try:
            tip = self._call(lambda: self.w3.eth.max_priority_fee)
        except TRANSIENT_ERRORS:
            tip = 10**9
        tip = max(tip, 10**8)
        return 2 * base + tip, tip

    def receipt(self, tx_hash: str):
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TRANSIENT_ERRORS as exc:
            if "not found" in str(exc).lower() or type(exc).__name__ == "TransactionNotFound":
                return None
            raise ChainUnavailable(f"receipt lookup failed: {exc}") from exc

    def transaction_known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(HexStr(tx_hash)) is not None
        except TRANSIENT_ERRORS as exc:
            if "not found" in str(exc).lower() or type(exc).__name__ == "TransactionNotFound":
                return False
            raise ChainUnavailable(f"transaction lookup failed: {exc}") from exc

    def broadcast(self, raw_tx: bytes) -> None:
        self.w3.eth.send_raw_transaction(raw_tx)

    # ---------------------------------------------------------------- helpers

    def decode_revert(self, exc: ContractLogicError) -> Revert | None:
        data = getattr(exc, "data", None)
        if isinstance(data, dict):
            data = data.get("data")
        if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
            return None
        entry = self._errors.get(data[2:10])
        if entry is None:
            return None
        name, types = entry
        try:
            return Revert(name, tuple(abi_decode(types, bytes.fromhex(data[10:]))))
        except Exception:  # noqa: BLE001 - undecodable data: report the name only
            return Revert(name, ())

    def _call(self, fn):
        try:
            return fn()
        except ContractLogicError:
            raise
        except TRANSIENT_ERRORS as exc:
            raise ChainUnavailable(f"chain RPC failed: {type(exc).__name__}: {exc}") from exc


def _error_table(abi: list[dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    table = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [_abi_type(i) for i in item["inputs"]]
        selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
        table[selector.hex()] = (item["name"], types)
    return table


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][5:]}"
    return item["type"]


class FleetDirectory:
    """Short-TTL cache of fleet configurations and signer sets (API side)."""

    def __init__(self, chain: Chain, ttl: float) -> None:
        self._chain = chain
        self._ttl = ttl
        self._lock = threading.Lock()
        self._fleets: dict[int, tuple[float, FleetConfig | FleetNotServed]] = {}
        self._signers: dict[int, tuple[float, frozenset[str]]] = {}

    def fleet(self, fleet_id: int) -> FleetConfig:
        now = time.monotonic()
        with self._lock:
            cached = self._fleets.get(fleet_id)
        if cached is not None and now - cached[0] < self._ttl:
            value = cached[1]
        else:
            try:
                value = self._chain.fleet(fleet_id)
            except FleetNotServed as exc:
                value = exc
            with self._lock:
                self._fleets[fleet_id] = (now, value)
        if isinstance(value, FleetNotServed):
            raise FleetNotServed(value.message)
        return value

    def signers(self, fleet_id: int) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._signers.get(fleet_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        value = frozenset(self._chain.signers(fleet_id))
        with self._lock:
            self._signers[fleet_id] = (now, value)
        return value

    def cached(self, fleet_id: int) -> FleetConfig | None:
        """The fleet's config if cached and fresh, without blocking; else None."""
        with self._lock:
            cached = self._fleets.get(fleet_id)
        if cached is None or time.monotonic() - cached[0] >= self._ttl:
            return None
        return cached[1] if isinstance(cached[1], FleetConfig) else None

    def cached_signers(self, fleet_id: int) -> frozenset[str] | None:
        with self._lock:
            cached = self._signers.get(fleet_id)
        if cached is None or time.monotonic() - cached[0] >= self._ttl:
            return None
        return cached[1]

    def invalidate(self, fleet_id: int) -> None:
        with self._lock:
            self._fleets.pop(fleet_id, None)
            self._signers.pop(fleet_id, None)
