"""The market and the operator, month by month, on many paths (docs/risk.md).

`draw_factors` draws the shared market factors: utilization regime (strong /
normal / shock, a Markov chain with persistence), the GPU-hour rent index
(drifting down with volatility, jumping down at generation launches),
generation launches (random; each one takes a non-linear bite of the older
cards' value), and BTC (falling with the utilization shocks). Notes in a
portfolio share them. `build` turns them, with the note's own draws (uptime
incidents, utilization noise, oracle outages), into the engine's
`PathInputs` and an `Operator` that acts before each close: it posts cash to
cure a top-up while its liquidity (partly BTC for ex-miners) allows, the
trustee steps in at a default and liquidates after a lag at market value less
a fire-sale discount that deepens under stress, and at maturity a performing
note is refinanced up to an advance on market value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpucredit.protocol import USD, DealSpec
from gpucredit.risk.engine import (
    BatchParams,
    DealParams,
    PathInputs,
    TrancheParams,
    collateral_value,
)
from gpucredit.risk.scenario import Scenario

DAY = 86_400
EPOCH = 1_800_000_000  # simulated subscription opening (any fixed time works)
# Registry depreciation classes (CollateralRegistry constructor): markdown/quarter, floor
CLASSES = {0: (1_667, 0), 1: (500, 0), 2: (375, 0)}


@dataclass
class Factors:
    """Shared market factors, (paths, periods) each."""

    regime: np.ndarray  # 0 strong, 1 normal, 2 shock
    rent: np.ndarray  # rent index, 1.0 at the start
    launches: np.ndarray  # generation launches so far
    btc: np.ndarray  # BTC index, 1.0 at the start

    def slice(self, a: int, b: int) -> Factors:
        return Factors(self.regime[a:b], self.rent[a:b], self.launches[a:b], self.btc[a:b])


def draw_factors(s: Scenario, n: int, periods: int, rng: np.random.Generator) -> Factors:
    trans = np.asarray(s.utilization.transition.value)
    cum = np.cumsum(trans, axis=1)
    regime = np.empty((n, periods), dtype=np.int8)
    r = np.full(n, s.utilization.initial_regime.value, dtype=np.int8)
    u = rng.random((n, periods))
    for p in range(periods):
        r = (u[:, p, None] > cum[r]).sum(axis=1).astype(np.int8)
        regime[:, p] = np.minimum(r, 2)
        r = regime[:, p]
    launch = rng.random((n, periods)) < s.generation.launch_probability.value
    launches = np.cumsum(launch, axis=1)
    mu = math.log1p(s.rent.drift_per_year.value) / 12
    vol = s.rent.vol_per_year.value / math.sqrt(12)
    z = rng.standard_normal((n, periods))
    log_rent = np.cumsum(
        mu - vol * vol / 2 + vol * z + launch * math.log1p(-s.generation.rent_jump.value), axis=1
    )
    bvol = s.btc.vol_per_year.value / math.sqrt(12)
    zb = rng.standard_normal((n, periods))
    log_btc = np.cumsum(
        -bvol * bvol / 2 + bvol * zb + (regime == 2) * s.btc.shock_drift_per_month.value, axis=1
    )
    return Factors(regime, np.exp(log_rent), launches, np.exp(log_btc))


def deal_params(spec: DealSpec, scenario: Scenario, start: int = EPOCH) -> DealParams:
    """The engine's view of a term sheet's note, its fleet from the scenario."""
    genesis = start + (spec.subscription_seconds or spec.subscription_days * DAY)
    maturity = genesis + (spec.term_seconds or spec.term_days * DAY)
    drawdown = genesis - DAY
    tranches = [
        TrancheParams(
            original=t.max_size,
            reference_rate_bps=t.reference_rate_bps,
            spread_bps=t.spread_bps,
            floor_rate_bps=t.floor_rate_bps,
            cap_rate_bps=t.cap_rate_bps,
            maturity=maturity,
            schedule=tuple((genesis + off, bps) for off, bps in t.amortization),
        )
        for t in spec.tranches
    ]
    f = scenario.fleet
    markdown, floor = CLASSES[f.depreciation_class.value]
    cost = int(round(f.gpus.value * f.cost_per_gpu_usd.value * USD))
    from gpucredit.audit.model import CovenantTerms

    c = spec.covenants
    cov = CovenantTerms(
        dscr_min_bps=c.dscr_min_bps,
        max_ltv_bps=c.max_ltv_bps,
        low_util_max_ltv_bps=c.low_util_max_ltv_bps,
        uptime_sla_bps=c.uptime_sla_bps,
        step_down_util_bps=c.step_down_util_bps,
        step_down_periods=c.step_down_periods,
        step_down_bps=c.step_down_bps,
        step_up_util_bps=c.step_up_util_bps,
        step_up_periods=c.step_up_periods,
        step_up_bps=c.step_up_bps,
        sweep_share_bps=c.sweep_share_bps,
        reserve_months=c.reserve_months,
        cure_period=c.cure_period,
        fee_per_period=c.fee_per_period,
    )
    return DealParams(
        covenants=cov,
        senior=tranches[0],
        junior=tranches[1] if len(tranches) > 1 else None,
        batches=(BatchParams(cost, markdown, floor, start),),
        genesis=genesis,
        period_length=spec.period_length,
        heartbeat=spec.heartbeat,
        drawdown_at=drawdown,
    )


def horizon(deal: DealParams, scenario: Scenario) -> tuple[int, int]:
    """(periods to maturity, periods simulated: maturity plus a wind-down tail)."""
    term = -(-(deal.senior.maturity - deal.genesis) // deal.period_length)
    tail = scenario.recovery.liquidation_lag_months.value + 3
    return term, term + tail


@dataclass
class Market:
    """Per-path market values the operator and the trustee see, (paths, periods)."""

    value: np.ndarray  # fleet market value, token units
    discount: np.ndarray  # fire-sale discount in force
    btc: np.ndarray


class Operator:
    """Acts before each close: cures top-ups, liquidates after a step-in, refinances."""

    def __init__(self, deal: DealParams, s: Scenario, paths: PathInputs, market: Market) -> None:
        n, _ = paths.shape
        self.deal = deal
        self.s = s
        self.paths = paths
        self.market = market
        self.used = np.zeros(n)
        self.stepped_at = np.full(n, -1)
        self.liquidated = np.zeros(n, dtype=bool)
        self.refinanced = np.zeros(n, dtype=bool)
        self.recovered = np.zeros(n, dtype=np.int64)
        self.liquidity = s.operator.cure_liquidity_usd.value * USD
        self.share = s.btc.liquidity_share.value if s.btc.miner.value else 0.0

    def __call__(self, p: int, v: Any) -> None:
        paths, m = self.paths, self.market
        performing = v.status == 0
        # cure an open top-up with cash, if the operator's liquidity allows
        gpu = collateral_value(self.deal, v.ts, paths.haircut_bps[:, p])
        shortfall = np.maximum(v.topup_required - gpu - v.cash_collateral, 0)
        available = self.liquidity * ((1 - self.share) + self.share * m.btc[:, p]) - self.used
        cure = (v.topup_deadline != 0) & performing & (shortfall > 0) & (available >= shortfall)
        post = np.where(cure, shortfall, 0)
        paths.cash_posted[:, p] += post
        self.used += post
        # the trustee steps in at once after a default and sells after the lag
        stepped = v.status == 2
        self.stepped_at = np.where(stepped & (self.stepped_at < 0), p, self.stepped_at)
        sold_before = self.liquidated.copy()
        sell = stepped & ~self.liquidated & (p >= self.stepped_at + self.lag)
        proceeds = np.where(sell, (m.value[:, p] * (1 - m.discount[:, p])).astype(np.int64), 0)
        self.liquidated |= sell
        self.recovered += proceeds
        operating = np.where(sold_before | sell, 0, paths.revenue_cash[:, p])
        paths.revenue_reported[:, p] = np.where(sold_before | sell, 0, paths.revenue_reported[:, p])
        # at maturity a performing note refinances up to an advance on market value
        due = v.senior_outstanding + v.junior_outstanding
        refi = performing & ~self.refinanced & (v.ts >= self.deal.senior.maturity) & (due > 0)
        advance = self.s.recovery.refinancing_advance.value
        balloon = np.where(
            refi, np.minimum(due, (m.value[:, p] * advance * (1 - m.discount[:, p]))), 0
        ).astype(np.int64)
        self.refinanced |= refi
        paths.revenue_cash[:, p] = operating + proceeds + balloon

    @property
    def lag(self) -> int:
        return self.s.recovery.liquidation_lag_months.value


def market_value(s: Scenario, factors: Factors, gen: np.ndarray, months: np.ndarray) -> np.ndarray:
    """What a buyer pays for the fleet: its remaining net rent, discounted (token units).

    Per GPU: this month's net spot rent at normal utilization, times an
    annuity over the remaining economic life in which rents keep deflating at
    the scenario's drift and are discounted at the buyer's rate, times the
    generation factor (older cards' non-linear loss of demand).
    """
    f, r = s.fleet, s.recovery
    unit = (
        f.hours_per_period.value
        * s.utilization.mean.value[1]
        * s.rent.initial_usd_per_gpu_hour.value
        * factors.rent
        * (1 - f.opex_share.value)
    )
    q = ((1 + s.rent.drift_per_year.value) / (1 + r.valuation_discount_rate.value)) ** (1 / 12)
    remaining = np.maximum(r.economic_life_months.value - (months + 1), 0)
    annuity = q * (1 - q**remaining) / (1 - q) if q != 1 else remaining.astype(float)
    return f.gpus.value * unit * annuity * gen * USD


def build(
    deal: DealParams,
    s: Scenario,
    factors: Factors,
    rng: np.random.Generator,
) -> tuple[PathInputs, Operator, Market]:
    """The engine's inputs on the factor paths, with the note's own draws."""
    n, periods = factors.regime.shape
    f = s.fleet
    mean = np.asarray(s.utilization.mean.value)[factors.regime]
    sd = np.asarray(s.utilization.sd.value)[factors.regime]
    spot_util = np.clip(mean + sd * rng.standard_normal((n, periods)), 0.0, 1.0)
    incident = rng.random((n, periods)) < s.uptime.incident_probability.value
    uptime = np.where(incident, s.uptime.incident_uptime.value, s.uptime.base.value)
    c = s.contracts
    months = np.arange(periods)[None, :]
    tp_share = np.where(months < c.take_or_pay_months.value, c.take_or_pay_share.value, 0.0)
    utilization = tp_share + (1 - tp_share) * spot_util  # reserved capacity counts as used
    hours = f.gpus.value * f.hours_per_period.value
    spot_price = s.rent.initial_usd_per_gpu_hour.value * factors.rent
    gross = (
        hours
        * uptime
        * (tp_share * c.take_or_pay_price_usd.value + (1 - tp_share) * spot_util * spot_price)
    )
    net = np.maximum(gross * (1 - f.opex_share.value), 0.0)
    revenue = (net * USD).astype(np.int64)

    gen = np.exp(
        -s.generation.value_loss_a.value * factors.launches**s.generation.value_loss_b.value
    )
    haircut = np.round((1 - gen) * s.generation.registry_pass_through.value * 10_000)
    haircut = np.maximum.accumulate(haircut.astype(np.int64), axis=1)  # cuts only: no timelock
    value = market_value(s, factors, gen, months)
    stressed = (factors.regime == 2) | (factors.rent < 0.6)
    r = s.recovery
    discount = np.minimum(
        r.fire_sale_discount.value + r.stress_extra_discount.value * stressed, 0.95
    )

    missed = rng.random((n, periods)) < s.oracle.missed_report_probability.value
    ends = np.array([deal.period_end(p) for p in range(periods)], dtype=np.int64)
    lag = np.where(missed, deal.heartbeat + DAY, DAY)
    close_ts = ends[None, :] + lag
    paths = PathInputs(
        revenue_cash=revenue,
        revenue_reported=revenue.copy(),
        utilization=np.round(utilization * 10_000).astype(np.int64),
        uptime=np.round(uptime * 10_000).astype(np.int64),
        reported=~missed,
        late=np.zeros((n, periods), dtype=bool),
        close_ts=close_ts,
        haircut_bps=haircut,
        cash_posted=np.zeros((n, periods), dtype=np.int64),
        step_in=np.ones((n, periods), dtype=bool),
    )
    # column-major: the engine and the operator work one period (column) at a time
    for name, array in list(paths.__dict__.items()):
        setattr(paths, name, np.asfortranarray(array))
    market = Market(
        value=np.asfortranarray(value),
        discount=np.asfortranarray(discount),
        btc=np.asfortranarray(factors.btc),
    )
    return paths, Operator(deal, s, paths, market), market
