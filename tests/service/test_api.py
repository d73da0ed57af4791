"""The HTTP API of one node, against a real server and a real chain."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
from eth_account import Account
from eth_utils import keccak
from harness import (
    OracleNode,
    register_fleet,
    revenue,
    sample,
    signed_batch,
    wait_until,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpucredit.reports import recover_observation_signer
from oracle.batchsig import canonical_json

DAY = 86_400


def db_counts(node: OracleNode) -> tuple[int, int, int]:
    con = sqlite3.connect(f"file:{node.workdir / 'oracle.db'}?mode=ro", uri=True)
    try:
        return tuple(
            con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("batches", "samples", "revenue_events")
        )
    finally:
        con.close()


def push(node, fleet, body):
    return node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", body)


def test_health_metrics_and_openapi(node):
    health = node.get("/health").json()
    assert health["status"] == "ok" and health["signer"] == node.address
    assert health["chain"] == "ok" and health["database"] == "ok"
    metrics = node.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE oracle_http_requests_total counter" in metrics.text
    assert 'route="/health"' in metrics.text

    schema = node.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("post", "/v1/fleets/{fleet_id}/telemetry"),
        ("get", "/v1/fleets/{fleet_id}/periods/current"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}/observation"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}/observations"),
        ("get", "/v1/fleets/{fleet_id}/reports"),
        ("get", "/v1/transactions"),
        ("get", "/health"),
        ("get", "/metrics"),
    }
    documented = {(m, p) for p, ops in paths.items() for m in ops}
    assert documented == expected
    for method, path in expected:
        op = paths[path][method]
        assert op["summary"] and op.get("description"), (method, path)
        ok = op["responses"]["201" if method == "post" else "200"]
        assert ok["content"], (method, path)
    telemetry = paths["/v1/fleets/{fleet_id}/telemetry"]["post"]
    assert {"201", "401", "403", "404", "409", "422"} <= set(telemetry["responses"])
    assert "TelemetryBatchIn" in schema["components"]["schemas"]


def test_accepts_and_reports_the_running_aggregate(node, fleet, chain_id, oracle):
    g = fleet.genesis
    before = node.get(f"/v1/fleets/{fleet.fleet_id}/periods/current").json()
    body = signed_batch(
        fleet,
        chain_id,
        oracle.address,
        [
            sample(g, "1", "0.5", 3600, gpu_id="gpu-1"),
            sample(g + 3600, "8", "6", 1800, gpu_count=8),
        ],
        [revenue(g + 10, "acc-1", 2_500_000, "reserved")],
    )
    r = push(node, fleet, body)
    assert r.status_code == 201, r.text
    ack = r.json()
    assert ack["signer"] == fleet.operator.address
    assert ack["periods"] == [{"period": 0, "samples": 2, "revenue_events": 1}]
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    assert ack["payload_hash"] == "0x" + keccak(canonical_json(unsigned)).hex()
    after = node.get(f"/v1/fleets/{fleet.fleet_id}/periods/current").json()
    assert after["period"] == 0 and not after["sealed"]
    agg, prev = after["aggregate"], before["aggregate"]
    assert agg["samples"] == prev["samples"] + 2
    assert agg["revenue"] == prev["revenue"] + 2_500_000


def test_every_rejection_has_its_status_and_stores_nothing(node, fleet, chain_id, oracle, anvil):
    g = fleet.genesis
    now = int(time.time())

    def batch(samples=(), rev=(), **kw):
        return signed_batch(fleet, chain_id, oracle.address, samples, rev, **kw)

    ok = batch([sample(g, "1", "1", 3600)], [revenue(g, "dup-1", 5)])
    assert push(node, fleet, ok).status_code == 201
    counts = db_counts(node)

    cases = []
    # 422: schema
    cases.append((422, "schema_invalid", {k: v for k, v in ok.items() if k != "signature"}))
    cases.append((422, "schema_invalid", {**ok, "extra": 1}))
    cases.append((422, "schema_invalid", batch([{**sample(g), "gpu_hours_available": 1.5}])))
    cases.append((422, "schema_invalid", batch([sample(g, "1", "2")])))  # used > available
    cases.append((422, "schema_invalid", batch([sample(g, "2", "1", interval_seconds=3600)])))
    cases.append((422, "schema_invalid", batch([sample(g, "1", "1", 4000)])))  # uptime > interval
    cases.append((422, "schema_invalid", batch([sample(g, gpu_id="x", gpu_count=2)])))
    cases.append(
        (422, "schema_invalid", {"batch_id": ok["batch_id"], "signature": ok["signature"]})
    )
    cases.append((422, "schema_invalid", batch(rev=[revenue(g, "i", 10**16)])))
    cases.append((422, "schema_invalid", batch(rev=[{**revenue(g, "i", 1), "contract_type": "x"}])))
    # 422: time window
    cases.append((422, "timestamp_out_of_window", batch([sample(now + 3600)])))
    cases.append((422, "timestamp_out_of_window", batch([sample(g - 7200)])))
    cases.append((422, "timestamp_out_of_window", batch(rev=[revenue(now + 600, "f", 1)])))
    # 401 / 403
    bad_sig = {**ok, "batch_id": "0x" + "33" * 32, "signature": "0x" + "00" * 64 + "1b"}
    cases.append((401, "signature_invalid", bad_sig))
    cases.append((403, "signer_not_operator", batch([sample(g)], key=Account.create().key)))
    tampered = {**batch([sample(g, "1", "1")]), "samples": [sample(g, "1", "0")]}
    cases.append((403, "signer_not_operator", tampered))
    # 409
    cases.append((409, "batch_replayed", ok))
    cases.append((409, "batch_id_reused", batch([sample(g)], batch_id=ok["batch_id"])))
    cases.append((409, "duplicate_invoice", batch(rev=[revenue(g, "dup-1", 5)])))
    cases.append(
        (409, "duplicate_invoice", batch(rev=[revenue(g, "x-1", 5), revenue(g, "x-1", 6)]))
    )

    for status, code, body in cases:
        r = push(node, fleet, body)
        assert r.status_code == status, (code, r.text)
        assert r.json()["error"]["code"] == code, r.text
        assert db_counts(node) == counts, code

    # 404: unknown fleet, and a fleet this node does not sign for
    r = node.post("/v1/fleets/999999999/telemetry", ok)
    assert r.status_code == 404
    stranger = register_fleet(anvil, oracle, [Account.create()], 1, DAY, DAY - 60)
    r = node.post(
        f"/v1/fleets/{stranger.fleet_id}/telemetry",
        signed_batch(stranger, chain_id, oracle.address, [sample(stranger.genesis)]),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "fleet_not_served"
    assert node.post("/v1/fleets/-1/telemetry", ok).status_code == 422
    assert db_counts(node) == counts


def test_concurrent_pushes_of_one_batch_are_accepted_once(node, fleet, chain_id, oracle):
    g = fleet.genesis
    body = signed_batch(fleet, chain_id, oracle.address, [sample(g + 60)], [revenue(g, "c-1", 9)])
    distinct = [signed_batch(fleet, chain_id, oracle.address, [sample(g + 120)]) for _ in range(10)]
    before = db_counts(node)
    statuses: list[int] = []
    lock = threading.Lock()

    def send(b):
        code = push(node, fleet, b).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=send, args=(body,)) for _ in range(12)]
    threads += [threading.Thread(target=send, args=(b,)) for b in distinct]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] * 11 + [409] * 11
    assert db_counts(node) == (before[0] + 11, before[1] + 11, before[2] + 1)


def test_a_gpu_interval_is_counted_once(node, fleet, chain_id, oracle):
    """The same GPU and interval, sent again in another batch (a client retrying
    with a fresh batch id) or twice in one batch, used to be counted twice. A
    GPU's sampled intervals may not overlap: 409 ``sample_overlap``, nothing stored."""
    g = fleet.genesis

    def batch(*samples):
        return signed_batch(fleet, chain_id, oracle.address, list(samples))

    def gpu(ts, interval=600, gpu_id="dup-gpu"):
        return sample(ts, "0.01", "0.005", interval, interval_seconds=interval, gpu_id=gpu_id)

    assert push(node, fleet, batch(gpu(g + 100))).status_code == 201
    counts, aggregate = db_counts(node), period0(node, fleet)
    rejected = {
        "same GPU and interval, new batch id": batch(gpu(g + 100)),
        "overlapping the stored interval": batch(gpu(g + 400)),
        "covering the stored interval": batch(gpu(g, interval=3600)),
        "twice in one batch": batch(gpu(g + 2000), gpu(g + 2000, interval=60)),
        "overlapping within one batch": batch(gpu(g + 3000), gpu(g + 3500)),
    }
    for what, body in rejected.items():
        r = push(node, fleet, body)
        assert r.status_code == 409, (what, r.text)
        error = r.json()["error"]
        assert error["code"] == "sample_overlap", (what, error)
        assert error["detail"]["gpu_id"] == "dup-gpu"
        assert db_counts(node) == counts and period0(node, fleet) == aggregate, what
    # adjacent intervals of the GPU, and the same interval of another GPU, are new
    assert push(node, fleet, batch(gpu(g + 700), gpu(g + 40, interval=60))).status_code == 201
    assert push(node, fleet, batch(gpu(g + 100, gpu_id="other-gpu"))).status_code == 201

    # concurrent batches (distinct ids) carrying one GPU interval: exactly one lands
    bodies = [batch(gpu(g + 5000)) for _ in range(8)]
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda b=b: statuses.append(push(node, fleet, b).status_code))
        for b in bodies
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 7


# --------------------------------------------------------------- properties

decimal_hours = st.one_of(
    st.integers(0, 3).map(str),
    st.decimals(min_value=0, max_value=3, places=6).map(lambda d: format(d, "f")),
    st.sampled_from(["", "-1", "1e3", "01", "1.", ".5", "1.1234567", " 1", "NaN", "١"]),
    st.integers(0, 10).map(lambda i: i),
)
maybe_ts = st.integers(-5, 2**41)


def sample_strategy(g: int):
    return st.fixed_dictionaries(
        {
            "ts": st.one_of(st.integers(g - 10, g + 7000), maybe_ts, st.text(max_size=3)),
            "interval_seconds": st.one_of(st.integers(0, 4000), st.just(90_000)),
            "gpu_hours_available": decimal_hours,
            "gpu_hours_used": decimal_hours,
            "uptime_seconds": st.one_of(st.integers(-1, 4000), st.booleans()),
        },
        optional={
            "gpu_id": st.one_of(st.none(), st.text(max_size=5), st.integers()),
            "gpu_count": st.integers(-1, 200_000),
            "bogus": st.integers(),
        },
    )


def revenue_strategy(g: int):
    return st.fixed_dictionaries(
        {
            "ts": st.one_of(st.integers(g - 10, g + 7000), maybe_ts),
            "invoice_id": st.one_of(st.sampled_from(["p-1", "p-2", "p-3"]), st.text(max_size=4)),
            "amount": st.one_of(st.integers(-1, 10**15 + 1), st.text(max_size=2)),
            "customer": st.text(max_size=6),
            "contract_type": st.sampled_from(["take_or_pay", "reserved", "spot", "SPOT", ""]),
        }
    )


def period0(node, fleet) -> dict:
    return node.get(f"/v1/fleets/{fleet.fleet_id}/periods/0").json()["aggregate"]


@settings(
    max_examples=70,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_input_causes_a_5xx_or_a_partial_write(node, fleet, chain_id, oracle, data):
    g = fleet.genesis
    body = {
        "batch_id": data.draw(
            st.one_of(
                st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
                st.sampled_from(["0x" + "aa" * 32, "0x12", "", "0x" + "zz" * 32]),
            )
        ),
        "samples": data.draw(st.lists(sample_strategy(g), max_size=4)),
        "revenue": data.draw(st.lists(revenue_strategy(g), max_size=3)),
    }
    signing = data.draw(st.sampled_from(["operator", "stranger", "garbage", "none"]))
    if signing in ("operator", "stranger"):
        key = fleet.operator.key if signing == "operator" else Account.create().key
        try:
            body = signed_batch(
                fleet,
                chain_id,
                oracle.address,
                key=key,
                batch_id=body["batch_id"],
                samples=body["samples"],
                revenue_events=body["revenue"],
            )
        except (ValueError, TypeError):  # a batch id the signer cannot even encode
            body["signature"] = "0x" + "11" * 65
    elif signing == "garbage":
        body["signature"] = data.draw(st.sampled_from(["0x" + "11" * 65, "0x", "nope"]))
    before = db_counts(node), period0(node, fleet)
    r = push(node, fleet, body)
    assert r.status_code in (201, 401, 403, 409, 422), r.text
    after = db_counts(node), period0(node, fleet)
    if r.status_code == 201:
        ack = r.json()
        assert after[0] == (
            before[0][0] + 1,
            before[0][1] + ack["samples"],
            before[0][2] + ack["revenue_events"],
        )
        assert after[1]["samples"] == before[1]["samples"] + ack["samples"]
    else:
        assert after == before
        assert "error" in r.json()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
def test_arbitrary_bytes_are_refused_cleanly(node, fleet, payload):
    before = db_counts(node)
    r = httpx.post(
        f"{node.url}/v1/fleets/{fleet.fleet_id}/telemetry",
        content=payload,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "schema_invalid"
    assert db_counts(node) == before


# ------------------------------------------------------------- full path


def test_signed_telemetry_becomes_an_onchain_report(make_node, anvil, oracle, chain_id):
    node = make_node("e2e")
    fleet = register_fleet(anvil, oracle, [node.account], 1, 60, first_period_left=15)
    g = fleet.genesis
    samples = [
        sample(g + 10 * i, "0.002", "0.0015", 9, interval_seconds=10, gpu_id=f"g{i}")
        for i in range(5)
    ]
    fleet_sample = sample(g + 1, "0.016", "0.004", 6, interval_seconds=10, gpu_count=8)
    events = [
        revenue(g + 1, "inv-top", 1_000_000, "take_or_pay"),
        revenue(g + 2, "inv-res", 250_000, "reserved"),
        revenue(g + 3, "inv-spot", 12_345, "spot"),
    ]
    accepted = [
        signed_batch(fleet, chain_id, oracle.address, samples[:3], events[:1]),
        signed_batch(fleet, chain_id, oracle.address, samples[3:] + [fleet_sample], events[1:]),
    ]
    for body in accepted:
        assert node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", body).status_code == 201

    # used / available = (5 * 0.0015 + 0.004) / (5 * 0.002 + 0.016) = 0.0115 / 0.026
    utilization = 10_000 * 11_500 // 26_000
    uptime = 10_000 * (5 * 9 + 6 * 8) // (5 * 10 + 10 * 8)
    revenue_total = 1_000_000 + 250_000 + 12_345

    reports = wait_until(lambda: node.reports(fleet.fleet_id), 60, 0.3, "the report")
    (report,) = reports
    assert (report["utilization_bps"], report["uptime_bps"], report["revenue"]) == (
        utilization,
        uptime,
        revenue_total,
    )
    assert report["posted_by_this_node"] and report["submitter"] == node.address
    onchain = oracle.functions.report(fleet.fleet_id, 0).call()
    assert tuple(onchain[:4]) == (1, utilization, uptime, revenue_total)
    receipt = anvil.w3.eth.get_transaction_receipt(report["tx_hash"])
    logs = oracle.events.ReportSubmitted().process_receipt(receipt)
    assert [(e.args.fleetId, e.args.period) for e in logs] == [(fleet.fleet_id, 0)]

    obs = node.get(f"/v1/fleets/{fleet.fleet_id}/periods/0/observation").json()
    start, end = fleet.bounds(0)
    assert (obs["period_start"], obs["period_end"]) == (start, end)
    signer = recover_observation_signer(
        bytes.fromhex(obs["signature"][2:]),
        chain_id,
        oracle.address,
        fleet.fleet_id,
        0,
        start,
        end,
        obs["utilization_bps"],
        obs["uptime_bps"],
        obs["revenue"],
    )
    assert signer == node.address
    digest = oracle.functions.observationDigest(
        fleet.fleet_id, 0, obs["utilization_bps"], obs["uptime_bps"], obs["revenue"]
    ).call()
    assert Account._recover_hash(digest, signature=bytes.fromhex(obs["signature"][2:])) == signer

    txs = node.transactions(fleet.fleet_id)
    assert [(t["action"], t["state"]) for t in txs] == [("report", "mined")]
    assert txs[0]["tx_hash"] == report["tx_hash"]

    # The reported period is closed to telemetry; the next one is open.
    late = signed_batch(
        fleet, chain_id, oracle.address, [sample(g + 50, "0.001", "0", 1, interval_seconds=5)]
    )
    stored = db_counts(node)
    r = node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", late)
    assert r.status_code == 422 and r.json()["error"]["code"] == "period_closed"
    # A batch the node accepted, retried now (a lost response): it is told its data
    # is stored (409 batch_replayed), not that it is out of its window.
    again = node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", accepted[0])
    assert again.status_code == 409 and again.json()["error"]["code"] == "batch_replayed"
    assert again.json()["error"]["detail"]["batch_id"] == accepted[0]["batch_id"].lower()
    assert db_counts(node) == stored
    view = node.get(f"/v1/fleets/{fleet.fleet_id}/periods/0").json()
    assert view["sealed"] and view["next_reportable_period"] == 1
    metrics = node.get("/metrics").text
    assert 'oracle_transactions_total{action="report",outcome="mined"} 1' in metrics
    assert "oracle_observations_signed_total 1" in metrics


def test_a_period_without_telemetry_is_marked_missed(make_node, anvil, oracle):
    node = make_node("missed")
    fleet = register_fleet(anvil, oracle, [node.account], 1, 30, first_period_left=2, heartbeat=2)
    node.stop()
    node.env["GPUCREDIT_ORACLE_FLEETS"] = str(fleet.fleet_id)
    node.start()
    reports = wait_until(lambda: node.reports(fleet.fleet_id), 30, 0.3, "markMissed")
    assert reports[-1]["status"] == "missed" and reports[-1]["tx_hash"]
    assert oracle.functions.report(fleet.fleet_id, 0).call()[0] == 2


def test_one_gpu_interval_in_concurrent_batches_lands_once_on_postgres(
    make_node, anvil, oracle, chain_id, postgres_url
):
    """PostgreSQL has no single writer: the overlap check must hold under its
    row locks (overlapping samples share a period, whose row each batch locks)."""
    node = make_node("pg-overlap", database_url=postgres_url)
    fleet = register_fleet(anvil, oracle, [node.account], 1, DAY, first_period_left=DAY - 7200)
    g = fleet.genesis
    bodies = [
        signed_batch(
            fleet,
            chain_id,
            oracle.address,
            [sample(g + 60 * i, "0.01", "0.01", 600, interval_seconds=600, gpu_id="pg-gpu")],
        )
        for i in range(6)  # starts 60 s apart, 600 s long: every pair overlaps
    ]
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda b=b: results.append(push(node, fleet, b))) for b in bodies
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = sorted((r.status_code, r.text[:300]) for r in results)
    assert [code for code, _ in answers] == [201] + [409] * 5, answers
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {
        "sample_overlap"
    }
    assert period0(node, fleet)["samples"] == 1
