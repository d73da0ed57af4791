"""Several notes on the same market: joint losses and defaults in the same year.

Every note in a portfolio sees the same market factors on a path (rent
index, utilization regime, generation launches, BTC, hence the liquidation
market's stress), drawn once per chunk from the chunk's factor seed; each
note's own draws (utilization noise, uptime incidents, oracle outages) come
from its own stream. Chunks run on a process pool by default or on a Dask
cluster (`distributed.Client(address)`) through the same `_map`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gpucredit.risk import engine
from gpucredit.risk.analysis import CHUNK, KEEP, _chunks, _map, summarise
from gpucredit.risk.engine import DealParams
from gpucredit.risk.scenario import Scenario
from gpucredit.risk.simulate import build, draw_factors, horizon

PERIODS_PER_YEAR = 12


@dataclass
class NoteInput:
    name: str
    deal: DealParams
    scenario: Scenario


def portfolio_chunk(notes: list[NoteInput], n: int, seed: int, chunk: int) -> dict[str, Any]:
    """One chunk: shared factors, every note on them; losses in token units."""
    periods = max(horizon(x.deal, x.scenario)[1] for x in notes)
    factor_seq, *own = np.random.SeedSequence([seed, chunk]).spawn(1 + len(notes))
    factors = draw_factors(notes[0].scenario, n, periods, np.random.default_rng(factor_seq))
    losses, defaults = [], []
    for x, seq in zip(notes, own, strict=True):
        p = horizon(x.deal, x.scenario)[1]
        f = factors.__class__(
            factors.regime[:, :p], factors.rent[:, :p], factors.launches[:, :p], factors.btc[:, :p]
        )
        paths, operator, market = build(x.deal, x.scenario, f, np.random.default_rng(seq))
        run = engine.run(x.deal, paths, keep=KEEP, actor=operator)
        res = summarise(x.deal, run, operator, market)
        principal = np.array(
            [x.deal.senior.original] + ([x.deal.junior.original] if x.deal.junior else [])
        )
        losses.append((res.loss * principal).sum(axis=1))
        defaults.append(res.default_period)
    return {"loss": np.stack(losses, 1), "default_period": np.stack(defaults, 1)}


def _principal(x: NoteInput) -> int:
    return x.deal.senior.original + (x.deal.junior.original if x.deal.junior else 0)


def run_portfolio(
    notes: list[NoteInput],
    paths: int,
    seed: int = 1,
    *,
    workers: int | None = None,
    executor: Any = None,
    chunk: int = CHUNK,
    progress: Any = None,
) -> dict[str, Any]:
    sizes = _chunks(paths, chunk)
    jobs = [(notes, k, seed, i) for i, k in enumerate(sizes)]
    parts = list(_map(portfolio_chunk, jobs, workers, executor, progress, sizes))
    loss = np.concatenate([p["loss"] for p in parts])  # (paths, notes), token units
    first = np.concatenate([p["default_period"] for p in parts])
    total = loss.sum(axis=1)
    principal = sum(_principal(x) for x in notes)
    var = float(np.quantile(total, 0.99))
    year = np.where(first >= 0, first // PERIODS_PER_YEAR, -1)
    years = int(year.max()) + 1 if (year >= 0).any() else 0
    same_year = np.zeros(loss.shape[0], dtype=bool)
    for y in range(years):
        same_year |= (year == y).sum(axis=1) >= 2
    defaults = (first >= 0).sum(axis=1)
    joint = np.bincount(defaults, minlength=len(notes) + 1) / loss.shape[0]
    counts, edges = np.histogram(total / principal, bins=20, range=(0.0, 1.0))
    corr = np.corrcoef((loss > 0).T.astype(float)) if len(notes) > 1 else np.ones((1, 1))
    return {
        "notes": [x.name for x in notes],
        "paths": int(loss.shape[0]),
        "principal": int(principal),
        "el_share": float(total.mean() / principal),
        "var99_share": var / principal,
        "es99_share": float(total[total >= var].mean() / principal),
        "note_el_share": [
            float(
                loss[:, k].mean()
                / (x.deal.senior.original + (x.deal.junior.original if x.deal.junior else 0))
            )
            for k, x in enumerate(notes)
        ],
        "p_defaults": [float(x) for x in joint],  # P(exactly k notes default)
        "p_two_or_more_default_same_year": float(same_year.mean()),
        "loss_default_correlation": np.nan_to_num(corr).round(4).tolist(),
        "loss_histogram": ([float(e) for e in edges], [int(c) for c in counts]),
    }


def dask_executor(address: str) -> Any:
    """A Dask client for the scheduler at `address` (needs `distributed`)."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "--scheduler needs the `distributed` package (pip install dask[distributed])"
        ) from exc
    return Client(address)
