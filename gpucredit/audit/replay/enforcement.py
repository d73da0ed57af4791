"""Default, step-in, wind-down and release: who gets what is left, and withdrawals."""

from __future__ import annotations

from gpucredit.audit.export import (
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
        self._check(ev, {"fees": min(amount, s.fee_arrears), "rest": amount - fees})
        s.fee_arrears -= min(fees, s.fee_arrears)
        s.fees_payable += fees
        if bool(a["toTrustee"]):
            s.recovery_payable += rest
        else:
            s.equity_payable += rest
