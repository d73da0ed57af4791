"""`make demo`: a year of a GPU-backed note, end to end, on a local chain.

Everything is real and runs on this machine: an anvil chain (its own process,
a free port), the protocol deployed by `scripts/deploy.py`, four oracle
nodes (`python -m oracle`, each with its own key and SQLite database, on
loopback), and the `gpucredit` CLI's commands for every step a person takes:

1. the issuer creates a senior and a junior note from examples/termsheet.yaml
   and whitelists the lenders of examples/lenders.csv;
2. three lenders subscribe (the junior tranche is oversubscribed and cut pro
   rata); the operator registers 1,000 GPUs from a CSV written by
   examples/make_fleet.py, the attestor attests them, the operator pledges
   them; the issuer closes the window and draws down;
3. twelve 30-day periods follow the seeds' story: strong utilization (the
   coupon steps down), a demand shock below 60 % (the coupon steps up, a
   collateral top-up is required, cash is swept to senior principal, equity
   is blocked), the operator pledges 250 more GPUs (the cure), recovery, and
   redemption at maturity. Each period the operator pushes signed telemetry
   to the four nodes and pays the revenue in; the nodes sign the period,
   gather a 3-of-4 quorum (f = 1), post the report and close the period
   on-chain. In the first demand-shock period node-d lies (it signs 95 %
   utilization: outvoted, the stored figures are the honest ones); in a
   recovery period node-c is down (the other three still post).

A period lasts 30 days of *chain* time: the demo moves anvil's clock
(`evm_increaseTime` + `evm_mine`) and the nodes run with
`GPUCREDIT_ORACLE_CLOCK=chain`, so "now" for them is the latest block's time.

It prints a timeline (one row per period) and where the logs are, stops every
process it started (also on an error or Ctrl-C) and exits 0.

    python -m gpucredit.demo                  # what `make demo` runs
    python -m gpucredit.demo --dir /tmp/demo  # keep the run's files there
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import ctypes.util
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import click
import httpx
import yaml
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table
from web3 import HTTPProvider, Web3
from web3.logs import DISCARD

from gpucredit.chain import Client
from gpucredit.cli_common import breach_names
from gpucredit.deployment import GpucreditError, repo_root
from gpucredit.story import (  # the story the demo tells: gpucredit/story.py
    CURE_GPUS,
    DOWN_PERIOD,
    GPUS,
    LIE,
    LYING_PERIOD,
    REFINANCING,
    STORY,
    SUBSCRIPTIONS,
    USD,
    period_revenue,
)

REPO = repo_root()
BIN = Path(sys.executable).parent
ANVIL = REPO / "node_modules" / ".bin" / "anvil"
DAY = 86_400
CHALLENGE_WINDOW = 3 * DAY  # CollateralRegistry.CHALLENGE_WINDOW
DEV_MNEMONIC = "test test test test test test test test test test test junk"

NODE_NAMES = ("node-a", "node-b", "node-c", "node-d")  # 4 signers, quorum 3: f = 1
LYING_NODE = "node-d"  # signs doctored figures in LYING_PERIOD
DOWN_NODE = "node-c"  # stopped for DOWN_PERIOD, restarted after its report
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


def usd(amount: int) -> str:
    return f"${amount / USD:,.0f}"


def amount_arg(amount: int) -> str:
    """An amount in 6-decimal units as the CLI takes it (whole units, exact)."""
    return str(Decimal(amount) / USD)


def pct(bps: int, digits: int = 0) -> str:
    return f"{bps / 100:.{digits}f}%"


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
# the CLI, in-process
# ---------------------------------------------------------------------------


class Cli:
    """`gpucredit ... --json` in this process; every call and its output go to cli.log."""

    def __init__(self, rpc_url: str, manifest: Path, log: IO[str]) -> None:
        from typer.main import get_command

        from gpucredit.cli import app

        self.command = get_command(app)
        self.base = ["--rpc-url", rpc_url, "--manifest", str(manifest)]
        self.log = log

    def __call__(
        self, *args: str, key_env: str | None = None, partial: bool = False
    ) -> dict[str, Any]:
        """The command's JSON answer. `partial`: a command that exits 1 after printing
        its answer (a push some node refused) returns that answer instead of raising."""
        argv = [*args, "--json"] + (["--key-env", key_env] if key_env else [])
        shown = "gpucredit " + " ".join(argv)
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = self.command.main(
                    args=[*self.base, *argv], prog_name="gpucredit", standalone_mode=False
                )
        except click.exceptions.Abort:  # click's form of a Ctrl-C inside the command
            code = 130
        self.log.write(f"$ {shown}\n{stdout.getvalue()}{stderr.getvalue()}\n")
        self.log.flush()
        if code == 130:
            raise KeyboardInterrupt(shown)
        if code == 1 and partial and stdout.getvalue().strip():
            return json.loads(stdout.getvalue())
        if code:
            message = stderr.getvalue().strip() or stdout.getvalue().strip()
            raise DemoError(f"`{shown}` failed (exit {code}): {message}")
        return json.loads(stdout.getvalue())


# ---------------------------------------------------------------------------
# telemetry
# ---------------------------------------------------------------------------


def telemetry_batch(period: int, start: int, utilization: int, uptime: int) -> dict[str, Any]:
    """One period's metering as the operator uploads it: a fleet sample per day
    (utilization varies day to day around the period's figure, which it averages
    exactly) and three customer invoices."""
    samples = []
    for day in range(30):
        swing = (day // 2 * 37) % 160 * (1 if day % 2 == 0 else -1)  # pairs cancel out
        samples.append(
            {
                "ts": start + day * DAY,
                "interval_seconds": DAY,
                "gpu_count": GPUS,
                "gpu_hours_available": str(GPUS * 24),
                "gpu_hours_used": str(Decimal(GPUS * 24 * (utilization + swing)) / 10_000),
                "uptime_seconds": -(-DAY * uptime // 10_000),  # rounded up: floors back to uptime
            }
        )
    revenue = period_revenue(utilization)
    take_or_pay, reserved = revenue // 2, revenue * 3 // 10
    invoices = [
        (5, "Acme AI", "take_or_pay", take_or_pay),
        (15, "Borealis Labs", "reserved", reserved),
        (28, "spot market", "spot", revenue - take_or_pay - reserved),
    ]
    return {
        "samples": samples,
        "revenue": [
            {
                "ts": start + day * DAY,
                "invoice_id": f"INV-{period + 1:02d}-{i + 1}",
                "amount": amount,
                "customer": customer,
                "contract_type": kind,
            }
            for i, (day, customer, kind, amount) in enumerate(invoices)
        ],
    }


def load_make_fleet():
    spec = importlib.util.spec_from_file_location("make_fleet", REPO / "examples" / "make_fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------


@dataclass
class Row:
    """One closed period, as the timeline shows it (and timeline.json records it)."""

    period: int
    story: str
    utilization_bps: int
    uptime_bps: int
    revenue_reported: int
    revenue_cash: int
    dscr_bps: int
    ltv_bps: int
    ltv_limit_bps: int
    senior_rate_bps: int
    junior_rate_bps: int
    old_step_bps: int
    new_step_bps: int
    top_up_due: int
    top_up_cured: bool
    sweep: int
    equity: int
    equity_blocked: bool
    principal: int
    breaches: list[str]
    observations: int
    report_by: str
    closed_by: str
    seconds: float
    events: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, run_dir: Path, console: Console, period_timeout: float) -> None:
        self.run_dir = run_dir
        self.console = console
        self.period_timeout = period_timeout
        self.supervisor = Supervisor(run_dir)
        self.rows: list[Row] = []
        self.summary: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.accounts = {i: dev_account(i) for i in range(10)}
        self.node_accounts = [Account.create() for _ in NODE_NAMES]
        self.node_urls: list[str] = []
        self.note_id = 0

    # ---- output -----------------------------------------------------------

    def step(self, text: str) -> None:
        self.console.print(f"[green]>[/] {text}", highlight=False)

    # ---- set-up -----------------------------------------------------------

    def start_chain(self) -> None:
        port = free_port()
        self.chain = Chain(f"http://127.0.0.1:{port}")
        # base fee 0: brownie's development settings (it sends legacy 0-gwei transactions)
        argv = [str(ANVIL), "--port", str(port), "--block-base-fee-per-gas", "0"]
        child = self.supervisor.start(
            "anvil", argv, self.run_dir, child_env(), self.run_dir / "anvil.log"
        )
        wait_for(self.chain.up, 30, "anvil to answer", check=self.supervisor.check)
        self.step(f"anvil on {self.chain.url} (pid {child.proc.pid}, chain id 31337)")

    def deploy(self) -> None:
        roles = {
            "issuers": [self.accounts[ISSUER].address],
            "operators": [self.accounts[OPERATOR].address],
            "attestors": [self.accounts[ATTESTOR].address],
            "trustee": self.accounts[TRUSTEE].address,
            "oracle_signers": [a.address for a in self.node_accounts],
            "stablecoin": "mock",
            "deployments_dir": str(self.run_dir / "deployments"),
        }
        config = self.run_dir / "deploy.yaml"
        config.write_text(yaml.safe_dump(roles, sort_keys=False))
        port = int(self.chain.url.rsplit(":", 1)[1])
        code = f"from gpucredit.demo import deploy_script; deploy_script({port}, [{str(config)!r}])"
        log = self.run_dir / "deploy.log"
        child = self.supervisor.start(
            "deploy", [sys.executable, "-c", code], REPO, child_env(), log
        )
        try:
            child.proc.wait(600)
        except subprocess.TimeoutExpired:
            raise DemoError(f"scripts/deploy.py did not finish in 10 minutes; see {log}") from None
        manifest = self.run_dir / "deployments" / "31337.json"
        if child.proc.returncode != 0 or not manifest.exists():
            raise DemoError(
                f"scripts/deploy.py failed (exit {child.proc.returncode}):\n{tail(log)}"
            )
        self.manifest = manifest
        self.client = Client.connect(self.chain.url, manifest)
        contracts = self.client.manifest.contracts
        self.step(
            f"deployed with scripts/deploy.py: oracle {contracts['telemetry_oracle'].address}, "
            f"registry {contracts['collateral_registry'].address} (manifest {manifest})"
        )

    def start_nodes(self) -> None:
        oracle = self.client.manifest.contracts["telemetry_oracle"].address
        ports = [free_port() for _ in NODE_NAMES]
        self.node_urls = [f"http://127.0.0.1:{p}" for p in ports]
        self.nodes: list[Child] = []
        self.node_launch: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
        for i, name in enumerate(NODE_NAMES):
            account = self.node_accounts[i]
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
                "PEERS": ",".join(u for j, u in enumerate(self.node_urls) if j != i),
                "FLEETS": "1",
                "NODE_NAME": name,
                **NODE_SETTINGS,
            }
            env = child_env(**{f"GPUCREDIT_ORACLE_{k}": v for k, v in settings.items()})
            argv = [sys.executable, "-m", "oracle"]
            self.node_launch[name] = (argv, workdir, env)
            self.nodes.append(self.supervisor.start(name, argv, workdir, env, workdir / "node.log"))

    def wait_for_nodes(self) -> None:
        for name, url, account in zip(NODE_NAMES, self.node_urls, self.node_accounts, strict=True):
            wait_for(lambda u=url: _healthy(u), 60, f"{name} to serve", check=self.supervisor.check)
            self.step(f"oracle {name} on {url}, signer {account.address}")

    def fund(self) -> None:
        usd_token = self.client.core("stablecoin")
        deployer = self.accounts[DEPLOYER]
        for address in [*self.lenders, self.accounts[OPERATOR].address]:
            self.client.send(
                usd_token.functions.mint(address, 50_000_000 * USD), deployer, "mint mock USDC"
            )

    def setup_keys(self) -> None:
        os.environ["GPUCREDIT_ISSUER_KEY"] = self.accounts[ISSUER].key.hex()
        os.environ["GPUCREDIT_OPERATOR_KEY"] = self.accounts[OPERATOR].key.hex()
        os.environ["GPUCREDIT_ATTESTOR_KEY"] = self.accounts[ATTESTOR].key.hex()
        with (REPO / "examples" / "lenders.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        by_address = {a.address.lower(): a for a in self.accounts.values()}
        self.lenders: list[str] = []
        self.lender_keys: list[str] = []
        for i, row in enumerate(rows):
            account = by_address.get(row["address"].strip().lower())
            if account is None:
                raise DemoError(
                    f"examples/lenders.csv row {i + 2}: {row['address']} is not one of anvil's "
                    "development accounts, so the demo has no key for it"
                )
            variable = f"GPUCREDIT_DEMO_LENDER_{i + 1}_KEY"
            os.environ[variable] = account.key.hex()
            self.lenders.append(account.address)
            self.lender_keys.append(variable)

    # ---- the note ---------------------------------------------------------

    def termsheet(self) -> Path:
        """examples/termsheet.yaml with one change: bullet senior principal. The
        example amortizes a third of the senior tranche at days 180, 270 and 360,
        which a $265k-a-month fleet cannot pay out of revenue; the seeds' story is
        a bullet note refinanced at maturity."""
        data = yaml.safe_load((REPO / "examples" / "termsheet.yaml").read_text())
        for tranche in data["tranches"]:
            tranche.pop("amortization", None)
        data["amortization"] = "bullet"
        path = self.run_dir / "termsheet.yaml"
        header = "# examples/termsheet.yaml, with bullet senior principal (written by the demo)\n"
        path.write_text(header + yaml.safe_dump(data, sort_keys=False))
        return path

    def create_note(self) -> None:
        self.cli = Cli(self.chain.url, self.manifest, (self.run_dir / "cli.log").open("a"))
        note = self.cli("issuer", "create-note", str(self.termsheet()))
        self.note_id = note["note_id"]
        self.genesis, self.maturity_at = note["subscription_end"], note["maturity"]
        self.client.reload_manifest()
        record = self.client.manifest.note(self.note_id)
        self.period_length = record.fleet.period_length
        self.quorum = record.fleet.quorum
        self.servicer = self.client.record(record.servicer)
        self.tranches = {s: self.client.record(r) for s, r in record.tranches.items()}
        self.oracle = self.client.core("telemetry_oracle")
        self.note_block = record.block
        symbols = ", ".join(note["tranches"])
        self.step(
            f"issuer created note {self.note_id} ({symbols}) from the example term sheet: "
            f"servicer {note['servicer']}, oracle quorum {self.quorum} of {len(note['signers'])} "
            "signers"
        )
        listed = self.cli(
            "issuer", "whitelist", str(REPO / "examples" / "lenders.csv"), "--days", "730"
        )
        self.step(
            f"issuer whitelisted {len(listed['whitelisted'])} lenders from examples/lenders.csv"
        )

    def subscribe(self) -> None:
        for row, tranche, amount in SUBSCRIPTIONS:
            self.cli(
                "lender",
                "subscribe",
                str(self.note_id),
                amount_arg(amount),
                "--tranche",
                tranche,
                key_env=self.lender_keys[row],
            )
        asked = ", ".join(
            f"{self.lenders[r][:8]} {usd(amount)} {tranche}" for r, tranche, amount in SUBSCRIPTIONS
        )
        self.step(f"lenders subscribed: {asked}")

    def pledge(self, count: int, prefix: str, folder: str) -> dict[str, Any]:
        """Writes a fleet CSV (examples/make_fleet.py), registers, attests, returns the batch."""
        make_fleet = load_make_fleet()
        in_service = self.chain.now() - 30 * DAY
        fleet_csv = make_fleet.write_fleet(
            self.run_dir / folder, count, prefix=prefix, in_service=in_service
        )
        batch_file = fleet_csv.with_name("fleet.batch.json")
        batch = self.cli(
            "operator",
            "register",
            str(fleet_csv),
            "--note",
            str(self.note_id),
            "--out",
            str(batch_file),
        )
        self.cli("attestor", "attest", str(batch["batch_id"]), "--batch-file", str(batch_file))
        batch["csv"] = str(fleet_csv)
        return batch

    def collateralize_and_draw(self) -> None:
        batch = self.pledge(GPUS, "H100-", "fleet")
        pledged = self.cli(
            "operator", "pledge", str(batch["batch_id"]), "--note", str(self.note_id)
        )
        self.step(
            f"operator registered {batch['gpus']:,} GPUs from {batch['csv']} (one batch, root "
            f"{batch['root'][:12]}..., {batch['transactions']} transactions), attestor attested, "
            f"operator pledged (counts after the 3-day challenge window): collateral "
            f"{usd(pledged['note_collateral_value'])}"
        )
        # the window closes only at its end (fixed once lenders commit): the
        # issuer closes it then and draws down
        self.chain.warp_to(self.genesis)
        closed = self.cli("issuer", "close", str(self.note_id))
        drawn = ", ".join(
            f"{s} {usd(t['principal'])}" for s, t in closed["tranches"].items() if t["drawn"]
        )
        self.step(f"issuer closed the subscription window, fulfilled and drew down: {drawn}")
        self.subscriptions = []
        for row, _, amount in SUBSCRIPTIONS:
            claims = self.cli(
                "lender", "claim-notes", str(self.note_id), key_env=self.lender_keys[row]
            )["claims"]
            for claim in claims:
                self.subscriptions.append(
                    {
                        "lender": self.lenders[row],
                        "tranche": claim["tranche"],
                        "asked": amount,
                        "notes": claim["shares"],
                        "refunded": claim["refunded"],
                    }
                )
        cut = [s for s in self.subscriptions if s["refunded"]]
        for s in cut:
            self.step(
                f"{s['lender'][:8]} asked {usd(s['asked'])} of {s['tranche']}: cut pro rata to "
                f"{usd(s['notes'])}, {usd(s['refunded'])} refunded"
            )
        self.summary["subscriptions"] = self.subscriptions

    # ---- the year ---------------------------------------------------------

    def run_period(self, period: int, pending_events: list[str]) -> Row:
        utilization, uptime, story = STORY[period]
        started = time.monotonic()
        start = self.genesis + period * self.period_length
        end = start + self.period_length
        # the period is over: the operator uploads its metering and pays the revenue in
        self.chain.warp_to(end)
        path = self.run_dir / "telemetry" / f"period-{period:02d}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(telemetry_batch(period, start, utilization, uptime), indent=1))
        events = list(pending_events)
        if period == DOWN_PERIOD:
            self.stop_node(DOWN_NODE)
            events.append(f"{DOWN_NODE} down")
        lying = period == LYING_PERIOD
        honest_urls = [
            u
            for n, u in zip(NODE_NAMES, self.node_urls, strict=True)
            if not lying or n != LYING_NODE
        ]
        results = self.push(path, honest_urls)
        if lying:  # node-d holds doctored metering and signs what it says
            lie = self.run_dir / "telemetry" / f"{LYING_NODE}-lie-period-{period:02d}.json"
            lie.write_text(json.dumps(telemetry_batch(period, start, *LIE), indent=1))
            results += self.push(lie, [self.node_urls[NODE_NAMES.index(LYING_NODE)]])
        refused = [r for r in results if not r["ok"]]
        if len(refused) > len(NODE_NAMES) - self.quorum:  # fewer than a quorum hold the telemetry
            raise DemoError(f"period {period}: telemetry refused: {refused}")
        for r in refused:
            name = NODE_NAMES[self.node_urls.index(r["node"])]
            events.append(f"{name} missed the telemetry ({r['code']})")
        self.cli(
            "operator",
            "pay-revenue",
            "--note",
            str(self.note_id),
            amount_arg(period_revenue(utilization)),
        )
        if period == len(STORY) - 1:
            self.cli(
                "operator", "pay-revenue", "--note", str(self.note_id), amount_arg(REFINANCING)
            )
            events.append(f"refinancing {usd(REFINANCING)} paid in")
        # the settle window ends: the nodes sign, reach a quorum, post and close
        self.chain.warp_to(end + SETTLE_SECONDS + 1)
        self.wait_closed(period, end)
        if lying:
            events.append(self.outvoted(period))
        if period == DOWN_PERIOD:
            self.restart_node(DOWN_NODE)
            events.append(f"{DOWN_NODE} restarted")
        return self.row(period, story, events, time.monotonic() - started)

    def push(self, path: Path, urls: list[str]) -> list[dict[str, Any]]:
        nodes = [arg for url in urls for arg in ("--node", url)]
        pushed = self.cli(
            "operator",
            "push-telemetry",
            str(path),
            "--note",
            str(self.note_id),
            *nodes,
            "--timeout",
            "10",
            partial=True,
        )
        return pushed["results"]

    def stop_node(self, name: str) -> None:
        child = self.nodes[NODE_NAMES.index(name)]
        self.supervisor.stop(child)
        self.supervisor.children.remove(child)  # stopped on purpose: not a crash
        self.step(f"{name} stopped: the other three nodes must still report")

    def restart_node(self, name: str) -> None:
        argv, workdir, env = self.node_launch[name]
        child = self.supervisor.start(name, argv, workdir, env, workdir / "node.log")
        self.nodes[NODE_NAMES.index(name)] = child
        url = self.node_urls[NODE_NAMES.index(name)]
        wait_for(lambda: _healthy(url), 60, f"{name} to serve again", check=self.supervisor.check)

    def outvoted(self, period: int) -> str:
        """What the lying node signed against what was stored: the lie was outvoted."""
        url = self.node_urls[NODE_NAMES.index(LYING_NODE)]
        path = f"/v1/fleets/{self.note_id}/periods/{period}/observation"
        signed = httpx.get(url + path, timeout=5).json()
        stored = self.oracle.functions.report(self.note_id, period).call()
        if stored[1] == signed["utilization_bps"]:
            raise DemoError(f"period {period}: {LYING_NODE}'s figures were stored: {signed}")
        return (
            f"{LYING_NODE} signed {pct(signed['utilization_bps'])} utilization: outvoted, "
            f"{pct(stored[1])} stored"
        )

    def wait_closed(self, period: int, end: int) -> None:
        """Waits until the nodes have posted the period's report and closed it. The
        nodes first wait for all four signers' observations; if one is slow, chain
        time is moved past the quorum wait, so three of four post."""
        deadline = time.monotonic() + self.period_timeout
        nudge_at: float | None = time.monotonic() + QUORUM_NUDGE_AFTER
        while self.servicer.functions.nextPeriodToClose().call() <= period:
            self.supervisor.check()
            if nudge_at is not None and time.monotonic() > nudge_at:
                self.chain.warp_to(end + SETTLE_SECONDS + QUORUM_WAIT_SECONDS + 1)
                nudge_at = None
            if time.monotonic() > deadline:
                raise DemoError(
                    f"timed out after {self.period_timeout:g} s waiting for the oracle nodes "
                    f"to report and close period {period}\n{self.diagnose(period)}"
                )
            time.sleep(0.05)

    def diagnose(self, period: int) -> str:
        """Added to a time-out: what the chain and each node hold for the period."""
        lines = [f"chain time {self.chain.now()}"]
        with contextlib.suppress(Exception):
            report = self.oracle.functions.report(self.note_id, period).call()
            lines.append(f"on-chain report of period {period}: status {report[0]} (1 = reported)")
        for name, url in zip(NODE_NAMES, self.node_urls, strict=True):
            path = f"/v1/fleets/{self.note_id}/periods/{period}/observation"
            try:
                answer = f"observation HTTP {httpx.get(url + path, timeout=2).status_code}"
            except httpx.HTTPError as exc:
                answer = f"unreachable ({exc})"
            lines.append(f"{name}: {answer}; log {self.run_dir / name / 'node.log'}")
        return "\n".join(lines)

    def row(self, period: int, story: str, events: list[str], seconds: float) -> Row:
        w3 = self.client.w3
        closed = self.servicer.events.PeriodClosed().get_logs(
            from_block=self.note_block, argument_filters={"period": period}
        )[0]
        receipt = w3.eth.get_transaction_receipt(closed["transactionHash"])
        inputs, result = closed["args"]["inputs"], closed["args"]["result"]

        def logs(event: str) -> list[Any]:
            return list(
                getattr(self.servicer.events, event)().process_receipt(receipt, errors=DISCARD)
            )

        waterfall = logs("WaterfallDistributed")[0]["args"]["result"]
        topup = logs("TopUpRequired")
        cured = logs("TopUpCured")
        report = self.oracle.events.ReportSubmitted().get_logs(
            from_block=self.note_block, argument_filters={"fleetId": self.note_id, "period": period}
        )[0]
        names = {a.address: n for n, a in zip(NODE_NAMES, self.node_accounts, strict=True)}
        block = receipt["blockNumber"]
        senior, junior = list(self.tranches.values())
        row = Row(
            period=period,
            story=story,
            utilization_bps=inputs["utilizationBps"],
            uptime_bps=inputs["uptimeBps"],
            revenue_reported=inputs["revenueReported"],
            revenue_cash=inputs["revenueCash"],
            dscr_bps=result["dscrBps"],
            ltv_bps=result["ltvBps"],
            ltv_limit_bps=result["ltvLimitBps"],
            senior_rate_bps=senior.functions.currentRateBps().call(block_identifier=block),
            junior_rate_bps=junior.functions.currentRateBps().call(block_identifier=block),
            old_step_bps=result["oldStepBps"],
            new_step_bps=result["newStepBps"],
            top_up_due=topup[0]["args"]["shortfall"] if topup else 0,
            top_up_cured=bool(cured),
            sweep=waterfall["sweep"],
            equity=waterfall["equity"],
            equity_blocked=result["equityBlocked"],
            principal=waterfall["seniorPrincipal"] + waterfall["juniorPrincipal"],
            breaches=breach_names(result["breaches"]),
            observations=report["args"]["observations"],
            report_by=names.get(report["args"]["submitter"], report["args"]["submitter"]),
            closed_by=names.get(receipt["from"], receipt["from"]),
            seconds=round(seconds, 2),
            events=events,
        )
        if row.old_step_bps != row.new_step_bps:
            row.events.append(f"coupon step {row.old_step_bps:+d} -> {row.new_step_bps:+d} bps")
        if row.top_up_due:
            row.events.append(f"top-up {usd(row.top_up_due)} due")
        if row.top_up_cured:
            row.events.append("top-up cured")
        if row.sweep:
            row.events.append(f"sweep {usd(row.sweep)} to senior")
        if row.equity_blocked:
            row.events.append("equity blocked")
        elif row.equity:
            row.events.append(f"equity {usd(row.equity)} released")
        if row.breaches:
            row.events.append("breach: " + ", ".join(row.breaches))
        if row.principal:
            row.events.append(f"principal {usd(row.principal)} repaid")
        return row

    def cure(self) -> str:
        """The operator answers the top-up: 250 more GPUs, registered, attested, pledged
        once their challenge window (3 days after attestation) has passed: collateral that
        can still be voided cures nothing."""
        batch = self.pledge(CURE_GPUS, "H100-CURE-", "fleet-cure")
        self.chain.warp_to(self.chain.now() + CHALLENGE_WINDOW + 1)
        topped = self.cli(
            "operator", "top-up", "--note", str(self.note_id), "--batch", str(batch["batch_id"])
        )
        if not topped["cured"]:
            raise DemoError(f"the top-up with {CURE_GPUS} GPUs did not cure: {topped}")
        self.step(
            f"operator pledged {CURE_GPUS} more GPUs (batch {batch['batch_id']}): collateral "
            f"{usd(topped['collateral_before'])} -> {usd(topped['collateral_after'])}, "
            f"requirement {usd(topped['required_collateral'])}: top-up cured"
        )
        return f"+{CURE_GPUS} GPUs pledged: top-up cured"

    def year(self) -> None:
        pending: list[str] = []
        for period in range(len(STORY)):
            row = self.run_period(period, pending)
            self.rows.append(row)
            pending = []
            dscr = "max" if row.dscr_bps >= 2**32 - 1 else f"{row.dscr_bps / 10_000:.2f}x"
            self.step(
                f"period {period:>2} ({row.story}): utilization {pct(row.utilization_bps)}, "
                f"report by {row.report_by} ({row.observations} of 4 signatures), closed by "
                f"{row.closed_by}; DSCR {dscr}, senior {pct(row.senior_rate_bps, 2)} "
                f"[{row.seconds:.1f} s]"
            )
            required, _ = self.servicer.functions.topUp().call()
            if required:
                pending.append(self.cure())

    def maturity(self) -> None:
        lenders = []
        for row, _, _ in SUBSCRIPTIONS:
            key = self.lender_keys[row]
            redeemed = self.cli("lender", "redeem", str(self.note_id), key_env=key)["claims"]
            coupons = self.cli("lender", "claim-coupons", str(self.note_id), key_env=key)["claims"]
            for claim in redeemed:
                paid = sum(c["amount"] for c in coupons if c["tranche"] == claim["tranche"])
                lenders.append(
                    {
                        "lender": self.lenders[row],
                        "tranche": claim["tranche"],
                        "principal_redeemed": claim["amount"],
                        "coupons_claimed": paid,
                    }
                )
        self.client.send(
            self.servicer.functions.releaseCollateral(),
            self.accounts[ISSUER],
            "release the collateral",
        )
        status = self.cli("issuer", "status", str(self.note_id))
        self.summary["lenders"] = lenders
        self.summary["tranches"] = {t["symbol"]: t["state"] for t in status["tranches"]}
        self.summary["collateral_status"] = status["collateral_status"]
        self.step(
            "lenders redeemed and claimed their coupons; collateral released "
            f"({', '.join(f'{s} {state}' for s, state in self.summary['tranches'].items())})"
        )

    # ---- run --------------------------------------------------------------

    def run(self) -> None:
        began = time.monotonic()
        self.setup_keys()
        self.start_chain()
        self.deploy()
        self.timings["deploy_done"] = time.monotonic() - began
        self.start_nodes()
        self.fund()
        self.create_note()
        self.subscribe()
        self.collateralize_and_draw()
        self.wait_for_nodes()
        self.timings["setup"] = time.monotonic() - began
        self.year()
        self.maturity()
        self.timings["total"] = time.monotonic() - began
        self.timings["year"] = self.timings["total"] - self.timings["setup"]
        self.write_timeline()

    def write_timeline(self) -> None:
        data = {
            "note_id": self.note_id,
            "rows": [row.__dict__ for row in self.rows],
            "summary": self.summary,
            "timings_seconds": {k: round(v, 1) for k, v in self.timings.items()},
            "logs": self.logs(),
        }
        (self.run_dir / "timeline.json").write_text(json.dumps(data, indent=1) + "\n")

    def logs(self) -> dict[str, str]:
        found = {"anvil": "anvil.log", "deploy": "deploy.log", "cli": "cli.log"}
        found.update({name: f"{name}/node.log" for name in NODE_NAMES})
        found["telemetry"] = "telemetry/"
        found["manifest"] = "deployments/31337.json"
        return found

    def print_timeline(self) -> None:
        table = Table(
            title="timeline: one row per 30-day period (chain time)", title_justify="left"
        )
        for column in (
            "period",
            "util",
            "uptime",
            "revenue",
            "DSCR",
            "LTV",
            "senior",
            "junior",
            "oracle",
        ):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("events", justify="left")
        for row in self.rows:
            dscr = "max" if row.dscr_bps >= 2**32 - 1 else f"{row.dscr_bps / 10_000:.2f}x"
            table.add_row(
                str(row.period),
                pct(row.utilization_bps),
                pct(row.uptime_bps, 1),
                usd(row.revenue_reported),
                dscr,
                pct(row.ltv_bps, 1),
                pct(row.senior_rate_bps, 2),
                pct(row.junior_rate_bps, 2),
                f"{row.report_by} {row.observations}/4",
                "; ".join(row.events),
            )
        self.console.print(table)
        lenders = Table(title="lenders at maturity", title_justify="left")
        for column in ("lender", "tranche", "asked", "notes", "refunded", "principal", "coupons"):
            lenders.add_column(column, justify="right")
        for entry in self.summary.get("lenders", []):
            sub = next(
                s
                for s in self.subscriptions
                if s["lender"] == entry["lender"] and s["tranche"] == entry["tranche"]
            )
            lenders.add_row(
                entry["lender"][:10],
                entry["tranche"],
                usd(sub["asked"]),
                usd(sub["notes"]),
                usd(sub["refunded"]),
                usd(entry["principal_redeemed"]),
                usd(entry["coupons_claimed"]),
            )
        self.console.print(lenders)
        self.console.print(
            "oracle = the node that posted the period's report and how many of the 4 signers' "
            "observations it carried (quorum 3, f = 1: one node may lie or be down); the close "
            "was sent by a node too. Revenue is the "
            "oracle's (signed invoices); the waterfall runs on the cash paid in."
        )


def print_logs(console: Console, run_dir: Path) -> None:
    shown = run_dir.relative_to(Path.cwd()) if run_dir.is_relative_to(Path.cwd()) else run_dir
    console.print(f"logs and data: {shown}/")
    entries = [
        ("anvil.log", "the chain"),
        ("deploy.log", "scripts/deploy.py"),
        ("node-a/node.log, node-b/..., node-c/...", "the oracle nodes (and their oracle.db)"),
        ("cli.log", "every gpucredit command and its JSON answer"),
        ("telemetry/", "the signed-telemetry bodies pushed each period"),
        ("timeline.json", "the timeline above, machine-readable"),
        ("deployments/31337.json", "the deployment manifest"),
    ]
    for path, what in entries:
        if (run_dir / path.split(",")[0]).exists():
            console.print(f"  {path:<42} {what}")


def default_run_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return REPO / "var" / "demo" / stamp


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gpucredit.demo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Runs anvil, scripts/deploy.py, four `python -m oracle` nodes and the gpucredit "
        "CLI; stops them all at the end. See the module docstring (gpucredit/demo.py).",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="directory for the run's logs, databases and files (default: var/demo/<UTC time>)",
    )
    parser.add_argument(
        "--period-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the nodes to report and close one period (default 90)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = (args.dir or default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(width=170, highlight=False)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    # Ctrl-C stops the demo even when it was started in the background, where
    # the shell sets SIGINT to "ignore" and Python then leaves it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console.rule("[bold]gpucredit demo: one year of a GPU-backed note, on a local chain")
    demo = Demo(run_dir, console, args.period_timeout)
    code = 0
    try:
        demo.run()
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        code = 1
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/]: stopping everything the demo started")
        code = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
        console.print_exception()
        console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        demo.supervisor.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if code == 0:
        demo.print_timeline()
        t = demo.timings
        console.print(
            f"done in {t['total']:.0f} s: set-up {t['setup']:.0f} s (deploy "
            f"{t['deploy_done']:.0f} s), twelve periods and maturity {t['year']:.0f} s"
        )
    print_logs(console, run_dir)
    stopped = ", ".join(f"{c.name} (pid {c.proc.pid})" for c in demo.supervisor.children)
    if stopped:
        console.print(f"stopped: {stopped}")
    return code


if __name__ == "__main__":
    sys.exit(main())
