"""The read-only web app over the index: pages, JSON API, CSV/JSON exports.

No keys, no writes: the app opens the index database and the build ABIs only.
Bad input is a 4xx with a clear message (JSON for /api, HTML for pages),
never a 500: unknown notes, tables and pages are 404, a malformed address is 422.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gpucredit.audit.model import BREACH_NAMES
from gpucredit.index import derive
from gpucredit.index.follower import engine_for, header_of, load_events, read_meta
from gpucredit.index.schema import blocks
from gpucredit.web import coupons, data

HERE = Path(__file__).resolve().parent
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
Address = Annotated[
    str,
    PathParam(description="An Ethereum address, 0x and 40 hex digits.", pattern=ADDRESS.pattern),
]
NoteId = Annotated[int, PathParam(ge=0, description="The note id.")]
PageNo = Annotated[int, Query(ge=1, description="Page number, from 1.")]
PerPage = Annotated[int, Query(ge=1, le=data.PER_PAGE_MAX, description="Rows per page.")]
Fmt = Annotated[str, PathParam(pattern="^(csv|json)$", description="csv or json")]


# A lender's figures from the replayed history (gpucredit/web/coupons.py), per position
# and in total, in currency units (the exact base units under each position's base_units).
LENDER_FIGURES = (
    "coupons_accrued",
    "coupons_claimable",
    "principal_claimable",
    "principal_repaid",
    "principal_outstanding",
    "coupons_projected",
)


def _bps(value: Any) -> str:
    return "-" if value is None else f"{int(value) / 100:.2f} %"


def _usd(value: Any) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{int(value) / 10_000:.2f}x"


def _breaches(mask: Any) -> str:
    mask = int(mask or 0)
    names = [name for bit, name in BREACH_NAMES.items() if mask & bit]
    return ", ".join(names) or "none"


def create_app(db: str) -> FastAPI:
    """The app over the index at `db` (SQLAlchemy URL or SQLite file)."""
    engine = engine_for(db)
    derive.metadata.create_all(engine)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters.update(bps=_bps, usd=_usd, ratio=_ratio, breaches=_breaches, iso=data.iso)
    replay_cache: dict[str, Any] = {}
    risk_cache: dict[tuple[Any, ...], Any] = {}
    app = FastAPI(
        title="gpucredit",
        description="Read-only lender and auditor views of the indexed chain (docs/web.md).",
        version="1",
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def html(template: str, code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context), status_code=code)

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api") and "text/html" in request.headers.get(
            "accept", ""
        )

    def error(request: Request, status: int, message: Any) -> Response:
        if wants_html(request):
            return html("error.html", status, status=status, message=message)
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(request, exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error(request, 422, "; ".join(problems))

    @app.exception_handler(data.NotFound)
    async def not_found(request: Request, exc: data.NotFound) -> Response:
        return error(request, 404, str(exc))

    def connect() -> sa.Connection:
        return engine.connect()

    # ---- JSON API ------------------------------------------------------------

    @app.get("/api/status", summary="Index status: chain, last indexed block, event count")
    def status() -> dict[str, Any]:
        with connect() as conn:
            meta = read_meta(conn)
            return {
                "chain_id": meta.get("chain_id"),
                "last_block": meta.get("last_block"),
                "events": data.count(conn, data.TABLES["events"]),
                "currency": meta.get("currency", "USD"),
            }

    @app.get("/api/tables", summary="Tables that can be exported")
    def tables() -> dict[str, Any]:
        return {"tables": sorted(data.TABLES)}

    @app.get("/api/tables/{name}.{fmt}", summary="A table as CSV or JSON, paginated")
    def export(
        name: Annotated[str, PathParam(description="Table name (see /api/tables).")],
        fmt: Fmt,
        page: PageNo = 1,
        per_page: PerPage = 1_000,
    ) -> Response:
        with connect() as conn:
            result = data.page(conn, name, page, per_page)
        if fmt == "csv":
            return PlainTextResponse(data.to_csv(result["rows"]), media_type="text/csv")
        return JSONResponse(result)

    @app.get("/api/notes", summary="Every note with its headline figures")
    def api_notes() -> list[dict[str, Any]]:
        with connect() as conn:
            return data.rows(conn, derive.notes)

    @app.get("/api/notes/{note_id}", summary="A note: terms, tranches, periods, rates, events")
    def api_note(note_id: NoteId) -> dict[str, Any]:
        with connect() as conn:
            return note_view(conn, note_id)

    @app.get("/api/notes/{note_id}/loan-tape.{fmt}", summary="Loan tape of a note (docs/web.md)")
    def api_tape(note_id: NoteId, fmt: Fmt) -> Response:
        with connect() as conn:
            tape = data.loan_tape(conn, note_id)
        if fmt == "csv":
            return PlainTextResponse(data.to_csv(tape), media_type="text/csv")
        return JSONResponse({"note_id": note_id, "columns": data.TAPE_COLUMNS, "rows": tape})

    @app.get("/api/lenders/{address}", summary="A lender's positions and flows")
    def api_lender(address: Address) -> dict[str, Any]:
        with connect() as conn:
            return lender_view(conn, address)

    @app.get("/api/audit", summary="Replay of the indexed history through the audit model")
    def api_audit() -> dict[str, Any]:
        return audit_view()

    # ---- pages ---------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, summary="Notes page")
    def notes_page() -> HTMLResponse:
        with connect() as conn:
            notes = data.rows(conn, derive.notes)
            tranches = data.rows(
                conn,
                derive.tranches,
                order=[derive.tranches.c.note_id, derive.tranches.c.seniority.desc()],
            )
            meta = read_meta(conn)
            as_of = conn.execute(sa.select(sa.func.max(blocks.c.timestamp))).scalar()
            raw = {
                r.note_id: r
                for r in conn.execute(
                    sa.select(
                        derive.notes.c.note_id,
                        derive.notes.c.next_close_at,
                        derive.notes.c.last_report_at,
                        derive.notes.c.status,
                    )
                )
            }
        for n in notes:  # relative to the chain's time at the last indexed block
            r = raw[n["note_id"]]
            live = as_of is not None and r.status not in ("repaid", "released", "wound-down")
            n["days_to_close"] = (
                round((r.next_close_at - as_of) / 86_400, 1) if live and r.next_close_at else None
            )
            n["report_age_days"] = (
                round((as_of - r.last_report_at) / 86_400, 1)
                if as_of is not None and r.last_report_at
                else None
            )
        return html("notes.html", notes=notes, tranches=tranches, meta=meta, as_of=data.iso(as_of))

    @app.get("/notes/{note_id}", response_class=HTMLResponse, summary="A note's page")
    def note_page(note_id: NoteId) -> HTMLResponse:
        with connect() as conn:
            view = note_view(conn, note_id)
        charts = {
            "covenants": [
                {
                    "period": p["period"],
                    "dscr": p["dscr_bps"],
                    "dscr_min": p["dscr_min_bps"],
                    "ltv": p["ltv_bps"],
                    "ltv_limit": p["ltv_limit_bps"],
                    "collateral": p["collateral_value"],
                    "cash": p["cash_collateral"],
                    "senior": p["senior_rate_bps"],
                    "junior": p["junior_rate_bps"],
                }
                for p in view["periods"]
            ]
        }
        return html("note.html", v=view, charts=json.dumps(charts))

    @app.get("/lenders/{address}", response_class=HTMLResponse, summary="A lender's page")
    def lender_page(address: Address) -> HTMLResponse:
        with connect() as conn:
            view = lender_view(conn, address)
        return html("lender.html", v=view)

    @app.get("/audit", response_class=HTMLResponse, summary="Audit page")
    def audit_page() -> HTMLResponse:
        return html("audit.html", v=audit_view())

    # ---- views ---------------------------------------------------------------

    def note_view(conn: sa.Connection, note_id: int) -> dict[str, Any]:
        note = data.note(conn, note_id)
        by_note = lambda t: t.c.note_id == note_id  # noqa: E731
        return {
            "note": note,
            "tranches": data.rows(conn, derive.tranches, by_note(derive.tranches)),
            "periods": data.rows(conn, derive.periods, by_note(derive.periods)),
            "rate_changes": data.rows(conn, derive.rate_changes, by_note(derive.rate_changes)),
            "timeline": data.rows(
                conn,
                derive.timeline,
                by_note(derive.timeline),
                [derive.timeline.c.block, derive.timeline.c.log_index],
            ),
            "batches": data.rows(conn, derive.batches, by_note(derive.batches)),
            "oracle_reports": data.rows(
                conn, derive.oracle_reports, by_note(derive.oracle_reports)
            ),
            "risk": risk_view(note_id),
        }

    def lender_view(conn: sa.Connection, address: str) -> dict[str, Any]:
        holder = _checksum(address)
        positions = data.rows(conn, derive.positions, derive.positions.c.holder == holder)
        flows = data.rows(
            conn,
            derive.lender_flows,
            derive.lender_flows.c.holder == holder,
            [derive.lender_flows.c.block, derive.lender_flows.c.id],
        )
        raw = {
            r.tranche: r
            for r in conn.execute(
                sa.select(derive.positions).where(derive.positions.c.holder == holder)
            )
        }
        currency, decimals = data.units(conn)
        _, replayer, header = replayed() if raw else (None, None, {})
        at = header.get("timestamp")
        totals = dict.fromkeys(LENDER_FIGURES, 0)
        for p in positions:
            r = raw[p["tranche"]]
            t = replayer.tranches.get(p["tranche"].lower())
            h = coupons.holding(t, holder, at) if t is not None and at is not None else None
            p["base_units"] = base = {
                "filled": r.filled or 0,
                "coupons_claimed": r.coupons_claimed or 0,
                "principal_redeemed": r.principal_redeemed or 0,
            }
            if h is None:
                continue
            projected = coupons.projected_coupons(t, h, at)
            base.update(
                coupons_accrued=h.coupons_accrued,
                coupons_claimable=h.coupons_claimable,
                principal_claimable=h.principal_claimable,
                principal_outstanding=h.principal_outstanding,
                coupons_projected=projected,
            )
            base["principal_repaid"] = base["principal_redeemed"] + h.principal_claimable
            for key in LENDER_FIGURES:
                p[key] = data.money(base[key], decimals)
                totals[key] += base[key]
            p["rate_bps"] = h.rate_bps
            p["tranche_state"] = h.state
            p["yield"] = coupons.yields(
                base["filled"],
                base["coupons_claimed"],
                base["principal_redeemed"],
                h,
                projected,
                r.first_timestamp,
                at,
            )
        return {
            "address": holder,
            "as_of_block": header.get("to_block"),
            "as_of": data.iso(at),
            "currency": currency,
            "positions": positions,
            "flows": flows,
            "coupons_claimed": sum(p["coupons_claimed"] or 0 for p in positions),
            "principal_redeemed": sum(p["principal_redeemed"] or 0 for p in positions),
            **{key: data.money(value, decimals) for key, value in totals.items()},
        }

    def replayed() -> tuple[Any, Any, dict[str, Any]]:
        """(replay result, replayer, header) of the indexed history, cached per indexed block."""
        from gpucredit.audit.replay import Replayer

        with connect() as conn:
            header = header_of(conn)
            key = f"{header['to_block']}:{header['events']}"
            if replay_cache.get("key") == key:
                return replay_cache["value"]
            if not header.get("manifest"):
                raise data.NotFound("the index is empty: run `gpucredit index` first")
            evs = load_events(conn)
            at = conn.execute(
                sa.select(blocks.c.timestamp).where(blocks.c.number == header["to_block"])
            ).scalar()
            if at is None:
                at = conn.execute(sa.select(sa.func.max(blocks.c.timestamp))).scalar()
        replayer = Replayer(header)
        result = replayer.run([dict(ev) for ev in evs])
        header = dict(header, timestamp=at)
        replay_cache.update(key=key, value=(result, replayer, header))
        return result, replayer, header

    def risk_view(note_id: int) -> dict[str, Any] | None:
        """The risk engine's figures for the note (gpucredit/web/risk.py), cached."""
        from gpucredit.web.risk import note_risk

        _, replayer, header = replayed()
        key = (header["to_block"], header["events"], note_id)
        if key not in risk_cache:
            if len(risk_cache) > 256:
                risk_cache.clear()
            risk_cache[key] = note_risk(replayer, note_id)
        return risk_cache[key]

    def audit_view() -> dict[str, Any]:
        result, _, header = replayed()
        return {
            "ok": result.ok,
            "events": result.events,
            "transactions": result.transactions,
            "closes": result.closes,
            "fields_checked": result.fields_checked,
            "to_block": header["to_block"],
            "mismatches": [
                json.loads(json.dumps(m.to_dict(), default=str)) for m in result.mismatches
            ],
        }

    return app


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    if not ADDRESS.match(address):
        raise HTTPException(422, f"not an address: {address!r}")
    return to_checksum_address(address)
