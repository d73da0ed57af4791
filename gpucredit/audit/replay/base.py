"""The replay's vocabulary: its results, how a difference is recorded and
how a recorded value is compared with the model's."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak

from gpucredit.audit.errors import AuditInputError
from gpucredit.audit.export import (
    AbiBook,
    Event,
    Manifest,
)
from gpucredit.audit.model import (
    Identities,
    Oracle,
    Registry,
    Servicer,
    Tranche,
)

ISSUER_ROLE = "0x" + keccak(text="ISSUER_ROLE").hex()
NOTE_FACTORY_ROLE = "0x" + keccak(text="NOTE_FACTORY_ROLE").hex()
OPERATOR_ROLE = "0x" + keccak(text="OPERATOR_ROLE").hex()
ATTESTOR_ROLE = "0x" + keccak(text="ATTESTOR_ROLE").hex()
TRUSTEE_ROLE = "0x" + keccak(text="TRUSTEE_ROLE").hex()

# Role events, and AccessControlDefaultAdminRules' two-step hand-over notices
# (the hand-over itself shows as RoleRevoked + RoleGranted, which the model reads).
_ROLE_EVENTS = (
    "RoleGranted",
    "RoleRevoked",
    "RoleAdminChanged",
    "DefaultAdminTransferScheduled",
    "DefaultAdminTransferCanceled",
    "DefaultAdminDelayChangeScheduled",
    "DefaultAdminDelayChangeCanceled",
)
VALUATION_CHANGE_DELAY = SIGNER_CHANGE_DELAY = 2 * 86_400  # the contracts' timelocks
GRACE_PERIOD = 7 * 86_400  # a queued change is executable only in [eta, eta + GRACE_PERIOD]
NOT_VALUE_RAISING = "queued a change that raises no value"


def _waited(pending: tuple[Any, int] | None, value: Any, ev: Event) -> bool:
    """`pending` (value, eta) queued exactly `value` and its eta has passed."""
    return pending is not None and pending[0] == value and pending[1] <= ev["timestamp"]


def _in_grace(pending: tuple[Any, int] | None, ev: Event) -> bool:
    """The queued change (value, eta), if any, is executed by its deadline
    eta + GRACE_PERIOD (a missing queue is `_waited`'s mismatch)."""
    return pending is None or ev["timestamp"] <= pending[1] + GRACE_PERIOD


def _raises_class_values(current: tuple[int, int] | None, value: tuple[int, int]) -> bool:
    """A curve worth more than the existing `current` at some age: a slower
    markdown or a higher floor, unless `current` never depreciates (the
    registry queues such a change)."""
    if current is None or current[0] == 0:
        return False
    return value[0] < current[0] or value[1] > current[1]


# Events that change nothing the model decides (ERC-20 allowances, EIP-712
# domain notices, ownership of the mock stablecoin).
_IGNORED = {"Approval", "EIP712DomainChanged", "OwnershipTransferred"}
_CLOSE_PREAMBLE = {"TopUpCured", "DefaultDeclared", "TopUpRequired"}
_CLOSE_TAIL_SERVICER = {"WaterfallDistributed", "CouponStepped"}
_CLOSE_TAIL_TRANCHE = {"RateChanged", "Repaid", "Paid"}
_ANCHORS = frozenset(("PeriodClosed", "WaterfallDistributed"))
_MISSING = object()


@dataclass
class Mismatch:
    """One difference between the model and the record."""

    block: int
    tx: str
    log_index: int | None
    line: int | None
    contract: str
    address: str
    event: str
    field: str
    expected: Any
    recorded: Any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f"block {self.block} tx {self.tx[:12]}"
        if self.log_index is not None:
            where += f" log {self.log_index}"
        if self.line is not None:
            where += f" (line {self.line})"
        return (
            f"{where}: {self.contract}.{self.event} {self.field}: "
            f"expected {self.expected!r}, recorded {self.recorded!r}"
        )


@dataclass
class PeriodRow:
    """One period close as recorded, with the model's rates after it."""

    note_id: int
    servicer: str
    period: int
    block: int
    timestamp: int
    tx: str
    inputs: dict[str, Any]
    result: dict[str, Any]
    waterfall: dict[str, Any]
    senior_rate_bps: int
    junior_rate_bps: int | None
    top_up: dict[str, Any] | None
    mismatches: int


@dataclass
class NoteSummary:
    note_id: int
    servicer: str
    tranches: list[str]
    covenant_terms: dict[str, Any]
    tranche_terms: list[dict[str, Any]]


@dataclass
class ReplayResult:
    header: dict[str, Any]
    mismatches: list[Mismatch]
    periods: list[PeriodRow]
    notes: list[NoteSummary]
    events: int
    transactions: int
    closes: int
    fields_checked: int

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _as_int(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool:
        return None
    if isinstance(value, str):
        try:
            return int(value, 0) if value.startswith(("0x", "-0x")) else int(value)
        except ValueError:
            return None
    return None


def _same(expected: Any, recorded: Any) -> bool:
    if isinstance(expected, bool):
        return isinstance(recorded, bool) and recorded is expected
    if isinstance(expected, int):
        return _as_int(recorded) == expected
    if isinstance(expected, str):
        return isinstance(recorded, str) and recorded.lower() == expected.lower()
    if isinstance(expected, list):
        return (
            isinstance(recorded, list)
            and len(recorded) == len(expected)
            and all(_same(e, r) for e, r in zip(expected, recorded, strict=True))
        )
    return bool(expected == recorded)


def _int_args(values: dict[str, Any]) -> dict[str, Any]:
    """A recorded struct with numbers as ints (bools and others as they are)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        number = _as_int(value) if isinstance(value, str) else None
        out[key] = number if number is not None else value
    return out


class ReplayBase:
    """State the handlers share, and how they record a difference.

    `Replayer` (gpucredit.audit.replay.replayer) sets every attribute; each
    mixin of this package handles the events of one kind of decision.
    """

    header: dict[str, Any]
    manifest: Manifest
    fill: bool
    book: AbiBook | None
    registry: Registry
    identities: Identities
    oracle: Oracle
    kind_of: dict[str, str]
    oracle_address: str
    tranches: dict[str, Tranche]
    servicers: dict[str, Servicer]
    servicer_of: dict[str, Servicer]
    servicer_of_fleet: dict[int, Servicer]
    notes: list[NoteSummary]
    roles: dict[str, dict[str, set[str]]]
    mismatches: list[Mismatch]
    periods: list[PeriodRow]
    fields_checked: int
    closes: int
    _raw_covenant_terms: dict[str, Any]
    _raw_tranche_terms: dict[str, Any]
    _registry_born_tx: str | None
    _tx: str | None
    _tx_event: Event | None
    _tx_mints: dict[str, int]
    _tx_releases: dict[tuple[str, str], int]
    _tx_burns: dict[tuple[str, str], int]
    _tx_repaid: set[str]
    _tx_released: dict[str, Event]  # servicer -> its NoteReleased, until its WoundUp
    _tx_wrap: dict[str, Any]  # tranche -> its part of this transaction's WoundUp
    # the last Transfer of each pair in the transaction: ("mint", tranche) or
    # ("release" | "burn", tranche, holder) -> its event
    _tx_transfers: dict[tuple[str, ...], Event]
    _claims: dict[int, list[tuple[Event, str, str, str]]]
    _last_set: dict[tuple[int, str], Event]  # (fleet, "signers" | "operator") -> last event
    _asset: str | None

    def _unpaired(self, ev: Event, key: tuple[str, ...], name: str, want: int, got: int) -> None:
        """A `Transfer` and the event it pairs with (`DrawnDown`, `SharesClaimed`,
        `EscrowedFaceClaimed`, `PrincipalRedeemed`) disagree: both lines are
        reported, either may be the altered one."""
        self._mismatch(ev, name, want, got)
        transfer = self._tx_transfers.pop(key, None)
        if transfer is not None:
            self._mismatch(transfer, "value", f"{want} ({ev['event']})", got)

    def _claim(self, ev: Event, note_id: int, role: str, name: str, value: str) -> None:
        """Records who `ev` says holds `role` of a note (its operator, fee
        recipient, trustee, issuer), for `_settle_claims` at the factory's
        `NoteCreated`, which names every party of the note in the same
        transaction."""
        self._claims.setdefault(note_id, []).append((ev, role, name, value.lower()))

    def _settle_claims(self, created: Event, note_id: int, parties: dict[str, str]) -> None:
        """Each party a creation event named is the one `NoteCreated` names. Two
        records of one fact that disagree are both reported: either may be the
        altered one."""
        for ev, role, name, value in self._claims.pop(note_id, []):
            party = parties[role].lower()
            self.fields_checked += 1
            if party != value:
                self._mismatch(ev, name, f"{party} (NoteCreated.{role})", value)
                self._mismatch(created, role, f"{value} ({ev['event']}.{name})", party)

    def _wrap_paid(self, ev: Event, escrow: str) -> None:  # enforcement's
        raise NotImplementedError

    def _end_wrap(self) -> None:  # enforcement's
        raise NotImplementedError

    def _begin(self, ev: Event) -> None:  # the orchestrator's
        raise NotImplementedError

    def handle(self, ev: Event) -> None:  # the orchestrator's
        raise NotImplementedError

    def _mismatch(self, ev: Event, name: str, expected: Any, recorded: Any) -> None:
        if self.fill:  # a generated history must be valid: its generator has a bug
            raise AuditInputError(
                f"generated {ev.get('event')} at block {ev.get('block')}: {name} "
                f"expected {expected!r}, got {recorded!r}"
            )
        self.mismatches.append(
            Mismatch(
                block=int(ev.get("block", 0)),
                tx=str(ev.get("tx", "")),
                log_index=ev.get("log_index"),
                line=ev.get("line"),
                contract=str(ev.get("contract", "")),
                address=str(ev.get("address", "")),
                event=str(ev.get("event", "")),
                field=name,
                expected=expected,
                recorded=recorded,
            )
        )

    def _rule(self, ev: Event, rule: str, problem: str | None) -> None:
        """A condition the contract enforces (it would have reverted otherwise)."""
        self.fields_checked += 1
        if problem is not None:
            self._mismatch(ev, rule, "holds", problem)

    def _require(self, ev: Event, rule: str, ok: object, problem: str) -> None:
        """`ok` is taken for its truth value (a flag, a count, a found record)."""
        self._rule(ev, rule, None if ok else problem)

    def _check(self, ev: Event, expected: dict[str, Any], prefix: str = "") -> None:
        """Compares (or, filling, writes) the event's computed fields."""
        args = ev["args"]
        if self.fill:
            args.update(expected)
            return
        self._compare(ev, expected, args, prefix)

    def _compare(self, ev: Event, expected: dict[str, Any], args: Any, prefix: str) -> None:
        for name, value in expected.items():
            recorded = args.get(name, _MISSING) if isinstance(args, dict) else _MISSING
            if isinstance(value, dict):
                if not isinstance(recorded, dict):
                    self._mismatch(ev, prefix + name, value, None)
                    continue
                self._compare(ev, value, recorded, f"{prefix}{name}.")
                continue
            self.fields_checked += 1
            if recorded is _MISSING:
                self._mismatch(ev, prefix + name, value, None)
            elif not _same(value, recorded):
                self._mismatch(ev, prefix + name, value, recorded)

    def _tranche(self, ev: Event) -> Tranche:
        return self.tranches[ev["address"].lower()]

    def _servicer(self, ev: Event) -> Servicer:
        return self.servicers[ev["address"].lower()]
