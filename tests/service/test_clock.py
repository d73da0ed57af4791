"""`CLOCK=chain`: a node whose "now" is the chain's latest block time.

A chain of its own (the session's anvil must keep following the wall clock for
the other tests): the chain jumps 20 days ahead with `evm_increaseTime`, the
node accepts telemetry dated in chain time (which a wall-clock node refuses as
"in the future"), and signs and reports the period once chain time passes its
end + settle, not before.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from harness import (
    Anvil,
    Fleet,
    OracleNode,
    ensure_artifacts,
    next_fleet_id,
    node_env,
    sample,
    signed_batch,
    wait_until,
)

from oracle.errors import ConfigError
from oracle.settings import Settings

DAY = 86_400
PERIOD = 30 * DAY


@pytest.fixture
def chain():
    ensure_artifacts("TelemetryOracle", "ITelemetryOracle", "IServicer")
    anvil = Anvil()
    yield anvil
    anvil.stop()


def chain_now(anvil: Anvil) -> int:
    return anvil.w3.eth.get_block("latest")["timestamp"]


def jump(anvil: Anvil, seconds: int) -> int:
    anvil.rpc("evm_increaseTime", seconds)
    anvil.rpc("evm_mine")
    return chain_now(anvil)


def test_a_chain_clock_node_follows_chain_time(chain, tmp_path):
    oracle = chain.deploy("TelemetryOracle", chain.admin)
    role = oracle.functions.FLEET_ADMIN_ROLE().call()
    if not oracle.functions.hasRole(role, chain.admin).call():
        chain.transact(oracle.functions.grantRole(role, chain.admin))
    nodes = []
    for name, clock in (("chain-clock", "chain"), ("wall-clock", "system")):
        account = Account.create()
        chain.fund(account.address)
        workdir = tmp_path / name
        workdir.mkdir()
        env = node_env(
            chain,
            oracle.address,
            account,
            workdir,
            node_name=name,
            clock=clock,
            clock_cache_seconds="0.2",
            quorum_wait_seconds=2,
        )
        nodes.append(OracleNode(name, account, workdir, env))
    chain_node, wall_node = nodes
    operator = Account.create()
    genesis = chain_now(chain)
    fleet_id = next_fleet_id()
    signers = sorted((n.address for n in nodes), key=lambda a: int(a, 16))
    chain.transact(
        oracle.functions.registerFleet(
            fleet_id, operator.address, Account.create().address, genesis, PERIOD, DAY, signers, 1
        )
    )
    fleet = Fleet(fleet_id, operator, "", genesis, PERIOD, DAY, [n.account for n in nodes], 1)
    chain_id = chain.w3.eth.chain_id
    try:
        for node in nodes:
            node.start()
        now = jump(chain, 20 * DAY)  # chain time: day 20 of period 0; wall clock: day 0
        body = signed_batch(
            fleet,
            chain_id,
            oracle.address,
            [sample(now - 3600, "10", "9", 3600, gpu_count=10)],
        )
        refused = wall_node.post(f"/v1/fleets/{fleet_id}/telemetry", body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "timestamp_out_of_window"
        accepted = chain_node.post(f"/v1/fleets/{fleet_id}/telemetry", body)
        assert accepted.status_code == 201, accepted.text
        current = chain_node.get(f"/v1/fleets/{fleet_id}/periods/current").json()
        assert current["period"] == 0 and current["aggregate"]["samples"] == 1

        # day 20 < period end + settle: no observation, however many worker rounds run
        first = wait_until(lambda: chain_node.get("/health").json()["worker_last_run"], 10)
        wait_until(lambda: chain_node.get("/health").json()["worker_last_run"] > first + 1, 10)
        observation = f"/v1/fleets/{fleet_id}/periods/0/observation"
        assert chain_node.get(observation).status_code == 404

        jump(chain, genesis + PERIOD + 2 - chain_now(chain))  # past end + settle (1 s)
        signed = wait_until(
            lambda: (r := chain_node.get(observation)).status_code == 200 and r.json(),
            30,
            what="the chain-clock node to sign period 0",
        )
        assert signed["utilization_bps"] == 9_000 and signed["uptime_bps"] == 10_000
        report = wait_until(
            lambda: (r := oracle.functions.report(fleet_id, 0).call())[0] == 1 and r,
            30,
            what="period 0's report on-chain",
        )
        assert tuple(report[1:3]) == (9_000, 10_000) and report[5] == 1
        assert wall_node.get(observation).status_code == 404  # its clock is 30 days behind
        late = signed_batch(
            fleet, chain_id, oracle.address, [sample(now, "10", "9", 3600, gpu_count=10)]
        )
        closed = chain_node.post(f"/v1/fleets/{fleet_id}/telemetry", late)
        assert closed.status_code == 422 and closed.json()["error"]["code"] == "period_closed"
    finally:
        for node in nodes:
            node.stop()


def test_clock_setting_values():
    base = {
        "GPUCREDIT_ORACLE_RPC_URL": "http://127.0.0.1:8545",
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "GPUCREDIT_ORACLE_SIGNER_KEY": Account.create().key.hex(),
    }
    assert Settings.from_env(base).clock == "system"
    chain = Settings.from_env(base | {"GPUCREDIT_ORACLE_CLOCK": "chain"})
    assert chain.clock == "chain" and chain.clock_cache_seconds == 1.0
    with pytest.raises(ConfigError, match="GPUCREDIT_ORACLE_CLOCK"):
        Settings.from_env(base | {"GPUCREDIT_ORACLE_CLOCK": "sundial"})
