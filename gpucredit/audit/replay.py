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

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak

from gpucredit.audit.errors import AuditInputError
from gpucredit.audit.export import (
    FACTORY,
    IDENTITIES,
    ORACLE,
    REGISTRY,
    SERVICER,
    STABLECOIN,
    TRANCHE,
    AbiBook,
    Event,
    Loaded,
    Manifest,
)
from gpucredit.audit.model import (
    ACTIVE,
    BATCH_ATTESTED,
    BATCH_PLEDGED,
    BATCH_REGISTERED,
    BATCH_REGISTERING,
    BATCH_REJECTED,
    BATCH_VOIDED,
    BPS,
    CANCELLED,
    CHALLENGE_WINDOW,
    CLOSED,
    DEFAULTED,
    MAX_KEYS_PER_CHUNK,
    NOTE_OPEN,
    NOTE_RELEASED,
    NOTE_STEPPED_IN,
    PERFORMING,
    PLEDGE_WINDOW,
    REGISTRATION_WINDOW,
    RELEASED,
    REPAID,
    REPORTED,
    STEPPED_IN,
    SUBSCRIPTION,
    WRITTEN_OFF,
    ZERO_ADDRESS,
    Batch,
    CovenantTerms,
    Expected,
    Fleet,
    Identities,
    NoteCollateral,
    Oracle,
    Registry,
    Report,
    Servicer,
    Tranche,
    TrancheTerms,
    ceil_div,
)
from gpucredit.reports import quorum_rule_violation

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


class Replayer:
    """Feeds events to the model; compares (or, with `fill`, writes) their outputs.

    `fill=True` is the generator's mode (gpucredit.audit.synthetic): instead of
    comparing, each handler writes the model's outputs into the event, and a
    `closePeriod` placeholder expands into the events a close emits.
    """

    def __init__(self, header: dict[str, Any], *, fill: bool = False, book: AbiBook | None = None):
        try:
            self.manifest = Manifest.from_dict(header["manifest"])
            terms = header["terms"]
            covenant_terms = {k.lower(): v for k, v in terms["servicers"].items()}
            tranche_terms = {k.lower(): v for k, v in terms["tranches"].items()}
        except (KeyError, TypeError) as exc:
            raise AuditInputError("header: manifest and terms are required") from exc
        self.header = header
        self._raw_covenant_terms = covenant_terms
        self._raw_tranche_terms = tranche_terms
        self.fill = fill
        self.book = book
        if fill and book is None:
            raise AuditInputError("fill mode needs the ABIs (AbiBook)")
        self.registry = Registry()
        self.identities = Identities()
        self.oracle = Oracle()
        self.kind_of = self.manifest.contract_names()
        self.oracle_address = self.manifest.contracts[ORACLE]
        self.tranches: dict[str, Tranche] = {}
        self.servicers: dict[str, Servicer] = {}
        self.servicer_of: dict[str, Servicer] = {}  # tranche address -> servicer
        self.servicer_of_fleet: dict[int, Servicer] = {}
        self.notes: list[NoteSummary] = []
        for note in self.manifest.notes:
            models = []
            for address in note.tranches:
                try:
                    t_terms = TrancheTerms.from_json(tranche_terms[address.lower()])
                except KeyError as exc:
                    raise AuditInputError(f"header: no terms for tranche {address}") from exc
                tranche = Tranche(address, t_terms)
                self.tranches[address.lower()] = tranche
                models.append(tranche)
            try:
                c_terms = CovenantTerms.from_json(covenant_terms[note.servicer.lower()])
            except KeyError as exc:
                raise AuditInputError(f"header: no terms for servicer {note.servicer}") from exc
            junior = models[1] if len(models) > 1 else None
            servicer = Servicer(note.servicer, note.note_id, c_terms, models[0], junior)
            self.servicers[note.servicer.lower()] = servicer
            self.servicer_of_fleet[note.note_id] = servicer
            for tranche in models:
                self.servicer_of[tranche.address.lower()] = servicer
            self.notes.append(
                NoteSummary(
                    note.note_id,
                    note.servicer,
                    list(note.tranches),
                    covenant_terms[note.servicer.lower()],
                    [tranche_terms[a.lower()] for a in note.tranches],
                )
            )
        self.roles: dict[str, dict[str, set[str]]] = {}
        self._registry_born_tx: str | None = None
        self.mismatches: list[Mismatch] = []
        self.periods: list[PeriodRow] = []
        self.fields_checked = 0
        self.closes = 0
        self._tx: str | None = None
        self._tx_event: Event | None = None
        self._tx_mints: dict[str, int] = {}
        self._tx_releases: dict[tuple[str, str], int] = {}
        self._tx_burns: dict[tuple[str, str], int] = {}
        self._tx_repaid: set[str] = set()
        self._handlers: dict[tuple[str, str], Callable[[Event], None]] = {
            (REGISTRY, "DepreciationClassSet"): self._depreciation_class_set,
            (REGISTRY, "ModelSet"): self._model_set,
            (REGISTRY, "DepreciationClassQueued"): self._depreciation_class_queued,
            (REGISTRY, "DepreciationClassCancelled"): self._depreciation_class_cancelled,
            (REGISTRY, "ModelQueued"): self._model_queued,
            (REGISTRY, "ModelCancelled"): self._model_cancelled,
            (REGISTRY, "NoteOpened"): self._note_opened,
            (REGISTRY, "NoteBound"): self._note_bound,
            (REGISTRY, "BatchRegistered"): self._batch_registered,
            (REGISTRY, "GpusRegistered"): self._gpus_registered,
            (REGISTRY, "BatchAttested"): self._batch_attested,
            (REGISTRY, "BatchRejected"): self._batch_rejected,
            (REGISTRY, "BatchPledged"): self._batch_pledged,
            (REGISTRY, "BatchVoided"): self._batch_voided,
            (REGISTRY, "NoteDefectProven"): self._note_defect_proven,
            (REGISTRY, "NoteReleased"): self._registry_note_released,
            (REGISTRY, "LiensTransferred"): self._liens_transferred,
            (IDENTITIES, "IdentityRegistered"): self._identity_registered,
            (IDENTITIES, "IdentityRemoved"): self._identity_removed,
            (IDENTITIES, "IdentityFrozen"): self._identity_frozen,
            (ORACLE, "FleetRegistered"): self._fleet_registered,
            (ORACLE, "SignersChanged"): self._signers_changed,
            (ORACLE, "SignerChangeQueued"): self._signer_change_queued,
            (ORACLE, "SignerChangeCancelled"): self._signer_change_cancelled,
            (ORACLE, "OperatorChangeQueued"): self._operator_change_queued,
            (ORACLE, "OperatorChangeCancelled"): self._operator_change_cancelled,
            (ORACLE, "FleetOperatorChanged"): self._fleet_operator_changed,
            (ORACLE, "ReportSubmitted"): self._report_submitted,
            (ORACLE, "ReportMissed"): self._report_missed,
            (TRANCHE, "TrancheInitialised"): self._tranche_initialised,
            (SERVICER, "ServicerInitialised"): self._servicer_initialised,
            (TRANCHE, "DepositRequest"): self._deposit_request,
            (TRANCHE, "Paused"): self._paused,
            (TRANCHE, "Unpaused"): self._unpaused,
            (TRANCHE, "DepositRequestCancelled"): self._deposit_request_cancelled,
            (TRANCHE, "SubscriptionClosed"): self._subscription_closed,
            (TRANCHE, "RequestFulfilled"): self._request_fulfilled,
            (TRANCHE, "SharesClaimed"): self._shares_claimed,
            (TRANCHE, "EscrowedFaceClaimed"): self._escrowed_face_claimed,
            (TRANCHE, "DrawnDown"): self._drawn_down,
            (TRANCHE, "OfferingCancelled"): self._offering_cancelled,
            (TRANCHE, "RateChanged"): self._rate_changed,
            (TRANCHE, "Paid"): self._paid,
            (TRANCHE, "Repaid"): self._repaid,
            (TRANCHE, "CouponClaimed"): self._coupon_claimed,
            (TRANCHE, "PrincipalRedeemed"): self._principal_redeemed,
            (TRANCHE, "AmortizationScheduleSet"): self._amortization_schedule_set,
            (TRANCHE, "WrittenOff"): self._written_off,
            (FACTORY, "NoteCreated"): self._note_created,
            (SERVICER, "TrusteeSet"): self._trustee_set,
            (SERVICER, "WoundUp"): self._wound_up,
            (SERVICER, "LateCashTrapped"): self._late_cash_trapped,
            (SERVICER, "LateCashSettled"): self._late_cash_settled,
            (SERVICER, "DefectsRecorded"): self._defects_recorded,
            (TRANCHE, "Transfer"): self._tranche_transfer,
            (SERVICER, "RevenueReceived"): self._revenue_received,
            (SERVICER, "CashCollateralPosted"): self._cash_collateral_posted,
            (SERVICER, "CapitalDisbursed"): self._capital_disbursed,
            (SERVICER, "TopUpCured"): self._top_up_cured,
            (SERVICER, "DefaultDeclared"): self._default_declared,
            (SERVICER, "SteppedIn"): self._stepped_in,
            (SERVICER, "Withdrawn"): self._withdrawn,
            (SERVICER, "NoteReleased"): self._servicer_note_released,
            (SERVICER, "PeriodClosed"): self._outside_close,
            (SERVICER, "WaterfallDistributed"): self._outside_close,
            (SERVICER, "CouponStepped"): self._outside_close,
            (SERVICER, "TopUpRequired"): self._defect_top_up,
        }
        self.known_events: dict[str, set[str]] = {}
        for contract, name in self._handlers:
            self.known_events.setdefault(contract, set()).add(name)
        for contract in (REGISTRY, IDENTITIES, ORACLE, SERVICER, TRANCHE):
            self.known_events[contract].update(_ROLE_EVENTS)
        self.known_events[TRANCHE].add("Approval")
        self.known_events[ORACLE].add("EIP712DomainChanged")
        self.known_events[STABLECOIN] = {"Transfer", "Approval", "OwnershipTransferred"}

    # ------------------------------------------------------------------
    # Reporting
    # ------------------------------------------------------------------

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

    # ------------------------------------------------------------------
    # Driving
    # ------------------------------------------------------------------

    def run(self, events: list[Event], problems: Iterable[tuple[int, str]] = ()) -> ReplayResult:
        """Checks the record's structure, then replays it transaction by transaction."""
        for line, problem in problems:
            self._mismatch({"line": line}, "line", "a JSON event line", problem)
        ordered = self._structure(events)
        transactions = 0
        start = 0
        count = len(ordered)
        while start < count:
            tx = ordered[start]["tx"]
            end = start + 1
            while end < count and ordered[end]["tx"] == tx:
                end += 1
            self._transaction(ordered[start:end])
            transactions += 1
            start = end
        self._end_tx()
        return ReplayResult(
            header=self.header,
            mismatches=self.mismatches,
            periods=self.periods,
            notes=self.notes,
            events=len(events),
            transactions=transactions,
            closes=self.closes,
            fields_checked=self.fields_checked,
        )

    def _structure(self, events: list[Event]) -> list[Event]:
        """File-level checks: order, duplicates, block times, addresses, names."""
        first = int(self.header.get("from_block", 0))
        last = self.header.get("to_block")
        previous: tuple[int, int] | None = None
        seen: set[tuple[int, int]] = set()
        stamps: dict[int, int] = {}
        tx_blocks: dict[str, int] = {}
        kept: list[Event] = []
        kinds: dict[str, str | None] = {}  # address as written -> contract name
        for ev in events:
            block, index, stamp = ev.get("block"), ev.get("log_index"), ev.get("timestamp")
            if type(block) is not int or type(index) is not int or type(stamp) is not int:
                block, index, stamp = _as_int(block), _as_int(index), _as_int(stamp)
                if block is None or index is None or stamp is None:
                    self._mismatch(ev, "block/log_index/timestamp", "integers", "malformed")
                    continue
            ev["block"], ev["log_index"], ev["timestamp"] = block, index, stamp
            key = (block, index)
            if key in seen:
                duplicate = f"duplicate of block {block} log {index}"
                self._mismatch(ev, "log_index", "a log seen once", duplicate)
                continue
            seen.add(key)
            if previous is not None and key < previous:
                self._mismatch(
                    ev,
                    "order",
                    f"after block {previous[0]} log {previous[1]}",
                    f"block {block} log {index}",
                )
            previous = key if previous is None or key > previous else previous
            if block < first or (last is not None and block > int(last)):
                self._mismatch(ev, "block", f"within {first}..{last}", block)
            known = stamps.setdefault(block, stamp)
            if known != stamp:
                self._mismatch(ev, "timestamp", known, stamp)
            tx_block = tx_blocks.setdefault(ev["tx"], block)
            if tx_block != block:
                self._mismatch(ev, "tx", f"one block ({tx_block}) per transaction", block)
            address = ev["address"]
            if address in kinds:
                kind = kinds[address]
            else:
                kind = kinds[address] = self.kind_of.get(str(address).lower())
            if kind is None:
                self._mismatch(ev, "address", "a contract of the manifest", ev["address"])
                continue
            if ev["contract"] != kind:
                self._mismatch(ev, "contract", kind, ev["contract"])
                ev["contract"] = kind
            if ev["event"] not in self.known_events.get(kind, ()):
                self._mismatch(ev, "event", f"an event of {kind}", ev["event"])
                continue
            kept.append(ev)
        kept.sort(key=lambda e: (e["block"], e["log_index"]))
        last_block, last_time = -1, -1
        for ev in kept:  # block times never go backwards
            if ev["block"] > last_block:
                if ev["timestamp"] < last_time:
                    floor = f">= {last_time} (block {last_block})"
                    self._mismatch(ev, "timestamp", floor, ev["timestamp"])
                last_block, last_time = ev["block"], ev["timestamp"]
        return kept

    def _begin(self, ev: Event) -> None:
        if ev["tx"] != self._tx:
            self._end_tx()
            self._tx = ev["tx"]
            self._tx_event = ev

    def _end_tx(self) -> None:
        """Pairs that one call emits together: each half without the other is a mismatch."""
        if not (self._tx_mints or self._tx_releases or self._tx_burns or self._tx_repaid):
            return
        ev = self._tx_event
        if ev is not None:
            for tranche, value in self._tx_mints.items():
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="DrawnDown"),
                    "(event)",
                    f"DrawnDown with the mint of {value}",
                    "missing",
                )
            for (tranche, holder), value in self._tx_releases.items():
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="SharesClaimed"),
                    "(event)",
                    f"SharesClaimed by {holder} for the {value} face released",
                    "missing",
                )
            for (tranche, holder), value in self._tx_burns.items():
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="PrincipalRedeemed"),
                    "(event)",
                    f"PrincipalRedeemed by {holder} with the burn of {value}",
                    "missing",
                )
            for tranche in self._tx_repaid:
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="Paid"),
                    "(event)",
                    "Paid after Repaid",
                    "missing",
                )
        self._tx_mints = {}
        self._tx_releases = {}
        self._tx_burns = {}
        self._tx_repaid = set()

    def _transaction(self, group: list[Event]) -> None:
        if len(group) == 1 and group[0]["event"] not in _ANCHORS:
            self.handle(group[0])
            return
        segments = self._close_segments(group)
        i = 0
        count = len(group)
        while i < count:
            segment = segments.get(i)
            if segment is not None:
                end, servicer, anchor = segment
                self._close(group[i : end + 1], servicer, group[anchor])
                i = end + 1
                continue
            self.handle(group[i])
            i += 1

    def handle(self, ev: Event) -> None:
        """One event outside a period close."""
        self._begin(ev)
        contract = ev["contract"]
        name = ev["event"]
        handler = self._handlers.get((contract, name))
        if handler is not None:
            handler(ev)
        elif name == "RoleGranted" or name == "RoleRevoked":
            self._role(ev)

    # ------------------------------------------------------------------
    # Period closes
    # ------------------------------------------------------------------

    def _close_segments(self, group: list[Event]) -> dict[int, tuple[int, Servicer, int]]:
        """Start index -> (end index, servicer, anchor index) of each close in a transaction."""
        for ev in group:
            if ev["event"] in _ANCHORS:
                break
        else:
            return {}
        used = [False] * len(group)
        anchors: list[tuple[int, Servicer]] = []
        for i, ev in enumerate(group):
            if ev["event"] == "PeriodClosed" and ev["contract"] == SERVICER:
                anchors.append((i, self.servicers[ev["address"].lower()]))
        segments: dict[int, tuple[int, Servicer, int]] = {}

        def tail(anchor: int, servicer: Servicer, waterfall_seen: bool) -> int:
            end = anchor
            j = anchor + 1
            while j < len(group):
                ev = group[j]
                address = ev["address"].lower()
                if ev["contract"] == STABLECOIN:
                    j += 1
                    continue
                if used[j]:
                    break
                if address == servicer.address.lower() and ev["event"] in _CLOSE_TAIL_SERVICER:
                    if ev["event"] == "WaterfallDistributed":
                        if waterfall_seen:
                            break
                        waterfall_seen = True
                elif not (
                    self.servicer_of.get(address) is servicer and ev["event"] in _CLOSE_TAIL_TRANCHE
                ):
                    break
                used[j] = True
                end = j
                j += 1
            return end

        spans: list[tuple[int, int, Servicer]] = []
        for anchor, servicer in anchors:
            used[anchor] = True
            spans.append((anchor, tail(anchor, servicer, False), servicer))
        for i, ev in enumerate(group):  # a WaterfallDistributed without its PeriodClosed
            if not used[i] and ev["event"] == "WaterfallDistributed" and ev["contract"] == SERVICER:
                servicer = self.servicers[ev["address"].lower()]
                used[i] = True
                spans.append((i, tail(i, servicer, True), servicer))
        for anchor, end, servicer in sorted(spans, key=lambda s: s[0]):
            start = anchor
            j = anchor - 1
            while j >= 0:
                ev = group[j]
                if ev["contract"] == STABLECOIN:
                    j -= 1
                    continue
                if used[j]:
                    break
                address = ev["address"].lower()
                is_preamble = (
                    address == servicer.address.lower() and ev["event"] in _CLOSE_PREAMBLE
                ) or (
                    ev["contract"] == ORACLE
                    and ev["event"] == "ReportMissed"
                    and _as_int(ev["args"].get("fleetId")) == servicer.note_id
                )
                if not is_preamble:
                    break
                used[j] = True
                start = j
                j -= 1
            segments[start] = (end, servicer, anchor)
        return segments

    def _close(self, recorded_all: list[Event], servicer: Servicer, anchor: Event) -> None:
        self._begin(anchor)
        self.closes += 1
        ts = anchor["timestamp"]
        before = len(self.mismatches)
        outcome = servicer.close(ts, self.registry, self.oracle, self.oracle_address)
        if outcome.problem is not None:
            self._rule(anchor, "closePeriod", outcome.problem)
        recorded = [ev for ev in recorded_all if ev["contract"] != STABLECOIN]
        self._align(outcome.events, recorded, anchor)
        closed = next((e for e in recorded if e["event"] == "PeriodClosed"), None)
        flow = next((e for e in recorded if e["event"] == "WaterfallDistributed"), None)
        expected = {name: args for _, name, args in outcome.events}
        if "PeriodClosed" not in expected:  # the model could not close: nothing to tabulate
            return
        top_up = next((e["args"] for e in recorded if e["event"] == "TopUpRequired"), None)
        self.periods.append(
            PeriodRow(
                note_id=servicer.note_id,
                servicer=servicer.address,
                period=outcome.period,
                block=anchor["block"],
                timestamp=ts,
                tx=anchor["tx"],
                inputs=_int_args(closed["args"]["inputs"])
                if closed and isinstance(closed["args"].get("inputs"), dict)
                else expected["PeriodClosed"]["inputs"],
                result=_int_args(closed["args"]["result"])
                if closed and isinstance(closed["args"].get("result"), dict)
                else expected["PeriodClosed"]["result"],
                waterfall=_int_args(flow["args"]["result"])
                if flow and isinstance(flow["args"].get("result"), dict)
                else expected["WaterfallDistributed"]["result"],
                senior_rate_bps=servicer.senior.rate,
                junior_rate_bps=servicer.junior.rate if servicer.junior else None,
                top_up=_int_args(top_up) if isinstance(top_up, dict) else None,
                mismatches=len(self.mismatches) - before,
            )
        )

    def _align(self, expected: list[Expected], recorded: list[Event], anchor: Event) -> None:
        exp_keys = [(address.lower(), name) for address, name, _ in expected]
        rec_keys = [(ev["address"].lower(), ev["event"]) for ev in recorded]
        matcher = difflib.SequenceMatcher(None, exp_keys, rec_keys, autojunk=False)
        for op, e1, e2, r1, r2 in matcher.get_opcodes():
            if op == "equal":
                for (_, _, args), ev in zip(expected[e1:e2], recorded[r1:r2], strict=True):
                    self._compare(ev, args, ev["args"], "")
                continue
            for address, name, _ in expected[e1:e2]:
                where = recorded[r1] if r1 < len(recorded) else anchor
                self.fields_checked += 1
                kind = self.kind_of.get(address.lower(), "")
                self._mismatch(
                    dict(where, contract=kind, address=address, event=name),
                    "(event)",
                    "emitted",
                    "missing",
                )
            for ev in recorded[r1:r2]:
                self.fields_checked += 1
                self._mismatch(ev, "(event)", "not emitted by this close", "emitted")

    def fill_close(self, placeholder: Event) -> list[Event]:
        """Fill mode: the events `closePeriod()` emits, in place of a placeholder."""
        self._begin(placeholder)
        servicer = self.servicers[placeholder["address"].lower()]
        ts = placeholder["timestamp"]
        outcome = servicer.close(ts, self.registry, self.oracle, self.oracle_address)
        if outcome.problem is not None:
            raise AuditInputError(f"synthetic close would revert: {outcome.problem}")
        assert self.book is not None
        out: list[Event] = []
        for k, (address, name, args) in enumerate(outcome.events):
            contract = self.kind_of[address.lower()]
            out.append(
                {
                    "block": placeholder["block"],
                    "timestamp": placeholder["timestamp"],
                    "tx": placeholder["tx"],
                    "log_index": placeholder["log_index"] + k,
                    "contract": contract,
                    "address": address,
                    "event": name,
                    "args": self.book.event(contract, name).encode_args(args),
                }
            )
        self.closes += 1
        return out

    def fill_event(self, ev: Event) -> Event:
        """Fill mode: one event with its computed fields written in the file's encoding."""
        self.handle(ev)
        assert self.book is not None
        ev["args"] = self.book.event(ev["contract"], ev["event"]).encode_args(ev["args"])
        return ev

    def _outside_close(self, ev: Event) -> None:
        self.fields_checked += 1
        self._mismatch(ev, "(event)", "only inside a period close", "emitted alone")

    # ------------------------------------------------------------------
    # Access control
    # ------------------------------------------------------------------

    def _role(self, ev: Event) -> None:
        args = ev["args"]
        roles = self.roles.setdefault(ev["address"].lower(), {})
        members = roles.setdefault(str(args["role"]).lower(), set())
        if ev["event"] == "RoleGranted":
            members.add(str(args["account"]).lower())
        else:
            members.discard(str(args["account"]).lower())

    def _has_role(self, contract: str, role: str, account: str) -> bool:
        return account.lower() in self.roles.get(contract.lower(), {}).get(role, set())

    def _need_role(self, ev: Event, role: str, role_name: str, account: str) -> None:
        ok = self._has_role(ev["address"], role, account)
        self._require(ev, f"{role_name} of {account}", ok, f"{account} lacks {role_name}")

    # ------------------------------------------------------------------
    # Collateral registry
    # ------------------------------------------------------------------

    # Valuation. A change that raises collateral values (a slower markdown, a
    # higher floor, a smaller haircut) is queued and may only apply once its eta
    # has passed; a more conservative one applies at once and drops the queue.

    def _depreciation_class_set(self, ev: Event) -> None:
        a = ev["args"]
        class_id = int(a["classId"])
        markdown, floor = int(a["quarterlyMarkdownBps"]), int(a["floorBps"])
        self._require(ev, "bps <= 10,000", markdown <= BPS and floor <= BPS, "BpsOutOfRange")
        if self._registry_born_tx is None:
            self._registry_born_tx = ev["tx"]  # the constructor sets the first classes
        pending = self.registry.pending_classes.pop(class_id, None)
        if _raises_class_values(self.registry.classes.get(class_id), (markdown, floor)):
            waited = _waited(pending, (markdown, floor), ev)
            rule = "value-raising class change after its timelock"
            self._require(ev, rule, waited, "ValuationChangeNotReady")
            rule = "class change by its deadline"
            self._require(ev, rule, _in_grace(pending, ev), "ValuationChangeExpired")
        self.registry.classes[class_id] = (markdown, floor)

    def _depreciation_class_queued(self, ev: Event) -> None:
        a = ev["args"]
        class_id = int(a["classId"])
        value = (int(a["quarterlyMarkdownBps"]), int(a["floorBps"]))
        raises = _raises_class_values(self.registry.classes.get(class_id), value)
        self._require(ev, "only a value-raising change is queued", raises, NOT_VALUE_RAISING)
        self._check(ev, {"eta": ev["timestamp"] + VALUATION_CHANGE_DELAY})
        self.registry.pending_classes[class_id] = (value, int(a["eta"]))

    def _depreciation_class_cancelled(self, ev: Event) -> None:
        dropped = self.registry.pending_classes.pop(int(ev["args"]["classId"]), None)
        self._require(ev, "a change was queued", dropped, "ValuationChangeNotQueued")

    def _model_set(self, ev: Event) -> None:
        """At once only when it lowers the model's values at every age (the
        constructor's catalog is set before any role exists); a new model or
        any other change only after its timelock."""
        a = ev["args"]
        model = str(a["model"]).lower()
        value = (int(a["classId"]), int(a["haircutBps"]))
        self._require(ev, "haircut <= 10,000", value[1] <= BPS, "BpsOutOfRange")
        self._require(ev, "class exists", value[0] in self.registry.classes, "ClassUnknown")
        pending = self.registry.pending_models.pop(model, None)
        constructor = ev["tx"] == self._registry_born_tx  # the constructor's catalog
        if not constructor and self._raises_model_values(model, value):
            waited = _waited(pending, value, ev)
            self._require(ev, "model change after its timelock", waited, "ValuationChangeNotReady")
            rule = "model change by its deadline"
            self._require(ev, rule, _in_grace(pending, ev), "ValuationChangeExpired")
        self.registry.models[model] = value

    def _raises_model_values(self, model: str, value: tuple[int, int]) -> bool:
        current = self.registry.models.get(model)
        if current is None:
            return True
        if value[1] < current[1]:
            return True
        if value[0] == current[0]:
            return False
        new_class = self.registry.classes.get(value[0], (0, 0))
        return _raises_class_values(self.registry.classes.get(current[0]), new_class)

    def _model_queued(self, ev: Event) -> None:
        a = ev["args"]
        model = str(a["model"]).lower()
        value = (int(a["classId"]), int(a["haircutBps"]))
        raises = self._raises_model_values(model, value)
        self._require(ev, "only a value-raising change is queued", raises, NOT_VALUE_RAISING)
        self._check(ev, {"eta": ev["timestamp"] + VALUATION_CHANGE_DELAY})
        self.registry.pending_models[model] = (value, int(a["eta"]))

    def _model_cancelled(self, ev: Event) -> None:
        dropped = self.registry.pending_models.pop(str(ev["args"]["model"]).lower(), None)
        self._require(ev, "a change was queued", dropped, "ValuationChangeNotQueued")

    def _note_opened(self, ev: Event) -> None:
        a = ev["args"]
        note_id = int(a["noteId"])
        self._check(ev, {"noteId": self.registry.note_count + 1})
        self._need_role(ev, NOTE_FACTORY_ROLE, "NOTE_FACTORY_ROLE", str(a["factory"]))
        self._need_role(ev, ISSUER_ROLE, "ISSUER_ROLE", str(a["issuer"]))
        self.registry.note_count = max(self.registry.note_count + 1, note_id)
        self.registry.notes[note_id] = NoteCollateral(note_id, str(a["issuer"]))

    def _note(self, ev: Event, note_id: int) -> NoteCollateral | None:
        note = self.registry.notes.get(note_id)
        self._require(ev, "note exists", note, f"NoteUnknown: {note_id}")
        return note

    def _note_bound(self, ev: Event) -> None:
        """Once per note, while Open: 1..4 tranches, at least one operator,
        no zero address; nothing about the note changes afterwards."""
        a = ev["args"]
        note = self._note(ev, int(a["noteId"]))
        if note is None:
            return
        tranches = [str(t).lower() for t in a["tranches"]]
        operators = [str(o).lower() for o in a["operators"]]
        servicer = str(a["servicer"]).lower()
        self._require(ev, "bound once", not note.bound, "NoteAlreadyBound")
        self._require(ev, "note open", note.status == NOTE_OPEN, "NoteNotOpen")
        count_ok = 1 <= len(tranches) <= Registry.MAX_TRANCHES_PER_NOTE
        self._require(ev, "1..4 tranches", count_ok, "NoteTranchesCount")
        self._require(ev, "an operator", bool(operators), "NoteOperatorsEmpty")
        zero = ZERO_ADDRESS.lower()
        no_zero = zero not in (servicer, *tranches, *operators)
        self._require(ev, "no zero address", no_zero, "ZeroAddress")
        note.bound = True
        note.servicer = servicer
        note.tranches = tranches
        note.operators = operators

    def _batch_registered(self, ev: Event) -> None:
        a = ev["args"]
        batch_id = int(a["batchId"])
        self._check(ev, {"batchId": self.registry.batch_count + 1})
        self._need_role(ev, OPERATOR_ROLE, "OPERATOR_ROLE", str(a["operator"]))
        model = str(a["model"]).lower()
        in_service = int(a["inServiceAt"])
        self._require(ev, "count > 0", int(a["count"]) > 0, "BatchEmpty")
        self._require(ev, "a registered model", model in self.registry.models, "ModelUnknown")
        self._require(
            ev, "inServiceAt <= block time", in_service <= ev["timestamp"], "BatchInServiceInFuture"
        )
        self.registry.batch_count = max(self.registry.batch_count + 1, batch_id)
        self.registry.batches[batch_id] = Batch(
            batch_id=batch_id,
            issuer=str(a["issuer"]).lower(),
            operator=str(a["operator"]).lower(),
            count=int(a["count"]),
            total_cost=int(a["totalCost"]),
            model=model,
            in_service_at=in_service,
            opened_at=ev["timestamp"],
        )

    def _batch(self, ev: Event, batch_id: int) -> Batch | None:
        batch = self.registry.batches.get(batch_id)
        self._require(ev, "batch exists", batch, f"BatchUnknown: {batch_id}")
        return batch

    def _gpus_registered(self, ev: Event) -> None:
        """The next chunk, in order, within the registration window; every
        key free (its holder no longer blocks) and new to the batch; the
        chunk hash as the registry computes it. Rebuilds the holder map."""
        a = ev["args"]
        batch = self._batch(ev, int(a["batchId"]))
        if batch is None:
            return
        ts = ev["timestamp"]
        keys = [
            "0x" + bytes(k).hex() if isinstance(k, bytes | bytearray) else str(k).lower()
            for k in a["keys"]
        ]
        first = int(a["firstIndex"])
        registering = batch.status == BATCH_REGISTERING
        self._require(ev, "batch Registering", registering, f"BatchNotInStatus: {batch.status}")
        in_window = ts < batch.opened_at + REGISTRATION_WINDOW
        self._require(ev, "within the registration window", in_window, "BatchExpired")
        fits = first == batch.keys_registered and 0 < len(keys) <= MAX_KEYS_PER_CHUNK
        fits = fits and first + len(keys) <= batch.count
        self._require(ev, "the next chunk", fits, "ChunkInvalid")
        packed = first.to_bytes(32, "big") + b"".join(bytes.fromhex(k[2:]) for k in keys)
        self._check(ev, {"chunkHash": "0x" + keccak(packed).hex()})
        for key in keys:
            holder = self.registry.holders.get(key)
            if holder is not None:
                self._require(
                    ev, "a key new to the batch", holder != batch.batch_id, "GpuDuplicate"
                )
                held = holder != batch.batch_id and self.registry.blocks(
                    self.registry.batches[holder], ts
                )
                self._require(ev, f"GPU {key} free", not held, f"GpuHeld: {key}, {holder}")
            self.registry.holders[key] = batch.batch_id
        batch.keys_registered = first + len(keys)
        if batch.keys_registered == batch.count:
            batch.status = BATCH_REGISTERED

    def _batch_attested(self, ev: Event) -> None:
        a = ev["args"]
        self._need_role(ev, ATTESTOR_ROLE, "ATTESTOR_ROLE", str(a["attestor"]))
        batch = self._batch(ev, int(a["batchId"]))
        if batch is not None:
            ok = batch.status == BATCH_REGISTERED
            self._require(ev, "batch Registered", ok, f"BatchNotInStatus: {batch.status}")
            in_window = ev["timestamp"] < batch.opened_at + REGISTRATION_WINDOW
            self._require(ev, "within the registration window", in_window, "BatchExpired")
            batch.status = BATCH_ATTESTED
            batch.attested_at = ev["timestamp"]

    def _batch_rejected(self, ev: Event) -> None:
        a = ev["args"]
        self._need_role(ev, ATTESTOR_ROLE, "ATTESTOR_ROLE", str(a["attestor"]))
        batch = self._batch(ev, int(a["batchId"]))
        if batch is not None:
            ok = batch.status in (BATCH_REGISTERING, BATCH_REGISTERED, BATCH_ATTESTED)
            self._require(ev, "batch not pledged", ok, f"BatchNotInStatus: {batch.status}")
            batch.status = BATCH_REJECTED

    def _batch_pledged(self, ev: Event) -> None:
        a = ev["args"]
        batch = self._batch(ev, int(a["batchId"]))
        note_id = int(a["noteId"])
        note = self._note(ev, note_id)
        if batch is None or note is None:
            return
        ok = batch.status == BATCH_ATTESTED
        self._require(ev, "batch Attested", ok, f"BatchNotInStatus: {batch.status}")
        in_window = ev["timestamp"] < batch.attested_at + PLEDGE_WINDOW
        self._require(ev, "within the pledge window", in_window, "BatchExpired")
        self._require(ev, "note open", note.status == NOTE_OPEN, "NoteNotOpen")
        self._require(ev, "note bound", note.bound, "NoteNotBound")
        consent = batch.operator in note.operators
        self._require(ev, "an operator of the note", consent, "CallerNotNoteOperator")
        same_issuer = batch.issuer == note.issuer.lower()
        self._require(ev, "same issuer", same_issuer, "BatchIssuerMismatch")
        room = len(note.batch_ids) < Registry.MAX_BATCHES_PER_NOTE
        self._require(ev, "batches per note", room, "NoteBatchLimitReached")
        batch.status = BATCH_PLEDGED
        batch.note_id = note_id
        note.batch_ids.append(batch.batch_id)
        value = self.registry.collateral_value(note_id, ev["timestamp"])
        self._check(ev, {"collateralValue": value})

    def _batch_voided(self, ev: Event) -> None:
        """Only within the challenge window (or before attestation), on a
        batch not yet pledged or pledged to a live note; a pledged one leaves
        its note's live batches, keeps its lien and counts a defect."""
        a = ev["args"]
        batch = self._batch(ev, int(a["batchId"]))
        if batch is None:
            return
        open_statuses = (BATCH_REGISTERING, BATCH_REGISTERED, BATCH_ATTESTED)
        pledged = batch.status == BATCH_PLEDGED and self.registry.is_live_note(batch.note_id)
        ok = batch.status in open_statuses or pledged
        self._require(ev, "batch challengeable", ok, "BatchNotChallengeable")
        in_window = not batch.attested_at or ev["timestamp"] < batch.attested_at + CHALLENGE_WINDOW
        self._require(ev, "within the challenge window", in_window, "ChallengeWindowClosed")
        self._check(ev, {"noteId": batch.note_id})
        batch.status = BATCH_VOIDED
        note = self.registry.notes.get(batch.note_id) if pledged else None
        if note is not None:
            note.batch_ids.remove(batch.batch_id)
            note.defects += 1

    def _note_defect_proven(self, ev: Event) -> None:
        """Right after the BatchVoided of one of the note's batches; the
        count is the note's running total (never reset)."""
        a = ev["args"]
        note = self._note(ev, int(a["noteId"]))
        if note is not None:
            self._check(ev, {"defects": note.defects})
            batch = self.registry.batches.get(int(a["batchId"]))
            voided = batch is not None and batch.status == BATCH_VOIDED
            self._require(ev, "a voided batch of the note", voided, "no batch voided")

    def _registry_note_released(self, ev: Event) -> None:
        """Anyone once every tranche is Repaid or Cancelled; otherwise only
        the lienholder (trustee) of a stepped-in note."""
        note = self._note(ev, int(ev["args"]["noteId"]))
        if note is None:
            return
        live = note.status in (NOTE_OPEN, NOTE_STEPPED_IN)
        self._require(ev, "note live", live, "NoteNotOpen")
        self._require(ev, "note bound", note.bound, "NoteNotBound")
        by = str(ev["args"]["by"]).lower()
        by_lienholder = note.status == NOTE_STEPPED_IN and by == note.lienholder.lower()
        settled = all(
            address in self.tranches and self.tranches[address].state in (REPAID, CANCELLED)
            for address in note.tranches
        )
        ok = by_lienholder or settled
        self._require(ev, "tranches settled or by the lienholder", ok, "NoteNotRepaid")
        note.status = NOTE_RELEASED

    def _liens_transferred(self, ev: Event) -> None:
        note = self._note(ev, int(ev["args"]["noteId"]))
        if note is not None:
            self._require(ev, "note open", note.status == NOTE_OPEN, "NoteNotOpen")
            note.status = NOTE_STEPPED_IN
            note.lienholder = str(ev["args"]["trustee"])

    # ------------------------------------------------------------------
    # Identity registry
    # ------------------------------------------------------------------

    def _identity_registered(self, ev: Event) -> None:
        a = ev["args"]
        expires = int(a["expiresAt"])
        future = expires > ev["timestamp"]
        self._require(ev, "expiry in the future", future, "IdentityExpiryInPast")
        self.identities.register(str(a["account"]).lower(), expires)

    def _identity_removed(self, ev: Event) -> None:
        self.identities.remove(str(ev["args"]["account"]).lower())

    def _identity_frozen(self, ev: Event) -> None:
        a = ev["args"]
        self.identities.freeze(str(a["account"]).lower(), bool(a["frozen"]))

    def _verified(self, ev: Event, account: str) -> None:
        problem = self.identities.problem(account.lower(), ev["timestamp"])
        self._rule(ev, f"{account} whitelisted", problem)

    # ------------------------------------------------------------------
    # Telemetry oracle
    # ------------------------------------------------------------------

    def _fleet_registered(self, ev: Event) -> None:
        a = ev["args"]
        fleet_id = int(a["fleetId"])
        self._require(ev, "new fleet", fleet_id not in self.oracle.fleets, "FleetExists")
        self.oracle.fleets[fleet_id] = Fleet(
            fleet_id=fleet_id,
            operator=str(a["operator"]),
            consumer=str(a["consumer"]),
            genesis=int(a["genesis"]),
            period_length=int(a["periodLength"]),
            heartbeat=int(a["heartbeat"]),
        )

    def _fleet(self, ev: Event) -> Fleet | None:
        fleet_id = int(ev["args"]["fleetId"])
        fleet = self.oracle.fleets.get(fleet_id)
        self._require(ev, "fleet registered", fleet, f"FleetUnknown: {fleet_id}")
        return fleet

    def _signers_changed(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is None:
            return
        a = ev["args"]
        signers = list(a["signers"])
        quorum = int(a["quorum"])
        self._check(ev, {"signerVersion": fleet.signer_version + 1})
        problem = quorum_rule_violation(len(signers), quorum)
        rule = "quorum = 2f + 1, 3f + 1 <= signers <= 16"
        self._require(ev, rule, problem is None, problem or "QuorumRuleBroken")
        if fleet.signer_version > 0:  # after registration: only through the timelock
            pending, fleet.pending_signers = fleet.pending_signers, None
            waited = _waited(pending, (signers, quorum), ev)
            self._require(ev, "signer change after its timelock", waited, "SignerChangeNotReady")
            rule = "signer change by its deadline"
            self._require(ev, rule, _in_grace(pending, ev), "SignerChangeExpired")
        fleet.signers = signers
        fleet.quorum = quorum
        fleet.signer_version += 1

    def _signer_change_queued(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is None:
            return
        a = ev["args"]
        self._check(ev, {"eta": ev["timestamp"] + SIGNER_CHANGE_DELAY})
        fleet.pending_signers = ((list(a["signers"]), int(a["quorum"])), int(a["eta"]))

    def _signer_change_cancelled(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is not None:
            self._require(ev, "a change was queued", fleet.pending_signers, "SignerChangeNotQueued")
            fleet.pending_signers = None

    def _operator_change_queued(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is None:
            return
        self._check(ev, {"eta": ev["timestamp"] + SIGNER_CHANGE_DELAY})
        fleet.pending_operator = (str(ev["args"]["operator"]), int(ev["args"]["eta"]))

    def _operator_change_cancelled(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is not None:
            queued = fleet.pending_operator
            self._require(ev, "a change was queued", queued, "OperatorChangeNotQueued")
            fleet.pending_operator = None

    def _fleet_operator_changed(self, ev: Event) -> None:
        """Whose telemetry the nodes accept: only a queued change, after its timelock."""
        fleet = self._fleet(ev)
        if fleet is None:
            return
        operator = str(ev["args"]["operator"])
        pending, fleet.pending_operator = fleet.pending_operator, None
        waited = _waited(pending, operator, ev)
        self._require(ev, "operator change after its timelock", waited, "OperatorChangeNotReady")
        rule = "operator change by its deadline"
        self._require(ev, rule, _in_grace(pending, ev), "OperatorChangeExpired")
        fleet.operator = operator

    def _report_submitted(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is None:
            return
        a = ev["args"]
        period = fleet.next_period
        start, end = fleet.bounds(period)
        self._check(ev, {"period": period, "periodStart": start, "periodEnd": end})
        self._require(ev, "period ended", ev["timestamp"] >= end, "PeriodNotEnded")
        observations = int(a["observations"])
        self._require(ev, "quorum", observations >= fleet.quorum, "QuorumNotMet")
        utilization, uptime = int(a["utilizationBps"]), int(a["uptimeBps"])
        in_range = utilization <= BPS and uptime <= BPS
        self._require(ev, "bps <= 10,000", in_range, "ValueOutOfRange")
        fleet.reports[period] = Report(
            REPORTED, utilization, uptime, int(a["revenue"]), ev["timestamp"], observations
        )
        fleet.next_period = period + 1

    def _report_missed(self, ev: Event) -> None:
        fleet = self._fleet(ev)
        if fleet is None:
            return
        stale = fleet.is_stale(ev["timestamp"])
        self._require(ev, "period stale", stale, "PeriodNotStale")
        self._check(ev, self.oracle.mark_missed(fleet, ev["timestamp"]))

    # ------------------------------------------------------------------
    # Note tranches
    # ------------------------------------------------------------------

    def _tranche(self, ev: Event) -> Tranche:
        return self.tranches[ev["address"].lower()]

    def _tranche_initialised(self, ev: Event) -> None:
        """The terms a tranche announced at deployment are the ones replayed."""
        self.__dict__.setdefault("_initialised_in", {})[ev["address"].lower()] = ev["tx"]
        t = self._tranche(ev)
        rate = t.terms.reference_rate_bps + t.terms.spread_bps
        rate = min(max(rate, t.terms.floor_rate_bps), t.terms.cap_rate_bps)
        terms = dict(self._raw_tranche_terms[ev["address"].lower()])
        self._check(ev, {"terms": terms, "rateBps": rate})

    def _note_created(self, ev: Event) -> None:
        """The factory's creation event: the note's servicer and tranches are
        the manifest's, and each was initialised in this same transaction (so
        nothing was wired, or rewired, later: none of them has a setter)."""
        a = ev["args"]
        note_id = _as_int(a["noteId"])
        servicer = str(a["servicer"]).lower()
        tranches = [str(t).lower() for t in a["tranches"]]
        s = self.servicers.get(servicer)
        if s is None or s.note_id != note_id:
            self._mismatch(ev, "servicer", "the manifest's servicer of the note", servicer)
            return
        expected = [t.escrow for t in s.tranches]
        if tranches != expected:
            self._mismatch(ev, "tranches", expected, tranches)
        inits = getattr(self, "_initialised_in", {})
        for address in [servicer, *tranches]:
            same_tx = inits.get(address) == ev["tx"]
            self._require(ev, f"{address} wired at creation", same_tx, "initialised elsewhere")
        trustee = str(a["trustee"]).lower()
        self._require(ev, "trustee set", trustee == s.trustee, f"trustee {s.trustee}")

    def _servicer_initialised(self, ev: Event) -> None:
        """The covenant terms a servicer announced at deployment are the ones replayed."""
        self.__dict__.setdefault("_initialised_in", {})[ev["address"].lower()] = ev["tx"]
        servicer = self.servicers[ev["address"].lower()]
        terms = dict(self._raw_covenant_terms[ev["address"].lower()])
        junior = servicer.junior.address if servicer.junior is not None else "0x" + "00" * 20
        self._check(ev, {"noteId": servicer.note_id, "terms": terms})
        self._check(ev, {"senior": servicer.senior.address, "junior": junior})

    def _deposit_request(self, ev: Event) -> None:
        t = self._tranche(ev)
        a = ev["args"]
        assets = int(a["assets"])
        controller = str(a["controller"]).lower()
        ts = ev["timestamp"]
        self._require(ev, "state Subscription", t.state == SUBSCRIPTION, f"StateIs: {t.state}")
        self._require(ev, "not paused", not t.paused, "EnforcedPause")
        in_window = t.terms.subscription_start <= ts <= t.terms.subscription_end
        self._require(ev, "subscription window", in_window, "SubscriptionWindowClosed")
        enough = assets >= t.terms.min_subscription and assets > 0
        self._require(ev, "minimum subscription", enough, "SubscriptionBelowMinimum")
        same = str(a["owner"]).lower() == str(a["sender"]).lower()
        self._require(ev, "owner is sender", same, "OwnerNotSender")
        self._verified(ev, controller)
        self._check(ev, {"requestId": 0})
        t.requests[controller] = t.requests.get(controller, 0) + assets
        t.total_pending += assets

    # The guardian's pause stops new subscriptions, transfers and drawdown.

    def _paused(self, ev: Event) -> None:
        t = self._tranche(ev)
        self._require(ev, "not paused", not t.paused, "EnforcedPause")
        t.paused = True

    def _unpaused(self, ev: Event) -> None:
        t = self._tranche(ev)
        self._require(ev, "paused", t.paused, "ExpectedPause")
        t.paused = False

    def _deposit_request_cancelled(self, ev: Event) -> None:
        t = self._tranche(ev)
        controller = str(ev["args"]["controller"]).lower()
        ok = t.state in (SUBSCRIPTION, CANCELLED)
        self._require(ev, "state Subscription or Cancelled", ok, f"StateIs: {t.state}")
        assets = t.requests.pop(controller, 0)
        self._check(ev, {"assets": assets})
        t.total_pending -= assets

    def _subscription_closed(self, ev: Event) -> None:
        t = self._tranche(ev)
        self._require(ev, "state Subscription", t.state == SUBSCRIPTION, f"StateIs: {t.state}")
        self._check(ev, {"totalRequested": t.total_pending, "capacity": t.terms.max_size})
        t.total_requested = t.total_pending
        t.state = CLOSED

    def _request_fulfilled(self, ev: Event) -> None:
        t = self._tranche(ev)
        controller = str(ev["args"]["controller"]).lower()
        self._require(ev, "state Closed", t.state == CLOSED, f"StateIs: {t.state}")
        requested = t.requests.pop(controller, 0)
        filled = t.fill_of(requested)
        self._check(ev, {"requested": requested, "filled": filled, "refunded": requested - filled})
        t.total_pending -= requested
        t.total_filled += filled
        t.fulfil(controller, filled, requested - filled)

    def _shares_claimed(self, ev: Event) -> None:
        t = self._tranche(ev)
        controller = str(ev["args"]["controller"]).lower()
        fill = t.fills.get(controller, [0, 0])
        if t.state == CANCELLED:
            shares, refunded = 0, fill[0] + fill[1]
            t.fills.pop(controller, None)
            t.holder(controller).escrowed = 0  # the position is deleted with the refund
        elif t.state == CLOSED:
            shares, refunded = 0, fill[1]
            fill[1] = 0
        elif t.state in (ACTIVE, REPAID, WRITTEN_OFF):
            shares, refunded = fill[0], fill[1]
            t.fills.pop(controller, None)
        else:
            shares, refunded = 0, 0
            self._rule(ev, "state", f"StateIs: {t.state}")
        self._require(ev, "something to claim", shares or refunded, "NothingToClaim")
        self._check(ev, {"shares": shares, "refunded": refunded})
        released = self._tx_releases.pop((t.escrow, controller), 0)
        if released != shares:
            self._mismatch(ev, "Transfer(escrow)", shares, released)

    def _escrowed_face_claimed(self, ev: Event) -> None:
        """`claimCoupon()` / `redeem()` first move the holder's face out of escrow."""
        t = self._tranche(ev)
        holder = str(ev["args"]["holder"]).lower()
        fill = t.fills.get(holder, [0, 0])
        self._require(
            ev,
            "state Active, Repaid or WrittenOff",
            t.state in (ACTIVE, REPAID, WRITTEN_OFF),
            f"StateIs: {t.state}",
        )
        self._check(ev, {"shares": fill[0]})
        released = self._tx_releases.pop((t.escrow, holder), 0)
        if released != fill[0]:
            self._mismatch(ev, "Transfer(escrow)", fill[0], released)
        fill[0] = 0

    def _drawn_down(self, ev: Event) -> None:
        t = self._tranche(ev)
        ts = ev["timestamp"]
        self._require(ev, "state Closed", t.state == CLOSED, f"StateIs: {t.state}")
        self._require(ev, "requests fulfilled", t.total_pending == 0, "RequestsUnfulfilled")
        principal = t.total_filled
        note = self.registry.notes.get(t.terms.note_id)
        outstanding = 0
        if note is not None:
            for address in note.tranches:
                other = self.tranches.get(address)
                outstanding += other.outstanding if other is not None else 0
        value = self.registry.collateral_value(t.terms.note_id, ts)
        required = ceil_div((outstanding + principal) * t.terms.min_collateral_ratio_bps, BPS)
        servicer = self.servicer_of[t.escrow]
        self._check(
            ev,
            {
                "spv": servicer.address,
                "principal": principal,
                "collateralValue": value,
                "requiredValue": required,
            },
        )
        ok = principal > 0 and value >= required
        self._require(ev, "conditions precedent", ok, "ConditionsPrecedentNotMet")
        minted = self._tx_mints.pop(t.escrow, 0)
        if minted != principal:
            self._mismatch(ev, "Transfer(mint)", principal, minted)
        t.state = ACTIVE
        t.last_accrual_at = ts
        t.outstanding = principal
        t.original = principal

    def _offering_cancelled(self, ev: Event) -> None:
        t = self._tranche(ev)
        ok = t.state in (SUBSCRIPTION, CLOSED)
        self._require(ev, "state Subscription or Closed", ok, f"StateIs: {t.state}")
        t.state = CANCELLED

    def _rate_changed(self, ev: Event) -> None:
        """`setReferenceRate` or `setRateStep` outside a close: reference and step are inputs."""
        t = self._tranche(ev)
        a = ev["args"]
        step = int(a["stepBps"])
        self._require(ev, "|step| <= 2,000", -2_000 <= step <= 2_000, "RateStepOutOfRange")
        old, new = t.set_rate(ev["timestamp"], int(a["referenceRateBps"]), step)
        self._check(ev, {"oldRateBps": old, "newRateBps": new, "spreadBps": t.terms.spread_bps})

    def _paid(self, ev: Event) -> None:
        """A payment by the SPV outside a period close (an SPV that is not a servicer)."""
        t = self._tranche(ev)
        a = ev["args"]
        outcome = t.pay(ev["timestamp"], int(a["interest"]), int(a["principal"]))
        self._rule(ev, "payment accepted", outcome.problem)
        self._check(
            ev,
            {
                "interestDueAfter": outcome.due - int(a["interest"]),
                "outstandingAfter": outcome.outstanding,
            },
        )
        flagged = t.escrow in self._tx_repaid
        self._tx_repaid.discard(t.escrow)
        if outcome.repaid != flagged:
            expected = "emitted" if outcome.repaid else "not emitted"
            self._mismatch(ev, "Repaid", expected, "emitted" if flagged else "missing")

    def _repaid(self, ev: Event) -> None:
        self._tx_repaid.add(self._tranche(ev).escrow)

    def _coupon_claimed(self, ev: Event) -> None:
        t = self._tranche(ev)
        holder = str(ev["args"]["holder"])
        amount, pending = t.claim_coupon(ev["timestamp"], holder)
        self._require(ev, "something to claim", amount, "NothingToClaim")
        self._check(ev, {"amount": amount, "owedAfter": pending})

    def _principal_redeemed(self, ev: Event) -> None:
        t = self._tranche(ev)
        ts = ev["timestamp"]
        holder = str(ev["args"]["holder"]).lower()
        amount = t.redeemable(ts, holder)
        burned = self._tx_burns.pop((t.escrow, holder), 0)
        h = t.holder(holder)
        face = h.balance + burned if t.state in (REPAID, WRITTEN_OFF) else 0
        self._require(ev, "something to redeem", amount or face, "NothingToClaim")
        self._check(ev, {"amount": amount, "faceBurned": face})
        if face > burned:
            self._mismatch(ev, "Transfer(burn)", face, burned)
            t.move(ts, holder, ZERO_ADDRESS, face - burned)
        h.principal_owed = 0

    def _amortization_schedule_set(self, ev: Event) -> None:
        t = self._tranche(ev)
        a = ev["args"]
        dues = [int(x) for x in a["dueAt"]]
        cumulative = [int(x) for x in a["cumulativeBps"]]
        ok = t.state in (SUBSCRIPTION, CLOSED)
        self._require(ev, "before drawdown", ok, f"StateIs: {t.state}")
        valid = len(dues) == len(cumulative) and all(
            (i == 0 or (dues[i] > dues[i - 1] and cumulative[i] >= cumulative[i - 1]))
            and dues[i] <= t.terms.maturity
            and cumulative[i] <= BPS
            for i in range(len(dues))
        )
        self._require(
            ev, "schedule ascending, <= maturity, <= 10,000 bps", valid, "ScheduleInvalid"
        )
        t.schedule = list(zip(dues, cumulative, strict=False))

    def _tranche_transfer(self, ev: Event) -> None:
        t = self._tranche(ev)
        a = ev["args"]
        sender = str(a["from"]).lower()
        receiver = str(a["to"]).lower()
        value = int(a["value"])
        ts = ev["timestamp"]
        if sender == ZERO_ADDRESS:  # the drawdown mint, into escrow
            ok = receiver == t.escrow and t.state == CLOSED
            self._require(ev, "mint only at drawdown, into escrow", ok, "unexpected mint")
            t.move(ts, ZERO_ADDRESS, receiver, value)
            self._tx_mints[t.escrow] = self._tx_mints.get(t.escrow, 0) + value
            return
        if sender == t.escrow:  # claimShares: face leaves escrow with what it earned
            self._verified(ev, receiver)
            t.release_from_escrow(ts, receiver, value)
            key = (t.escrow, receiver)
            self._tx_releases[key] = self._tx_releases.get(key, 0) + value
            return
        balance = t.holder(sender).balance
        self._require(
            ev, "balance covers the transfer", balance >= value, "ERC20InsufficientBalance"
        )
        if receiver == ZERO_ADDRESS:  # redeem burns the face of a repaid tranche
            ended = t.state in (REPAID, WRITTEN_OFF)
            self._require(ev, "burn only once repaid", ended, f"StateIs: {t.state}")
            t.move(ts, sender, ZERO_ADDRESS, value)
            key = (t.escrow, sender)
            self._tx_burns[key] = self._tx_burns.get(key, 0) + value
            return
        self._require(ev, "not into escrow", receiver != t.escrow, "TransferToEscrow")
        self._verified(ev, receiver)
        self._verified(ev, sender)
        t.move(ts, sender, receiver, value)

    # ------------------------------------------------------------------
    # Servicer, outside period closes
    # ------------------------------------------------------------------

    def _servicer(self, ev: Event) -> Servicer:
        return self.servicers[ev["address"].lower()]

    def _revenue_received(self, ev: Event) -> None:
        s = self._servicer(ev)
        amount = int(ev["args"]["amount"])
        self._require(ev, "amount > 0", amount, "AmountZero")
        s.period_revenue += amount
        self._check(ev, {"periodRevenueCash": s.period_revenue})

    def _cash_collateral_posted(self, ev: Event) -> None:
        s = self._servicer(ev)
        amount = int(ev["args"]["amount"])
        self._require(ev, "amount > 0", amount, "AmountZero")
        if s.status == STEPPED_IN:  # after step-in it joins the wind-down waterfall
            s.trapped += amount
            self._check(ev, {"cashCollateral": 0})
            return
        s.cash_collateral += amount
        self._check(ev, {"cashCollateral": s.cash_collateral})

    def _capital_disbursed(self, ev: Event) -> None:
        """`disburseCapital()`: never more than the capital drawn and not yet disbursed."""
        s = self._servicer(ev)
        amount = int(ev["args"]["amount"])
        drawn = sum(t.original for t in (s.senior, s.junior) if t is not None)
        disbursed = s.capital_disbursed + amount
        self._require(ev, "amount > 0", amount, "NothingToWithdraw")
        if disbursed > drawn:
            self._mismatch(
                ev, "amount", f"<= {drawn - disbursed + amount} (drawn, not yet disbursed)", amount
            )
        s.capital_disbursed = disbursed

    def _top_up_cured(self, ev: Event) -> None:
        """`cureTopUp()`: clears the requirement once collateral suffices."""
        s = self._servicer(ev)
        total = s.collateral_total(self.registry, ev["timestamp"])
        self._require(ev, "top-up outstanding", s.topup_deadline, "NoTopUpOutstanding")
        enough = total >= s.topup_required
        self._require(ev, "collateral suffices", enough, "TopUpNotCured")
        self._check(
            ev,
            {
                "requiredCollateral": s.topup_required,
                "collateral": total,
                "curedAt": ev["timestamp"],
            },
        )
        s.topup_deadline = 0
        s.topup_required = 0

    def _default_declared(self, ev: Event) -> None:
        """`declareDefault()`: a lapsed cure period."""
        s = self._servicer(ev)
        ts = ev["timestamp"]
        total = s.collateral_total(self.registry, ts)
        self._require(ev, "performing", s.status == PERFORMING, f"NotPerforming: {s.status}")
        self._require(ev, "top-up outstanding", s.topup_deadline, "NoTopUpOutstanding")
        lapsed = ts > s.topup_deadline and total < s.topup_required
        self._require(ev, "cure lapsed", lapsed, "CureNotLapsed")
        self._check(
            ev,
            {
                "requiredCollateral": s.topup_required,
                "collateral": total,
                "deadline": s.topup_deadline,
            },
        )
        s.status = DEFAULTED

    def _stepped_in(self, ev: Event) -> None:
        s = self._servicer(ev)
        self._require(ev, "defaulted", s.status == DEFAULTED, f"NotDefaulted: {s.status}")
        trustee = str(ev["args"]["trustee"]).lower()
        self._require(ev, "the note's trustee", trustee == s.trustee, f"NotTrustee: {trustee}")
        note = self.registry.notes.get(s.note_id)
        moved = note is not None and note.status == NOTE_STEPPED_IN
        self._require(ev, "liens transferred", moved, "LiensTransferred missing")
        self._check(ev, {"cashCollateralApplied": s.cash_collateral})
        s.trapped += s.cash_collateral + s.reserve
        s.cash_collateral = 0
        s.reserve = 0
        s.status = STEPPED_IN

    def _withdrawn(self, ev: Event) -> None:
        """Fees go to the fee recipient, released equity to the operator.

        The event says whether the caller is the fee recipient; if it is also
        the operator it takes both.
        """
        s = self._servicer(ev)
        a = ev["args"]
        amount = _as_int(a["amount"])
        if bool(a["fees"]):
            if amount == s.fees_payable + s.equity_payable and s.equity_payable:
                expected = s.fees_payable + s.equity_payable
                s.equity_payable = 0
            else:
                expected = s.fees_payable
            s.fees_payable = 0
        elif s.recovery_payable and amount == s.recovery_payable != s.equity_payable:
            expected = s.recovery_payable  # the trustee after a wind-down
            s.recovery_payable = 0
        else:
            expected = s.equity_payable
            s.equity_payable = 0
        self._require(ev, "something to withdraw", expected, "NothingToWithdraw")
        self._check(ev, {"amount": expected})

    def _servicer_note_released(self, ev: Event) -> None:
        """`releaseCollateral()`: every tranche Repaid or Cancelled (a cancelled
        junior never blocks); all the cash held goes through `WoundUp` next."""
        s = self._servicer(ev)
        ended = all(t.state in (REPAID, CANCELLED) for t in s.tranches)
        self._require(ev, "every tranche repaid or cancelled", ended, "NoteNotRepaid")
        self._require(ev, "not released yet", s.status != RELEASED, f"NotPerforming: {s.status}")
        self._check(ev, {"cashCollateralReturned": s.cash_collateral})
        s.status = RELEASED
        s.topup_deadline = s.topup_required = 0

    def _wound_up(self, ev: Event) -> None:
        """The terminal split of everything the servicer held: it must add
        up, cover at least the modelled buckets, pay at most the fee arrears
        and leave nothing behind (`residual` is the operator's)."""
        s = self._servicer(ev)
        a = {k: _as_int(v) for k, v in ev["args"].items()}
        self._require(ev, "released", s.status == RELEASED, f"NotPerforming: {s.status}")
        parts = ("fees", "seniorInterest", "seniorPrincipal", "juniorInterest", "juniorPrincipal")
        total = sum(a[k] for k in parts) + a["residual"]
        if total != a["cashIn"]:
            self._mismatch(ev, "cashIn", total, a["cashIn"])
        held = s.period_revenue + s.trapped + s.reserve + s.cash_collateral
        if a["cashIn"] < held:
            self._mismatch(ev, "cashIn", f">= {held} (the buckets held)", a["cashIn"])
        if a["fees"] > s.fee_arrears:
            self._mismatch(ev, "fees", f"<= {s.fee_arrears} (arrears)", a["fees"])
        s.fee_arrears -= min(a["fees"], s.fee_arrears)
        s.period_revenue = s.trapped = s.reserve = s.cash_collateral = 0
        s.fees_payable += a["fees"]
        s.equity_payable += a["residual"]

    def _written_off(self, ev: Event) -> None:
        t = self._tranche(ev)
        ok = t.state in (ACTIVE, REPAID)
        self._require(ev, "state Active or Repaid", ok, f"StateIs: {t.state}")
        lost, interest_lost, held = t.write_off(ev["timestamp"])
        self._check(
            ev, {"principalLost": lost, "interestLost": interest_lost, "heldReleased": held}
        )

    def _trustee_set(self, ev: Event) -> None:
        s = self._servicer(ev)
        trustee = str(ev["args"]["trustee"]).lower()
        self._require(ev, "trustee not zero", trustee != ZERO_ADDRESS.lower(), "TermsInvalid")
        s.trustee = trustee

    def _late_cash_trapped(self, ev: Event) -> None:
        s = self._servicer(ev)
        ok = s.status in (DEFAULTED, STEPPED_IN)
        self._require(ev, "defaulted or stepped in", ok, f"status {s.status}")
        s.trapped += _as_int(ev["args"]["amount"])

    def _late_cash_settled(self, ev: Event) -> None:
        s = self._servicer(ev)
        a = ev["args"]
        amount, fees, rest = _as_int(a["amount"]), _as_int(a["fees"]), _as_int(a["rest"])
        self._require(ev, "released", s.status == RELEASED, f"status {s.status}")
        self._check(ev, {"fees": min(amount, s.fee_arrears), "rest": amount - fees})
        s.fee_arrears -= min(fees, s.fee_arrears)
        s.fees_payable += fees
        if bool(a["toTrustee"]):
            s.recovery_payable += rest
        else:
            s.equity_payable += rest

    def _defects_recorded(self, ev: Event) -> None:
        s = self._servicer(ev)
        added = _as_int(ev["args"]["added"]) or 0
        self._require(ev, "new defects", added > 0, "NoNewDefects")
        s.defects_seen = _as_int(ev["args"]["total"]) or 0
        self._defects_tx = ev["tx"]

    def _defect_top_up(self, ev: Event) -> None:
        """Outside a close a top-up is only raised by `recordDefects()`, and a
        deadline already set never moves."""
        if ev["tx"] != getattr(self, "_defects_tx", None):
            self._outside_close(ev)
            return
        s = self._servicer(ev)
        a = ev["args"]
        deadline = _as_int(a["deadline"]) or 0
        if s.topup_deadline and deadline != s.topup_deadline:
            self._mismatch(ev, "deadline", s.topup_deadline, deadline)
        s.topup_deadline = deadline
        s.topup_required = _as_int(a["requiredCollateral"]) or 0


def replay(loaded: Loaded) -> ReplayResult:
    """Replays a parsed JSON Lines file."""
    return Replayer(loaded.header).run(loaded.events, loaded.problems)


def replay_events(header: dict[str, Any], events: list[Event]) -> ReplayResult:
    """Replays events exported in memory (over RPC)."""
    return Replayer(header).run([dict(ev) for ev in events])


def compare_with_chain(loaded: Loaded, chain_events: list[Event]) -> list[Mismatch]:
    """Differences between an archived file and the chain's own logs, log by log."""
    out: list[Mismatch] = []
    on_chain = {(e["block"], e["log_index"]): e for e in chain_events}
    in_file: dict[tuple[int, int], Event] = {}
    for ev in loaded.events:
        key = (_as_int(ev.get("block")) or 0, _as_int(ev.get("log_index")) or 0)
        in_file[key] = ev
    for key, ev in in_file.items():
        chain_ev = on_chain.get(key)
        if chain_ev is None:
            out.append(_diff(ev, "(event)", "not on chain", "in the file"))
            continue
        for name in ("timestamp", "tx", "address", "event", "args"):
            if ev.get(name) != chain_ev.get(name):
                out.append(_diff(ev, name, chain_ev.get(name), ev.get(name)))
    for key, chain_ev in on_chain.items():
        if key not in in_file:
            out.append(_diff(chain_ev, "(event)", "in the file", "missing"))
    out.sort(key=lambda m: (m.block, m.log_index or 0))
    return out


def _diff(ev: Event, name: str, expected: Any, recorded: Any) -> Mismatch:
    return Mismatch(
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
