"""The PostgreSQL path: the same node, with its store on a real PostgreSQL server
that this test run starts (skipped, with the reason, when none can be started)."""

from __future__ import annotations

import threading

from harness import register_fleet, revenue, sample, signed_batch, wait_until
from sqlalchemy import create_engine, func, select, text

from oracle.store import Store, batches, revenue_events, samples


def count(url: str, table) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def parallel(fn, args_list) -> list:
    results: list = [None] * len(args_list)

    def run(i, args):
        results[i] = fn(*args)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_schema_and_sealing_on_postgres(postgres_url):
    store = Store(postgres_url)
    store.create_schema()
    store.create_schema()  # idempotent
    with store.write() as conn:
        store.seal_period(conn, 5, 0, 100, 200)
        store.seal_period(conn, 5, 0, 100, 200)
        assert store.period_row(conn, 5, 0).sealed
        assert conn.execute(text("SHOW server_version")).scalar()
    assert store.ping() and store.known_fleets() == [5]
    store.dispose()


def test_node_on_postgres(make_node, anvil, oracle, chain_id, postgres_url):
    node = make_node("pg", database_url=postgres_url)
    assert node.get("/health").json()["database"] == "ok"
    # the pushes below must land inside period 0 even on a loaded CI machine
    fleet = register_fleet(anvil, oracle, [node.account], 1, 60, first_period_left=40)
    g = fleet.genesis
    url = f"/v1/fleets/{fleet.fleet_id}/telemetry"

    # The same batch pushed 8 times at once is stored once.
    same = signed_batch(
        fleet, chain_id, oracle.address, [sample(g, "0.002", "0.001", 5, interval_seconds=10)]
    )
    answers = parallel(lambda b: node.post(url, b), [(same,)] * 8)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [409] * 7, [r.text[:400] for r in answers if r.status_code != 409]
    # One invoice id in 6 different batches at once: recorded once.
    contenders = [
        signed_batch(fleet, chain_id, oracle.address, (), [revenue(g + 1, "inv-race", 1000 + i)])
        for i in range(6)
    ]
    results = parallel(lambda b: node.post(url, b), [(b,) for b in contenders])
    assert sorted(r.status_code for r in results) == [201] + [409] * 5, [
        (r.status_code, r.text[:300]) for r in results
    ]
    assert all(
        r.json()["error"]["code"] == "duplicate_invoice" for r in results if r.status_code == 409
    )
    won = next(r for r in results if r.status_code == 201)
    amount = 1000 + [b["batch_id"] for b in contenders].index(won.json()["batch_id"])
    assert (
        count(postgres_url, batches),
        count(postgres_url, samples),
        count(postgres_url, revenue_events),
    ) == (2, 1, 1)

    reports = wait_until(lambda: node.reports(fleet.fleet_id), 100, 0.3, "the report")
    assert (reports[0]["utilization_bps"], reports[0]["uptime_bps"], reports[0]["revenue"]) == (
        5000,
        5000,
        amount,
    )
    assert tuple(oracle.functions.report(fleet.fleet_id, 0).call()[:4]) == (1, 5000, 5000, amount)

    # Durable across a SIGKILL: the journal and the report survive in PostgreSQL.
    node.kill()
    node.start()
    assert node.reports(fleet.fleet_id)[0]["tx_hash"] == reports[0]["tx_hash"]
    assert [t["state"] for t in node.transactions(fleet.fleet_id)] == ["mined"]
