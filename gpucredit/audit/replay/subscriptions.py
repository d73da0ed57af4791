"""Creation and subscription: a note's wiring and terms, deposit requests,
fills, refunds, drawdown."""

from __future__ import annotations

from gpucredit.audit.export import (
    STABLECOIN,
    Event,
)
from gpucredit.audit.model import (
    ACTIVE,
    BPS,
    CANCELLED,
    CLOSED,
    REPAID,
    SUBSCRIPTION,
    WRITTEN_OFF,
    ZERO_ADDRESS,
    ceil_div,
)
from gpucredit.audit.replay.base import (
    ReplayBase,
    _as_int,
)


class SubscriptionReplay(ReplayBase):
    """From the factory's creation to the drawdown: who subscribed, what was
    filled, what was drawn."""

    def _tranche_initialised(self, ev: Event) -> None:
        """The terms a tranche announced at deployment are the ones replayed."""
        self.__dict__.setdefault("_initialised_in", {})[ev["address"].lower()] = ev["tx"]
        t = self._tranche(ev)
        rate = t.terms.reference_rate_bps + t.terms.spread_bps
        rate = min(max(rate, t.terms.floor_rate_bps), t.terms.cap_rate_bps)
        terms = dict(self._raw_tranche_terms[ev["address"].lower()])
        self._check(ev, {"terms": terms, "rateBps": rate})
        # the tranche pays its SPV (the note's servicer) in the deployment's stablecoin
        servicer = self.servicer_of[t.escrow]
        asset = (
            self.manifest.contracts.get(STABLECOIN)
            or (self.header.get("parties") or {}).get("asset")
            or self._asset
            or str(ev["args"]["asset"])
        )
        self._asset = asset
        self._check(ev, {"spv": servicer.address, "asset": asset})

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
        roles = ("operator", "feeRecipient", "trustee", "issuer")
        self._settle_claims(ev, s.note_id, {role: str(a[role]) for role in roles})

    def _servicer_initialised(self, ev: Event) -> None:
        """The covenant terms a servicer announced at deployment are the ones replayed."""
        self.__dict__.setdefault("_initialised_in", {})[ev["address"].lower()] = ev["tx"]
        servicer = self.servicers[ev["address"].lower()]
        terms = dict(self._raw_covenant_terms[ev["address"].lower()])
        junior = servicer.junior.address if servicer.junior is not None else "0x" + "00" * 20
        self._check(ev, {"noteId": servicer.note_id, "terms": terms})
        self._check(ev, {"senior": servicer.senior.address, "junior": junior})
        a = ev["args"]
        servicer.operator = str(a["operator"]).lower()
        servicer.fee_recipient = str(a["feeRecipient"]).lower()
        parties = (("operator", servicer.operator), ("feeRecipient", servicer.fee_recipient))
        for role, address in parties:
            self._require(ev, f"{role} not zero", address != ZERO_ADDRESS, "ZeroAddress")
            self._claim(ev, servicer.note_id, role, role, address)

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
            key = ("release", t.escrow, controller)
            self._unpaired(ev, key, "Transfer(escrow)", shares, released)

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
            key = ("release", t.escrow, holder)
            self._unpaired(ev, key, "Transfer(escrow)", fill[0], released)
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
            self._unpaired(ev, ("mint", t.escrow), "Transfer(mint)", principal, minted)
        t.state = ACTIVE
        t.last_accrual_at = ts
        t.outstanding = principal
        t.original = principal

    def _offering_cancelled(self, ev: Event) -> None:
        t = self._tranche(ev)
        ok = t.state in (SUBSCRIPTION, CLOSED)
        self._require(ev, "state Subscription or Closed", ok, f"StateIs: {t.state}")
        t.state = CANCELLED
