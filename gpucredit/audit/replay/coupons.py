"""Coupons and principal outside a close: rates, payments, claims, redemptions, note transfers."""

from __future__ import annotations

from gpucredit.audit.export import (
    Event,
)
from gpucredit.audit.model import (
    BPS,
    CLOSED,
    REPAID,
    SUBSCRIPTION,
    WRITTEN_OFF,
    ZERO_ADDRESS,
)
from gpucredit.audit.replay.base import (
    ReplayBase,
)


class CouponReplay(ReplayBase):
    """The tranche's money to holders: accrual, payments in, claims and
    redemptions out, transfers."""

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
        self._wrap_paid(ev, t.escrow)  # in a wrap-up: the part WoundUp gave this tranche
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
        if face != burned:
            self._unpaired(ev, ("burn", t.escrow, holder), "Transfer(burn)", face, burned)
        if face > burned:
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
            self._tx_transfers[("mint", t.escrow)] = ev
            return
        if sender == t.escrow:  # claimShares: face leaves escrow with what it earned
            self._verified(ev, receiver)
            t.release_from_escrow(ts, receiver, value)
            key = (t.escrow, receiver)
            self._tx_releases[key] = self._tx_releases.get(key, 0) + value
            self._tx_transfers[("release", *key)] = ev
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
            self._tx_transfers[("burn", *key)] = ev
            return
        self._require(ev, "not into escrow", receiver != t.escrow, "TransferToEscrow")
        self._verified(ev, receiver)
        self._verified(ev, sender)
        t.move(ts, sender, receiver, value)
