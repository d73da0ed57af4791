"""Real processes for the service tests: anvil, deployed contracts, oracle nodes.

Nothing here is a mock: anvil is the chain, contracts are deployed from the
brownie build artifacts with web3.py, and each oracle node is a separate
``python -m oracle`` process serving HTTP on a loopback port.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import HTTPProvider, Web3

from oracle.batchsig import new_batch_id, sign_batch

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "contracts"
ANVIL = REPO / "node_modules" / ".bin" / "anvil"
PYTHON = sys.executable
_fleet_ids = itertools.count(1000 + os.getpid() % 1000 * 1000)
_running: dict[int, subprocess.Popen] = {}  # every anvil started here and not stopped yet


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies
    (Linux), so even a SIGKILLed test session leaves no anvil behind."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        pr_set_pdeathsig = 1
        ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@atexit.register
def stop_leftover_anvils() -> None:
    """At interpreter exit: stops every anvil a failed test or fixture left running."""
    for proc in list(_running.values()):
        _terminate(proc)
    _running.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def next_fleet_id() -> int:
    return next(_fleet_ids)


def ensure_artifacts(*names: str) -> None:
    """Compiles the project with brownie when an artifact is missing."""
    if all((ARTIFACTS / f"{name}.json").exists() for name in names):
        return
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{Path(PYTHON).parent}:{env.get('PATH', '')}"
    env["SOLCX_BINARY_PATH"] = str(REPO / "tools" / "solc" / "bin")
    subprocess.run(
        [str(Path(PYTHON).parent / "brownie"), "compile"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )


def artifact(name: str) -> dict[str, Any]:
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


class Anvil:
    """An anvil process on a free port (or on `port`: a chain restarted in place)."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(ANVIL),
                "--port",
                str(self.port),
                "--silent",
                "--block-time",
                "1",
                "--mixed-mining",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
        )
        _running[self.proc.pid] = self.proc
        try:
            self.w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 10}))
            wait_until(self._up, 20, what="anvil")
            self.admin = self.w3.eth.accounts[0]
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        try:
            return self.w3.is_connected()
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def rpc(self, method: str, *params):
        response = self.w3.provider.make_request(method, list(params))
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response.get("result")

    def fund(self, address: str, wei: int = 10**20) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    def deploy(self, name: str, *args):
        data = artifact(name)
        contract = self.w3.eth.contract(abi=data["abi"], bytecode=data["bytecode"])
        tx = contract.constructor(*args).transact({"from": self.admin})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt.contractAddress, abi=data["abi"])

    def transact(self, fn, sender: str | None = None):
        tx = fn.transact({"from": sender or self.admin})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt.status == 1
        return receipt

    def stop(self) -> None:
        _terminate(self.proc)
        _running.pop(self.proc.pid, None)


@dataclass
class Fleet:
    """A fleet registered on the TelemetryOracle, with its operator's key."""

    fleet_id: int
    operator: Any  # LocalAccount
    consumer: str
    genesis: int
    period_length: int
    heartbeat: int
    signers: list[Any]
    quorum: int

    def bounds(self, period: int) -> tuple[int, int]:
        start = self.genesis + period * self.period_length
        return start, start + self.period_length


def register_fleet(
    anvil: Anvil,
    oracle,
    signers: list,
    quorum: int,
    period_length: int,
    first_period_left: float,
    heartbeat: int = 3600,
    consumer: str | None = None,
) -> Fleet:
    """Registers a fleet whose period 0 ends ``first_period_left`` seconds from now."""
    fleet_id = next_fleet_id()
    operator = Account.create()
    genesis = int(time.time() + first_period_left) - period_length
    consumer = consumer or Account.create().address
    anvil.transact(
        oracle.functions.registerFleet(
            fleet_id,
            operator.address,
            consumer,
            genesis,
            period_length,
            heartbeat,
            sorted((s.address for s in signers), key=lambda a: int(a, 16)),
            quorum,
        )
    )
    return Fleet(fleet_id, operator, consumer, genesis, period_length, heartbeat, signers, quorum)


def sample(ts: int, available: str = "1", used: str = "1", uptime: int = 3600, **extra):
    body = {
        "ts": ts,
        "interval_seconds": extra.pop("interval_seconds", 3600),
        "gpu_hours_available": available,
        "gpu_hours_used": used,
        "uptime_seconds": uptime,
    }
    body.update(extra)
    return body


def revenue(ts: int, invoice: str, amount: int, contract_type: str = "take_or_pay"):
    return {
        "ts": ts,
        "invoice_id": invoice,
        "amount": amount,
        "customer": "Acme AI",
        "contract_type": contract_type,
    }


def signed_batch(
    fleet: Fleet,
    chain_id: int,
    oracle_address: str,
    samples=(),
    revenue_events=(),
    key=None,
    batch_id: str | None = None,
) -> dict:
    body: dict[str, Any] = {"batch_id": batch_id or new_batch_id()}
    if samples:
        body["samples"] = list(samples)
    if revenue_events:
        body["revenue"] = list(revenue_events)
    return sign_batch(
        key if key is not None else fleet.operator.key,
        chain_id,
        oracle_address,
        fleet.fleet_id,
        body,
    )


@dataclass
class OracleNode:
    """One ``python -m oracle`` process."""

    name: str
    account: Any
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return self.account.address

    def start(self, wait: bool = True) -> OracleNode:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCREDIT_ORACLE_")}
        env.update(self.env)
        env["GPUCREDIT_ORACLE_PORT"] = str(self.port)
        env["PYTHONPATH"] = str(REPO)
        self.log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "oracle"],
            cwd=self.workdir,
            env=env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only
        )
        if wait:
            wait_until(self.healthy, 60, what=f"node {self.name} to serve")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"node {self.name} exited:\n{self.read_log()}")
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def read_log(self) -> str:
        return (self.workdir / f"{self.name}.log").read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, body) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=30)

    def reports(self, fleet_id: int) -> list[dict]:
        return self.get(f"/v1/fleets/{fleet_id}/reports").json()

    def transactions(self, fleet_id: int) -> list[dict]:
        return self.get(f"/v1/transactions?fleet_id={fleet_id}").json()["transactions"]


def node_env(
    anvil: Anvil, oracle_address: str, account, workdir: Path, **overrides: Any
) -> dict[str, str]:
    env = {
        "GPUCREDIT_ORACLE_RPC_URL": anvil.url,
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": oracle_address,
        "GPUCREDIT_ORACLE_SIGNER_KEY": account.key.hex(),
        "GPUCREDIT_ORACLE_DATABASE_URL": f"sqlite:///{workdir / 'oracle.db'}",
        "GPUCREDIT_ORACLE_SETTLE_SECONDS": "1",
        "GPUCREDIT_ORACLE_POLL_INTERVAL_SECONDS": "0.3",
        "GPUCREDIT_ORACLE_FLEET_CACHE_SECONDS": "0.5",
        "GPUCREDIT_ORACLE_QUORUM_WAIT_SECONDS": "3",
        "GPUCREDIT_ORACLE_PEER_TIMEOUT_SECONDS": "1",
        "GPUCREDIT_ORACLE_LOG_LEVEL": "info",
    }
    for key, value in overrides.items():
        name = "GPUCREDIT_ORACLE_" + key.upper()
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env
