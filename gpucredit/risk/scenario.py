"""Scenario files: versioned YAML, every parameter a `{value, source}` pair.

A scenario may `extend` another (by name, from `gpucredit/risk/scenarios/`,
or by path) and override any parameter. A wrong field is reported with its
dotted path, e.g. `rent.drift_per_yaer: unknown field`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpucredit.cli_common import GpucreditError

SCENARIO_DIR = Path(__file__).parent / "scenarios"
NAMED = (
    "base",
    "rent-deflation-40",
    "generation-shock",
    "miner-double-leverage",
    "liquidity-vacuum",
)
SCHEMA_VERSION = 1


class ScenarioError(GpucreditError):
    """A scenario file that cannot be used; names every bad field."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {where}: {why}" for where, why in problems)
        super().__init__(f"{source}: invalid scenario\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Param(_Model):
    source: str = Field(min_length=3)


class PInt(_Param):
    """One parameter and where its value comes from."""

    value: int


class PFloat(_Param):
    value: float


class PBool(_Param):
    value: bool


class PList(_Param):
    value: list[float]


class PMatrix(_Param):
    value: list[list[float]]


class Fleet(_Model):
    gpus: PInt
    cost_per_gpu_usd: PFloat
    depreciation_class: PInt
    hours_per_period: PFloat
    opex_share: PFloat

    @field_validator("opex_share")
    @classmethod
    def _share(cls, v: PFloat) -> PFloat:
        return _unit(v)


class Rent(_Model):
    initial_usd_per_gpu_hour: PFloat
    drift_per_year: PFloat
    vol_per_year: PFloat


class Utilization(_Model):
    mean: PList
    sd: PList
    transition: PMatrix
    initial_regime: PInt

    @field_validator("transition")
    @classmethod
    def _stochastic(cls, v: PMatrix) -> PMatrix:
        rows = v.value
        if len(rows) != 3 or any(len(r) != 3 for r in rows):
            raise ValueError("must be a 3 x 3 matrix (strong, normal, shock)")
        for r in rows:
            if any(x < 0 for x in r) or abs(sum(r) - 1) > 1e-9:
                raise ValueError(f"every row must be probabilities summing to 1 (row {r})")
        return v

    @field_validator("mean", "sd")
    @classmethod
    def _three(cls, v: PList) -> PList:
        if len(v.value) != 3 or any(not 0 <= x <= 1 for x in v.value):
            raise ValueError("must be three values in [0, 1] (strong, normal, shock)")
        return v


class Uptime(_Model):
    base: PFloat
    incident_probability: PFloat
    incident_uptime: PFloat


class Contracts(_Model):
    take_or_pay_share: PFloat
    take_or_pay_price_usd: PFloat
    take_or_pay_months: PInt


class Generation(_Model):
    launch_probability: PFloat
    value_loss_a: PFloat
    value_loss_b: PFloat
    rent_jump: PFloat
    registry_pass_through: PFloat


class Btc(_Model):
    miner: PBool
    vol_per_year: PFloat
    shock_drift_per_month: PFloat
    liquidity_share: PFloat


class Operator(_Model):
    cure_liquidity_usd: PFloat


class Recovery(_Model):
    fire_sale_discount: PFloat
    stress_extra_discount: PFloat
    liquidation_lag_months: PInt
    economic_life_months: PInt
    refinancing_advance: PFloat
    valuation_discount_rate: PFloat


class OracleModel(_Model):
    missed_report_probability: PFloat


class Scenario(_Model):
    version: int
    name: str = Field(min_length=1)
    description: str = ""
    fleet: Fleet
    rent: Rent
    utilization: Utilization
    uptime: Uptime
    contracts: Contracts
    generation: Generation
    btc: Btc
    operator: Operator
    recovery: Recovery
    oracle: OracleModel

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"this gpucredit reads scenario version {SCHEMA_VERSION}, got {v}")
        return v

    def with_value(self, dotted: str, value: Any) -> Scenario:
        """A copy with one parameter's value replaced (`rent.drift_per_year`)."""
        data = self.model_dump()
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = {"value": value, "source": f"override of {dotted}"}
        return scenario_from_data(data, f"{self.name} ({dotted}={value})")

    def value(self, dotted: str) -> Any:
        node: Any = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return node.value


def _unit(v: PFloat) -> PFloat:
    if not 0 <= v.value <= 1:
        raise ValueError("must be a share in [0, 1]")
    return v


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "value" not in v:
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append(str(part))
    return ".".join(parts) or "(scenario)"


def scenario_from_data(data: Any, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(source, [("(scenario)", "must be a mapping of fields")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            reason = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                reason = "unknown field (see gpucredit/risk/scenarios/base.yaml)"
            elif error["type"] == "missing":
                reason = "required"
            item = (_location(error["loc"]), reason)
            if item not in problems:
                problems.append(item)
        raise ScenarioError(source, problems) from None


def _read(ref: str) -> tuple[dict[str, Any], str]:
    path = Path(ref)
    if not path.exists():
        path = SCENARIO_DIR / f"{ref}.yaml"
    if not path.exists():
        known = ", ".join(NAMED)
        raise ScenarioError(ref, [("(file)", f"no such scenario file or name (named: {known})")])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(str(path), [("(file)", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ScenarioError(str(path), [("(scenario)", "must be a mapping of fields")])
    return data, str(path)


def load_scenario(ref: str, _depth: int = 0) -> Scenario:
    """A named scenario (`base`, ...) or a YAML file, with its `extends` chain resolved."""
    data, source = _read(ref)
    parent = data.pop("extends", None)
    if parent is not None:
        if _depth > 8:
            raise ScenarioError(source, [("extends", "chain too deep (a cycle?)")])
        base = load_scenario(str(parent), _depth + 1).model_dump()
        base.pop("description", None)
        data = _merge(base, data)
    return scenario_from_data(data, source)
