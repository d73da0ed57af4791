"""Real oracle nodes on a fleet of four signers, quorum 3 (f = 1), gathering
each other's observations over HTTP: one node lying (low and high) is
outvoted, one node down does not stop the report, and a front-running
submitter holding a signer key cannot move the stored figures."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_utils import keccak
from harness import register_fleet, revenue, sample, signed_batch, wait_until
from web3.exceptions import ContractLogicError

from gpucredit.reports import SignedObservation

HONEST = (7_500, 8_000, 1_000_000)  # what honest_batches aggregate to
QUORUM = 3  # 2f + 1 with f = 1: four signers


def four_nodes(make_node, tmp_path, keystore_for_first=True, **overrides):
    accounts = [Account.create() for _ in range(4)]
    nodes = [
        make_node(f"n{i}", account=a, start=False, **overrides) for i, a in enumerate(accounts)
    ]
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


def lying_batch(fleet, chain_id, oracle_address, lie):
    """Telemetry that aggregates to 0 % / 0 % / 1 (low) or 100 % / 100 % / 10^15 (high)."""
    g = fleet.genesis
    if lie == "low":
        samples = [sample(g, "0.004", "0", 0, interval_seconds=5, gpu_count=4)]
        events = [revenue(g + 1, "inv-z", 1)]
    else:
        samples = [sample(g, "0.004", "0.004", 5, interval_seconds=5, gpu_count=4)]
        events = [revenue(g + 1, "inv-z", 10**15)]
    return signed_batch(fleet, chain_id, oracle_address, samples, events)


def stored(oracle, fleet_id):
    status, util, uptime, rev, _, count = oracle.functions.report(fleet_id, 0).call()
    return status, (util, uptime, rev), count


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


def test_three_of_four_post_while_one_node_is_down(make_node, anvil, oracle, chain_id, tmp_path):
    nodes = four_nodes(make_node, tmp_path)
    up, down = nodes[:3], nodes[3]
    start_all(up)
    fleet = register_fleet(anvil, oracle, [n.account for n in nodes], QUORUM, 60, 15)
    assert tuple(oracle.functions.fleet(fleet.fleet_id).call())[8:] == (4, 1)  # n, f
    for body in honest_batches(fleet, chain_id, oracle.address):
        push_all(up, fleet, body)

    reports = wait_until(lambda: up[0].reports(fleet.fleet_id), 70, 0.3, "the 3-of-4 report")
    assert stored(oracle, fleet.fleet_id) == (1, HONEST, 3)
    assert reports[0]["tx_hash"] is not None
    assert len(report_events(oracle, fleet.fleet_id)) == 1
    assert len(mined_reports(up, fleet.fleet_id)) == 1
    for node in up[1:]:
        wait_until(lambda n=node: n.reports(fleet.fleet_id), 10, 0.3, f"{node.name} to see it")
        assert node.reports(fleet.fleet_id)[0]["tx_hash"] == reports[0]["tx_hash"]
    held = up[0].get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observations").json()
    assert {o["signer"] for o in held} == {n.address for n in up}
    assert down.proc is None


@pytest.mark.parametrize("lie", ["low", "high"])
@pytest.mark.parametrize("running", [4, 3], ids=["four-up", "three-up-one-down"])
def test_a_lying_node_is_outvoted(make_node, anvil, oracle, chain_id, tmp_path, lie, running):
    """One node signs figures of its own; with all four up, or with a fourth
    node down as well, the stored figures are the honest nodes'."""
    nodes = four_nodes(make_node, tmp_path, keystore_for_first=False)
    liar, honest = nodes[0], nodes[1:running]
    start_all([liar, *honest])
    fleet = register_fleet(anvil, oracle, [n.account for n in nodes], QUORUM, 60, 15)
    for body in honest_batches(fleet, chain_id, oracle.address):
        push_all(honest, fleet, body)
    push_all([liar], fleet, lying_batch(fleet, chain_id, oracle.address, lie))

    wait_until(lambda: honest[0].reports(fleet.fleet_id), 70, 0.3, "the report")
    assert stored(oracle, fleet.fleet_id) == (1, HONEST, running)
    liar_obs = liar.get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observation").json()
    claimed = (liar_obs["utilization_bps"], liar_obs["uptime_bps"], liar_obs["revenue"])
    assert claimed == ((0, 0, 1) if lie == "low" else (10_000, 10_000, 10**15))
    assert len(report_events(oracle, fleet.fleet_id)) == 1


def test_a_front_running_signer_cannot_move_the_report(
    make_node, anvil, oracle, chain_id, tmp_path
):
    """A registered signer runs no node: it reads two honest observations from
    the nodes' public API, signs its own near-zero figures and submits first,
    from an unrelated account. Two observations are below quorum; three
    store the honest figures; the nodes' own post is then a no-op."""
    nodes = four_nodes(make_node, tmp_path, keystore_for_first=False, quorum_wait_seconds=30)
    honest, attacker_signer = nodes[:3], nodes[3]
    start_all(honest)
    fleet = register_fleet(anvil, oracle, [n.account for n in nodes], QUORUM, 60, 15)
    for body in honest_batches(fleet, chain_id, oracle.address):
        push_all(honest, fleet, body)

    def public_observation(node):
        r = node.get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observation")
        return r.json() if r.status_code == 200 else None

    copied = [
        wait_until(lambda n=n: public_observation(n), 60, 0.2, f"{n.name}'s observation")
        for n in honest[:2]
    ]
    start, end = fleet.bounds(0)
    lie = (0, 0, 0)
    digest = oracle.functions.observationDigest(fleet.fleet_id, 0, *lie).call()
    signature = attacker_signer.account.unsafe_sign_hash(digest).signature
    observations = [SignedObservation(*lie, bytes(signature))] + [
        SignedObservation(
            o["utilization_bps"], o["uptime_bps"], o["revenue"], bytes.fromhex(o["signature"][2:])
        )
        for o in copied
    ]
    front_runner = anvil.w3.eth.accounts[7]  # an unrelated account

    with pytest.raises(ContractLogicError) as below_quorum:
        oracle.functions.submitReport(fleet.fleet_id, 0, observations[:2]).call(
            {"from": front_runner}
        )
    quorum_not_met = "0x" + keccak(text="QuorumNotMet(uint256,uint256)")[:4].hex()
    assert below_quorum.value.data == quorum_not_met + f"{2:064x}{3:064x}"
    anvil.transact(oracle.functions.submitReport(fleet.fleet_id, 0, observations), front_runner)
    event = report_events(oracle, fleet.fleet_id)[0]
    assert event["args"]["submitter"] == front_runner
    assert stored(oracle, fleet.fleet_id) == (1, HONEST, 3)
    # the nodes record the landed report; none of them posts a second one
    for node in honest:
        wait_until(lambda n=node: n.reports(fleet.fleet_id), 30, 0.3, f"{node.name} to see it")
    assert len(report_events(oracle, fleet.fleet_id)) == 1
    assert (start, end) == (event["args"]["periodStart"], event["args"]["periodEnd"])
