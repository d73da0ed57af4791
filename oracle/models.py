"""Request and response schemas of the HTTP API (pydantic, strict).

Telemetry units:

* ``gpu_hours_available`` / ``gpu_hours_used``: decimal strings with at most 6
  decimals (stored exactly, as integer micro-GPU-hours);
* ``uptime_seconds``: seconds of the sample's interval during which the GPU
  (for a fleet-level sample: the fleet, GPU-weighted) was up;
* revenue ``amount``: integer stablecoin base units (6 decimals).

Strict mode: JSON numbers are not accepted where strings are expected and vice
versa, and floats are never accepted (the signed canonical encoding has no
floats). Unknown fields are refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_FLEET_ID = 2**63 - 1  # a signed 64-bit column (uint256 on-chain)
MAX_PERIOD = 2**32 - 1  # the contract's uint32 period index
MAX_TIMESTAMP = 2**40 - 1  # uint40, as in the contract
MAX_GPU_COUNT = 100_000
MAX_INTERVAL_SECONDS = 86_400
MAX_AMOUNT = 10**15  # one invoice: 1e9 stablecoin units of 6 decimals
MAX_SAMPLES_PER_BATCH = 5_000
MAX_REVENUE_PER_BATCH = 1_000
MICRO = 1_000_000

Bytes32Hex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$")]
SignatureHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{130}$")]
AddressHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$")]
GpuHours = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
DisplayName = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")]
FleetId = Annotated[int, Field(ge=0, le=MAX_FLEET_ID)]
Timestamp = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP)]


def to_micro(gpu_hours: str) -> int:
    """``"7.25"`` -> 7_250_000 micro-GPU-hours (exact)."""
    return int(Decimal(gpu_hours) * MICRO)


ContractType = Literal["take_or_pay", "reserved", "spot"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SampleIn(_Strict):
    """Usage of one GPU (``gpu_id`` set) or of the whole fleet over an interval
    that starts at ``ts``."""

    ts: Timestamp = Field(description="unix seconds, start of the sampled interval")
    interval_seconds: int = Field(ge=1, le=MAX_INTERVAL_SECONDS)
    gpu_id: Identifier | None = Field(default=None, description="absent for a fleet sample")
    gpu_count: int = Field(default=1, ge=1, le=MAX_GPU_COUNT, description="GPUs covered")
    gpu_hours_available: GpuHours
    gpu_hours_used: GpuHours
    uptime_seconds: int = Field(ge=0, le=MAX_INTERVAL_SECONDS)

    @model_validator(mode="after")
    def _consistent(self) -> SampleIn:
        available = to_micro(self.gpu_hours_available)
        used = to_micro(self.gpu_hours_used)
        if self.gpu_id is not None and self.gpu_count != 1:
            raise ValueError("a per-GPU sample (gpu_id set) covers exactly one GPU")
        if used > available:
            raise ValueError("gpu_hours_used exceeds gpu_hours_available")
        if available * 3600 > self.gpu_count * self.interval_seconds * MICRO:
            raise ValueError("gpu_hours_available exceeds gpu_count * interval_seconds / 3600")
        if self.uptime_seconds > self.interval_seconds:
            raise ValueError("uptime_seconds exceeds interval_seconds")
        return self


class RevenueEventIn(_Strict):
    """An invoice paid or due in the period ``ts`` falls in."""

    ts: Timestamp
    invoice_id: Identifier = Field(description="unique per fleet, forever")
    amount: int = Field(ge=1, le=MAX_AMOUNT, description="stablecoin base units (6 decimals)")
    customer: DisplayName
    contract_type: ContractType


class TelemetryBatchIn(_Strict):
    """A signed batch; see oracle.batchsig for what the signature covers.

    At least one sample or revenue event (the schema's ``anyOf``). Per-GPU
    samples of one GPU may not overlap in time, in the batch or with what the
    node already holds (409 ``sample_overlap``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["samples"], "properties": {"samples": {"minItems": 1}}},
                {"required": ["revenue"], "properties": {"revenue": {"minItems": 1}}},
            ]
        }
    )

    batch_id: Bytes32Hex = Field(description="32 random bytes; the replay key")
    samples: list[SampleIn] = Field(default_factory=list, max_length=MAX_SAMPLES_PER_BATCH)
    revenue: list[RevenueEventIn] = Field(default_factory=list, max_length=MAX_REVENUE_PER_BATCH)
    signature: SignatureHex = Field(description="EIP-712 signature by the fleet operator")

    @model_validator(mode="after")
    def _not_empty(self) -> TelemetryBatchIn:
        if not self.samples and not self.revenue:
            raise ValueError("a batch holds at least one sample or revenue event")
        return self


class PeriodCount(BaseModel):
    period: int
    samples: int
    revenue_events: int


class TelemetryAccepted(BaseModel):
    fleet_id: int
    batch_id: str
    payload_hash: str
    signer: str
    samples: int
    revenue_events: int
    periods: list[PeriodCount]
    received_at: float = Field(description="unix seconds the batch was committed")


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Aggregate(BaseModel):
    """The period's figures, computed as documented in oracle.aggregation."""

    samples: int
    revenue_events: int
    gpu_hours_available: str
    gpu_hours_used: str
    utilization_bps: int
    uptime_bps: int
    revenue: int


class PeriodView(BaseModel):
    fleet_id: int
    period: int
    period_start: int
    period_end: int
    accepts_telemetry_until: int = Field(description="period_end + settle_seconds")
    next_reportable_period: int = Field(description="the period the contract expects next")
    sealed: bool
    aggregate: Aggregate


class ObservationOut(BaseModel):
    """One node's signed observation of a period (the contract's Observation)."""

    fleet_id: int
    period: int
    period_start: int
    period_end: int
    utilization_bps: int = Field(ge=0, le=10_000)
    uptime_bps: int = Field(ge=0, le=10_000)
    revenue: int = Field(ge=0, lt=2**128)
    signer: AddressHex
    signature: SignatureHex


class ReportOut(BaseModel):
    fleet_id: int
    period: int
    status: Literal["reported", "missed"]
    utilization_bps: int
    uptime_bps: int
    revenue: int
    observations: int
    tx_hash: str | None = Field(description="transaction that recorded the report on-chain")
    block_number: int | None
    submitter: str | None
    posted_by_this_node: bool
    closed: bool = Field(description="the consumer has closed this period")
    close_tx_hash: str | None


class TxOut(BaseModel):
    fleet_id: int
    period: int
    action: str
    state: str
    nonce: int
    tx_hash: str
    attempts: int
    error: str | None


class PostingsOut(BaseModel):
    transactions: list[TxOut]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    node: str
    signer: str
    chain_id: int | None
    block_number: int | None
    oracle_address: str
    database: Literal["ok", "error"]
    chain: Literal["ok", "error"]
    peers: list[str]
    worker_last_run: float | None
    version: str
