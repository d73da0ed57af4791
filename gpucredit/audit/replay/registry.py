"""Collateral registry: valuation timelocks, notes, batches, pledges, defects, liens."""

from __future__ import annotations

from eth_utils import keccak

from gpucredit.audit.export import (
    Event,
)
from gpucredit.audit.model import (
    BATCH_ATTESTED,
    BATCH_PLEDGED,
    BATCH_REGISTERED,
    BATCH_REGISTERING,
    BATCH_REJECTED,
    BATCH_VOIDED,
    BPS,
    CANCELLED,
    CHALLENGE_WINDOW,
    MAX_KEYS_PER_CHUNK,
    NOTE_OPEN,
    NOTE_RELEASED,
    NOTE_STEPPED_IN,
    PLEDGE_WINDOW,
    REGISTRATION_WINDOW,
    REPAID,
    ZERO_ADDRESS,
    Batch,
    NoteCollateral,
    Registry,
)
from gpucredit.audit.replay.base import (
    ATTESTOR_ROLE,
    ISSUER_ROLE,
    NOT_VALUE_RAISING,
    NOTE_FACTORY_ROLE,
    OPERATOR_ROLE,
    VALUATION_CHANGE_DELAY,
    ReplayBase,
    _in_grace,
    _raises_class_values,
    _waited,
)


class RegistryReplay(ReplayBase):
    """The collateral registry's events: what the collateral is and what it is worth."""

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
        self._claim(ev, note_id, "issuer", "issuer", str(a["issuer"]))

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
        # the manifest's contracts of this note, and the servicer's operator
        s = self.servicer_of_fleet.get(note.note_id)
        if s is not None:
            wired = [t.escrow for t in s.tranches]
            self._check(ev, {"servicer": s.address, "tranches": wired})
            if s.operator:
                self._check(ev, {"operators": [s.operator]})
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
            s = self.servicer_of_fleet.get(note.note_id)
            if s is not None:  # stepIn() transfers the liens to its caller, the trustee
                self._check(ev, {"trustee": s.trustee})
            note.status = NOTE_STEPPED_IN
            note.lienholder = str(ev["args"]["trustee"])
