"""The oracle service's exceptions: one base class, one subclass per failure.

Every error the service raises on purpose derives from :class:`OracleError`.
Errors that reach the HTTP layer carry their status code and a stable
machine-readable ``code``; the API turns them into
``{"error": {"code": ..., "message": ..., "detail": ...}}``.
"""

from __future__ import annotations

from typing import Any


class OracleError(Exception):
    """Base class of every error raised by the oracle service."""

    status_code = 500
    code = "oracle_error"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(OracleError):
    """The settings are missing, malformed or use a default secret."""

    code = "config_invalid"


class TelemetryRejected(OracleError):
    """A telemetry batch is well-formed JSON but not acceptable (422)."""

    status_code = 422
    code = "telemetry_rejected"


class TimestampOutOfWindow(TelemetryRejected):
    """A timestamp lies in the future or outside the fleet's open periods."""

    code = "timestamp_out_of_window"


class PeriodClosed(TimestampOutOfWindow):
    """The period a timestamp falls in no longer accepts telemetry."""

    code = "period_closed"


class ValueOutOfRange(TelemetryRejected):
    """A value, or a period's running total, exceeds what the service accepts."""

    code = "value_out_of_range"


class SignatureInvalid(OracleError):
    """The batch signature cannot be parsed or recovered (401)."""

    status_code = 401
    code = "signature_invalid"


class SignerForbidden(OracleError):
    """The batch is signed by a key other than the fleet's operator (403)."""

    status_code = 403
    code = "signer_not_operator"


class NotFound(OracleError):
    """The fleet, period or observation does not exist here (404)."""

    status_code = 404
    code = "not_found"


class FleetNotServed(NotFound):
    """The fleet is unknown on-chain or this node is not one of its signers."""

    code = "fleet_not_served"


class Conflict(OracleError):
    """The request repeats something already stored (409)."""

    status_code = 409
    code = "conflict"


class BatchReplayed(Conflict):
    """The same batch was already accepted; nothing new is stored."""

    code = "batch_replayed"


class BatchIdReused(Conflict):
    """A batch id is reused for different content."""

    code = "batch_id_reused"


class DuplicateInvoice(Conflict):
    """An invoice id was already recorded for the fleet (or repeats in the batch)."""

    code = "duplicate_invoice"


class SampleOverlap(Conflict):
    """A per-GPU sample overlaps an interval of the same GPU already stored, or
    another sample of the batch: a GPU's time is counted once."""

    code = "sample_overlap"


class RateLimited(OracleError):
    """The operator pushes batches faster than its rate limit; retry later (429)."""

    status_code = 429
    code = "rate_limited"


class ChainUnavailable(OracleError):
    """The RPC endpoint failed or timed out; the caller may retry (503)."""

    status_code = 503
    code = "chain_unavailable"


class PeerError(OracleError):
    """A peer node answered with something unusable."""

    status_code = 502
    code = "peer_error"
