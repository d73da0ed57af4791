"""Aggregation: exact integer figures computed in SQL, fast at 100k samples."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.aggregation import aggregate_view, figures
from oracle.metrics import Metrics
from oracle.store import Store, Totals, batches, revenue_events, samples


def fill(store: Store, fleet_id: int, period: int, rows: list[dict], revenue: list[int]) -> None:
    with store.write() as conn:
        ref = conn.execute(
            batches.insert().values(
                fleet_id=fleet_id,
                batch_id="0x" + "ab" * 32,
                payload_hash="0x" + "cd" * 32,
                signer="0x" + "00" * 20,
                signature="0x" + "00" * 65,
                samples=len(rows),
                revenue_events=len(revenue),
                received_at=0.0,
            )
        ).inserted_primary_key[0]
        if rows:
            conn.execute(
                samples.insert(),
                [{"batch_ref": ref, "fleet_id": fleet_id, "period": period, **r} for r in rows],
            )
        if revenue:
            conn.execute(
                revenue_events.insert(),
                [
                    {
                        "batch_ref": ref,
                        "fleet_id": fleet_id,
                        "period": period,
                        "ts": 0,
                        "invoice_id": f"inv-{i}",
                        "amount": amount,
                        "customer": "c",
                        "contract_type": "spot",
                    }
                    for i, amount in enumerate(revenue)
                ],
            )


def sample_row(available: int, used: int, uptime: int, interval: int, gpus: int) -> dict:
    return {
        "ts": 0,
        "interval_s": interval,
        "gpu_id": None,
        "gpu_count": gpus,
        "available_uh": available,
        "used_uh": used,
        "uptime_gpu_s": uptime * gpus,
        "span_gpu_s": interval * gpus,
    }


def test_figures_round_down_and_handle_empty_periods():
    assert figures(Totals(0, 0, 0, 0, 0, 0, 0)) == figures(Totals(0, 0, 0, 0, 0, 0, 0))
    assert figures(Totals(0, 0, 0, 0, 0, 0, 0)).utilization_bps == 0
    fig = figures(Totals(3, 1, 3_000_000, 1_999_999, 3599, 3600, 77))
    assert (fig.utilization_bps, fig.uptime_bps, fig.revenue) == (6666, 9997, 77)
    view = aggregate_view(Totals(1, 0, 7_250_000, 1_000_001, 1, 2, 0))
    assert (view.gpu_hours_available, view.gpu_hours_used) == ("7.25", "1.000001")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**9),
            st.integers(0, 10**9),
            st.integers(1, 86400),
            st.integers(1, 1000),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(1, 10**15), max_size=10),
)
def test_sql_totals_equal_python_sums_in_any_order(tmp_path_factory, raw, revenue):
    rows = []
    for available, used_share, interval, gpus in raw:
        used = available * (used_share % 10_001) // 10_000
        rows.append(sample_row(available, used, interval // 2, interval, gpus))
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('agg')}/t.db")
    store.create_schema()
    shuffled = rows[:]
    random.shuffle(shuffled)
    fill(store, 1, 0, shuffled, revenue)
    with store.read() as conn:
        totals = store.totals(conn, 1, 0)
    expected = Totals(
        samples=len(rows),
        revenue_events=len(revenue),
        available_uh=sum(r["available_uh"] for r in rows),
        used_uh=sum(r["used_uh"] for r in rows),
        uptime_gpu_s=sum(r["uptime_gpu_s"] for r in rows),
        span_gpu_s=sum(r["span_gpu_s"] for r in rows),
        revenue=sum(revenue),
    )
    assert totals == expected
    store.dispose()


def test_100k_sample_period_aggregates_only_its_own_rows(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/big.db")
    store.create_schema()
    rows = [sample_row(1_000_000, 750_000 + i % 1000, 3500, 3600, 1) for i in range(100_000)]
    fill(store, 9, 3, rows, [5_000_000] * 100)
    fill_other = [sample_row(1_000_000, 0, 0, 3600, 1) for _ in range(20_000)]
    with store.write() as conn:  # another period and fleet in the same tables
        conn.execute(
            samples.insert(),
            [{"batch_ref": 1, "fleet_id": 9, "period": 4, **r} for r in fill_other]
            + [{"batch_ref": 1, "fleet_id": 10, "period": 3, **r} for r in fill_other],
        )
    with store.read() as conn:  # speed: bench/oracle_bench.py
        fig = figures(store.totals(conn, 9, 3))
    assert fig.utilization_bps == 10_000 * sum(750_000 + i % 1000 for i in range(100_000)) // (
        100_000 * 1_000_000
    )
    assert fig.uptime_bps == 9722 and fig.revenue == 500_000_000
    store.dispose()


def test_metrics_render_prometheus_text():
    m = Metrics()
    m.batches.inc(1, "accepted")
    m.http_seconds.observe(0.003, "GET", "/health")
    m.block.set(12)
    text = m.render()
    assert "# TYPE oracle_telemetry_batches_total counter" in text
    assert 'oracle_telemetry_batches_total{outcome="accepted"} 1' in text
    assert 'oracle_http_request_seconds_bucket{method="GET",route="/health",le="0.005"} 1' in text
    assert 'oracle_http_request_seconds_bucket{method="GET",route="/health",le="0.001"} 0' in text
    assert 'oracle_http_request_seconds_count{method="GET",route="/health"} 1' in text
    assert "oracle_chain_block_number 12" in text
