"""The demo's processes: anvil, the deploy script, the oracle nodes, and the
supervisor that stops them all.

Every child gets its own process group and dies with the demo (Linux
`PR_SET_PDEATHSIG`), so even a SIGKILLed demo leaves nothing behind; the
supervisor stops them in reverse order on the way out (also on Ctrl-C).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from gpucredit.deployment import GpucreditError, repo_root

REPO = repo_root()
BIN = Path(sys.executable).parent
ANVIL = REPO / "node_modules" / ".bin" / "anvil"
DEV_MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337  # anvil's

NODE_NAMES = ("node-a", "node-b", "node-c", "node-d")  # 4 signers, quorum 3: f = 1
# Oracle node settings: chain time, and short waits (the demo's periods pass in seconds).
SETTLE_SECONDS = 30  # chain seconds after a period's end in which telemetry is still taken
QUORUM_WAIT_SECONDS = 5  # chain seconds the nodes wait for every signer before a 3-of-4 report
QUORUM_NUDGE_AFTER = 10.0  # wall seconds after which the demo lets that wait pass
NODE_SETTINGS = {
    "CLOCK": "chain",
    "CLOCK_CACHE_SECONDS": "0.2",
    "SETTLE_SECONDS": str(SETTLE_SECONDS),
    "QUORUM_WAIT_SECONDS": str(QUORUM_WAIT_SECONDS),
    "POLL_INTERVAL_SECONDS": "0.2",
    "FLEET_CACHE_SECONDS": "0.5",
    "PEER_TIMEOUT_SECONDS": "2",
    "LOG_LEVEL": "info",
}
# Deployment roles: anvil's development accounts (public keys: local chains only).
DEPLOYER, ISSUER, OPERATOR, ATTESTOR, TRUSTEE = range(5)


class DemoError(GpucreditError):
    """A step of the demo failed; the message says which and where to look."""


def dev_account(index: int) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the demo dies (Linux), so even a
    SIGKILLed demo leaves nothing behind. Also out of the terminal's process group:
    the demo stops its children itself, in order, on Ctrl-C."""
    os.setsid()
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        pr_set_pdeathsig = 1
        ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path


class Supervisor:
    """Every process the demo starts, stopped in reverse order at the end."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[Child] = []
        self.pid_file = run_dir / "pids.json"

    def start(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Child:
        handle = log.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded here
            )
        finally:
            handle.close()
        child = Child(name, proc, log)
        self.children.append(child)
        pids = {c.name: c.proc.pid for c in self.children}
        self.pid_file.write_text(json.dumps(pids, indent=1) + "\n")
        return child

    def check(self) -> None:
        """Raises DemoError if a long-running child exited."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None and child.name != "deploy":
                raise DemoError(
                    f"{child.name} exited with code {code}; its log:\n{tail(child.log)}"
                )

    def stop(self, child: Child, grace: float = 15.0) -> None:
        if child.proc.poll() is None:
            child.proc.terminate()
            try:
                child.proc.wait(grace)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def wait_for(predicate, timeout: float, what: str, check=None, interval: float = 0.1):
    """Polls `predicate` until it is true; `check` runs first each time (it raises
    if a process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours without any GPUCREDIT_ setting, tools on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCREDIT_")}
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{BIN}:{env.get('PATH', '')}"
    env.setdefault("SOLCX_BINARY_PATH", str(REPO / "tools" / "solc" / "bin"))
    env.setdefault("VIRTUAL_ENV", str(BIN.parent))
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------
# the chain
# ---------------------------------------------------------------------------


class Chain:
    """The demo's anvil: JSON-RPC, chain time and time travel."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))

    def up(self) -> bool:
        try:
            return self.w3.is_connected()
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise DemoError(f"anvil {method}: {response['error']}")
        return response.get("result")

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def warp_to(self, target: int) -> int:
        """Moves chain time to at least `target` (evm_increaseTime + evm_mine)."""
        now = self.now()
        while now < target:
            self.rpc("evm_increaseTime", target - now)
            self.rpc("evm_mine")
            now = self.now()
        return now


def deploy_script(port: int, args: list[str]) -> None:
    """Runs `scripts/deploy.py main ARGS` on brownie's development network, attached
    to the anvil already listening on `port` (the demo's), through `gpucredit.run`
    (`brownie run` cannot import a script under a path with a dot in a folder name)."""
    from gpucredit.run import run_script

    run_script(REPO / "scripts" / "deploy.py", "main", args, network="development", port=port)


# ---------------------------------------------------------------------------
# starting them
# ---------------------------------------------------------------------------


def start_chain(supervisor: Supervisor, run_dir: Path) -> tuple[Chain, Child]:
    """anvil on a free port, answering."""
    port = free_port()
    chain = Chain(f"http://127.0.0.1:{port}")
    # base fee 0: brownie's development settings (it sends legacy 0-gwei transactions)
    argv = [str(ANVIL), "--port", str(port), "--block-base-fee-per-gas", "0"]
    child = supervisor.start("anvil", argv, run_dir, child_env(), run_dir / "anvil.log")
    wait_for(chain.up, 30, "anvil to answer", check=supervisor.check)
    return chain, child


def deploy(supervisor: Supervisor, chain: Chain, run_dir: Path, roles: dict[str, Any]) -> Path:
    """scripts/deploy.py with `roles` as its config, in a child process; the manifest."""
    config = run_dir / "deploy.yaml"
    config.write_text(yaml.safe_dump(roles, sort_keys=False))
    port = int(chain.url.rsplit(":", 1)[1])
    code = f"from gpucredit.demo import deploy_script; deploy_script({port}, [{str(config)!r}])"
    log = run_dir / "deploy.log"
    child = supervisor.start("deploy", [sys.executable, "-c", code], REPO, child_env(), log)
    try:
        child.proc.wait(600)
    except subprocess.TimeoutExpired:
        raise DemoError(f"scripts/deploy.py did not finish in 10 minutes; see {log}") from None
    manifest = run_dir / "deployments" / f"{CHAIN_ID}.json"
    if child.proc.returncode != 0 or not manifest.exists():
        raise DemoError(f"scripts/deploy.py failed (exit {child.proc.returncode}):\n{tail(log)}")
    return manifest


class OracleNodes:
    """The four `python -m oracle` nodes: each its own key, SQLite database and port."""

    def __init__(
        self, supervisor: Supervisor, chain: Chain, run_dir: Path, accounts: list[LocalAccount]
    ) -> None:
        self.supervisor = supervisor
        self.chain = chain
        self.run_dir = run_dir
        self.accounts = accounts
        self.urls: list[str] = []
        self.children: list[Child] = []
        self.launch: dict[str, tuple[list[str], Path, dict[str, str]]] = {}

    def url(self, name: str) -> str:
        return self.urls[NODE_NAMES.index(name)]

    def name_of(self, address: str) -> str:
        """The node whose signer is `address`, else the address."""
        names = {a.address: n for n, a in zip(NODE_NAMES, self.accounts, strict=True)}
        return names.get(address, address)

    def start(self, oracle: str) -> None:
        ports = [free_port() for _ in NODE_NAMES]
        self.urls = [f"http://127.0.0.1:{p}" for p in ports]
        for i, name in enumerate(NODE_NAMES):
            account = self.accounts[i]
            self.chain.rpc("anvil_setBalance", account.address, hex(100 * 10**18))  # gas money
            workdir = self.run_dir / name
            workdir.mkdir()
            settings = {
                "RPC_URL": self.chain.url,
                "ORACLE_ADDRESS": oracle,
                "SIGNER_KEY": account.key.hex(),
                "DATABASE_URL": f"sqlite:///{workdir / 'oracle.db'}",
                "HOST": "127.0.0.1",
                "PORT": str(ports[i]),
                "PEERS": ",".join(u for j, u in enumerate(self.urls) if j != i),
                "FLEETS": "1",
                "NODE_NAME": name,
                **NODE_SETTINGS,
            }
            env = child_env(**{f"GPUCREDIT_ORACLE_{k}": v for k, v in settings.items()})
            argv = [sys.executable, "-m", "oracle"]
            self.launch[name] = (argv, workdir, env)
            self.children.append(
                self.supervisor.start(name, argv, workdir, env, workdir / "node.log")
            )

    def wait(self, step: Callable[[str], None]) -> None:
        for name, url, account in zip(NODE_NAMES, self.urls, self.accounts, strict=True):
            wait_for(lambda u=url: _healthy(u), 60, f"{name} to serve", check=self.supervisor.check)
            step(f"oracle {name} on {url}, signer {account.address}")

    def stop(self, name: str) -> None:
        child = self.children[NODE_NAMES.index(name)]
        self.supervisor.stop(child)
        self.supervisor.children.remove(child)  # stopped on purpose: not a crash

    def restart(self, name: str) -> None:
        argv, workdir, env = self.launch[name]
        child = self.supervisor.start(name, argv, workdir, env, workdir / "node.log")
        self.children[NODE_NAMES.index(name)] = child
        url = self.url(name)
        wait_for(lambda: _healthy(url), 60, f"{name} to serve again", check=self.supervisor.check)

    def observation(self, name: str, note_id: int, period: int) -> dict[str, Any]:
        path = f"/v1/fleets/{note_id}/periods/{period}/observation"
        return httpx.get(self.url(name) + path, timeout=5).json()

    def diagnose(self, note_id: int, period: int) -> list[str]:
        """What each node holds for the period (added to a time-out)."""
        lines = []
        for name, url in zip(NODE_NAMES, self.urls, strict=True):
            path = f"/v1/fleets/{note_id}/periods/{period}/observation"
            try:
                answer = f"observation HTTP {httpx.get(url + path, timeout=2).status_code}"
            except httpx.HTTPError as exc:
                answer = f"unreachable ({exc})"
            lines.append(f"{name}: {answer}; log {self.run_dir / name / 'node.log'}")
        return lines
