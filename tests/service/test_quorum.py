"""Three oracle nodes, 2-of-3 quorum, gathering each other's observations over HTTP."""

from __future__ import annotations

import json

from eth_account import Account
from harness import register_fleet, revenue, sample, signed_batch, wait_until


def three_nodes(make_node, tmp_path, keystore_for_first=True):
    accounts = [Account.create() for _ in range(3)]
    nodes = [make_node(f"n{i}", account=a, start=False) for i, a in enumerate(accounts)]
    for node in nodes:
        peers = [other.url for other in nodes if other is not node]
        node.env["GPUCREDIT_ORACLE_PEERS"] = ",".join(peers)
    if keystore_for_first:  # one node reads its key from an encrypted keystore
        keystore = tmp_path / "n0-keystore.json"
        keystore.write_text(
            json.dumps(Account.encrypt(accounts[0].key, "s3cret-pass", iterations=2**14))
        )
        env = nodes[0].env
        del env["GPUCREDIT_ORACLE_SIGNER_KEY"]
        env["GPUCREDIT_ORACLE_KEYSTORE_FILE"] = str(keystore)
        env["GPUCREDIT_ORACLE_KEYSTORE_PASSWORD"] = "s3cret-pass"
    return nodes


def start_all(nodes):
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        wait_until(node.healthy, 60, what=f"{node.name} to serve")


def push_all(nodes, fleet, body):
    for node in nodes:
        r = node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", body)
        assert r.status_code == 201, r.text


def honest_batches(fleet, chain_id, oracle_address):
    g = fleet.genesis
    return [
        signed_batch(
            fleet,
            chain_id,
            oracle_address,
            [
                sample(g + 5 * i, "0.004", "0.003", 4, interval_seconds=5, gpu_count=4)
                for i in range(4)
            ],
            [revenue(g + 1, "inv-a", 700_000), revenue(g + 2, "inv-b", 300_000, "spot")],
        )
    ]


def report_events(oracle, fleet_id):
    return oracle.events.ReportSubmitted().get_logs(
        from_block=0, argument_filters={"fleetId": fleet_id}
    )


def mined_reports(nodes, fleet_id):
    return [
        tx
        for node in nodes
        if node.proc is not None
        for tx in node.transactions(fleet_id)
        if tx["action"] == "report" and tx["state"] == "mined"
    ]


def test_two_of_three_post_while_one_node_is_down(make_node, anvil, oracle, chain_id, tmp_path):
    nodes = three_nodes(make_node, tmp_path)
    up, down = nodes[:2], nodes[2]
    start_all(up)
    fleet = register_fleet(anvil, oracle, [n.account for n in nodes], 2, 60, first_period_left=15)
    for body in honest_batches(fleet, chain_id, oracle.address):
        push_all(up, fleet, body)

    reports = wait_until(lambda: up[0].reports(fleet.fleet_id), 70, 0.3, "the 2-of-3 report")
    status, util, uptime, rev, _, count = oracle.functions.report(fleet.fleet_id, 0).call()
    assert (status, util, uptime, rev, count) == (1, 7500, 8000, 1_000_000, 2)
    assert reports[0]["tx_hash"] is not None
    assert len(report_events(oracle, fleet.fleet_id)) == 1
    assert len(mined_reports(up, fleet.fleet_id)) == 1
    wait_until(lambda: up[1].reports(fleet.fleet_id), 10, 0.3, "the second node to see it")
    assert up[1].reports(fleet.fleet_id)[0]["tx_hash"] == reports[0]["tx_hash"]
    # Each up node holds both observations; the down node's is absent.
    held = up[0].get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observations").json()
    assert {o["signer"] for o in held} == {up[0].address, up[1].address}
    assert down.proc is None


def test_a_dissenting_node_cannot_move_the_median(make_node, anvil, oracle, chain_id, tmp_path):
    nodes = three_nodes(make_node, tmp_path, keystore_for_first=False)
    start_all(nodes)
    honest, liar = nodes[:2], nodes[2]
    fleet = register_fleet(anvil, oracle, [n.account for n in nodes], 2, 60, first_period_left=15)
    for body in honest_batches(fleet, chain_id, oracle.address):
        push_all(honest, fleet, body)
    g = fleet.genesis
    # The liar holds different figures: full utilization and uptime, tiny revenue.
    lie = signed_batch(
        fleet,
        chain_id,
        oracle.address,
        [sample(g, "0.004", "0.004", 5, interval_seconds=5, gpu_count=4)],
        [revenue(g + 1, "inv-z", 1)],
    )
    push_all([liar], fleet, lie)

    wait_until(lambda: honest[0].reports(fleet.fleet_id), 70, 0.3, "the report")
    status, util, uptime, rev, _, count = oracle.functions.report(fleet.fleet_id, 0).call()
    assert count == 3  # every signer's observation was gathered and submitted
    assert (status, util, uptime, rev) == (1, 7500, 8000, 1_000_000)
    liar_obs = liar.get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observation").json()
    assert (liar_obs["utilization_bps"], liar_obs["revenue"]) == (10_000, 1)
    assert len(report_events(oracle, fleet.fleet_id)) == 1
    assert len(mined_reports(nodes, fleet.fleet_id)) == 1
