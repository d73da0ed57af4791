"""Synthetic, valid event histories: the benchmark's input and the pure-Python tests'.

`synthetic_history(n)` plays several notes on one registry and oracle through
three years of 30-day periods: subscriptions (one tranche oversubscribed and
cut pro rata), drawdown, revenue payments, holder transfers and coupon
claims, signed reports (some late, some missed), closes with coupon steps,
top-ups cured with cash collateral or left to lapse into default and
trustee step-in, fee and equity withdrawals, and at maturity the repayment,
redemptions and release of the collateral. It stops at exactly `n` events.

The callers' choices are random (seeded); every figure the contracts would
compute is written by the reference model itself (the replay's fill mode),
so the history is valid by the model's rules, and the model is checked
against the contracts on a real chain by tests/integration/test_audit_replay.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address

from gpucredit.audit.export import (
    FORMAT,
    IDENTITIES,
    ORACLE,
    REGISTRY,
    SERVICER,
    TRANCHE,
    AbiBook,
    Event,
    Export,
    Manifest,
    _function_output,
    to_json_value,
)
from gpucredit.audit.model import ACTIVE, CHALLENGE_WINDOW, REPAID, ZERO_ADDRESS
from gpucredit.audit.replay import (
    ATTESTOR_ROLE,
    ISSUER_ROLE,
    NOTE_FACTORY_ROLE,
    OPERATOR_ROLE,
    Replayer,
)

DAY = 86_400
PERIOD = 30 * DAY
HEARTBEAT = 7 * DAY
USD = 10**6
START = 1_800_000_000
ADMIN_ROLE = "0x" + "00" * 32
MODEL = "0x" + keccak(text="NVIDIA H100 SXM5 80GB").hex()


def _address(label: str) -> str:
    return to_checksum_address(keccak(text=f"gpucredit-synthetic:{label}")[-20:])


def _hash(label: str) -> str:
    return "0x" + keccak(text=f"gpucredit-synthetic:{label}").hex()


@dataclass
class _Note:
    note_id: int
    servicer: str
    senior: str
    junior: str
    senior_lenders: list[str]
    junior_lenders: list[str]
    late_claimer: str  # claims its junior face only later (escrow coupons)
    utilization: int = 8_800
    lapse_top_ups: bool = False


class _Writer:
    """Appends events one transaction (one block) at a time, through the model."""

    def __init__(self, replayer: Replayer, start: int) -> None:
        self.replayer = replayer
        self.events: list[Event] = []
        self.block = 0
        self.ts = start
        self.tx = ""
        self.log = 0

    def transaction(self, at: int = 0, step: int = 12) -> None:
        self.block += 1
        self.ts = max(self.ts + step, at)
        self.tx = _hash(f"tx:{self.block}")
        self.log = 0

    def emit(self, contract: str, address: str, event: str, **args: Any) -> Event:
        ev: Event = {
            "block": self.block,
            "timestamp": self.ts,
            "tx": self.tx,
            "log_index": self.log,
            "contract": contract,
            "address": address,
            "event": event,
            "args": args,
        }
        self.replayer.fill_event(ev)
        self.log += 1
        self.events.append(ev)
        return ev

    def close(self, servicer: str) -> list[Event]:
        placeholder: Event = {
            "block": self.block,
            "timestamp": self.ts,
            "tx": self.tx,
            "log_index": self.log,
            "contract": SERVICER,
            "address": servicer,
            "event": "PeriodClosed",
            "args": {},
        }
        out = self.replayer.fill_close(placeholder)
        self.log += len(out)
        self.events.extend(out)
        return out


def _subscription_end(notes: int) -> int:
    """Subscriptions stay open while every note is set up, with room for each
    note's challenge window (3 days) and two days more, however many notes."""
    return START + max(14 * DAY, notes * (CHALLENGE_WINDOW + 2 * DAY))


def _header(notes: list[_Note], book: AbiBook, maturity: int) -> dict[str, Any]:
    contracts: dict[str, Any] = {
        REGISTRY: _address("registry"),
        IDENTITIES: _address("identities"),
        ORACLE: _address("oracle"),
        "notes": [
            {"note_id": n.note_id, "servicer": n.servicer, "tranches": [n.senior, n.junior]}
            for n in notes
        ],
    }
    manifest = Manifest.from_dict({"chain_id": 31337, "contracts": contracts}).to_dict()
    covenant_item = _function_output(book.abis[SERVICER], "covenantTerms")
    terms_item = _function_output(book.abis[TRANCHE], "terms")
    covenants = {
        "dscrMinBps": 12_500,
        "maxLtvBps": 7_500,
        "lowUtilMaxLtvBps": 6_500,
        "uptimeSlaBps": 9_900,
        "stepDownUtilBps": 9_000,
        "stepDownPeriods": 3,
        "stepDownBps": -200,
        "stepUpUtilBps": 6_000,
        "stepUpPeriods": 1,
        "stepUpBps": 300,
        "sweepShareBps": 5_000,
        "reserveMonths": 3,
        "curePeriod": 30 * DAY,
        "feePerPeriod": 5_000 * USD,
    }
    servicers = {n.servicer: to_json_value(covenant_item, covenants) for n in notes}
    tranches = {}
    for n in notes:
        for seniority, (address, size, spread) in enumerate(
            ((n.senior, 14_000_000 * USD, 450), (n.junior, 3_000_000 * USD, 900))
        ):
            terms = {
                "noteId": n.note_id,
                "seniority": seniority,
                "maxSize": size,
                "minSubscription": 1_000 * USD,
                "subscriptionStart": START,
                "subscriptionEnd": _subscription_end(len(notes)),
                "maturity": maturity,
                "referenceRateBps": 430,
                "spreadBps": spread,
                "floorRateBps": 500,
                "capRateBps": 2_500,
                "minCollateralRatioBps": 13_000,
            }
            tranches[address] = to_json_value(terms_item, terms)
    return {
        "format": FORMAT,
        "chain_id": 31337,
        "from_block": 0,
        "to_block": 0,
        "head_hash": "",
        "manifest": manifest,
        "terms": {"servicers": servicers, "tranches": tranches},
        "synthetic": True,
    }


class _Story:
    def __init__(
        self, target: int, notes: int, periods: int, lenders: int, seed: int, book: AbiBook
    ) -> None:
        self.target = target
        self.rng = random.Random(seed)
        self.periods = periods
        self.genesis = _subscription_end(notes)
        self.maturity = self.genesis + periods * PERIOD
        self.admin = _address("admin")
        self.issuer = _address("issuer")
        self.operator = _address("operator")
        self.attestor = _address("attestor")
        self.trustee = _address("trustee")
        self.fees = _address("fees")
        self.keeper = _address("keeper")
        self.registry = _address("registry")
        self.identities = _address("identities")
        self.oracle = _address("oracle")
        self.notes = []
        for i in range(1, notes + 1):
            seniors = [_address(f"note{i}:senior-lender{k}") for k in range(lenders)]
            juniors = [_address(f"note{i}:junior-lender{k}") for k in range(max(2, lenders // 2))]
            self.notes.append(
                _Note(
                    note_id=i,
                    servicer=_address(f"note{i}:servicer"),
                    senior=_address(f"note{i}:senior"),
                    junior=_address(f"note{i}:junior"),
                    senior_lenders=seniors,
                    junior_lenders=juniors,
                    late_claimer=juniors[-1],
                    lapse_top_ups=i % 4 == 0,
                )
            )
        header = _header(self.notes, book, self.maturity)
        self.replayer = Replayer(header, fill=True, book=book)
        self.header = header
        self.w = _Writer(self.replayer, START)
        self.batches = 0

    # ---- helpers ----

    def left(self) -> int:
        return self.target - len(self.w.events)

    def tranche(self, address: str) -> Any:
        return self.replayer.tranches[address.lower()]

    def servicer(self, note: _Note) -> Any:
        return self.replayer.servicers[note.servicer.lower()]

    def register(self, cost: int) -> int:
        """A registered and attested batch (pledged by `pledge` after the challenge window)."""
        w = self.w
        self.batches += 1
        batch = self.batches
        w.transaction()
        w.emit(
            REGISTRY,
            self.registry,
            "BatchRegistered",
            batchId=batch,
            operator=self.operator,
            issuer=self.issuer,
            root=_hash(f"root:{batch}"),
            count=cost // (25_000 * USD),
            totalCost=cost,
            model=MODEL,
            inServiceAt=w.ts - 1,
            attestationHash=_hash(f"docs:{batch}"),
        )
        keys = [_hash(f"gpu:{batch}:{i}") for i in range(cost // (25_000 * USD))]
        for first in range(0, len(keys), 500):
            chunk = keys[first : first + 500]
            packed = first.to_bytes(32, "big") + b"".join(bytes.fromhex(k[2:]) for k in chunk)
            w.transaction()
            w.emit(
                REGISTRY,
                self.registry,
                "GpusRegistered",
                batchId=batch,
                firstIndex=first,
                chunkHash="0x" + keccak(packed).hex(),
                keys=chunk,
            )
        w.transaction()
        w.emit(
            REGISTRY,
            self.registry,
            "BatchAttested",
            batchId=batch,
            attestor=self.attestor,
            attestationHash=_hash(f"attested:{batch}"),
        )
        return batch

    def pledge(self, note: _Note, batch: int) -> None:
        self.w.transaction()
        self.w.emit(REGISTRY, self.registry, "BatchPledged", batchId=batch, noteId=note.note_id)

    # ---- acts ----

    def setup(self) -> None:
        w = self.w
        w.transaction()
        w.emit(
            REGISTRY,
            self.registry,
            "RoleGranted",
            role=ADMIN_ROLE,
            account=self.admin,
            sender=self.admin,
        )
        for class_id, markdown in ((0, 1_667), (1, 500), (2, 375)):
            w.emit(
                REGISTRY,
                self.registry,
                "DepreciationClassSet",
                classId=class_id,
                quarterlyMarkdownBps=markdown,
                floorBps=0,
            )
        w.emit(REGISTRY, self.registry, "ModelSet", model=MODEL, classId=1, haircutBps=0)
        for role, account in (
            (ISSUER_ROLE, self.issuer),
            (NOTE_FACTORY_ROLE, self.admin),  # the admin stands in for the NoteFactory
            (OPERATOR_ROLE, self.operator),
            (ATTESTOR_ROLE, self.attestor),
        ):
            w.transaction()
            w.emit(
                REGISTRY,
                self.registry,
                "RoleGranted",
                role=role,
                account=account,
                sender=self.admin,
            )
        w.transaction()
        lenders = [a for n in self.notes for a in n.senior_lenders + n.junior_lenders]
        for account in lenders:
            w.emit(
                IDENTITIES,
                self.identities,
                "IdentityRegistered",
                account=account,
                country=840,
                expiresAt=START + 3_650 * DAY,
            )
        # every note's batch attested first, then one wait for the challenge window (its value
        # counts from then on): 24 waits in turn would outlast the subscription window
        batches = [self.register(25_000_000 * USD) for _ in self.notes]
        w.transaction(at=w.ts + CHALLENGE_WINDOW + 1)
        for note, batch in zip(self.notes, batches, strict=True):
            self.open_note(note, batch)

    def open_note(self, note: _Note, batch: int) -> None:
        w = self.w
        w.transaction()
        w.emit(
            REGISTRY,
            self.registry,
            "NoteOpened",
            noteId=note.note_id,
            issuer=self.issuer,
            factory=self.admin,
        )
        w.transaction()
        w.emit(
            SERVICER,
            note.servicer,
            "ServicerInitialised",
            noteId=note.note_id,
            senior=note.senior,
            junior=note.junior,
            operator=self.operator,
            feeRecipient=self.fees,
            terms={},  # the header's, written by the replay
        )
        w.emit(SERVICER, note.servicer, "TrusteeSet", trustee=self.trustee)
        for tranche in (note.senior, note.junior):
            w.transaction()
            dues = [self.genesis + k * 3 * PERIOD for k in range(1, self.periods // 3)]
            w.emit(
                TRANCHE,
                tranche,
                "AmortizationScheduleSet",
                dueAt=dues,
                cumulativeBps=[min(10_000, 800 * (k + 1)) for k in range(len(dues))],
            )
        w.transaction()
        w.emit(
            REGISTRY,
            self.registry,
            "NoteBound",
            noteId=note.note_id,
            servicer=note.servicer,
            tranches=[note.senior, note.junior],
            operators=[self.operator],
        )
        w.transaction()
        signers = [_address(f"signer{k}") for k in range(4)]
        w.emit(
            ORACLE,
            self.oracle,
            "FleetRegistered",
            fleetId=note.note_id,
            operator=self.operator,
            consumer=note.servicer,
            genesis=self.genesis,
            periodLength=PERIOD,
            heartbeat=HEARTBEAT,
        )
        w.emit(
            ORACLE, self.oracle, "SignersChanged", fleetId=note.note_id, signers=signers, quorum=3
        )
        self.pledge(note, batch)
        for tranche, lenders, total in (
            (note.senior, note.senior_lenders, 14_000_000 * USD),
            (note.junior, note.junior_lenders, 4_500_000 * USD),
        ):
            share = total // len(lenders)
            for k, lender in enumerate(lenders):
                amount = share if k < len(lenders) - 1 else total - share * (len(lenders) - 1)
                w.transaction()
                w.emit(
                    TRANCHE,
                    tranche,
                    "DepositRequest",
                    controller=lender,
                    owner=lender,
                    sender=lender,
                    assets=amount,
                )
            w.transaction()
            w.emit(TRANCHE, tranche, "SubscriptionClosed")
            w.transaction()
            for lender in lenders:
                w.emit(TRANCHE, tranche, "RequestFulfilled", controller=lender)
            w.transaction()
            model = self.tranche(tranche)
            w.emit(
                TRANCHE,
                tranche,
                "Transfer",
                **{"from": ZERO_ADDRESS, "to": tranche, "value": model.total_filled},
            )
            w.emit(TRANCHE, tranche, "DrawnDown")
            for lender in lenders:
                if lender != note.late_claimer:
                    self.claim_shares(tranche, lender)

    def claim_shares(self, tranche: str, lender: str) -> None:
        w = self.w
        w.transaction()
        shares = self.tranche(tranche).fills[lender.lower()][0]
        if shares:
            w.emit(TRANCHE, tranche, "Transfer", **{"from": tranche, "to": lender, "value": shares})
        w.emit(TRANCHE, tranche, "SharesClaimed", controller=lender)

    def activity(self, note: _Note, budget: int, revenue: int) -> None:
        """Revenue payments, holder transfers and coupon claims of one note in one period."""
        rng, w = self.rng, self.w
        payments = max(1, budget // 4)
        for k in range(payments):
            w.transaction(step=60)
            amount = (
                revenue // payments
                if k < payments - 1
                else revenue - (revenue // payments) * (payments - 1)
            )
            w.emit(
                SERVICER,
                note.servicer,
                "RevenueReceived",
                **{"from": self.operator, "amount": max(amount, 1)},
            )
        for _ in range(budget - payments):
            w.transaction(step=60)
            address = note.senior if rng.random() < 0.7 else note.junior
            tranche = self.tranche(address)
            lenders = note.senior_lenders if address == note.senior else note.junior_lenders
            holder = rng.choice(lenders)
            # face still in escrow would be claimed first (not generated here)
            h = tranche.holder(holder)
            claimable = 0 if h.escrowed else tranche.entitlement(holder, w.ts)[0]
            if claimable and rng.random() < 0.4:
                w.emit(TRANCHE, address, "CouponClaimed", holder=holder)
                continue
            balance = tranche.holder(holder).balance
            receiver = rng.choice([x for x in lenders if x != holder])
            if balance == 0 or tranche.state != ACTIVE:
                w.emit(
                    SERVICER,
                    note.servicer,
                    "RevenueReceived",
                    **{"from": self.operator, "amount": 1_000 * USD},
                )
                continue
            value = rng.randint(1, balance // 3 + 1)
            w.emit(TRANCHE, address, "Transfer", **{"from": holder, "to": receiver, "value": value})

    def remedies(self, note: _Note) -> None:
        """Cure an open top-up with cash, or let it lapse: default and step-in."""
        w = self.w
        s = self.servicer(note)
        if s.topup_deadline == 0:
            return
        if not note.lapse_top_ups:
            shortfall = s.topup_required - s.collateral_total(self.replayer.registry, w.ts + 12)
            w.transaction()
            if shortfall > 0:
                w.emit(
                    SERVICER,
                    note.servicer,
                    "CashCollateralPosted",
                    **{"from": self.operator, "amount": shortfall + USD},
                )
                w.transaction()
            w.emit(SERVICER, note.servicer, "TopUpCured")
        elif w.ts > s.topup_deadline and s.status == 0:
            w.transaction()
            w.emit(SERVICER, note.servicer, "DefaultDeclared")
            w.transaction()
            w.emit(
                REGISTRY,
                self.registry,
                "LiensTransferred",
                noteId=note.note_id,
                trustee=self.trustee,
            )
            w.emit(SERVICER, note.servicer, "SteppedIn", trustee=self.trustee)

    def report(self, note: _Note, period: int, cash: int, utilization: int) -> None:
        rng = self.rng
        self.w.transaction()
        self.w.emit(
            ORACLE,
            self.oracle,
            "ReportSubmitted",
            fleetId=note.note_id,
            utilizationBps=utilization,
            uptimeBps=rng.choice((9_950, 9_970, 9_990, 9_850)),
            revenue=cash * rng.randint(95, 105) // 100,
            observations=3,
            submitter=self.keeper,
        )

    def period(self, period: int, budget: int) -> None:
        rng, w = self.rng, self.w
        start = self.genesis + period * PERIOD
        end = start + PERIOD
        w.ts = max(w.ts, start + 60)
        cash: dict[int, int] = {}
        for note in self.notes:
            note.utilization = max(3_000, min(9_900, note.utilization + rng.randint(-600, 600)))
            if rng.random() < 0.08 or (period, note.note_id) == (2, 1):
                note.utilization = rng.randint(3_500, 5_900)  # demand shock
            revenue = note.utilization * 90 * USD
            if period == self.periods - 1:
                revenue += 18_000_000 * USD  # refinancing proceeds at maturity
            cash[note.note_id] = revenue
            self.activity(note, budget, revenue)
            self.remedies(note)
            if period == 5:
                self.claim_shares(note.junior, note.late_claimer)
        kinds = {
            n.note_id: rng.choices(("on time", "late", "missed"), (94, 3, 3))[0] for n in self.notes
        }
        if period == 3:  # at least one missing and one late report in every history
            kinds[2 if len(self.notes) > 1 else 1] = "missed"
        if period == 4:
            kinds[3 if len(self.notes) > 2 else 1] = "late"
        if period == self.periods - 1:
            kinds = dict.fromkeys(kinds, "on time")
        w.transaction(at=end + 600)
        for note in self.notes:
            if kinds[note.note_id] == "on time":
                self.report(note, period, cash[note.note_id], note.utilization)
                w.transaction()
                w.close(note.servicer)
        w.transaction(at=end + HEARTBEAT + 600)
        for note in self.notes:
            kind = kinds[note.note_id]
            if kind == "late":
                self.report(note, period, cash[note.note_id], note.utilization)
            if kind != "on time":
                w.transaction()
                w.close(note.servicer)
        for note in self.notes:
            s = self.servicer(note)
            if rng.random() < 0.3:
                for to, fees, payable in (
                    (self.fees, True, s.fees_payable),
                    (self.operator, False, s.equity_payable),
                ):
                    if payable:
                        w.transaction()
                        w.emit(SERVICER, note.servicer, "Withdrawn", to=to, amount=0, fees=fees)

    def wind_up(self) -> None:
        """Redemptions, last coupons and release of repaid notes."""
        w = self.w
        for note in self.notes:
            for address, lenders in (
                (note.senior, note.senior_lenders),
                (note.junior, note.junior_lenders),
            ):
                tranche = self.tranche(address)
                for lender in lenders:
                    if self.left() < 4:
                        return
                    owed = tranche.redeemable(w.ts + 12, lender)
                    face = tranche.holder(lender).balance if tranche.state == REPAID else 0
                    if owed or face:
                        w.transaction()
                        if face:
                            w.emit(
                                TRANCHE,
                                address,
                                "Transfer",
                                **{"from": lender, "to": ZERO_ADDRESS, "value": face},
                            )
                        w.emit(TRANCHE, address, "PrincipalRedeemed", holder=lender)
                    if tranche.entitlement(lender, w.ts + 12)[0]:
                        w.transaction()
                        w.emit(TRANCHE, address, "CouponClaimed", holder=lender)
            s = self.servicer(note)
            if all(t.state == REPAID for t in s.tranches) and self.left() >= 2:
                w.transaction()
                w.emit(
                    REGISTRY, self.registry, "NoteReleased", noteId=note.note_id, by=note.servicer
                )
                w.emit(SERVICER, note.servicer, "NoteReleased")
                cash = s.period_revenue + s.trapped + s.reserve + s.cash_collateral
                fees = min(cash, s.fee_arrears)
                w.emit(
                    SERVICER,
                    note.servicer,
                    "WoundUp",
                    cashIn=cash,
                    fees=fees,
                    seniorInterest=0,
                    seniorPrincipal=0,
                    juniorInterest=0,
                    juniorPrincipal=0,
                    residual=cash - fees,
                )

    def run(self) -> Export:
        self.setup()
        per_period = max(
            4, (self.target - len(self.w.events)) // (self.periods * len(self.notes)) - 8
        )
        for period in range(self.periods):
            if self.left() < len(self.notes) * (per_period + 16):
                break
            self.period(period, per_period)
        self.wind_up()
        note = self.notes[0]
        while self.left() > 0:  # top up to exactly the target: revenue payments
            self.w.transaction()
            self.w.emit(
                SERVICER, note.servicer, "RevenueReceived", **{"from": self.operator, "amount": USD}
            )
        events = self.w.events[: self.target]
        self.header["to_block"] = self.w.block
        self.header["head_hash"] = _hash(f"block:{self.w.block}")
        self.header["events"] = len(events)
        return Export(self.header, events)


def synthetic_history(
    events: int = 100_000,
    *,
    notes: int = 24,
    periods: int = 36,
    lenders: int = 8,
    seed: int = 7,
    build_dir: Path | None = None,
) -> Export:
    """A valid history of exactly `events` events (see the module docstring)."""
    return _Story(events, notes, periods, lenders, seed, AbiBook(build_dir)).run()
