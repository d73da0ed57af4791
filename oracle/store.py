"""Persistence (SQLAlchemy Core): SQLite by default, PostgreSQL by URL.

Tables
------
``batches``         one row per accepted signed batch (replay key: fleet + batch id)
``samples``         usage samples, with the weighted figures aggregation sums
``revenue_events``  invoices (unique per fleet)
``periods``         one row per fleet and period: the seal flag and running
                    totals that guard against overflow; ingest and sealing
                    both update it, so they serialise on its row lock
``observations``    signed observations, this node's and its peers'
``chain_txs``       every transaction this node signed, written BEFORE it is
                    broadcast (nonce, hash, raw bytes): what makes posting
                    resumable after a crash and never double-spent
``reports``         reports found on-chain, with the transaction that landed
                    them, and whether the consumer closed the period

Durability: a batch is inserted in one transaction, committed before the
API answers 2xx. SQLite runs in WAL mode with ``synchronous=FULL`` (each
commit is fsynced); the process serialises its own writers on a lock so
concurrent requests never see SQLITE_BUSY. PostgreSQL relies on the row
lock of the ``periods`` row and the unique constraints.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite rowid aliases need INTEGER

batches = Table(
    "batches",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("fleet_id", BigInteger, nullable=False),
    Column("batch_id", String(66), nullable=False),
    Column("payload_hash", String(66), nullable=False),
    Column("signer", String(42), nullable=False),
    Column("signature", String(132), nullable=False),
    Column("samples", Integer, nullable=False),
    Column("revenue_events", Integer, nullable=False),
    Column("received_at", Float, nullable=False),
    UniqueConstraint("fleet_id", "batch_id", name="uq_batches_fleet_batch"),
)

samples = Table(
    "samples",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("batch_ref", _Id, ForeignKey("batches.id"), nullable=False),
    Column("fleet_id", BigInteger, nullable=False),
    Column("period", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("interval_s", Integer, nullable=False),
    Column("gpu_id", String(128)),
    Column("gpu_count", Integer, nullable=False),
    Column("available_uh", BigInteger, nullable=False),  # micro-GPU-hours
    Column("used_uh", BigInteger, nullable=False),
    Column("uptime_gpu_s", BigInteger, nullable=False),  # uptime_seconds * gpu_count
    Column("span_gpu_s", BigInteger, nullable=False),  # interval_seconds * gpu_count
    Index("ix_samples_fleet_period", "fleet_id", "period"),
    Index("ix_samples_fleet_gpu_ts", "fleet_id", "gpu_id", "ts"),  # overlap check
)

revenue_events = Table(
    "revenue_events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("batch_ref", _Id, ForeignKey("batches.id"), nullable=False),
    Column("fleet_id", BigInteger, nullable=False),
    Column("period", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("invoice_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("customer", String(512), nullable=False),
    Column("contract_type", String(16), nullable=False),
    UniqueConstraint("fleet_id", "invoice_id", name="uq_revenue_fleet_invoice"),
    Index("ix_revenue_fleet_period", "fleet_id", "period"),
)

periods = Table(
    "periods",
    metadata,
    Column("fleet_id", BigInteger, primary_key=True),
    Column("period", BigInteger, primary_key=True),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("sealed", Boolean, nullable=False, default=False),
    Column("samples", BigInteger, nullable=False, default=0),
    Column("revenue_events", BigInteger, nullable=False, default=0),
    Column("available_uh", BigInteger, nullable=False, default=0),
    Column("span_gpu_s", BigInteger, nullable=False, default=0),
    Column("revenue", BigInteger, nullable=False, default=0),
)

observations = Table(
    "observations",
    metadata,
    Column("fleet_id", BigInteger, primary_key=True),
    Column("period", BigInteger, primary_key=True),
    Column("signer", String(42), primary_key=True),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("utilization_bps", Integer, nullable=False),
    Column("uptime_bps", Integer, nullable=False),
    Column("revenue", String(40), nullable=False),  # uint128 as decimal text
    Column("signature", String(132), nullable=False),
    Column("source", String(512), nullable=False),  # "self" or the peer's URL
    Column("created_at", Float, nullable=False),
)

chain_txs = Table(
    "chain_txs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("fleet_id", BigInteger, nullable=False),
    Column("period", BigInteger, nullable=False),
    Column("action", String(16), nullable=False),  # report | missed | close
    # signed -> sent -> mined | reverted | dropped | replaced
    Column("state", String(16), nullable=False),
    Column("sender", String(42), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("tx_hash", String(66), nullable=False, unique=True),
    Column("raw_tx", Text, nullable=False),
    Column("max_fee", String(40), nullable=False),
    Column("priority_fee", String(40), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("updated_at", Float, nullable=False),
    Index("ix_chain_txs_state", "state"),
)

reports = Table(
    "reports",
    metadata,
    Column("fleet_id", BigInteger, primary_key=True),
    Column("period", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),  # reported | missed
    Column("utilization_bps", Integer, nullable=False),
    Column("uptime_bps", Integer, nullable=False),
    Column("revenue", String(40), nullable=False),
    Column("observations", Integer, nullable=False),
    Column("tx_hash", String(66)),
    Column("block_number", BigInteger),
    Column("submitter", String(42)),
    Column("posted_by_this_node", Boolean, nullable=False),
    Column("closed", Boolean, nullable=False, default=False),
    Column("close_tx_hash", String(66)),
    Column("recorded_at", Float, nullable=False),
)

OPEN_TX_STATES = ("signed", "sent")
# The latest stored interval of each new interval's GPU that starts before the
# new one ends; a hit when it ends after the new one starts. The intervals come
# as one JSON array of [gpu_id, start, end], so a 500-sample batch is one
# statement of 500 index seeks, whatever its size.
_OVERLAP_SQLITE = text(
    """
    SELECT json_extract(n.value, '$[0]') AS gpu_id,
           json_extract(n.value, '$[1]') AS start_ts,
           (SELECT s.ts + s.interval_s FROM samples AS s
             WHERE s.fleet_id = :fleet_id AND s.gpu_id = json_extract(n.value, '$[0]')
               AND s.ts < json_extract(n.value, '$[2]')
             ORDER BY s.ts DESC LIMIT 1) AS stored_end
      FROM json_each(:intervals) AS n
     WHERE stored_end > start_ts
     LIMIT 1
    """
)
_OVERLAP_POSTGRES = text(
    """
    SELECT n.value ->> 0 AS gpu_id, (n.value ->> 1)::bigint AS start_ts, prev.stored_end
      FROM jsonb_array_elements(CAST(:intervals AS jsonb)) AS n(value)
      CROSS JOIN LATERAL (
            SELECT s.ts + s.interval_s AS stored_end FROM samples AS s
             WHERE s.fleet_id = :fleet_id AND s.gpu_id = n.value ->> 0
               AND s.ts < (n.value ->> 2)::bigint
             ORDER BY s.ts DESC LIMIT 1) AS prev
     WHERE prev.stored_end > (n.value ->> 1)::bigint
     LIMIT 1
    """
)


@dataclass(frozen=True)
class Totals:
    """Raw sums of a period, the input of oracle.aggregation."""

    samples: int
    revenue_events: int
    available_uh: int
    used_uh: int
    uptime_gpu_s: int
    span_gpu_s: int
    revenue: int


class Store:
    """Engine, schema and the transactions the service runs."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = threading.RLock() if self.is_sqlite else None
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8,
                max_overflow=8,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling breaks SAVEPOINT: issue BEGIN ourselves.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        else:
            self.engine = create_engine(self.url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        self._insert = sqlite_insert if self.is_sqlite else pg_insert

    def create_schema(self) -> None:
        with self.write() as conn:
            metadata.create_all(conn)
            for table in metadata.sorted_tables:  # indexes added to existing tables
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (SQLite: one writer at a time)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def ping(self) -> bool:
        try:
            with self.read() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - health reports any database failure
            return False

    # ------------------------------------------------------------------ periods

    def ensure_period(self, conn: Connection, fleet_id: int, period: int, start: int, end: int):
        stmt = self._insert(periods).values(
            fleet_id=fleet_id,
            period=period,
            period_start=start,
            period_end=end,
            sealed=False,
            samples=0,
            revenue_events=0,
            available_uh=0,
            span_gpu_s=0,
            revenue=0,
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["fleet_id", "period"]))

    def seal_period(self, conn: Connection, fleet_id: int, period: int, start: int, end: int):
        """Marks the period closed to telemetry; waits for in-flight ingests (row lock)."""
        self.ensure_period(conn, fleet_id, period, start, end)
        conn.execute(
            update(periods)
            .where(periods.c.fleet_id == fleet_id, periods.c.period == period)
            .values(sealed=True)
        )

    def period_row(self, conn: Connection, fleet_id: int, period: int):
        return conn.execute(
            select(periods).where(periods.c.fleet_id == fleet_id, periods.c.period == period)
        ).first()

    def totals(self, conn: Connection, fleet_id: int, period: int) -> Totals:
        """The period's sums, computed in SQL from the stored rows."""
        s = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(samples.c.available_uh), 0),
                func.coalesce(func.sum(samples.c.used_uh), 0),
                func.coalesce(func.sum(samples.c.uptime_gpu_s), 0),
                func.coalesce(func.sum(samples.c.span_gpu_s), 0),
            ).where(samples.c.fleet_id == fleet_id, samples.c.period == period)
        ).one()
        r = conn.execute(
            select(func.count(), func.coalesce(func.sum(revenue_events.c.amount), 0)).where(
                revenue_events.c.fleet_id == fleet_id, revenue_events.c.period == period
            )
        ).one()
        return Totals(
            samples=int(s[0]),
            revenue_events=int(r[0]),
            available_uh=int(s[1]),
            used_uh=int(s[2]),
            uptime_gpu_s=int(s[3]),
            span_gpu_s=int(s[4]),
            revenue=int(r[1]),
        )

    def overlapping_sample(
        self, conn: Connection, fleet_id: int, intervals: Sequence[tuple[str, int, int]]
    ) -> Row | None:
        """A stored sample of the same GPU overlapping one of ``intervals``
        (``(gpu_id, start, end)``, end exclusive), or None; the row holds the new
        interval's ``gpu_id`` and ``start_ts`` and the stored one's ``stored_end``.

        A GPU's stored intervals never overlap (this check guards every insert),
        so only the GPU's latest interval starting before ``end`` can overlap:
        one index seek per interval (``ix_samples_fleet_gpu_ts``).
        """
        sql = _OVERLAP_SQLITE if self.is_sqlite else _OVERLAP_POSTGRES
        return conn.execute(
            sql, {"fleet_id": fleet_id, "intervals": json.dumps(list(intervals))}
        ).first()

    def unreported_periods(self, fleet_id: int) -> list[int]:
        """Periods with local telemetry and no report recorded yet."""
        reported = (
            select(reports.c.period)
            .where(reports.c.fleet_id == fleet_id, reports.c.period == periods.c.period)
            .exists()
        )
        with self.read() as conn:
            rows = conn.execute(
                select(periods.c.period).where(periods.c.fleet_id == fleet_id, ~reported)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def known_fleets(self) -> list[int]:
        with self.read() as conn:
            return [
                int(row[0])
                for row in conn.execute(select(periods.c.fleet_id).distinct()).fetchall()
            ]

    # ------------------------------------------------------------ observations

    def observations_for(self, fleet_id: int, period: int) -> Sequence[Row]:
        with self.read() as conn:
            return conn.execute(
                select(observations)
                .where(observations.c.fleet_id == fleet_id, observations.c.period == period)
                .order_by(observations.c.signer)
            ).fetchall()

    def observation(self, fleet_id: int, period: int, signer: str):
        with self.read() as conn:
            return conn.execute(
                select(observations).where(
                    observations.c.fleet_id == fleet_id,
                    observations.c.period == period,
                    observations.c.signer == signer,
                )
            ).first()

    def put_observation(self, conn: Connection, row: dict) -> None:
        stmt = self._insert(observations).values(**row)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["fleet_id", "period", "signer"]))

    # --------------------------------------------------------------- chain txs

    def open_txs(self, sender: str) -> Sequence[Row]:
        with self.read() as conn:
            return conn.execute(
                select(chain_txs)
                .where(chain_txs.c.sender == sender, chain_txs.c.state.in_(OPEN_TX_STATES))
                .order_by(chain_txs.c.nonce, chain_txs.c.id)
            ).fetchall()

    def txs_for(self, fleet_id: int, period: int, action: str) -> Sequence[Row]:
        with self.read() as conn:
            return conn.execute(
                select(chain_txs)
                .where(
                    chain_txs.c.fleet_id == fleet_id,
                    chain_txs.c.period == period,
                    chain_txs.c.action == action,
                )
                .order_by(chain_txs.c.id)
            ).fetchall()

    def max_open_nonce(self, sender: str) -> int | None:
        with self.read() as conn:
            value = conn.execute(
                select(func.max(chain_txs.c.nonce)).where(
                    chain_txs.c.sender == sender, chain_txs.c.state.in_(OPEN_TX_STATES)
                )
            ).scalar()
        return None if value is None else int(value)

    def record_tx(self, row: dict) -> None:
        now = time.time()
        with self.write() as conn:
            conn.execute(
                chain_txs.insert().values(
                    **row, state="signed", attempts=0, created_at=now, updated_at=now
                )
            )

    def set_tx_state(self, tx_hash: str, state: str, error: str | None = None, sent=False) -> None:
        now = time.time()
        values: dict = {"state": state, "updated_at": now, "error": error}
        if sent:
            values["sent_at"] = now
            values["attempts"] = chain_txs.c.attempts + 1
        with self.write() as conn:
            conn.execute(update(chain_txs).where(chain_txs.c.tx_hash == tx_hash).values(**values))

    def all_txs(self, fleet_id: int | None = None, limit: int = 200) -> Sequence[Row]:
        query = select(chain_txs).order_by(chain_txs.c.id.desc()).limit(limit)
        if fleet_id is not None:
            query = query.where(chain_txs.c.fleet_id == fleet_id)
        with self.read() as conn:
            return conn.execute(query).fetchall()

    # ----------------------------------------------------------------- reports

    def report(self, fleet_id: int, period: int):
        with self.read() as conn:
            return conn.execute(
                select(reports).where(reports.c.fleet_id == fleet_id, reports.c.period == period)
            ).first()

    def put_report(self, row: dict) -> None:
        with self.write() as conn:
            stmt = self._insert(reports).values(**row, closed=False, recorded_at=time.time())
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["fleet_id", "period"]))

    def set_report_closed(self, fleet_id: int, period: int, close_tx_hash: str | None) -> None:
        with self.write() as conn:
            conn.execute(
                update(reports)
                .where(reports.c.fleet_id == fleet_id, reports.c.period == period)
                .values(closed=True, close_tx_hash=close_tx_hash)
            )

    def unclosed_reports(self, fleet_id: int) -> Sequence[Row]:
        with self.read() as conn:
            return conn.execute(
                select(reports)
                .where(reports.c.fleet_id == fleet_id, reports.c.closed.is_(False))
                .order_by(reports.c.period)
            ).fetchall()

    def reports_for(self, fleet_id: int, limit: int, before: int | None) -> Sequence[Row]:
        query = (
            select(reports)
            .where(reports.c.fleet_id == fleet_id)
            .order_by(reports.c.period.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(reports.c.period < before)
        with self.read() as conn:
            return conn.execute(query).fetchall()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
