"""Oracle service benchmark: ingest throughput and aggregation time.

    python bench/oracle_bench.py [--out bench/oracle.json]

Starts a private anvil, deploys the TelemetryOracle, registers a fleet and
runs one real oracle node (``python -m oracle``, SQLite store, every commit
fsynced) on loopback. A load generator then pushes pre-signed batches over
HTTP (signing is the operator's cost, not the service's):

* ``ingest_samples_per_s``: batches of 500 samples, 4 concurrent clients;
  samples durably stored (201 received) per second;
* ``ingest_requests_per_s_single``: one-sample signed batches, 8 concurrent
  clients; requests answered 201 per second;
* ``aggregate_period_ms_100k``: the SQL aggregation of one period holding
  100,000 samples (next to 40,000 of other periods), median of 5 runs;
* ``node_cpu_us_per_sample_batched`` and ``node_cpu_ms_per_request_single``:
  CPU time (user + system) the node process spent per stored sample and per
  single push in the two runs above. Unlike the rates, these barely move when
  other work shares the machine (the load generator runs on it too), so they
  are what to compare between two versions; no target.

Writes the figures to ``bench/oracle.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from eth_account import Account
from web3 import HTTPProvider, Web3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpucredit.telemetry_signing import new_batch_id, sign_batch  # noqa: E402
from oracle.aggregation import figures  # noqa: E402
from oracle.store import Store, batches, samples  # noqa: E402

DAY = 86_400
TARGETS = {
    "ingest_samples_per_s": (">=", 5_000),
    "ingest_requests_per_s_single": (">=", 300),
    "aggregate_period_ms_100k": ("<", 1_000),
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def compile_if_needed() -> None:
    if (REPO / "build" / "contracts" / "TelemetryOracle.json").exists():
        return
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    env["SOLCX_BINARY_PATH"] = str(REPO / "tools" / "solc" / "bin")
    subprocess.run(
        [str(Path(sys.executable).parent / "brownie"), "compile"], cwd=REPO, env=env, check=True
    )


class Setup:
    """anvil + TelemetryOracle + one fleet + one oracle node."""

    def __init__(self, workdir: Path) -> None:
        compile_if_needed()
        port = free_port()
        self.anvil = subprocess.Popen(
            [str(REPO / "node_modules" / ".bin" / "anvil"), "--port", str(port), "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.rpc = f"http://127.0.0.1:{port}"
        w3 = Web3(HTTPProvider(self.rpc))
        wait_for(w3.is_connected, 20, "anvil")
        admin = w3.eth.accounts[0]
        art = json.loads((REPO / "build" / "contracts" / "TelemetryOracle.json").read_text())
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor(admin).transact({"from": admin})
        )
        oracle = w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])
        self.chain_id = w3.eth.chain_id
        self.oracle_address = oracle.address
        self.node_account = Account.create()
        self.operator = Account.create()
        self.fleet_id = 1
        self.genesis = int(time.time()) - DAY + 7200  # period 0 open for two more hours
        w3.eth.wait_for_transaction_receipt(
            oracle.functions.registerFleet(
                self.fleet_id,
                self.operator.address,
                Account.create().address,
                self.genesis,
                DAY,
                DAY,
                [self.node_account.address],
                1,
            ).transact({"from": admin})
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCREDIT_ORACLE_")}
        env.update(
            {
                "GPUCREDIT_ORACLE_RPC_URL": self.rpc,
                "GPUCREDIT_ORACLE_ORACLE_ADDRESS": oracle.address,
                "GPUCREDIT_ORACLE_SIGNER_KEY": self.node_account.key.hex(),
                "GPUCREDIT_ORACLE_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
                "GPUCREDIT_ORACLE_PORT": str(self.port),
                "GPUCREDIT_ORACLE_LOG_LEVEL": "warning",
                # Throughput is the point here, not the per-operator rate limit.
                "GPUCREDIT_ORACLE_RATE_LIMIT_PER_MINUTE": "10000000",
                "GPUCREDIT_ORACLE_RATE_LIMIT_BURST": "100000",
                "PYTHONPATH": str(REPO),
            }
        )
        self.log = open(workdir / "node.log", "wb")  # noqa: SIM115
        self.node = subprocess.Popen(
            [sys.executable, "-m", "oracle"],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        wait_for(lambda: httpx.get(self.url + "/health").status_code == 200, 60, "the node")

    def close(self) -> None:
        for proc in (self.node, self.anvil):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


def make_batches(setup: Setup, count: int, size: int, offset: int) -> list[bytes]:
    """Pre-signed request bodies of ``size`` samples each."""
    bodies = []
    for b in range(count):
        items = [
            {
                "ts": setup.genesis + (offset + b * size + i) % 70_000,
                "interval_seconds": 60,
                # one GPU's samples are 1,000 s apart: its 60 s intervals never overlap
                "gpu_id": f"gpu-{(b * size + i) % 1000}",
                "gpu_hours_available": "0.016666",
                "gpu_hours_used": "0.0125",
                "uptime_seconds": 60,
            }
            for i in range(size)
        ]
        body = sign_batch(
            setup.operator.key,
            setup.chain_id,
            setup.oracle_address,
            setup.fleet_id,
            {"batch_id": new_batch_id(), "samples": items},
        )
        bodies.append(json.dumps(body).encode())
    return bodies


def fire(url: str, bodies: list[bytes], clients: int) -> float:
    """Sends every body, ``clients`` at a time; returns the wall time. All must be 201."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = client.post(url, content=body)
                if r.status_code != 201:
                    failures.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} pushes failed, first: {failures[0]}")
    return elapsed


def bench_ingest(setup: Setup) -> dict[str, float]:
    url = f"{setup.url}/v1/fleets/{setup.fleet_id}/telemetry"
    node = psutil.Process(setup.node.pid)

    def node_cpu() -> float:
        times = node.cpu_times()
        return times.user + times.system

    fire(url, make_batches(setup, 4, 500, 0) + make_batches(setup, 20, 1, 10_000), 4)  # warm-up
    big = make_batches(setup, 60, 500, 20_000)
    cpu = node_cpu()
    samples_per_s = 60 * 500 / fire(url, big, 4)
    cpu_per_sample = (node_cpu() - cpu) / (60 * 500)
    single = make_batches(setup, 1_500, 1, 60_000)
    cpu = node_cpu()
    requests_per_s = len(single) / fire(url, single, 8)
    cpu_per_request = (node_cpu() - cpu) / len(single)
    return {
        "ingest_samples_per_s": round(samples_per_s, 1),
        "ingest_requests_per_s_single": round(requests_per_s, 1),
        "node_cpu_us_per_sample_batched": round(cpu_per_sample * 1e6, 1),
        "node_cpu_ms_per_request_single": round(cpu_per_request * 1e3, 3),
    }


def bench_aggregate(workdir: Path) -> float:
    store = Store(f"sqlite:///{workdir / 'aggregate.db'}")
    store.create_schema()
    with store.write() as conn:
        ref = conn.execute(
            batches.insert().values(
                fleet_id=1,
                batch_id="0x" + "00" * 32,
                payload_hash="0x" + "00" * 32,
                signer="0x" + "00" * 20,
                signature="0x" + "00" * 65,
                samples=0,
                revenue_events=0,
                received_at=0.0,
            )
        ).inserted_primary_key[0]
        for period, n in ((0, 20_000), (1, 100_000), (2, 20_000)):
            conn.execute(
                samples.insert(),
                [
                    {
                        "batch_ref": ref,
                        "fleet_id": 1,
                        "period": period,
                        "ts": i,
                        "interval_s": 60,
                        "gpu_id": f"gpu-{i % 1000}",
                        "gpu_count": 1,
                        "available_uh": 16_666,
                        "used_uh": 12_500 + i % 4_000,
                        "uptime_gpu_s": 60 - i % 2,
                        "span_gpu_s": 60,
                    }
                    for i in range(n)
                ],
            )
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        with store.read() as conn:
            figures(store.totals(conn, 1, 1))
        runs.append((time.perf_counter() - started) * 1000)
    store.dispose()
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "oracle.json",
        help="where to write the JSON figures",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oracle-bench-") as tmp:
        workdir = Path(tmp)
        setup = Setup(workdir)
        try:
            ingest = bench_ingest(setup)
        finally:
            setup.close()
        aggregate_ms = bench_aggregate(workdir)
    results = {**ingest, "aggregate_period_ms_100k": round(aggregate_ms, 2)}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'metric':<32} {'value':>12}   target")
    for key, value in results.items():
        if key not in TARGETS:
            print(f"{key:<32} {value:>12,.3f}   (no target)")
            continue
        op, target = TARGETS[key]
        ok = value >= target if op == ">=" else value < target
        print(f"{key:<32} {value:>12,.1f}   {op} {target:,} {'ok' if ok else 'MISSED'}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
