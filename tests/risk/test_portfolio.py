"""Portfolio: shared factors make defaults cluster; Dask runs the same chunks."""

import pytest

from gpucredit.risk.portfolio import NoteInput, dask_executor, run_portfolio
from gpucredit.risk.scenario import load_scenario
from gpucredit.risk.simulate import EPOCH, deal_params
from gpucredit.termsheet import load_termsheet


def notes(scenario="generation-shock", k=3):
    s = load_scenario(scenario)
    spec = load_termsheet("examples/termsheet.yaml").to_deal_spec(EPOCH)
    return [NoteInput(f"note{i}", deal_params(spec, s), s) for i in range(k)]


def test_shared_factors_make_defaults_cluster():
    r = run_portfolio(notes(), 4_000, seed=5, workers=1, chunk=2_000)
    p = r["p_defaults"]
    assert abs(sum(p) - 1) < 1e-9 and len(p) == 4
    single = 1 - p[0] - 0  # P(at least one default)
    each = sum(k * pk for k, pk in enumerate(p)) / 3  # P(a given note defaults)
    # independent notes would give P(all three) = each^3; shared factors give far more
    assert p[3] > 2 * each**3, (p, each)
    assert r["p_two_or_more_default_same_year"] > 0 and single > 0
    assert all(c > 0.2 for row in r["loss_default_correlation"] for c in row)


def test_dask_local_cluster_gives_the_same_figures():
    distributed = pytest.importorskip("distributed")
    local = run_portfolio(notes(k=2), 2_000, seed=9, workers=1, chunk=1_000)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        client = dask_executor(cluster.scheduler_address)
        try:
            remote = run_portfolio(notes(k=2), 2_000, seed=9, executor=client, chunk=1_000)
        finally:
            client.close()
    assert remote == local
