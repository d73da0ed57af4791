"""The orchestrator: builds the model from the header, drives the events
transaction by transaction and hands each to its handler (one mixin per
kind of decision, in this package)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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
    CovenantTerms,
    Identities,
    Oracle,
    Registry,
    Servicer,
    Tranche,
    TrancheTerms,
)
from gpucredit.audit.replay.access import AccessReplay
from gpucredit.audit.replay.archive import ArchiveChecks, compare_with_chain
from gpucredit.audit.replay.base import (
    _ANCHORS,
    _ROLE_EVENTS,
    Mismatch,
    NoteSummary,
    PeriodRow,
    ReplayResult,
)
from gpucredit.audit.replay.closes import CloseReplay
from gpucredit.audit.replay.coupons import CouponReplay
from gpucredit.audit.replay.enforcement import EnforcementReplay
from gpucredit.audit.replay.oracle import OracleReplay
from gpucredit.audit.replay.registry import RegistryReplay
from gpucredit.audit.replay.subscriptions import SubscriptionReplay


class Replayer(
    ArchiveChecks,
    CloseReplay,
    SubscriptionReplay,
    CouponReplay,
    EnforcementReplay,
    RegistryReplay,
    OracleReplay,
    AccessReplay,
):
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
        self._tx_released = {}
        self._tx_wrap = {}
        self._claims = {}
        self._tx_transfers = {}
        self._last_set = {}
        self._asset = None
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
        self._check_fleet_parties()
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

    def _begin(self, ev: Event) -> None:
        if ev["tx"] != self._tx:
            self._end_tx()
            self._tx = ev["tx"]
            self._tx_event = ev

    def _end_tx(self) -> None:
        """Pairs that one call emits together: each half without the other is a mismatch."""
        if self._tx_wrap or self._tx_released:
            self._end_wrap()
        if not (self._tx_mints or self._tx_releases or self._tx_burns or self._tx_repaid):
            self._tx_transfers = {}
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
                self._dangling(("release", tranche, holder), "SharesClaimed")
            for (tranche, holder), value in self._tx_burns.items():
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="PrincipalRedeemed"),
                    "(event)",
                    f"PrincipalRedeemed by {holder} with the burn of {value}",
                    "missing",
                )
                self._dangling(("burn", tranche, holder), "PrincipalRedeemed")
            for tranche in self._tx_repaid:
                self._mismatch(
                    dict(ev, contract=TRANCHE, address=tranche, event="Paid"),
                    "(event)",
                    "Paid after Repaid",
                    "missing",
                )
        self._tx_mints = {}
        self._tx_transfers = {}
        self._tx_releases = {}
        self._tx_burns = {}
        self._tx_repaid = set()

    def _dangling(self, key: tuple[str, ...], pair: str) -> None:
        """The `Transfer` of a pair whose other half is missing, at its own line."""
        transfer = self._tx_transfers.get(key)
        if transfer is not None:
            self._mismatch(transfer, "to", f"the holder of a {pair} in this transaction", key[-1])

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

    def fill_event(self, ev: Event) -> Event:
        """Fill mode: one event with its computed fields written in the file's encoding."""
        self.handle(ev)
        assert self.book is not None
        ev["args"] = self.book.event(ev["contract"], ev["event"]).encode_args(ev["args"])
        return ev


def replay(loaded: Loaded) -> ReplayResult:
    """Replays a parsed JSON Lines file."""
    return Replayer(loaded.header).run(loaded.events, loaded.problems)


def replay_events(header: dict[str, Any], events: list[Event]) -> ReplayResult:
    """Replays events exported in memory (over RPC)."""
    return Replayer(header).run([dict(ev) for ev in events])


__all__ = ["Replayer", "compare_with_chain", "replay", "replay_events"]
