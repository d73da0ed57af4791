"""Bulk inserts: one executemany per table and page, without per-row SQLAlchemy processing.

SQLAlchemy Core's `conn.execute(table.insert(), rows)` is an executemany too,
but it builds and type-processes a parameter dict per row in Python, which at
100,000 events was most of the write time (bench/index_bench.py). On SQLite
`insert_rows` hands the driver plain tuples instead: the column types the
index uses need no conversion there (integers, strings, booleans) except JSON,
which is serialized here with the engine's serializer, as SQLAlchemy would
(None as JSON null: the JSON type's default). Other dialects (PostgreSQL) go
through SQLAlchemy unchanged.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import sqlalchemy as sa
import ujson


def _dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False)


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Inserts `rows` (dicts with the same keys, each a column of `table`) in one executemany."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    keys = rows[0].keys()
    columns = [c for c in table.columns if c.name in keys]
    if len(columns) != len(keys):
        unknown = sorted(set(keys) - {c.name for c in columns})
        raise ValueError(f"{table.name} has no column {unknown}")
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    names = [c.name for c in columns]
    getter = itemgetter(*names)
    json_at = [i for i, c in enumerate(columns) if isinstance(c.type, sa.JSON)]
    if len(names) == 1:
        params: list[Any] = [(getter(r),) for r in rows]
    else:
        params = [getter(r) for r in rows]
    if json_at:
        dumps = _dumps
        fixed = []
        for values in params:
            values = list(values)
            for i in json_at:
                values[i] = dumps(values[i])
            fixed.append(tuple(values))
        params = fixed
    conn.exec_driver_sql(sql, params)
