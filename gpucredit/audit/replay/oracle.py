"""Telemetry oracle: fleets, signer sets and operator keys (timelocked),
reports and missed periods."""

from __future__ import annotations

from gpucredit.audit.export import (
    Event,
)
from gpucredit.audit.model import (
    BPS,
    REPORTED,
    ZERO_ADDRESS,
    Fleet,
    Report,
)
from gpucredit.audit.replay.base import (
    SIGNER_CHANGE_DELAY,
    ReplayBase,
    _in_grace,
    _waited,
)
from gpucredit.reports import quorum_rule_violation


class OracleReplay(ReplayBase):
    """The oracle's events: whose reports count, and which report each period has."""

    def _fleet_registered(self, ev: Event) -> None:
        a = ev["args"]
        fleet_id = int(a["fleetId"])
        self._require(ev, "new fleet", fleet_id not in self.oracle.fleets, "FleetExists")
        s = self.servicer_of_fleet.get(fleet_id)
        self._require(ev, "the fleet of a note of the manifest", s, f"no note {fleet_id}")
        if s is not None:  # the note's servicer reads the fleet's reports
            self._check(ev, {"consumer": s.address})
        self._last_set[(fleet_id, "operator")] = ev
        self._last_set[(fleet_id, "registered")] = ev
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
        lowered = [str(x).lower() for x in signers]
        distinct = ZERO_ADDRESS not in lowered and len(set(lowered)) == len(lowered)
        self._require(ev, "signers distinct, none zero", distinct, "FleetConfigInvalid")
        self._last_set[(fleet.fleet_id, "signers")] = ev
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
        self._last_set[(fleet.fleet_id, "operator")] = ev

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
        signed = observations <= len(fleet.signers)
        rule = "observations <= signers (one each)"
        self._require(ev, rule, signed, f"{observations} of {len(fleet.signers)} signers")
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

    def _check_fleet_parties(self) -> None:
        """The header's parties (the oracle's `fleet()` and `signers()` at the
        archive's last block) are where each fleet's last `SignersChanged` and
        last operator (`FleetRegistered` or `FleetOperatorChanged`) led."""
        fleets = (self.header.get("parties") or {}).get("fleets") or {}
        for key, party in fleets.items():
            fleet = self.oracle.fleets.get(int(key))
            signed = self._last_set.get((int(key), "signers"))
            if fleet is None or signed is None:
                self._mismatch({"line": 1}, f"parties.fleets.{key}", "a registered fleet", None)
                continue
            self._check(signed, {"signers": party["signers"], "quorum": party["quorum"]})
            self._check(signed, {"signerVersion": party["signerVersion"]})
            self._check(self._last_set[(int(key), "operator")], {"operator": party["operator"]})
            grid = ("consumer", "genesis", "periodLength", "heartbeat")
            registered = self._last_set[(int(key), "registered")]
            self._check(registered, {name: party[name] for name in grid if name in party})
