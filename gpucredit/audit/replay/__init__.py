"""Replay a deployment's events through the reference model and list every difference.

The events are taken in (block, log index) order, one transaction at a time.
Events that carry a caller's choice (a revenue payment, a transfer, a signed
report) feed the model; every figure an event records that the contracts
computed (a running total, a fill, a collateral value, a rate, a payment, a
claim) is compared with the model's. A period close is replayed as a whole:
the model says which events `closePeriod()` must emit, in which order and
with which values (`ReportMissed`, `TopUpCured`, `DefaultDeclared`,
`TopUpRequired`, `PeriodClosed`, `WaterfallDistributed`, `RateChanged`,
`CouponStepped`, `Repaid`, `Paid`), and the recorded ones are aligned with
that list: a changed value, a missing or an extra event is a mismatch.

The model always continues from its own results, so one altered output is
reported once, where it was altered.
"""

from gpucredit.audit.replay.base import (
    ATTESTOR_ROLE,
    ISSUER_ROLE,
    NOTE_FACTORY_ROLE,
    OPERATOR_ROLE,
    TRUSTEE_ROLE,
    Mismatch,
    NoteSummary,
    PeriodRow,
    ReplayResult,
)
from gpucredit.audit.replay.replayer import Replayer, compare_with_chain, replay, replay_events

__all__ = [
    "ATTESTOR_ROLE",
    "ISSUER_ROLE",
    "NOTE_FACTORY_ROLE",
    "OPERATOR_ROLE",
    "TRUSTEE_ROLE",
    "Mismatch",
    "NoteSummary",
    "PeriodRow",
    "ReplayResult",
    "Replayer",
    "compare_with_chain",
    "replay",
    "replay_events",
]
