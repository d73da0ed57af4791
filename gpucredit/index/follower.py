"""`gpucredit index`: follow the chain and write every protocol event into SQL.

The follower reads logs of the deployment's contracts (the manifest's
addresses) page by page from the manifest's start block, decodes them with the
build ABIs through the audit export (`gpucredit.audit.export`), and writes
them with the page's block hashes and the new "last indexed block" in one
transaction; the derived tables are rebuilt from the events after each sync
(and after a rollback). So:

- idempotent and resumable: a restart continues after the last committed
  page; an event's key is (block, log index), so nothing is written twice;
- N confirmations: only blocks at or below head - N are indexed;
- reorgs: before each sync the stored hash of the last indexed block is
  compared with the chain's; on a difference the follower walks back the
  stored block hashes to the newest one the chain still has, deletes
  everything after it and re-reads from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import ujson
from eth_utils import to_checksum_address

from gpucredit.audit.decode import FastDecoder
from gpucredit.audit.export import FORMAT, AbiBook, Manifest, fetch_logs, read_terms
from gpucredit.index import derive
from gpucredit.index.bulk import insert_rows
from gpucredit.index.schema import blocks, events, index_meta, metadata

DEFAULT_DB = "sqlite:///var/index.sqlite"


def engine_for(url: str) -> sa.Engine:
    """An engine for a SQLAlchemy URL or a plain SQLite file path."""
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{url}"
    elif url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, json_serializer=_dumps, json_deserializer=_loads)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute(
                "PRAGMA journal_mode=WAL"
            )  # readers (the web app) never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint, fast commits
            cursor.close()

    return engine


def _dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False)


def _loads(text: str) -> Any:
    return ujson.loads(text)


def create_schema(engine: sa.Engine) -> None:
    metadata.create_all(engine)


def read_meta(conn: sa.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in conn.execute(sa.select(index_meta.c.key, index_meta.c.value)):
        out[key] = value  # the JSON column decodes
    return out


def _set_meta(conn: sa.Connection, key: str, value: Any) -> None:
    conn.execute(index_meta.delete().where(index_meta.c.key == key))
    conn.execute(index_meta.insert().values(key=key, value=value))


def header_of(conn: sa.Connection) -> dict[str, Any]:
    """An audit-export header for the indexed history (for the replay)."""
    meta = read_meta(conn)
    count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    return {
        "format": FORMAT,
        "chain_id": meta.get("chain_id"),
        "from_block": (meta.get("manifest") or {}).get("start_block", 0),
        "to_block": meta.get("last_block"),
        "manifest": meta.get("manifest"),
        "terms": meta.get("terms"),
        "events": count,
    }


def load_events(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every indexed event in the audit export's shape, by (block, log index)."""
    out = []
    query = sa.select(
        events.c.block,
        events.c.timestamp,
        events.c.tx,
        events.c.log_index,
        events.c.contract,
        events.c.address,
        events.c.event,
        events.c.args,
    ).order_by(events.c.block, events.c.log_index)
    for r in conn.execute(query):
        args = json.loads(r[7]) if isinstance(r[7], str) else r[7]
        out.append(
            {
                "block": r[0],
                "timestamp": r[1],
                "tx": r[2],
                "log_index": r[3],
                "contract": r[4],
                "address": r[5],
                "event": r[6],
                "args": args,
            }
        )
    return out


@dataclass
class SyncResult:
    from_block: int
    to_block: int
    events: int
    reorged_from: int | None = None


class Indexer:
    """Follows one deployment into one database."""

    def __init__(
        self,
        w3: Any,
        manifest: Manifest,
        engine: sa.Engine,
        *,
        confirmations: int = 0,
        page_blocks: int = 2_000,
        build_dir: Path | None = None,
    ) -> None:
        self.w3 = w3
        self.manifest = manifest
        self.engine = engine
        self.confirmations = max(0, confirmations)
        self.page_blocks = max(1, page_blocks)
        self.book = AbiBook(build_dir)
        self.decoder = FastDecoder(self.book)
        self.names = manifest.contract_names()
        self.addresses = [to_checksum_address(a) for a in self.names]
        self.note_of = self._note_map()
        create_schema(engine)
        self._init_meta()

    def _note_map(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for note in self.manifest.notes:
            out[note.servicer] = note.note_id
            for t in note.tranches:
                out[t] = note.note_id
        return out

    def _init_meta(self) -> None:
        chain_id = int(self.w3.eth.chain_id)
        if chain_id != self.manifest.chain_id:
            raise ValueError(f"chain id {chain_id} is not the manifest's {self.manifest.chain_id}")
        with self.engine.begin() as conn:
            meta = read_meta(conn)
            if meta.get("manifest") not in (None, self.manifest.to_dict()):
                raise ValueError("the database indexes another deployment: use another --db")
            if "manifest" not in meta:
                _set_meta(conn, "chain_id", chain_id)
                _set_meta(conn, "manifest", self.manifest.to_dict())
                _set_meta(conn, "terms", read_terms(self.w3, self.manifest, self.book, "latest"))
                _set_meta(conn, "decimals", 6)
                _set_meta(conn, "currency", "USD")

    # -- chain ------------------------------------------------------------

    def _blocks(self, numbers: list[int]) -> dict[int, tuple[str, int]]:
        out: dict[int, tuple[str, int]] = {}
        for i in range(0, len(numbers), 200):
            chunk = numbers[i : i + 200]
            try:
                with self.w3.batch_requests() as batch:
                    for n in chunk:
                        batch.add(self.w3.eth.get_block(n))
                    got = batch.execute()
            except Exception:  # providers without batch support
                got = [self.w3.eth.get_block(n) for n in chunk]
            for n, b in zip(chunk, got, strict=True):
                out[n] = ("0x" + bytes(b["hash"]).hex(), int(b["timestamp"]))
        return out

    def last_block(self) -> int:
        with self.engine.connect() as conn:
            meta = read_meta(conn)
        return int(meta.get("last_block", self.manifest.start_block - 1))

    def safe_head(self) -> int:
        return int(self.w3.eth.block_number) - self.confirmations

    # -- reorgs -------------------------------------------------------------

    def check_reorg(self) -> int | None:
        """Rolls back blocks the chain no longer has; the first block rolled back, or None."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(blocks.c.number, blocks.c.hash).order_by(blocks.c.number.desc())
            ).all()
        if not stored:
            return None
        if self._blocks([stored[0][0]]).get(stored[0][0], ("",))[0] == stored[0][1]:
            return None
        keep = self.manifest.start_block - 1
        for number, digest in stored[1:]:
            if self._blocks([number])[number][0] == digest:
                keep = number
                break
        with self.engine.begin() as conn:
            conn.execute(events.delete().where(events.c.block > keep))
            conn.execute(blocks.delete().where(blocks.c.number > keep))
            _set_meta(conn, "last_block", keep)
        return keep + 1

    def rebuild(self) -> None:
        """Recomputes the derived tables from the indexed events."""
        with self.engine.begin() as conn:
            derive.rebuild(conn, read_meta(conn))

    # -- sync ---------------------------------------------------------------

    def sync(
        self,
        to_block: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SyncResult:
        """Indexes every confirmed block not indexed yet (up to `to_block` if given)."""
        reorged = self.check_reorg()
        first = self.last_block() + 1
        last = self.safe_head() if to_block is None else min(to_block, self.safe_head())
        written = 0
        start = first
        while start <= last:
            end = min(last, start + self.page_blocks - 1)
            written += self._page(start, end)
            if progress is not None:
                progress(end - first + 1, last - first + 1)
            start = end + 1
        if written or reorged is not None:
            self.rebuild()
        return SyncResult(first, max(last, first - 1), written, reorged)

    def _page(self, start: int, end: int) -> int:
        raw = fetch_logs(self.w3, self.addresses, start, end, self.page_blocks)
        numbers = sorted({int(log["blockNumber"]) for log in raw} | {end})
        info = self._blocks(numbers)
        for log in raw:  # the logs and the blocks must come from the same chain
            digest = log.get("blockHash")
            if (
                digest is not None
                and "0x" + bytes(digest).hex() != info[int(log["blockNumber"])][0]
            ):
                raise RuntimeError(f"block {log['blockNumber']} changed while indexing; retry")
        stamps = {n: ts for n, (_, ts) in info.items()}
        decoded = self.decoder.decode_logs(raw, self.names, stamps)
        rows = [
            {
                "block": ev["block"],
                "log_index": ev["log_index"],
                "timestamp": ev["timestamp"],
                "tx": ev["tx"],
                "contract": ev["contract"],
                "address": ev["address"],
                "event": ev["event"],
                "note_id": self.note_of.get(ev["address"], _arg_note(ev["args"])),
                "args": ev["args"],
            }
            for ev in decoded
        ]
        with self.engine.begin() as conn:
            write_rows(conn, rows, info, end)
        return len(rows)

    def follow(
        self,
        poll_s: float = 1.0,
        stop: Callable[[], bool] = lambda: False,
        on_sync: Callable[[SyncResult], None] | None = None,
    ) -> None:
        """Syncs, then polls for new blocks until `stop()`."""
        while not stop():
            result = self.sync()
            if on_sync is not None:
                on_sync(result)
            time.sleep(poll_s)


def _arg_note(args: dict[str, Any]) -> int | None:
    value = args.get("noteId")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def write_rows(
    conn: sa.Connection,
    rows: list[dict[str, Any]],
    info: dict[int, tuple[str, int]],
    last_block: int,
) -> None:
    """One page: events, block hashes, the new last block and the derived tables."""
    previous = read_meta(conn).get("last_block")
    # pages follow the last indexed block (a rollback deletes what follows it), so only a
    # page that overlaps it (a re-run after a crash between fetch and commit) checks for rows
    fresh_page = previous is not None and min(info) > int(previous)
    present = (
        set()
        if fresh_page
        else {
            n
            for (n,) in conn.execute(
                sa.select(blocks.c.number).where(blocks.c.number.in_(list(info)))
            )
        }
    )
    new_blocks = [
        {"number": n, "hash": h, "timestamp": ts} for n, (h, ts) in info.items() if n not in present
    ]
    insert_rows(conn, blocks, new_blocks)
    if rows and fresh_page:
        insert_rows(conn, events, rows)
    elif rows:
        lowest = min(r["block"] for r in rows)
        have = {
            (b, i)
            for b, i in conn.execute(
                sa.select(events.c.block, events.c.log_index).where(events.c.block >= lowest)
            )
        }
        fresh = [r for r in rows if (r["block"], r["log_index"]) not in have]
        insert_rows(conn, events, fresh)
    _set_meta(conn, "last_block", last_block)
