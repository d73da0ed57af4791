"""The bad year's wind-down in the index and on the web pages.

The archive of `make demo STORY=default` (tests/fixtures/audit/default-year.jsonl)
is written into a fresh SQLite index page by page as the follower writes it
(`write_rows`), without a chain: the derived tables show the note wound down,
what is still outstanding (nothing) and what each tranche lost (the junior
tranche's `WrittenOff`); the good year (demo-year.jsonl) ends released with no
loss. Runs without brownie: `python -m pytest -p no:pytest-brownie tests/web/test_wind_down.py`.
"""

from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from gpucredit.audit.export import read_jsonl
from gpucredit.index import derive
from gpucredit.index.follower import _set_meta, create_schema, engine_for, read_meta, write_rows
from gpucredit.web.app import create_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audit"


def index_archive(name, db):
    archive = read_jsonl(FIXTURES / name)
    engine = engine_for(str(db))
    create_schema(engine)
    header = archive.header
    with engine.begin() as conn:
        _set_meta(conn, "chain_id", header["chain_id"])
        _set_meta(conn, "manifest", header["manifest"])
        _set_meta(conn, "terms", header["terms"])
        _set_meta(conn, "decimals", 6)
        _set_meta(conn, "currency", "USD")
    keys = ("block", "log_index", "timestamp", "tx", "contract", "address", "event", "args")
    rows = [dict({k: ev[k] for k in keys}, note_id=None) for ev in archive.events]
    info = {r["block"]: ("0x" + f"{r['block']:064x}", r["timestamp"]) for r in rows}
    with engine.begin() as conn:
        write_rows(conn, rows, info, max(info))
        derive.rebuild(conn, read_meta(conn))
    return archive, engine


def table(engine, t):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(t))]


def only(archive, name):
    [ev] = [ev for ev in archive.events if ev["event"] == name]
    return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in ev["args"].items()}


def test_the_wind_down_is_indexed_and_shown(tmp_path):
    db = tmp_path / "index.sqlite"
    archive, engine = index_archive("default-year.jsonl", db)
    wound, lost = only(archive, "WoundUp"), only(archive, "WrittenOff")
    [note] = table(engine, derive.notes)
    assert note["status"] == "wound-down"
    assert note["outstanding"] == 0
    assert note["wind_down_cash"] == wound["cashIn"] and note["wound_up_at"]
    assert note["principal_lost"] == lost["principalLost"] > 0
    assert note["interest_lost"] == lost["interestLost"]
    by_seniority = {t["seniority"]: t for t in table(engine, derive.tranches)}
    senior, junior = by_seniority["senior"], by_seniority["junior"]
    assert senior["repaid"] and not senior["written_off"] and senior["principal_lost"] == 0
    assert junior["written_off"] and junior["outstanding"] == 0
    assert junior["principal_lost"] == lost["principalLost"]
    assert junior["principal_paid"] == wound["juniorPrincipal"]  # the sale's share, then the loss
    kinds = {row["kind"] for row in table(engine, derive.timeline)}
    assert {"WoundUp", "WrittenOff"} <= kinds

    client = TestClient(create_app(str(db)))
    listing = client.get("/").text
    assert "wound-down" in listing and 'class="written-off"' in listing
    assert f"${lost['principalLost'] / 1e6:,.2f}" in listing
    page = client.get("/notes/1").text
    assert 'id="wind-down"' in page and "written off" in page
    assert f"${wound['cashIn'] / 1e6:,.2f}" in page
    api = client.get("/api/notes/1").json()
    assert api["note"]["status"] == "wound-down"
    assert api["note"]["principal_lost"] == lost["principalLost"] / 1e6


def test_a_release_is_released_without_loss(tmp_path):
    _, engine = index_archive("demo-year.jsonl", tmp_path / "index.sqlite")
    [note] = table(engine, derive.notes)
    assert note["status"] == "released" and note["principal_lost"] == 0
    assert not any(t["written_off"] for t in table(engine, derive.tranches))


def test_an_index_from_before_the_loss_columns_is_rebuilt(tmp_path):
    """Derived tables of an older index (no loss columns) are re-created at the next
    rebuild: they are computed from `events` anyway."""
    db = tmp_path / "index.sqlite"
    _, engine = index_archive("default-year.jsonl", db)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE tranches DROP COLUMN principal_lost"))
    engine.dispose()
    engine = engine_for(str(db))
    with engine.begin() as conn:
        derive.rebuild(conn, read_meta(conn))
    junior = [t for t in table(engine, derive.tranches) if t["written_off"]]
    assert junior and junior[0]["principal_lost"] > 0
