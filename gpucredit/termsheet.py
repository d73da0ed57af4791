"""Term sheets: a note described in YAML, validated before anything is sent.

    sheet = load_termsheet("examples/termsheet.yaml")   # TermSheetError on any problem
    spec = sheet.to_deal_spec()                          # gpucredit.protocol.DealSpec

`examples/termsheet.yaml` is the annotated reference. Units are written the
way a credit desk writes them and converted exactly (no floats):

* amounts: `14,000,000`, `14_000_000`, `14M`, `250k`, `$5,000`, `1000.50 USD`
  (whole stablecoin units, at most 6 decimals);
* rates: `4.30%` or `430bps` (an integer alone is bps);
* ratios: `1.25x`, `130%` or bps;
* durations: `30d`, `12h`, `90min`, `2w`, `6mo` (30 days), `3y` (365 days);
* dates: `2027-06-30` or `2027-06-30T12:00:00Z` (UTC).

Strings may refer to environment variables as `${NAME}` (addresses of the
parties, say); an unset variable is an error. Every problem is reported with
the path of the field (`tranches[1].spread`) and the reason, all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from eth_utils import keccak
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gpucredit import yamltext
from gpucredit.deployment import GpucreditError
from gpucredit.protocol import USD, CovenantSpec, DealSpec, TrancheSpec
from gpucredit.reports import NOTE_MIN_FAULT_BOUND, fault_bound, quorum_rule_violation

__all__ = [
    "TermSheet",
    "TermSheetError",
    "load_termsheet",
    "parse_amount",
    "parse_bps",
    "parse_duration",
    "parse_ratio_bps",
]

UINT16 = 2**16 - 1
INT16 = 2**15 - 1
BPS = 10_000
_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "min": 60,
    "h": 3600,
    "d": 86_400,
    "w": 7 * 86_400,
    "mo": 30 * 86_400,
    "y": 365 * 86_400,
}
_AMOUNT_SUFFIX = {"k": 10**3, "m": 10**6, "b": 10**9}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TermSheetError(GpucreditError):
    """A term sheet that cannot be used; `problems` lists (field path, reason)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {where}: {why}" for where, why in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


# ---------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number ({what})") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a number ({what})")
    return value


def parse_amount(value: Any, decimals: int = 6) -> int:
    """Whole stablecoin units -> integer base units (6 decimals by default)."""
    if isinstance(value, bool):
        raise ValueError("expected an amount such as 1,000,000 or 1M, got a boolean")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value))
    else:
        text = str(value).strip().replace(",", "").replace("_", "").replace("$", "")
        text = re.sub(r"\s*(USD[CT]?|mUSDC)$", "", text, flags=re.IGNORECASE).strip()
        multiplier = 1
        if text and text[-1].lower() in _AMOUNT_SUFFIX:
            multiplier = _AMOUNT_SUFFIX[text[-1].lower()]
            text = text[:-1]
        amount = _decimal(text, "amount such as 1,000,000 or 1M") * multiplier
    if amount < 0:
        raise ValueError(f"an amount cannot be negative ({value})")
    units = amount * (10**decimals)
    if units != units.to_integral_value():
        raise ValueError(f"{value} has more than {decimals} decimals")
    return int(units)


def parse_bps(value: Any, *, signed: bool = False) -> int:
    """`4.30%` -> 430, `450bps` -> 450, `+300bps` -> 300, 430 -> 430."""
    if isinstance(value, bool):
        raise ValueError("expected a rate such as 4.5% or 450bps, got a boolean")
    if isinstance(value, int):
        bps = Decimal(value)
    elif isinstance(value, float):
        raise ValueError(f"{value}: write a rate as a percentage (4.5%) or in bps (450bps)")
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text.endswith("%"):
            bps = _decimal(text[:-1], "percentage") * 100
        elif text.endswith("bps") or text.endswith("bp"):
            bps = _decimal(text.rstrip("ps").rstrip("b"), "bps")
        else:
            bps = _decimal(text, "bps")
    if bps != bps.to_integral_value():
        raise ValueError(f"{value} is not a whole number of basis points")
    if bps < 0 and not signed:
        raise ValueError(f"{value} cannot be negative")
    return int(bps)


def parse_ratio_bps(value: Any) -> int:
    """`1.25x` -> 12,500; `130%` -> 13,000; 12,500 -> 12,500."""
    if isinstance(value, str) and value.strip().lower().endswith("x"):
        bps = _decimal(value.strip()[:-1], "multiple") * BPS
        if bps != bps.to_integral_value() or bps < 0:
            raise ValueError(f"{value} is not a whole number of basis points")
        return int(bps)
    return parse_bps(value)


def parse_duration(value: Any) -> int:
    """`30d` -> 2,592,000 seconds (units: s, min, h, d, w, mo, y)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r}: give a unit, e.g. 30d, 12h, 6mo or 3y")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", value.lower())
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"{value!r} is not a duration (units: {', '.join(_DURATION_UNITS)})")
    seconds = Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds != seconds.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of seconds")
    return int(seconds)


def parse_timestamp(value: Any) -> int:
    """A date or date-time (UTC unless it says otherwise) -> unix seconds."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or an ISO 8601 time)") from None
    return parse_timestamp(moment)


def _address(value: Any) -> str:
    return yamltext.address(value)


def _wrap(parser):
    def run(value: Any) -> Any:
        return parser(value)

    return run


Amount = Annotated[int, BeforeValidator(_wrap(parse_amount))]
Bps = Annotated[int, BeforeValidator(_wrap(parse_bps))]
SignedBps = Annotated[int, BeforeValidator(lambda v: parse_bps(v, signed=True))]
RatioBps = Annotated[int, BeforeValidator(_wrap(parse_ratio_bps))]
Duration = Annotated[int, BeforeValidator(_wrap(parse_duration))]
Address = Annotated[str, BeforeValidator(_wrap(_address))]


def _bps_at_most(value: int, limit: int, what: str) -> int:
    if value > limit:
        raise ValueError(f"{what} {value} bps is above {limit} bps")
    return value


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleEntry(_Model):
    after: Duration  # after the subscription end (the fleet's genesis)
    cumulative: Bps  # share of the original principal repaid by then


class Amortization(_Model):
    """`bullet` (all at maturity), `straight_line` (equal instalments every
    `every`, the first after `first`), or an explicit cumulative `schedule`."""

    type: Literal["bullet", "straight_line", "schedule"] = "bullet"
    every: Duration | None = None
    first: Duration | None = None
    schedule: list[ScheduleEntry] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _consistent(self) -> Amortization:
        if self.type == "straight_line" and not self.every:
            raise ValueError("straight_line needs `every` (e.g. every: 90d)")
        if self.type == "schedule":
            if not self.schedule:
                raise ValueError("schedule needs a list of {after, cumulative} entries")
            previous_after, previous_bps = -1, -1
            for i, entry in enumerate(self.schedule):
                if entry.after <= previous_after:
                    raise ValueError(f"schedule[{i}].after must be later than the entry before")
                if entry.cumulative < previous_bps or entry.cumulative > BPS:
                    raise ValueError(
                        f"schedule[{i}].cumulative must not decrease and be at most 100%"
                    )
                previous_after, previous_bps = entry.after, entry.cumulative
        if self.type != "schedule" and self.schedule:
            raise ValueError(f"`schedule` given but type is {self.type}")
        if self.type != "straight_line" and (self.every or self.first):
            raise ValueError(f"`every`/`first` given but type is {self.type}")
        return self

    def offsets(self, term: int) -> list[tuple[int, int]]:
        """(seconds after the subscription end, cumulative bps), within `term`."""
        if self.type == "bullet":
            return []
        if self.type == "schedule":
            assert self.schedule is not None
            return [(e.after, e.cumulative) for e in self.schedule]
        assert self.every is not None
        dates = []
        at = self.first or self.every
        while at <= term:
            dates.append(at)
            at += self.every
        count = len(dates)
        return [(d, BPS * (i + 1) // count) for i, d in enumerate(dates)]


class Tranche(_Model):
    name: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1, max_length=16)
    seniority: int
    size: Amount
    min_subscription: Amount = 1_000 * USD
    reference_rate: Bps = 430
    spread: Bps
    floor: Bps = 500
    cap: Bps = 2_500
    min_collateral_ratio: RatioBps = 13_000
    amortization: Amortization | None = None

    @field_validator("seniority", mode="before")
    @classmethod
    def _seniority(cls, value: Any) -> Any:
        names = {"senior": 0, "junior": 1}
        if isinstance(value, str) and value.lower() in names:
            return names[value.lower()]
        return value

    @field_validator("reference_rate", "spread", "floor", "cap")
    @classmethod
    def _rate_fits(cls, value: int) -> int:
        return _bps_at_most(value, UINT16, "rate")

    @field_validator("min_collateral_ratio")
    @classmethod
    def _ratio_fits(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be above zero (the drawdown's collateral test)")
        return _bps_at_most(value, UINT16, "ratio")

    @model_validator(mode="after")
    def _consistent(self) -> Tranche:
        if self.size == 0:
            raise ValueError("size must be above zero")
        if self.min_subscription > self.size:
            raise ValueError("min_subscription is larger than the tranche size")
        if self.floor > self.cap:
            raise ValueError(f"floor {self.floor} bps is above cap {self.cap} bps")
        # NoteTranche packs a holder into one slot: face in 96 bits, the
        # coupon index in 96 bits (79 years of accrual at a 100 % cap)
        if self.cap > 10_000:
            raise ValueError(f"cap {self.cap} bps is above 10,000 bps (100 % a year)")
        if self.size >= 2**96:
            raise ValueError("size must be below 2^96 units")
        return self


class Subscription(_Model):
    opens: Literal["now"] | int = "now"  # unix seconds once parsed
    length: Duration = 14 * 86_400

    @field_validator("opens", mode="before")
    @classmethod
    def _opens(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "now":
            return "now"
        return parse_timestamp(value)

    @field_validator("length")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("the subscription window must be longer than zero")
        return value


class Covenants(_Model):
    dscr_min: RatioBps = 12_500
    max_ltv: RatioBps = 7_500
    low_utilization_max_ltv: RatioBps = 6_500
    uptime_sla: RatioBps = 9_900
    sweep_share: RatioBps = 5_000
    reserve_months: int = Field(default=3, ge=0, le=255)
    cure_period: Duration = 30 * 86_400
    fee_per_period: Amount = 5_000 * USD

    @field_validator("dscr_min", "max_ltv", "low_utilization_max_ltv")
    @classmethod
    def _fits(cls, value: int) -> int:
        return _bps_at_most(value, UINT16, "value")

    @field_validator("uptime_sla", "sweep_share")
    @classmethod
    def _share(cls, value: int) -> int:
        return _bps_at_most(value, BPS, "share")

    @field_validator("cure_period")
    @classmethod
    def _cure(cls, value: int) -> int:
        if not 0 < value < 2**32:
            raise ValueError("must be above zero and below 136 years")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Covenants:
        if self.max_ltv == 0 or self.low_utilization_max_ltv == 0:
            raise ValueError("LTV limits must be above zero")
        if self.low_utilization_max_ltv > self.max_ltv:
            raise ValueError(
                f"low_utilization_max_ltv {self.low_utilization_max_ltv} bps is above "
                f"max_ltv {self.max_ltv} bps (it is the tighter limit while the step-up is on)"
            )
        return self


class StepDown(_Model):
    utilization_at_least: RatioBps = 9_000
    periods: int = Field(default=3, ge=1, le=255)
    change: SignedBps = -200

    @model_validator(mode="after")
    def _consistent(self) -> StepDown:
        _bps_at_most(self.utilization_at_least, BPS, "utilization")
        if not -INT16 <= self.change <= 0:
            raise ValueError(f"a step-down must be between -{INT16} and 0 bps, got {self.change}")
        return self


class StepUp(_Model):
    utilization_below: RatioBps = 6_000
    periods: int = Field(default=1, ge=1, le=255)
    change: SignedBps = 300

    @model_validator(mode="after")
    def _consistent(self) -> StepUp:
        _bps_at_most(self.utilization_below, BPS, "utilization")
        if not 0 <= self.change <= INT16:
            raise ValueError(f"a step-up must be between 0 and {INT16} bps, got {self.change}")
        return self


class Steps(_Model):
    down: StepDown = Field(default_factory=StepDown)
    up: StepUp = Field(default_factory=StepUp)

    @model_validator(mode="after")
    def _consistent(self) -> Steps:
        if self.up.utilization_below > self.down.utilization_at_least:
            raise ValueError(
                f"up.utilization_below {self.up.utilization_below} bps is above "
                f"down.utilization_at_least {self.down.utilization_at_least} bps"
            )
        return self


class Oracle(_Model):
    """n signers tolerate f lying or silent ones when quorum = 2f + 1 and n >= 3f + 1."""

    signers: list[Address] | None = None  # default: the deployment's oracle_signers
    quorum: int = Field(default=3, ge=1, le=16)  # 2f + 1: 3 tolerates one faulty signer

    @model_validator(mode="after")
    def _consistent(self) -> Oracle:
        if self.signers is not None:
            if len(set(self.signers)) != len(self.signers):
                raise ValueError("a signer is listed twice")
            count = len(self.signers)
        else:
            count = 16  # the deployment's signers are checked when the note is opened
        problem = quorum_rule_violation(count, self.quorum, NOTE_MIN_FAULT_BOUND)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def fault_bound(self) -> int:
        """f: how many signers may lie or stay silent without moving or stopping a report."""
        return fault_bound(self.quorum)


class Parties(_Model):
    operator: Address | None = None  # default: the deployment's only operator
    trustee: Address | None = None  # default: the deployment's trustee
    fee_recipient: Address | None = None  # default: the issuer


class TermSheet(_Model):
    """A note: its tranches (senior first), timeline, covenants and oracle set-up."""

    name: str = Field(min_length=1, max_length=96)
    size: Amount | None = None  # total principal: checked against the tranches
    subscription: Subscription = Field(default_factory=Subscription)
    term: Duration | None = None
    maturity: int | None = None  # unix seconds once parsed
    period: Duration = 30 * 86_400
    heartbeat: Duration = 7 * 86_400
    amortization: Amortization = Field(default_factory=Amortization)
    tranches: list[Tranche] = Field(min_length=1, max_length=2)
    covenants: Covenants = Field(default_factory=Covenants)
    steps: Steps = Field(default_factory=Steps)
    oracle: Oracle = Field(default_factory=Oracle)
    parties: Parties = Field(default_factory=Parties)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section whose fields are all commented out reads as null: use the defaults.
        if isinstance(data, dict):
            sections = ("subscription", "covenants", "steps", "oracle", "parties", "amortization")
            return {k: v for k, v in data.items() if not (k in sections and v is None)}
        return data

    @field_validator("maturity", mode="before")
    @classmethod
    def _maturity(cls, value: Any) -> Any:
        return None if value is None else parse_timestamp(value)

    @field_validator("period", "heartbeat")
    @classmethod
    def _uint32(cls, value: int) -> int:
        if not 0 < value < 2**32:
            raise ValueError("must be above zero and below 136 years")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TermSheet:
        problems = []
        if (self.term is None) == (self.maturity is None):
            problems.append("give exactly one of `term` (e.g. 3y) or `maturity` (a date)")
        seniorities = [t.seniority for t in self.tranches]
        if seniorities != list(range(len(self.tranches))):
            problems.append(
                f"tranches must be listed senior first with seniority 0, 1 (got {seniorities})"
            )
        symbols = [t.symbol for t in self.tranches]
        if len(set(symbols)) != len(symbols):
            problems.append(f"tranche symbols must differ (got {symbols})")
        total = sum(t.size for t in self.tranches)
        if self.size is not None and self.size != total:
            problems.append(
                f"size {self.size / USD:,.6g} does not equal the tranches' total {total / USD:,.6g}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        opens = self.subscription.opens
        end = opens + self.subscription.length if isinstance(opens, int) else None
        if end is not None and self.maturity is not None and self.maturity <= end:
            raise ValueError("maturity is not after the subscription end")
        return self

    # ---- derived -------------------------------------------------------

    def start(self, now: int) -> int:
        """When the subscription window opens, given the chain's time `now`."""
        return now if self.subscription.opens == "now" else int(self.subscription.opens)

    def subscription_end(self, now: int) -> int:
        return self.start(now) + self.subscription.length

    def term_seconds(self, now: int) -> int:
        if self.term is not None:
            return self.term
        assert self.maturity is not None
        return self.maturity - self.subscription_end(now)

    def check_timeline(self, now: int) -> None:
        """Raises TermSheetError when the window or maturity are already past at `now`."""
        problems = []
        if self.subscription_end(now) <= now:
            problems.append(("subscription", "the window ends before now: nothing to subscribe"))
        if self.term_seconds(now) <= 0:
            problems.append(("maturity", "maturity is not after the subscription end"))
        if self.term_seconds(now) > 0:
            term = self.term_seconds(now)
            for i, tranche in enumerate(self.tranches):
                offsets = (tranche.amortization or self.amortization).offsets(term)
                if offsets and offsets[-1][0] > term:
                    where = (
                        f"tranches[{i}].amortization" if tranche.amortization else "amortization"
                    )
                    problems.append((where, "a repayment date falls after maturity"))
        if problems:
            raise TermSheetError(self.name, problems)

    def covenant_spec(self) -> CovenantSpec:
        c, s = self.covenants, self.steps
        return CovenantSpec(
            dscr_min_bps=c.dscr_min,
            max_ltv_bps=c.max_ltv,
            low_util_max_ltv_bps=c.low_utilization_max_ltv,
            uptime_sla_bps=c.uptime_sla,
            step_down_util_bps=s.down.utilization_at_least,
            step_down_periods=s.down.periods,
            step_down_bps=s.down.change,
            step_up_util_bps=s.up.utilization_below,
            step_up_periods=s.up.periods,
            step_up_bps=s.up.change,
            sweep_share_bps=c.sweep_share,
            reserve_months=c.reserve_months,
            cure_period=c.cure_period,
            fee_per_period=c.fee_per_period,
        )

    def to_deal_spec(self, now: int) -> DealSpec:
        """The `gpucredit.protocol.DealSpec` (brownie's `open_deal` takes it too)."""
        self.check_timeline(now)
        term = self.term_seconds(now)
        tranches = [
            TrancheSpec(
                name=t.name,
                symbol=t.symbol,
                seniority=t.seniority,
                max_size=t.size,
                spread_bps=t.spread,
                min_subscription=t.min_subscription,
                reference_rate_bps=t.reference_rate,
                floor_rate_bps=t.floor,
                cap_rate_bps=t.cap,
                min_collateral_ratio_bps=t.min_collateral_ratio,
                amortization=(t.amortization or self.amortization).offsets(term),
            )
            for t in self.tranches
        ]
        return DealSpec(
            tranches=tranches,
            subscription_days=self.subscription.length // 86_400,
            term_days=term // 86_400,
            covenants=self.covenant_spec(),
            period_length=self.period,
            heartbeat=self.heartbeat,
            quorum=self.oracle.quorum,
            subscription_seconds=self.subscription.length,
            term_seconds=term,
        )


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _expand_env(node: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if isinstance(node, dict):
        return {
            k: _expand_env(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append((path, f"environment variable {name} is not set"))
                return match.group(0)
            return os.environ[name]

        return _ENV.sub(sub, node)
    return node


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part in ("int", "str"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(term sheet)"


def _reason(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see examples/termsheet.yaml)"
    if error["type"] == "missing":
        return "required"
    return message


def termsheet_from_data(data: Any, source: str = "term sheet") -> TermSheet:
    if not isinstance(data, dict):
        raise TermSheetError(source, [("(term sheet)", "must be a mapping of fields")])
    problems: list[tuple[str, str]] = []
    data = _expand_env(data, "", problems)
    if problems:
        raise TermSheetError(source, problems)
    try:
        return TermSheet.model_validate(data)
    except ValidationError as exc:
        seen = []
        for error in exc.errors():
            item = (_location(error["loc"]), _reason(error))
            if item not in seen:
                seen.append(item)
        raise TermSheetError(source, seen) from None


def load_termsheet(path: str | Path) -> TermSheet:
    """Reads and validates a YAML term sheet (TermSheetError lists every problem)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TermSheetError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = yamltext.load(text)  # unquoted 0x addresses stay addresses
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise TermSheetError(str(path), [(where, f"not valid YAML: {exc}")]) from None
    return termsheet_from_data(data, str(path))


def termsheet_hash(path: str | Path) -> str:
    """keccak256 of the term sheet file as written: recorded with the note."""
    return "0x" + keccak(Path(path).read_bytes()).hex()
