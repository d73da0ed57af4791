"""SIGKILL the node while its report transaction is in flight; restart it.

The report must land exactly once (the same signed transaction, never a
second spend) and every batch acknowledged with a 201, before or around the
crash, must still be stored, and counted in the report.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest
from eth_account import Account
from harness import Anvil, OracleNode, node_env, register_fleet, sample, signed_batch, wait_until


@pytest.fixture(scope="module")
def chain():
    """A private anvil: this test stops and restarts block production."""
    anvil = Anvil()
    yield anvil
    anvil.stop()


class Loader(threading.Thread):
    """Pushes small signed batches stamped 'now' until stopped; records the 201s."""

    def __init__(self, node, fleet, chain_id, oracle_address):
        super().__init__(daemon=True)
        self.node, self.fleet = node, fleet
        self.chain_id, self.oracle_address = chain_id, oracle_address
        self.acked: list[tuple[str, int, list[dict]]] = []  # batch id, period, samples
        self.stop_flag = threading.Event()
        self.client = httpx.Client(timeout=5)

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            ts = int(time.time()) - 1
            period = (ts - self.fleet.genesis) // self.fleet.period_length
            samples = [
                sample(ts, "0.0002", f"0.000{1 + (i + k) % 2}", 1 - (i + k) % 2, interval_seconds=1)
                for k in range(3)
            ]
            body = signed_batch(self.fleet, self.chain_id, self.oracle_address, samples)
            try:
                r = self.client.post(
                    f"{self.node.url}/v1/fleets/{self.fleet.fleet_id}/telemetry", json=body
                )
            except httpx.HTTPError:
                time.sleep(0.05)  # the node is down: nothing was acknowledged
                continue
            if r.status_code == 201:
                self.acked.append((body["batch_id"], period, samples))
            time.sleep(0.02)


def stored_batch_ids(node) -> set[str]:
    con = sqlite3.connect(f"file:{node.workdir / 'oracle.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT batch_id FROM batches")}
    finally:
        con.close()


@pytest.mark.parametrize("while_down", ["mempool_dropped", "mined"])
def test_sigkill_while_posting_lands_the_report_exactly_once(chain, tmp_path, while_down):
    oracle = chain.deploy("TelemetryOracle", chain.admin)
    chain_id = chain.w3.eth.chain_id
    account = Account.create()
    chain.fund(account.address)
    env = node_env(chain, oracle.address, account, tmp_path, settle_seconds=3)
    node = OracleNode("crash", account, tmp_path, env).start()
    fleet = register_fleet(chain, oracle, [account], 1, 30, first_period_left=6)
    _, end0 = fleet.bounds(0)
    loader = Loader(node, fleet, chain_id, oracle.address)
    loader.start()
    try:
        # Stop block production once a block past the period's end exists, so
        # the node can simulate its report but the transaction stays pending.
        wait_until(lambda: chain.w3.eth.get_block("latest").timestamp > end0, 40, 0.1, "a block")
        chain.rpc("evm_setIntervalMining", 0)
        chain.rpc("evm_setAutomine", False)
        pending = wait_until(
            lambda: [t for t in node.transactions(fleet.fleet_id) if t["state"] == "sent"],
            30,
            0.05,
            "the report transaction to be sent",
        )
        (tx,) = pending
        node.kill()
        assert oracle.functions.report(fleet.fleet_id, 0).call()[0] == 0  # not landed yet

        if while_down == "mempool_dropped":  # the restarted node must re-broadcast it
            chain.rpc("anvil_dropTransaction", tx["tx_hash"])
            assert chain.w3.eth.get_transaction_count(account.address, "pending") == 0
        chain.rpc("evm_setAutomine", True)
        chain.rpc("evm_setIntervalMining", 1)
        if while_down == "mined":
            chain.rpc("evm_mine")
            assert chain.w3.eth.get_transaction_receipt(tx["tx_hash"]).status == 1

        node.start()
        reports = wait_until(lambda: node.reports(fleet.fleet_id), 30, 0.2, "the report")
    finally:
        loader.stop_flag.set()
        loader.join(10)

    assert reports[0]["tx_hash"] == tx["tx_hash"]  # the very transaction signed before the crash
    assert reports[0]["posted_by_this_node"]
    events = oracle.events.ReportSubmitted().get_logs(
        from_block=0, argument_filters={"fleetId": fleet.fleet_id}
    )
    assert [e.transactionHash.hex().removeprefix("0x") for e in events] == [
        tx["tx_hash"].removeprefix("0x")
    ]
    # the report is visible as soon as it lands; the journal marks it mined on
    # the node's next round, so wait for that rather than read it at once
    journal = wait_until(
        lambda: [t for t in node.transactions(fleet.fleet_id) if t["state"] == "mined"],
        30,
        0.2,
        "the journal to record the report as mined",
    )
    assert [(t["action"], t["state"], t["tx_hash"]) for t in node.transactions(fleet.fleet_id)] == [
        ("report", "mined", tx["tx_hash"])
    ]
    assert journal
    assert chain.w3.eth.get_transaction_count(account.address) == 1  # one nonce ever used

    # Every acknowledged batch survived the SIGKILL ...
    acked_ids = {batch_id for batch_id, _, _ in loader.acked}
    assert acked_ids and acked_ids <= stored_batch_ids(node)
    # ... and the report counts exactly the acknowledged samples of period 0.
    period0 = [s for _, period, samples in loader.acked if period == 0 for s in samples]
    assert period0
    available = sum(int(float(s["gpu_hours_available"]) * 10**6 + 0.5) for s in period0)
    used = sum(int(float(s["gpu_hours_used"]) * 10**6 + 0.5) for s in period0)
    uptime = sum(s["uptime_seconds"] for s in period0)
    span = sum(s["interval_seconds"] for s in period0)
    onchain = oracle.functions.report(fleet.fleet_id, 0).call()
    assert (onchain[1], onchain[2]) == (10_000 * used // available, 10_000 * uptime // span)
    assert any(period >= 1 for _, period, _ in loader.acked)  # pushes went on across the crash
    node.stop()
