"""Period closes and covenants: the close replayed as a whole, and the remedies between closes."""

from __future__ import annotations

import difflib

from gpucredit.audit.errors import AuditInputError
from gpucredit.audit.export import (
    ORACLE,
    SERVICER,
    STABLECOIN,
    Event,
)
from gpucredit.audit.model import (
    DEFAULTED,
    PERFORMING,
    STEPPED_IN,
    Expected,
    Servicer,
)
from gpucredit.audit.replay.base import (
    _ANCHORS,
    _CLOSE_PREAMBLE,
    _CLOSE_TAIL_SERVICER,
    _CLOSE_TAIL_TRANCHE,
    PeriodRow,
    ReplayBase,
    _as_int,
    _int_args,
)


class CloseReplay(ReplayBase):
    """`closePeriod()` replayed as a whole, and what feeds or cures between closes."""

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

    def _outside_close(self, ev: Event) -> None:
        self.fields_checked += 1
        self._mismatch(ev, "(event)", "only inside a period close", "emitted alone")

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
