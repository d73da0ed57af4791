"""Telemetry ingestion: authenticate, validate against the fleet's periods, store.

Order of checks (the first failure answers, nothing is written):

1. schema (pydantic, before this module): 422
2. the fleet is registered on-chain and this node is one of its signers: 404
3. the signature parses and recovers: 401; the signer is ``fleet.operator``: 403
4. every timestamp: not in the future (beyond ``max_clock_skew_seconds``), not
   before genesis, in a period the contract still expects (``>= nextPeriod``)
   and still open here (``now < periodEnd + settle_seconds``, not sealed); a
   sample's interval stays inside its period: 422, unless the same batch
   (id and content) was already accepted: then 409 ``batch_replayed``, so a
   client retrying after a lost response learns its data is stored
5. invoice ids unique within the batch, and per-GPU samples of one GPU do not
   overlap in time within the batch: 409
6. in ONE database transaction: the batch id is new (same content: 409
   ``batch_replayed``, other content: 409 ``batch_id_reused``), no invoice id
   was seen before for the fleet (409), each touched period is unsealed and its
   running totals stay within range (422), no per-GPU sample overlaps an
   interval stored for the same GPU (409 ``sample_overlap``; checked after the
   period rows are locked, and overlapping samples share a period, so
   concurrent batches cannot both pass); then the batch, samples and revenue
   events are inserted and committed before the 2xx.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from eth_utils import to_checksum_address
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from oracle.batchsig import batch_digest, domain_separator, payload_hash, recover_address
from oracle.chain import FleetConfig, FleetDirectory
from oracle.clock import ChainClock
from oracle.errors import (
    BatchIdReused,
    BatchReplayed,
    DuplicateInvoice,
    FleetNotServed,
    PeriodClosed,
    SampleOverlap,
    SignatureInvalid,
    SignerForbidden,
    TelemetryRejected,
    TimestampOutOfWindow,
    ValueOutOfRange,
)
from oracle.limits import OperatorRateLimit
from oracle.models import PeriodCount, TelemetryAccepted, TelemetryBatchIn, to_micro
from oracle.store import Store, batches, periods, revenue_events, samples

RUNNING_TOTAL_LIMIT = 2**62  # keeps every SUM inside a signed 64-bit integer
GROUP_MAX = 64  # batches committed together at most


@dataclass
class _Write:
    cfg: FleetConfig
    ack: TelemetryAccepted
    signature: str
    sample_rows: list[dict]
    revenue_rows: list[dict]
    per_period: dict[int, list[int]]
    gpu_intervals: list[tuple[str, int, int]]  # (gpu_id, start, end) of per-GPU samples


def _overlap(gpu_id: str, start: int, stored_end: int, where: str) -> SampleOverlap:
    return SampleOverlap(
        f"gpu {gpu_id!r}: the sample at {start} overlaps an interval {where} "
        f"(ending at {stored_end}); a GPU's time is counted once",
        {"gpu_id": gpu_id, "ts": start, "overlaps_until": stored_end},
    )


def _check_batch_intervals(intervals: list[tuple[str, int, int]]) -> None:
    """Per-GPU intervals of one batch do not overlap each other."""
    previous: tuple[str, int, int] | None = None
    for interval in sorted(intervals):
        if previous is not None and previous[0] == interval[0] and interval[1] < previous[2]:
            raise _overlap(interval[0], interval[1], previous[2], "of the same batch")
        previous = interval


class GroupCommitter:
    """Commits concurrent batches together: one fsync for many acknowledgements.

    Request threads hand their prepared write to one committer thread and wait.
    The committer takes every write queued so far, runs each inside its own
    SAVEPOINT (a rejected batch rolls back alone, with its own error) and
    commits the group once; only then are the waiting requests answered. A
    failed commit fails every write of the group: none of them is acknowledged.
    """

    def __init__(self, store: Store, apply: Callable) -> None:
        self._store = store
        self._apply = apply
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="oracle-commit", daemon=True)
        self._thread.start()

    def commit(self, write: _Write) -> None:
        """Blocks until ``write`` is durably committed; raises its rejection if any."""
        done = threading.Event()
        outcome: list[BaseException | None] = [None]

        def notify(exc: BaseException | None) -> None:
            outcome[0] = exc
            done.set()

        self._queue.put((write, notify))
        done.wait()
        if outcome[0] is not None:
            raise outcome[0]

    async def commit_async(self, write: _Write) -> None:
        """The same, awaited from the event loop without tying up a thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def resolve(exc: BaseException | None) -> None:
            if not future.done():
                if exc is None:
                    future.set_result(None)
                else:
                    future.set_exception(exc)

        self._queue.put((write, lambda exc: loop.call_soon_threadsafe(resolve, exc)))
        await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.append(item)
            self._commit_group(group)

    def _commit_group(self, group: list) -> None:
        outcomes: list[BaseException | None] = [None] * len(group)
        try:
            with self._store.write() as conn:
                for i, (write, _) in enumerate(group):
                    savepoint = conn.begin_nested()
                    try:
                        self._apply(conn, write)
                    except Exception as exc:  # noqa: BLE001 - reported to that request
                        savepoint.rollback()
                        outcomes[i] = exc
                    else:
                        savepoint.commit()
        except Exception as exc:  # noqa: BLE001 - the commit failed: nothing is acknowledged
            outcomes = [outcome or exc for outcome in outcomes]
        for (_, notify), outcome in zip(group, outcomes, strict=True):
            notify(outcome)


def _replayed(batch_id: str, stored) -> BatchReplayed:
    return BatchReplayed(
        f"batch {batch_id} was already accepted; nothing new stored",
        {"batch_id": batch_id, "received_at": stored.received_at},
    )


class Ingestor:
    def __init__(
        self,
        store: Store,
        fleets: FleetDirectory,
        chain_id: int,
        oracle_address: str,
        node_address: str,
        settle_seconds: int,
        max_clock_skew_seconds: int,
        clock: Callable[[], float] = time.time,
        rate_limit: OperatorRateLimit | None = None,
    ) -> None:
        self._store = store
        self._fleets = fleets
        self._domain = domain_separator(chain_id, oracle_address)
        self._node = node_address
        self._settle = settle_seconds
        self._skew = max_clock_skew_seconds
        self._clock = clock
        self._rate_limit = rate_limit
        self._committer = GroupCommitter(store, self._commit) if store.is_sqlite else None

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()

    def ingest(self, fleet_id: int, batch: TelemetryBatchIn, raw: dict) -> TelemetryAccepted:
        """Validates and stores a batch (blocking; any thread)."""
        write = self._prepare(
            self._fleets.fleet(fleet_id), self._fleets.signers(fleet_id), batch, raw
        )
        if self._committer is not None:
            self._committer.commit(write)  # SQLite: grouped with concurrent batches
            return write.ack
        try:
            with self._store.write() as conn:
                self._commit(conn, write)
        except IntegrityError:
            # A concurrent writer (PostgreSQL) stored the same batch or invoice
            # first: find out which and answer as if we had seen it first.
            self._raise_conflict(fleet_id, write.ack, [r["invoice_id"] for r in write.revenue_rows])
            raise
        return write.ack

    async def ingest_async(
        self, fleet_id: int, batch: TelemetryBatchIn, raw: dict
    ) -> TelemetryAccepted:
        """The same from the event loop: with the fleet cached (the steady state)
        the checks run inline, well under a millisecond of CPU (signature recovery
        in libsecp256k1), and the commit is awaited; anything that may block (an
        RPC, reading the chain clock) goes to a worker thread."""
        cfg = self._fleets.cached(fleet_id)
        signers = self._fleets.cached_signers(fleet_id)
        if (
            self._committer is None
            or isinstance(self._clock, ChainClock)
            or cfg is None
            or signers is None
        ):
            return await run_in_threadpool(self.ingest, fleet_id, batch, raw)
        write = self._prepare(cfg, signers, batch, raw)
        await self._committer.commit_async(write)
        return write.ack

    def _prepare(self, cfg: FleetConfig, signers, batch: TelemetryBatchIn, raw: dict) -> _Write:
        try:
            return self._prepare_checked(cfg, signers, batch, raw)
        except TelemetryRejected:
            # A batch already accepted answers 409 batch_replayed whatever the clock
            # says now: a client retrying after a lost response must learn that its
            # data is stored, not that it is out of its window. Only a batch whose
            # signature checked gets here with its id; the happy path pays nothing.
            self._raise_if_accepted(cfg.fleet_id, batch, raw)
            raise

    def _raise_if_accepted(self, fleet_id: int, batch: TelemetryBatchIn, raw: dict) -> None:
        batch_id, p_hash = batch.batch_id.lower(), "0x" + payload_hash(raw).hex()
        with self._store.read() as conn:
            existing = self._stored_batch(conn, fleet_id, batch_id)
        if existing is not None and existing.payload_hash == p_hash:
            raise _replayed(batch_id, existing) from None

    def _prepare_checked(
        self, cfg: FleetConfig, signers, batch: TelemetryBatchIn, raw: dict
    ) -> _Write:
        fleet_id = cfg.fleet_id
        if self._node not in signers:
            raise FleetNotServed(f"this node is not a signer of fleet {fleet_id}")

        p_hash = payload_hash(raw)
        digest = batch_digest(self._domain, fleet_id, bytes.fromhex(batch.batch_id[2:]), p_hash)
        try:
            address = recover_address(digest, bytes.fromhex(batch.signature[2:]))
        except ValueError as exc:
            raise SignatureInvalid(f"the batch signature is invalid: {exc}") from None
        # Compared as bytes: checksumming costs more than the recovery itself.
        operator_bytes = bytes.fromhex(cfg.operator[2:])
        signer = cfg.operator if address == operator_bytes else to_checksum_address(address)
        if signer != cfg.operator:
            raise SignerForbidden(
                f"the batch is signed by {signer}, not by the fleet's operator",
                {"signer": signer, "operator": cfg.operator},
            )
        if self._rate_limit is not None:  # only a proven operator spends its own budget
            self._rate_limit.check(cfg.operator)

        now = self._now(batch)
        sample_rows, revenue_rows = [], []
        per_period: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for i, s in enumerate(batch.samples):
            period = self._period_of(cfg, s.ts, now, f"samples[{i}].ts")
            _, end = cfg.bounds(period)
            if s.ts + s.interval_seconds > end:
                raise TimestampOutOfWindow(
                    f"samples[{i}] crosses the end of period {period} ({end})",
                    {"index": i, "period_end": end},
                )
            available = to_micro(s.gpu_hours_available)
            span = s.interval_seconds * s.gpu_count
            sample_rows.append(
                {
                    "fleet_id": fleet_id,
                    "period": period,
                    "ts": s.ts,
                    "interval_s": s.interval_seconds,
                    "gpu_id": s.gpu_id,
                    "gpu_count": s.gpu_count,
                    "available_uh": available,
                    "used_uh": to_micro(s.gpu_hours_used),
                    "uptime_gpu_s": s.uptime_seconds * s.gpu_count,
                    "span_gpu_s": span,
                }
            )
            agg = per_period[period]
            agg[0] += 1
            agg[2] += available
            agg[3] += span
        invoices = set()
        for i, r in enumerate(batch.revenue):
            period = self._period_of(cfg, r.ts, now, f"revenue[{i}].ts")
            if r.invoice_id in invoices:
                raise DuplicateInvoice(
                    f"invoice {r.invoice_id!r} appears twice in the batch",
                    {"invoice_id": r.invoice_id},
                )
            invoices.add(r.invoice_id)
            revenue_rows.append(
                {
                    "fleet_id": fleet_id,
                    "period": period,
                    "ts": r.ts,
                    "invoice_id": r.invoice_id,
                    "amount": r.amount,
                    "customer": r.customer,
                    "contract_type": r.contract_type,
                }
            )
            agg = per_period[period]
            agg[1] += 1
            agg[4] += r.amount

        gpu_intervals = [
            (s.gpu_id, s.ts, s.ts + s.interval_seconds)
            for s in batch.samples
            if s.gpu_id is not None
        ]
        _check_batch_intervals(gpu_intervals)

        ack = TelemetryAccepted(
            fleet_id=fleet_id,
            batch_id=batch.batch_id.lower(),
            payload_hash="0x" + p_hash.hex(),
            signer=signer,
            samples=len(sample_rows),
            revenue_events=len(revenue_rows),
            periods=[
                PeriodCount(period=p, samples=v[0], revenue_events=v[1])
                for p, v in sorted(per_period.items())
            ],
            received_at=now,
        )
        return _Write(
            cfg, ack, batch.signature, sample_rows, revenue_rows, per_period, gpu_intervals
        )

    def _now(self, batch: TelemetryBatchIn) -> float:
        now = self._clock()
        if isinstance(self._clock, ChainClock):
            newest = max([s.ts for s in batch.samples] + [r.ts for r in batch.revenue], default=0)
            if newest > now + self._skew:  # the chain's time may have moved since the last read
                now = self._clock.refresh()
        return now

    def _period_of(self, cfg, ts: int, now: float, where: str) -> int:
        if ts > now + self._skew:
            raise TimestampOutOfWindow(f"{where} = {ts} is in the future", {"field": where})
        period = cfg.period_at(ts)
        if period is None:
            raise TimestampOutOfWindow(
                f"{where} = {ts} is before the fleet's genesis {cfg.genesis}", {"field": where}
            )
        if period < cfg.next_period:
            raise PeriodClosed(
                f"{where} = {ts} falls in period {period}, already reported on-chain",
                {"field": where, "period": period},
            )
        _, end = cfg.bounds(period)
        if now >= end + self._settle:
            raise PeriodClosed(
                f"{where} = {ts} falls in period {period}, closed to telemetry since "
                f"{end + self._settle}",
                {"field": where, "period": period},
            )
        return period

    def _commit(self, conn, write: _Write) -> None:
        cfg, ack, per_period = write.cfg, write.ack, write.per_period
        sample_rows, revenue_rows = write.sample_rows, write.revenue_rows
        fleet_id = cfg.fleet_id
        self._check_new(conn, fleet_id, ack, [r["invoice_id"] for r in revenue_rows])
        for period in sorted(per_period):
            n_samples, n_revenue, available, span, revenue = per_period[period]
            add = (
                update(periods)
                .where(
                    periods.c.fleet_id == fleet_id,
                    periods.c.period == period,
                    periods.c.sealed.is_(False),
                    periods.c.available_uh <= RUNNING_TOTAL_LIMIT - available,
                    periods.c.span_gpu_s <= RUNNING_TOTAL_LIMIT - span,
                    periods.c.revenue <= RUNNING_TOTAL_LIMIT - revenue,
                )
                .values(
                    samples=periods.c.samples + n_samples,
                    revenue_events=periods.c.revenue_events + n_revenue,
                    available_uh=periods.c.available_uh + available,
                    span_gpu_s=periods.c.span_gpu_s + span,
                    revenue=periods.c.revenue + revenue,
                )
            )
            if conn.execute(add).rowcount == 1:
                continue
            row = self._store.period_row(conn, fleet_id, period)
            if row is None:  # the period's first telemetry
                start, end = cfg.bounds(period)
                self._store.ensure_period(conn, fleet_id, period, start, end)
                if conn.execute(add).rowcount == 1:
                    continue
                row = self._store.period_row(conn, fleet_id, period)
            if row is not None and row.sealed:
                raise PeriodClosed(
                    f"period {period} is sealed: its observation is signed", {"period": period}
                )
            # A concurrent writer (PostgreSQL) may have committed this very batch,
            # invoice or GPU interval while this transaction raced it for the period
            # row: answer as if we had seen it first (409), not with a range error.
            self._check_new(conn, fleet_id, ack, [r["invoice_id"] for r in revenue_rows])
            self._check_no_overlap(conn, fleet_id, write)
            raise ValueOutOfRange(
                f"period {period}'s running totals would exceed {RUNNING_TOTAL_LIMIT}",
                {"period": period},
            )
        self._check_no_overlap(conn, fleet_id, write)  # after the period rows above are locked
        batch_ref = conn.execute(
            batches.insert().values(
                fleet_id=fleet_id,
                batch_id=ack.batch_id,
                payload_hash=ack.payload_hash,
                signer=ack.signer,
                signature=write.signature.lower(),
                samples=ack.samples,
                revenue_events=ack.revenue_events,
                received_at=ack.received_at,
            )
        ).inserted_primary_key[0]
        if sample_rows:
            for row in sample_rows:
                row["batch_ref"] = batch_ref
            conn.execute(samples.insert(), sample_rows)
        if revenue_rows:
            for row in revenue_rows:
                row["batch_ref"] = batch_ref
            conn.execute(revenue_events.insert(), revenue_rows)

    @staticmethod
    def _stored_batch(conn, fleet_id: int, batch_id: str):
        """The stored batch's payload hash and reception time, or None."""
        return conn.execute(
            select(batches.c.payload_hash, batches.c.received_at).where(
                batches.c.fleet_id == fleet_id, batches.c.batch_id == batch_id
            )
        ).first()

    def _check_no_overlap(self, conn, fleet_id: int, write: _Write) -> None:
        """409 sample_overlap when a stored sample covers one of the batch's GPU intervals."""
        if write.gpu_intervals:
            hit = self._store.overlapping_sample(conn, fleet_id, write.gpu_intervals)
            if hit is not None:
                raise _overlap(hit.gpu_id, hit.start_ts, hit.stored_end, "already stored")

    def _check_new(self, conn, fleet_id: int, ack, invoices: list[str]) -> None:
        existing = self._stored_batch(conn, fleet_id, ack.batch_id)
        if existing is not None:
            if existing.payload_hash == ack.payload_hash:
                raise _replayed(ack.batch_id, existing)
            raise BatchIdReused(
                f"batch id {ack.batch_id} was already used for different content",
                {"batch_id": ack.batch_id},
            )
        if invoices:
            seen = conn.execute(
                select(revenue_events.c.invoice_id).where(
                    revenue_events.c.fleet_id == fleet_id,
                    revenue_events.c.invoice_id.in_(invoices),
                )
            ).first()
            if seen is not None:
                raise DuplicateInvoice(
                    f"invoice {seen[0]!r} was already recorded for fleet {fleet_id}",
                    {"invoice_id": seen[0]},
                )

    def _raise_conflict(self, fleet_id: int, ack, invoices: list[str]) -> None:
        with self._store.read() as conn:
            self._check_new(conn, fleet_id, ack, invoices)
