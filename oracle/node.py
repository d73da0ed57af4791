"""The oracle node's worker: seal, sign, gather peers, post, close.

One background thread runs rounds every ``poll_interval_seconds``. A round:

1. **Resume transactions.** Every transaction this node signed is in
   ``chain_txs`` before it is broadcast. Open ones (``signed``/``sent``) are
   checked: a receipt makes them ``mined``/``reverted``; one whose nonce was
   consumed by another transaction is ``dropped``; one the chain does not know
   is re-broadcast byte for byte (same nonce, same hash: never a second
   spend); one pending past ``tx_timeout_seconds`` is replaced at the same
   nonce with fees raised by 25 %.
2. For each fleet (configured, or seen in telemetry):

   a. **Sync.** Reports that landed on-chain (by anyone) are recorded with
      the transaction that landed them; their periods are sealed.
   b. **Close.** For each recorded report the consumer has not closed yet,
      when the consumer has code: ``closePeriod()`` (the consumer's
      ``nextPeriodToClose()`` makes this idempotent).
   c. **Seal and sign.** Once ``now >= periodEnd + settle_seconds`` for the
      period the contract expects next, the period is sealed (no more
      telemetry; the seal waits for in-flight ingests on the period row
      lock), aggregated and this node's observation signed and stored.
   d. **Gather.** Observations of the other signers are fetched from the
      peers (``GET /v1/fleets/{id}/periods/{p}/observation``) and verified
      (signature recovers to a current signer of the fleet).
   e. **Post.** With every signer's observation, or with a quorum (``2f + 1``
      of the fleet's ``n >= 3f + 1`` signers; 3 of 4 by default) once
      ``quorum_wait_seconds`` passed (so a slow honest peer is waited for),
      ``submitReport`` is simulated, signed, recorded and broadcast with every
      observation held. The contract stores each field's lower median of at
      least ``2f + 1`` distinct signers, so up to ``f`` lying peers cannot
      move it outside the honest range and up to ``f`` silent ones cannot
      stop it (docs/threat-model.md). A report already on-chain makes the
      simulation revert (``PeriodNotNext``): a no-op.
   f. **Missed.** Without a quorum once the period is stale on-chain,
      ``markMissed`` (a missing report is a covenant event).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from pydantic import ValidationError
from web3.exceptions import ContractLogicError

from gpucredit.reports import (
    SignedObservation,
    order_by_signer,
    recover_observation_signer,
    sign_observation,
)
from oracle.aggregation import figures
from oracle.chain import TRANSIENT_ERRORS, Chain, FleetConfig
from oracle.errors import ChainUnavailable, FleetNotServed, OracleError
from oracle.metrics import Metrics
from oracle.models import ObservationOut
from oracle.settings import Settings
from oracle.store import OPEN_TX_STATES, Store

log = logging.getLogger("oracle.node")
FEE_BUMP_NUM, FEE_BUMP_DEN = 5, 4  # +25 %, above the 10 % nodes require for a replacement


class Node:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        account: LocalAccount,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.account = account
        self.address = account.address
        self.metrics = metrics
        self.clock = clock
        self.chain = Chain(
            settings.rpc_url,
            settings.oracle_address,
            settings.artifacts_dir,
            settings.rpc_timeout_seconds,
        )
        self.http = httpx.Client(timeout=settings.peer_timeout_seconds)
        self.last_run: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._has_code: dict[str, bool] = {}

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="oracle-node", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except ChainUnavailable as exc:
                self.metrics.chain_errors.inc()
                log.warning("chain unavailable: %s", exc)
            except Exception:  # noqa: BLE001 - the worker must survive any round
                self.metrics.worker_errors.inc()
                log.exception("worker round failed")
            self._stop.wait(self.settings.poll_interval_seconds)

    def run_once(self) -> None:
        self.resume_transactions()
        fleets = sorted(set(self.settings.fleets) | set(self.store.known_fleets()))
        for fleet_id in fleets:
            if self._stop.is_set():
                return
            try:
                self.step(fleet_id)
            except FleetNotServed:
                log.debug("fleet %s is not registered", fleet_id)
            except ChainUnavailable:
                raise
            except OracleError as exc:
                self.metrics.worker_errors.inc()
                log.warning("fleet %s: %s", fleet_id, exc)
        self.metrics.block.set(self.chain.block_number())
        self.last_run = time.time()
        self.metrics.worker_last_run.set(self.last_run)

    # ------------------------------------------------------------- transactions

    def resume_transactions(self) -> None:
        open_txs = self.store.open_txs(self.address)
        if not open_txs:
            return
        # Read the nonce first: a nonce below it was consumed before any receipt
        # lookup below, so "no receipt" then really means "another tx used it".
        latest_nonce = self.chain.latest_nonce(self.address)
        by_nonce: dict[int, list] = {}
        for tx in open_txs:  # ordered by nonce, then creation
            by_nonce.setdefault(tx.nonce, []).append(tx)
        for nonce, txs in by_nonce.items():
            landed = False
            for tx in txs:
                receipt = self.chain.receipt(tx.tx_hash)
                if receipt is not None:
                    landed = True
                    outcome = "mined" if receipt["status"] == 1 else "reverted"
                    self.store.set_tx_state(tx.tx_hash, outcome)
                    self.metrics.txs.inc(1, tx.action, outcome)
                    log.info(
                        "%s tx %s (fleet %s period %s) %s",
                        tx.action,
                        tx.tx_hash,
                        tx.fleet_id,
                        tx.period,
                        outcome,
                    )
            if landed or nonce < latest_nonce:
                for tx in txs:
                    if self.chain.receipt(tx.tx_hash) is None:
                        self.store.set_tx_state(tx.tx_hash, "dropped", "nonce used by another tx")
                        self.metrics.txs.inc(1, tx.action, "dropped")
                continue
            newest = txs[-1]
            if newest.state == "signed" or not self.chain.transaction_known(newest.tx_hash):
                # Never broadcast (crash before send) or forgotten by the mempool:
                # the same signed bytes again, so at most one of them can land.
                self._broadcast(newest.tx_hash, bytes.fromhex(newest.raw_tx), newest.action)
                continue
            pending_for = time.time() - (newest.sent_at or newest.created_at)
            if pending_for > self.settings.tx_timeout_seconds:
                self._replace(newest)

    def _broadcast(self, tx_hash: str, raw: bytes, action: str) -> None:
        try:
            self.chain.broadcast(raw)
        except TRANSIENT_ERRORS as exc:
            message = str(exc).lower()
            if "already known" in message or "known transaction" in message:
                self.store.set_tx_state(tx_hash, "sent", sent=True)
                return
            if "nonce too low" in message and self.chain.receipt(tx_hash) is None:
                self.store.set_tx_state(tx_hash, "dropped", str(exc)[:500])
                self.metrics.txs.inc(1, action, "dropped")
                return
            self.metrics.chain_errors.inc()
            log.warning("broadcast of %s failed, will retry: %s", tx_hash, exc)
            return
        self.store.set_tx_state(tx_hash, "sent", sent=True)
        self.metrics.txs.inc(1, action, "sent")

    def _replace(self, tx) -> None:
        """Re-prices a stuck transaction at the same nonce (only one of them can land)."""
        fn = self._function_for(tx.action, tx.fleet_id, tx.period)
        if fn is None:
            return
        max_fee = int(tx.max_fee) * FEE_BUMP_NUM // FEE_BUMP_DEN + 1
        tip = int(tx.priority_fee) * FEE_BUMP_NUM // FEE_BUMP_DEN + 1
        fresh_fee, fresh_tip = self.chain.fees()
        self._sign_and_send(
            fn,
            tx.fleet_id,
            tx.period,
            tx.action,
            tx.nonce,
            max(max_fee, fresh_fee),
            max(tip, fresh_tip),
        )

    def _function_for(self, action: str, fleet_id: int, period: int):
        cfg = self.chain.fleet(fleet_id)
        if action == "report":
            rows = self._valid_observations(cfg, period)
            return self._submit_fn(cfg, period, rows) if len(rows) >= cfg.quorum else None
        if action == "missed":
            return self.chain.oracle.functions.markMissed(fleet_id)
        return self.chain.servicer(cfg.consumer).functions.closePeriod()

    def _send(self, fn, fleet_id: int, period: int, action: str) -> bool:
        """Simulates, then signs, records and broadcasts ``fn``. False if it would revert."""
        nonce = self.chain.pending_nonce(self.address)
        highest = self.store.max_open_nonce(self.address)
        if highest is not None:
            nonce = max(nonce, highest + 1)
        max_fee, tip = self.chain.fees()
        return self._sign_and_send(fn, fleet_id, period, action, nonce, max_fee, tip)

    def _sign_and_send(self, fn, fleet_id, period, action, nonce, max_fee, tip) -> bool:
        try:
            gas = fn.estimate_gas({"from": self.address})  # also the simulation
            tx = fn.build_transaction(
                {
                    "from": self.address,
                    "nonce": nonce,
                    "gas": gas * (10_000 + self.settings.gas_limit_margin_bps) // 10_000,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": tip,
                    "chainId": self.chain.chain_id,
                }
            )
        except ContractLogicError as exc:
            self.metrics.txs.inc(1, action, "simulation_reverted")
            log.info(
                "%s for fleet %s period %s would revert: %s",
                action,
                fleet_id,
                period,
                self.chain.decode_revert(exc) or exc,
            )
            return False
        except TRANSIENT_ERRORS as exc:
            raise ChainUnavailable(f"building the transaction failed: {exc}") from exc
        signed = self.account.sign_transaction(tx)
        tx_hash = "0x" + bytes(signed.hash).hex()
        self.store.record_tx(
            {
                "fleet_id": fleet_id,
                "period": period,
                "action": action,
                "sender": self.address,
                "nonce": nonce,
                "tx_hash": tx_hash,
                "raw_tx": bytes(signed.raw_transaction).hex(),
                "max_fee": str(max_fee),
                "priority_fee": str(tip),
            }
        )
        log.info(
            "%s for fleet %s period %s: tx %s nonce %s", action, fleet_id, period, tx_hash, nonce
        )
        self._broadcast(tx_hash, bytes(signed.raw_transaction), action)
        receipt = self.chain.receipt(tx_hash)
        if receipt is not None:
            outcome = "mined" if receipt["status"] == 1 else "reverted"
            self.store.set_tx_state(tx_hash, outcome)
            self.metrics.txs.inc(1, action, outcome)
        return True

    def _in_flight(self, fleet_id: int, period: int, *actions: str) -> bool:
        return any(
            tx.state in OPEN_TX_STATES
            for action in actions
            for tx in self.store.txs_for(fleet_id, period, action)
        )

    # --------------------------------------------------------------------- step

    def step(self, fleet_id: int) -> None:
        cfg = self.chain.fleet(fleet_id)
        self.sync_reports(cfg)
        self.close_periods(cfg)
        period = cfg.next_period
        start, end = cfg.bounds(period)
        now = self.clock()
        if now < end + self.settings.settle_seconds:
            return
        if self._in_flight(fleet_id, period, "report", "missed"):
            return
        self.sign_own(cfg, period)
        rows = self.gather(cfg, period)
        signers = self.chain.signers(fleet_id)
        waited = now >= end + self.settings.settle_seconds + self.settings.quorum_wait_seconds
        ready = len(rows) >= cfg.quorum and (len(rows) == len(signers) or waited)
        if ready and self._send(self._submit_fn(cfg, period, rows), fleet_id, period, "report"):
            return
        if self.settings.mark_missed and self.chain.is_stale(fleet_id):
            self._send(self.chain.oracle.functions.markMissed(fleet_id), fleet_id, period, "missed")

    def _submit_fn(self, cfg: FleetConfig, period: int, rows):
        ordered = order_by_signer(
            (
                row.signer,
                SignedObservation(
                    row.utilization_bps,
                    row.uptime_bps,
                    int(row.revenue),
                    bytes.fromhex(row.signature[2:]),
                ),
            )
            for row in rows
        )
        return self.chain.oracle.functions.submitReport(cfg.fleet_id, period, ordered)

    def sign_own(self, cfg: FleetConfig, period: int):
        """Seals ``period`` and signs this node's observation (once; None without data)."""
        existing = self.store.observation(cfg.fleet_id, period, self.address)
        if existing is not None:
            return existing
        if self.address not in self.chain.signers(cfg.fleet_id):
            return None
        start, end = cfg.bounds(period)
        with self.store.write() as conn:
            self.store.seal_period(conn, cfg.fleet_id, period, start, end)
            totals = self.store.totals(conn, cfg.fleet_id, period)
            if totals.samples == 0 and totals.revenue_events == 0:
                return None
            fig = figures(totals)
            signature = sign_observation(
                self.account.key,
                self.chain.chain_id,
                self.settings.oracle_address,
                cfg.fleet_id,
                period,
                start,
                end,
                fig.utilization_bps,
                fig.uptime_bps,
                fig.revenue,
            )
            self.store.put_observation(
                conn,
                {
                    "fleet_id": cfg.fleet_id,
                    "period": period,
                    "signer": self.address,
                    "period_start": start,
                    "period_end": end,
                    "utilization_bps": fig.utilization_bps,
                    "uptime_bps": fig.uptime_bps,
                    "revenue": str(fig.revenue),
                    "signature": "0x" + signature.hex(),
                    "source": "self",
                    "created_at": time.time(),
                },
            )
        self.metrics.observations_signed.inc()
        log.info("signed fleet %s period %s: %s", cfg.fleet_id, period, fig)
        return self.store.observation(cfg.fleet_id, period, self.address)

    def gather(self, cfg: FleetConfig, period: int) -> list:
        """This node's and its peers' verified observations from current signers."""
        rows = self._valid_observations(cfg, period)
        have = {row.signer for row in rows}
        if len(have) < len(self.chain.signers(cfg.fleet_id)):
            for peer in self.settings.peers:
                self._fetch_peer(peer, cfg, period, have)
            rows = self._valid_observations(cfg, period)
        return rows

    def _valid_observations(self, cfg: FleetConfig, period: int) -> list:
        signers = set(self.chain.signers(cfg.fleet_id))
        return [r for r in self.store.observations_for(cfg.fleet_id, period) if r.signer in signers]

    def _fetch_peer(self, peer: str, cfg: FleetConfig, period: int, have: set[str]) -> None:
        url = f"{peer}/v1/fleets/{cfg.fleet_id}/periods/{period}/observation"
        try:
            response = self.http.get(url)
        except httpx.HTTPError as exc:
            self.metrics.peer_fetches.inc(1, peer, "unreachable")
            log.debug("peer %s unreachable: %s", peer, exc)
            return
        if response.status_code == 404:
            self.metrics.peer_fetches.inc(1, peer, "not_ready")
            return
        if response.status_code != 200:
            self.metrics.peer_fetches.inc(1, peer, f"http_{response.status_code}")
            return
        try:
            obs = ObservationOut.model_validate_json(response.content)
        except ValidationError:
            self.metrics.peer_fetches.inc(1, peer, "invalid")
            return
        start, end = cfg.bounds(period)
        if (obs.fleet_id, obs.period, obs.period_start, obs.period_end) != (
            cfg.fleet_id,
            period,
            start,
            end,
        ):
            self.metrics.peer_fetches.inc(1, peer, "invalid")
            return
        signer = to_checksum_address(obs.signer)
        if signer in have:
            return
        try:
            recovered = recover_observation_signer(
                bytes.fromhex(obs.signature[2:]),
                self.chain.chain_id,
                self.settings.oracle_address,
                cfg.fleet_id,
                period,
                start,
                end,
                obs.utilization_bps,
                obs.uptime_bps,
                obs.revenue,
            )
        except ValueError:
            recovered = None
        if recovered != signer or signer not in self.chain.signers(cfg.fleet_id):
            self.metrics.peer_fetches.inc(1, peer, "bad_signature")
            log.warning("peer %s served an observation not signed by a fleet signer", peer)
            return
        with self.store.write() as conn:
            self.store.put_observation(
                conn,
                {
                    "fleet_id": cfg.fleet_id,
                    "period": period,
                    "signer": signer,
                    "period_start": start,
                    "period_end": end,
                    "utilization_bps": obs.utilization_bps,
                    "uptime_bps": obs.uptime_bps,
                    "revenue": str(obs.revenue),
                    "signature": obs.signature.lower(),
                    "source": peer,
                    "created_at": time.time(),
                },
            )
        have.add(signer)
        self.metrics.peer_fetches.inc(1, peer, "ok")

    # ----------------------------------------------------------- sync and close

    def sync_reports(self, cfg: FleetConfig) -> None:
        """Records reports that are on-chain (posted by anyone) and seals their periods."""
        if cfg.next_period == 0:
            return
        candidates = {cfg.next_period - 1}
        candidates.update(
            p for p in self.store.unreported_periods(cfg.fleet_id) if p < cfg.next_period
        )
        for period in sorted(candidates):
            if self.store.report(cfg.fleet_id, period) is not None:
                continue
            onchain = self.chain.report(cfg.fleet_id, period)
            if onchain.status == "none":
                continue
            event = self.chain.report_event(
                cfg.fleet_id,
                period,
                "ReportSubmitted" if onchain.status == "reported" else "ReportMissed",
                self.settings.from_block,
            )
            tx_hash = "0x" + bytes(event["transactionHash"]).hex() if event else None
            ours = tx_hash is not None and any(
                tx.tx_hash == tx_hash
                for action in ("report", "missed")
                for tx in self.store.txs_for(cfg.fleet_id, period, action)
            )
            submitter = None
            if event is not None and onchain.status == "reported":
                submitter = to_checksum_address(event["args"]["submitter"])
            start, end = cfg.bounds(period)
            with self.store.write() as conn:
                self.store.seal_period(conn, cfg.fleet_id, period, start, end)
            self.store.put_report(
                {
                    "fleet_id": cfg.fleet_id,
                    "period": period,
                    "status": onchain.status,
                    "utilization_bps": onchain.utilization_bps,
                    "uptime_bps": onchain.uptime_bps,
                    "revenue": str(onchain.revenue),
                    "observations": onchain.observations,
                    "tx_hash": tx_hash,
                    "block_number": event["blockNumber"] if event else None,
                    "submitter": submitter,
                    "posted_by_this_node": ours,
                }
            )
            self.metrics.reported_period.set(period, str(cfg.fleet_id))
            log.info(
                "fleet %s period %s %s on-chain in %s",
                cfg.fleet_id,
                period,
                onchain.status,
                tx_hash,
            )

    def close_periods(self, cfg: FleetConfig) -> None:
        """closePeriod() on the consumer for reported periods it has not closed."""
        if not self.settings.close_periods:
            return
        pending = self.store.unclosed_reports(cfg.fleet_id)
        if not pending or not self._consumer_has_code(cfg.consumer):
            return
        next_to_close = self.chain.next_period_to_close(cfg.consumer)
        for row in pending:
            if row.period < next_to_close:
                mined = [
                    tx.tx_hash
                    for tx in self.store.txs_for(cfg.fleet_id, row.period, "close")
                    if tx.state == "mined"
                ]
                self.store.set_report_closed(cfg.fleet_id, row.period, mined[-1] if mined else None)
                continue
            if self._in_flight(cfg.fleet_id, next_to_close, "close"):
                return
            fn = self.chain.servicer(cfg.consumer).functions.closePeriod()
            self._send(fn, cfg.fleet_id, next_to_close, "close")
            return

    def _consumer_has_code(self, consumer: str) -> bool:
        if not self._has_code.get(consumer):
            self._has_code[consumer] = self.chain.has_code(consumer)
        return self._has_code[consumer]
