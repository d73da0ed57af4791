"""The index's SQL tables (SQLAlchemy Core; SQLite by default, PostgreSQL by URL).

Raw tables, written by the follower (`gpucredit/index/follower.py`):

- `index_meta`: key -> JSON value (chain id, manifest, deal terms, last indexed block).
- `blocks`: number, hash and timestamp of every block that holds an indexed
  event, and of each page's last block (the reorg check compares them with the chain).
- `events`: every protocol event once, keyed by (block, log_index), decoded
  with the build ABIs exactly as `gpucredit audit export` writes it (`args` is
  the export's JSON: wide integers are decimal strings).

Derived tables (`gpucredit/index/derive.py`) are rebuilt from `events` in the
same transaction as every page, so they never disagree with it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Wide integers (uint128 money in 6 decimals, timestamps) fit in 64 bits for
# every figure this protocol produces; money is stored in base units as
# BigInteger and converted to currency units by the exports.
Big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Values that may exceed 2**63 (uint256 in an args blob) stay in JSON `args`.
Num = sa.Numeric(78, 0).with_variant(sa.Integer(), "sqlite")

index_meta = sa.Table(
    "index_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("number", Big, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(66), nullable=False),
    sa.Column("timestamp", Big, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("block", Big, primary_key=True, autoincrement=False),
    sa.Column("log_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("timestamp", Big, nullable=False),
    sa.Column("tx", sa.String(66), nullable=False),
    sa.Column("contract", sa.String(64), nullable=False),
    sa.Column("address", sa.String(42), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("note_id", sa.Integer, nullable=True),
    sa.Column("args", sa.JSON, nullable=False),
    sa.Index("ix_events_event", "event"),
    sa.Index("ix_events_note", "note_id"),
)

RAW_TABLES = ("index_meta", "blocks", "events")
