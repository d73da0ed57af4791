"""Monte Carlo runs of a note: loss, default, IRR and covenant-event statistics.

The paths are split into chunks; each chunk draws its factors from its own
seed (`SeedSequence(seed).spawn`), so a run's figures do not depend on how
the chunks are scheduled: in this process, on a process pool (the default,
one worker per core), or on a Dask cluster (`executor=` any object with
`submit(fn, *args)` returning a future with `.result()`, e.g.
`distributed.Client`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpucredit.risk import engine
from gpucredit.risk.engine import DealParams
from gpucredit.risk.scenario import Scenario
from gpucredit.risk.simulate import Factors, build, draw_factors, horizon

CHUNK = 25_000
FAN_PATHS = 100_000  # fan-chart percentiles from the first paths only (bounded memory)
EVENTS = (
    "step_down",
    "step_up",
    "topup_demanded",
    "topup_cured",
    "sweep_on",
    "equity_blocked",
    "default",
    "step_in",
)
FAN_FIELDS = ("dscr", "ltv", "senior_rate")
KEEP = (
    "seniorInterest",
    "seniorPrincipal",
    "sweep",
    "juniorInterest",
    "juniorPrincipal",
    "dscr",
    "ltv",
    "senior_rate",
    "old_step",
    "new_step",
    "topup_new",
    "cured",
    "sweep_on",
    "equity_blocked",
    "defaulted",
    "stepped_in",
    "senior_outstanding",
    "junior_outstanding",
)
PERIOD_YEARS = 30 / 365


@dataclass
class ChunkResult:
    """Per-path summaries of one chunk."""

    loss: np.ndarray  # (paths, tranches) principal loss share
    irr: np.ndarray  # (paths, tranches) annualised
    default_period: np.ndarray  # (paths,) first event of default, -1 if none
    events: np.ndarray  # (events, periods) counts
    fans: dict[str, np.ndarray]  # field -> (paths, periods) float32


def _irr(cf: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Per-period IRR of each row of cash flows (t = 0, 1, ...), by Newton's method.

    f(v) = sum cf_t v^t with v = 1 / (1 + r), evaluated with its derivative
    by Horner's rule: a few vector operations per period, not per power.
    Stops once no path moves by more than 1e-12.
    """
    cf = np.ascontiguousarray(cf.T)  # period-major: each Horner step reads one row
    v = np.full(cf.shape[1], 1 / 1.005)
    for _ in range(iterations):
        f = np.zeros_like(v)
        df = np.zeros_like(v)
        for row in cf[::-1]:
            df = df * v + f
            f = f * v + row
        step = np.where(df != 0, f / np.where(df == 0, 1, df), 0)
        v = np.clip(v - step, 1 / 2.0, 1 / 0.05)
        if np.abs(step).max() < 1e-12:
            break
    return 1 / v - 1


def simulate_chunk(
    deal: DealParams,
    scenario: Scenario,
    n: int,
    seed: int,
    chunk: int,
    factors: Factors | None = None,
    fans: bool = True,
) -> ChunkResult:
    """`n` paths of the note; factor and idiosyncratic draws from (seed, chunk)."""
    _, periods = horizon(deal, scenario)
    factor_seq, own_seq = np.random.SeedSequence([seed, chunk]).spawn(2)
    if factors is None:
        factors = draw_factors(scenario, n, periods, np.random.default_rng(factor_seq))
    paths, operator, market = build(deal, scenario, factors, np.random.default_rng(own_seq))
    run = engine.run(deal, paths, keep=KEEP, actor=operator)
    return summarise(deal, run, operator, market, fans=fans)


def summarise(
    deal: DealParams, run: engine.Run, operator: Any, market: Any, fans: bool = True
) -> ChunkResult:
    tranches = [deal.senior] + ([deal.junior] if deal.junior else [])
    n, periods = run["senior_outstanding"].shape
    end_s = run["senior_outstanding"][:, -1]
    end_j = run["junior_outstanding"][:, -1]
    # Left unpaid at the horizon without a sale: a final liquidation, senior first.
    unsold = ~operator.liquidated
    proceeds = np.where(
        unsold & (end_s + end_j > 0),
        (market.value[:, -1] * (1 - market.discount[:, -1])).astype(np.int64),
        0,
    )
    rec_s = np.minimum(end_s, proceeds)
    rec_j = np.minimum(end_j, proceeds - rec_s)
    flows = [
        (run["seniorInterest"] + run["seniorPrincipal"] + run["sweep"], end_s - rec_s, rec_s),
        (run["juniorInterest"] + run["juniorPrincipal"], end_j - rec_j, rec_j),
    ]
    losses, irrs = [], []
    for t, (paid, unpaid, recovered) in zip(tranches, flows, strict=False):
        cf = np.zeros((n, periods + 1))
        cf[:, 0] = -t.original
        cf[:, 1:] = paid
        cf[:, -1] += recovered
        losses.append(unpaid / t.original)
        irrs.append((1 + _irr(cf / t.original)) ** (1 / PERIOD_YEARS) - 1)
    defaulted = run["defaulted"]
    first = np.where(defaulted.any(axis=1), defaulted.argmax(axis=1), -1)
    events = np.stack(
        [
            (run["new_step"] < run["old_step"]).sum(axis=0),
            (run["new_step"] > run["old_step"]).sum(axis=0),
            run["topup_new"].sum(axis=0),
            run["cured"].sum(axis=0),
            run["sweep_on"].sum(axis=0),
            run["equity_blocked"].sum(axis=0),
            defaulted.sum(axis=0),
            run["stepped_in"].sum(axis=0),
        ]
    )
    kept = {name: run[name].astype(np.float32) for name in FAN_FIELDS} if fans else {}
    return ChunkResult(np.stack(losses, 1), np.stack(irrs, 1), first, events, kept)


def _chunks(n: int, size: int) -> list[int]:
    return [min(size, n - a) for a in range(0, n, size)]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run_note(
    deal: DealParams,
    scenario: Scenario,
    paths: int,
    seed: int = 1,
    *,
    workers: int | None = None,
    executor: Any = None,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> NoteRisk:
    """`paths` Monte Carlo paths of a note under `scenario`, in chunks, in parallel."""
    sizes = _chunks(paths, chunk)
    results = list(
        _map(
            simulate_chunk,
            [
                (deal, scenario, k, seed, i, None, i * chunk < FAN_PATHS)
                for i, k in enumerate(sizes)
            ],
            workers,
            executor,
            progress,
            sizes,
        )
    )
    return NoteRisk.combine(deal, scenario, results)


def _map(
    fn: Callable[..., Any],
    jobs: list[tuple[Any, ...]],
    workers: int | None,
    executor: Any,
    progress: Callable[[int], None] | None,
    weights: list[int] | None = None,
) -> Iterable[Any]:
    """Runs `fn(*job)` for every job in order: in process, on a pool or on `executor`.

    `progress(weight)` is called as each job's result arrives.
    """
    workers = default_workers() if workers is None else workers
    weights = weights or [1] * len(jobs)
    if executor is None and (workers <= 1 or len(jobs) == 1):
        for job, weight in zip(jobs, weights, strict=True):
            out = fn(*job)
            if progress:
                progress(weight)
            yield out
        return
    own = executor is None
    pool = ProcessPoolExecutor(max_workers=workers) if own else executor
    try:
        futures = [pool.submit(fn, *job) for job in jobs]
        for weight, fut in zip(weights, futures, strict=True):
            out = fut.result()
            if progress:
                progress(weight)
            yield out
    finally:
        if own:
            pool.shutdown()


@dataclass
class TrancheRisk:
    name: str
    pd: float  # probability of a principal loss
    lgd: float  # mean loss given a loss
    el: float  # expected loss, share of principal
    var99: float
    es99: float
    irr_mean: float
    irr_p1: float
    irr_p5: float
    irr_p50: float
    irr_p95: float
    loss_histogram: tuple[list[float], list[int]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class NoteRisk:
    scenario: str
    paths: int
    periods: int
    term_periods: int
    pd_event_of_default: float  # within the term
    tranches: list[TrancheRisk]
    events: dict[str, list[float]]  # probability by month
    fans: dict[str, dict[str, list[float]]]  # field -> percentile -> by month
    loss: np.ndarray  # (paths, tranches)
    default_period: np.ndarray

    @classmethod
    def combine(cls, deal: DealParams, scenario: Scenario, parts: list[ChunkResult]) -> NoteRisk:
        term, periods = horizon(deal, scenario)
        loss = np.concatenate([c.loss for c in parts])
        irr = np.concatenate([c.irr for c in parts])
        first = np.concatenate([c.default_period for c in parts])
        n = loss.shape[0]
        events = sum(c.events for c in parts) / n  # type: ignore[operator]
        tranches = []
        names = ["senior", "junior"]
        for k in range(loss.shape[1]):
            lk, ik = loss[:, k], irr[:, k]
            hit = lk > 1e-12
            var = float(np.quantile(lk, 0.99))
            tail = lk[lk >= var]
            counts, edges = np.histogram(lk, bins=20, range=(0.0, 1.0))
            tranches.append(
                TrancheRisk(
                    name=names[k],
                    pd=float(hit.mean()),
                    lgd=float(lk[hit].mean()) if hit.any() else 0.0,
                    el=float(lk.mean()),
                    var99=var,
                    es99=float(tail.mean()) if tail.size else var,
                    irr_mean=float(ik.mean()),
                    irr_p1=float(np.quantile(ik, 0.01)),
                    irr_p5=float(np.quantile(ik, 0.05)),
                    irr_p50=float(np.quantile(ik, 0.5)),
                    irr_p95=float(np.quantile(ik, 0.95)),
                    loss_histogram=([float(e) for e in edges], [int(c) for c in counts]),
                )
            )
        fans: dict[str, dict[str, list[float]]] = {}
        for name in FAN_FIELDS:
            data = np.concatenate([c.fans[name] for c in parts if c.fans])
            if name == "dscr":
                data = np.minimum(data, 100_000)  # "no debt service" reads as max: cap at 10x
            qs = np.quantile(data, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
            fans[name] = {
                f"p{int(q * 100)}": [float(x) for x in row]
                for q, row in zip((0.05, 0.25, 0.5, 0.75, 0.95), qs, strict=True)
            }
        return cls(
            scenario=scenario.name,
            paths=n,
            periods=periods,
            term_periods=term,
            pd_event_of_default=float(((first >= 0) & (first < term)).mean()),
            tranches=tranches,
            events={e: [float(x) for x in events[i]] for i, e in enumerate(EVENTS)},
            fans=fans,
            loss=loss,
            default_period=first,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "paths": self.paths,
            "periods": self.periods,
            "term_periods": self.term_periods,
            "pd_event_of_default": self.pd_event_of_default,
            "tranches": [t.as_dict() for t in self.tranches],
            "events_by_month": self.events,
            "fans": self.fans,
        }
