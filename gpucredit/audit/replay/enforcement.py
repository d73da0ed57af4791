"""Default, step-in, wind-down and release: who gets what is left, and withdrawals."""

from __future__ import annotations

from dataclasses import dataclass

from gpucredit.audit.export import (
    TRANCHE,
    Event,
)
from gpucredit.audit.model import (
    ACTIVE,
    CANCELLED,
    DEFAULTED,
    NOTE_STEPPED_IN,
    RELEASED,
    REPAID,
    STEPPED_IN,
    ZERO_ADDRESS,
)
from gpucredit.audit.replay.base import (
    ReplayBase,
    _as_int,
)


@dataclass
class _WrapPay:
    """What a `WoundUp` gives one tranche, awaiting its `Paid` (and write-off)."""

    event: Event
    interest: int
    principal: int
    paid: bool = False


class EnforcementReplay(ReplayBase):
    """Enforcement and the end of a note: step-in, write-off, release, wind-down, withdrawals."""

    def _capital_disbursed(self, ev: Event) -> None:
        """`disburseCapital()`: never more than the capital drawn and not yet disbursed."""
        s = self._servicer(ev)
        amount = int(ev["args"]["amount"])
        operator = str(ev["args"]["operator"]).lower()
        self._require(ev, "paid to the operator", operator == s.operator, f"to {operator}")
        drawn = sum(t.original for t in (s.senior, s.junior) if t is not None)
        disbursed = s.capital_disbursed + amount
        self._require(ev, "amount > 0", amount, "NothingToWithdraw")
        if disbursed > drawn:
            self._mismatch(
                ev, "amount", f"<= {drawn - disbursed + amount} (drawn, not yet disbursed)", amount
            )
        s.capital_disbursed = disbursed

    def _stepped_in(self, ev: Event) -> None:
        s = self._servicer(ev)
        self._require(ev, "defaulted", s.status == DEFAULTED, f"NotDefaulted: {s.status}")
        trustee = str(ev["args"]["trustee"]).lower()
        self._require(ev, "the note's trustee", trustee == s.trustee, f"NotTrustee: {trustee}")
        note = self.registry.notes.get(s.note_id)
        moved = note is not None and note.status == NOTE_STEPPED_IN
        self._require(ev, "liens transferred", moved, "LiensTransferred missing")
        self._check(ev, {"cashCollateralApplied": s.cash_collateral})
        s.lienholder = trustee
        s.trapped += s.cash_collateral + s.reserve
        s.cash_collateral = 0
        s.reserve = 0
        s.status = STEPPED_IN

    def _withdrawn(self, ev: Event) -> None:
        """`withdraw()` pays the caller what it is owed by role: the fee
        recipient its fees, the operator released equity, the trustee that
        stepped in the recoveries (one address may hold several roles);
        `fees` says whether the caller is the fee recipient."""
        s = self._servicer(ev)
        a = ev["args"]
        to = str(a["to"]).lower()
        is_fees = to == s.fee_recipient
        expected = 0
        if is_fees:
            expected += s.fees_payable
            s.fees_payable = 0
        if to == s.operator:
            expected += s.equity_payable
            s.equity_payable = 0
        if s.lienholder and to == s.lienholder:
            expected += s.recovery_payable
            s.recovery_payable = 0
        self._require(ev, f"something owed to {to}", expected, "NothingToWithdraw")
        self._check(ev, {"amount": expected, "fees": is_fees})

    def _servicer_note_released(self, ev: Event) -> None:
        """`releaseCollateral()`: every tranche Repaid or Cancelled (a cancelled
        junior never blocks); all the cash held goes through `WoundUp` next,
        in the same transaction."""
        s = self._servicer(ev)
        ended = all(t.state in (REPAID, CANCELLED) for t in s.tranches)
        self._require(ev, "every tranche repaid or cancelled", ended, "NoteNotRepaid")
        self._require(ev, "not released yet", s.status != RELEASED, f"NotPerforming: {s.status}")
        self._check(ev, {"cashCollateralReturned": s.cash_collateral})
        s.status = RELEASED
        s.topup_deadline = s.topup_required = 0
        self._tx_released[s.address.lower()] = ev

    def _wound_up(self, ev: Event) -> None:
        """The terminal split of everything the servicer held, as the contract's
        `_wrapUp` makes it. Two calls emit it: `releaseCollateral()` right after
        the servicer's `NoteReleased` (interest still due only), and the
        trustee's `finishWindDown()` alone, which moves a stepped-in note to
        Released and also pays principal. `cashIn` covers at least the modelled
        buckets (a plain transfer to the servicer may add to it, unseen); given
        it, every part is the model's: fee arrears first, then each tranche
        still Active or Repaid its interest due and, winding down, its
        principal outstanding, senior first; `residual` is the operator's
        equity. Each tranche's `Paid` in this transaction must carry its part,
        and a tranche still owed anything after it must be written off here."""
        s = self._servicer(ev)
        a = {k: _as_int(v) for k, v in ev["args"].items()}
        released = self._tx_released.pop(s.address.lower(), None)
        released_now = released is not None and released["tx"] == ev["tx"]
        wind_down = not released_now
        if wind_down:  # finishWindDown(): SteppedIn -> Released
            ok = s.status == STEPPED_IN
            problem = f"NotDefaulted: {s.status}"
            self._require(ev, "stepped in (or released in this call)", ok, problem)
            s.status = RELEASED
        cash = a.get("cashIn") or 0
        held = s.period_revenue + s.trapped + s.reserve + s.cash_collateral
        if cash < held:
            self._mismatch(ev, "cashIn", f">= {held} (the buckets held)", a.get("cashIn"))
        fees = min(cash, s.fee_arrears)
        left = cash - fees
        expected: dict[str, int] = {"fees": fees}
        pays: list[tuple[str, int, int]] = []
        for name, tranche in (("senior", s.senior), ("junior", s.junior)):
            interest = principal = 0
            if tranche is not None and tranche.state in (ACTIVE, REPAID):
                interest = min(left, tranche.interest_due(ev["timestamp"]))
                left -= interest
                if wind_down:
                    principal = min(left, tranche.outstanding)
                    left -= principal
                pays.append((tranche.escrow, interest, principal))
            expected[f"{name}Interest"] = interest
            expected[f"{name}Principal"] = principal
        expected["residual"] = left
        self._check(ev, expected)
        s.fee_arrears -= fees
        s.period_revenue = s.trapped = s.reserve = s.cash_collateral = 0
        s.fees_payable += fees
        s.equity_payable += left
        for escrow, interest, principal in pays:
            self._tx_wrap[escrow] = _WrapPay(ev, interest, principal)

    def _wrap_paid(self, ev: Event, escrow: str) -> None:
        """A tranche's `Paid` in a wrap-up transaction: the part `WoundUp` gave it."""
        pay = self._tx_wrap.get(escrow)
        if pay is None or pay.paid:
            return
        pay.paid = True
        self._check(ev, {"interest": pay.interest, "principal": pay.principal})

    def _end_wrap(self) -> None:
        """End of a wrap-up transaction: the release's `WoundUp` emitted, each
        part paid, each tranche still owed anything written off (the
        contract's `_payAndWriteOff`)."""
        for released in self._tx_released.values():
            self._mismatch(released, "(event)", "WoundUp in the same transaction", "missing")
        self._tx_released = {}
        for escrow, pay in self._tx_wrap.items():
            t = self.tranches[escrow]
            where = dict(pay.event, contract=TRANCHE, address=t.address)
            if not pay.paid and (pay.interest or pay.principal):
                self._mismatch(
                    dict(where, event="Paid"),
                    "(event)",
                    f"Paid({pay.interest}, {pay.principal}) from WoundUp",
                    "missing",
                )
            ts = pay.event["timestamp"]
            owed = t.state == ACTIVE or (t.state == REPAID and t.interest_due(ts))
            if owed:
                self._mismatch(
                    dict(where, event="WrittenOff"),
                    "(event)",
                    "WrittenOff: the tranche is still owed after WoundUp",
                    "missing",
                )
        self._tx_wrap = {}

    def _written_off(self, ev: Event) -> None:
        """`writeOff()`: only the servicer's wrap-up calls it, after paying the
        tranche its part, when it is still owed principal or interest."""
        t = self._tranche(ev)
        ok = t.state in (ACTIVE, REPAID)
        self._require(ev, "state Active or Repaid", ok, f"StateIs: {t.state}")
        pay = self._tx_wrap.get(t.escrow)
        self._require(ev, "in a wrap-up (WoundUp)", pay is not None, "no WoundUp for it")
        if pay is not None:
            unpaid = not pay.paid and bool(pay.interest or pay.principal)
            self._require(ev, "after the tranche's Paid", not unpaid, "written off before it")
            ts = ev["timestamp"]
            owed = t.state == ACTIVE or (t.state == REPAID and t.interest_due(ts))
            self._require(ev, "still owed after its part", owed, "nothing owed")
        lost, interest_lost, held = t.write_off(ev["timestamp"])
        self._check(
            ev, {"principalLost": lost, "interestLost": interest_lost, "heldReleased": held}
        )

    def _trustee_set(self, ev: Event) -> None:
        s = self._servicer(ev)
        trustee = str(ev["args"]["trustee"]).lower()
        self._require(ev, "trustee not zero", trustee != ZERO_ADDRESS.lower(), "TermsInvalid")
        if not s.trustee:  # set by initialize(), in the factory's creation transaction
            self._claim(ev, s.note_id, "trustee", "trustee", trustee)
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
        # after a wind-down the rest is the trustee's that stepped in, else the operator's
        to_trustee = bool(s.lienholder)
        expected = {"fees": min(amount, s.fee_arrears), "rest": amount - fees}
        self._check(ev, dict(expected, toTrustee=to_trustee))
        s.fee_arrears -= min(fees, s.fee_arrears)
        s.fees_payable += fees
        if to_trustee:
            s.recovery_payable += rest
        else:
            s.equity_payable += rest
