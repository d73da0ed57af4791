"""Reads of the index for the web app and its exports: rows, units, loan tapes.

Formats (docs/web.md): money columns are numbers in currency units (the
stablecoin has 6 decimals: 1234.5 means $1,234.50) with the currency in its
own `currency` column; time columns are ISO 8601 UTC strings; basis-point
columns (`*_bps`) stay integers.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from gpucredit.index import derive
from gpucredit.index.follower import read_meta
from gpucredit.index.schema import blocks, events

TABLES: dict[str, sa.Table] = {t.name: t for t in (*derive.DERIVED, events, blocks)}
KEYS: dict[str, list[str]] = {name: [c.name for c in t.primary_key] for name, t in TABLES.items()}
MONEY = {
    "size", "outstanding", "max_size", "issued", "interest_paid", "principal_paid",
    "coupons_claimed", "revenue_reported", "revenue_cash", "debt_service", "collateral_value",
    "cash_collateral", "cash_in", "fees", "senior_interest", "junior_interest",
    "senior_principal", "junior_principal", "reserve_drawn", "reserve_added", "sweep", "equity",
    "trapped", "reserve_balance", "top_up_required", "top_up_shortfall", "requested", "filled",
    "refunded", "shares", "principal_redeemed", "amount", "total_cost", "pledged_value",
    "revenue", "principal_lost", "interest_lost", "wind_down_cash", "wind_down_residual",
}  # fmt: skip
TIMES = {
    "timestamp", "last_close_at", "next_close_at", "last_report_at", "maturity",
    "report_recorded_at", "top_up_deadline", "first_timestamp", "last_timestamp",
    "registered_at", "pledged_at", "period_end", "since", "wound_up_at",
}  # fmt: skip
PER_PAGE_MAX = 10_000


class NotFound(LookupError):
    """A resource that is not in the index (-> 404)."""


def iso(ts: Any) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def money(value: Any, decimals: int = 6) -> float | None:
    if value is None:
        return None
    return float(Decimal(int(value)) / (Decimal(10) ** decimals))


def present(row: dict[str, Any], currency: str = "USD", decimals: int = 6) -> dict[str, Any]:
    """One row in export units (money in currency units, ISO times, JSON decoded)."""
    out: dict[str, Any] = {}
    has_money = False
    for key, value in row.items():
        if key in MONEY:
            out[key] = money(value, decimals)
            has_money = True
        elif key in TIMES:
            out[key] = iso(value)
        elif isinstance(value, str) and key in ("args", "signers", "terms", "covenant_terms"):
            out[key] = json.loads(value)
        else:
            out[key] = value
    if has_money:
        out["currency"] = currency
    return out


def units(conn: sa.Connection) -> tuple[str, int]:
    meta = read_meta(conn)
    return str(meta.get("currency", "USD")), int(meta.get("decimals", 6))


def rows(
    conn: sa.Connection,
    table: sa.Table,
    where: Any = None,
    order: list[Any] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    query = sa.select(table)
    if where is not None:
        query = query.where(where)
    keys = [table.c[k] for k in KEYS.get(table.name, [])]
    query = query.order_by(*(order or keys))
    if limit is not None:
        query = query.limit(limit).offset(offset)
    currency, decimals = units(conn)
    return [present(dict(r._mapping), currency, decimals) for r in conn.execute(query)]


def count(conn: sa.Connection, table: sa.Table, where: Any = None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(conn.execute(query).scalar_one())


def page(conn: sa.Connection, name: str, page_no: int, per_page: int) -> dict[str, Any]:
    """A page of an exported table; a page past the end is NotFound."""
    table = TABLES.get(name)
    if table is None:
        raise NotFound(f"no table {name!r}; tables: {', '.join(sorted(TABLES))}")
    total = count(conn, table)
    pages = max(1, -(-total // per_page))
    if page_no > pages:
        raise NotFound(f"page {page_no} is past the end: {name} has {pages} page(s)")
    data = rows(conn, table, limit=per_page, offset=(page_no - 1) * per_page)
    return {"table": name, "page": page_no, "per_page": per_page, "total": total, "rows": data}


def to_csv(data: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if not data:
        return ""
    fields = list(data[0])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in data:
        writer.writerow(
            {
                k: json.dumps(v) if isinstance(v, dict | list) else ("" if v is None else v)
                for k, v in row.items()
            }
        )
    return buf.getvalue()


def note(conn: sa.Connection, note_id: int) -> dict[str, Any]:
    found = rows(conn, derive.notes, derive.notes.c.note_id == note_id)
    if not found:
        raise NotFound(f"no note {note_id} in the index")
    return found[0]


# Loan tape: one row per period per tranche (docs/web.md).
TAPE_COLUMNS = [
    "note_id", "period", "period_closed_at", "tranche", "seniority", "rate_bps",
    "balance_before", "interest_due", "interest_paid", "principal_paid", "swept_principal",
    "balance_after", "utilization_bps", "uptime_bps", "dscr_bps", "dscr_min_bps", "dscr_pass",
    "ltv_bps", "ltv_limit_bps", "ltv_pass", "uptime_pass", "report_on_time", "step_bps",
    "top_up_shortfall", "currency",
]  # fmt: skip


def loan_tape(conn: sa.Connection, note_id: int) -> list[dict[str, Any]]:
    note(conn, note_id)
    currency, decimals = units(conn)
    tranche_rows = conn.execute(
        sa.select(derive.tranches).where(derive.tranches.c.note_id == note_id)
    ).all()
    period_rows = conn.execute(
        sa.select(derive.periods)
        .where(derive.periods.c.note_id == note_id)
        .order_by(derive.periods.c.period)
    ).all()
    paid = {}  # (tranche, block) -> (interest, principal, outstanding after)
    for r in conn.execute(
        sa.select(events.c.address, events.c.block, events.c.args).where(
            events.c.note_id == note_id, events.c.event == "Paid"
        )
    ):
        args = json.loads(r[2]) if isinstance(r[2], str) else r[2]
        paid[(r[0], r[1])] = args
    out: list[dict[str, Any]] = []
    balances = {t.address: int(t.issued or 0) for t in tranche_rows}
    for p in period_rows:
        for t in tranche_rows:
            side = t.seniority
            args = paid.get((t.address, p.block), {})
            interest = int(args.get("interest", 0))
            principal = int(args.get("principal", 0))
            before = balances[t.address]
            after = int(args["outstandingAfter"]) if "outstandingAfter" in args else before
            balances[t.address] = after
            due = getattr(p, f"{side}_interest", None) if side in ("senior", "junior") else None
            breaches = int(p.breaches or 0)
            out.append(
                {
                    "note_id": note_id,
                    "period": p.period,
                    "period_closed_at": iso(p.timestamp),
                    "tranche": t.address,
                    "seniority": side,
                    "rate_bps": getattr(p, f"{side}_rate_bps", None),
                    "balance_before": money(before, decimals),
                    "interest_due": money(due, decimals),
                    "interest_paid": money(interest, decimals),
                    "principal_paid": money(principal, decimals),
                    "swept_principal": money(p.sweep if side == "senior" else 0, decimals),
                    "balance_after": money(after, decimals),
                    "utilization_bps": p.utilization_bps,
                    "uptime_bps": p.uptime_bps,
                    "dscr_bps": p.dscr_bps,
                    "dscr_min_bps": p.dscr_min_bps,
                    "dscr_pass": not breaches & derive.BREACH_DSCR,
                    "ltv_bps": p.ltv_bps,
                    "ltv_limit_bps": p.ltv_limit_bps,
                    "ltv_pass": not breaches & derive.BREACH_LTV,
                    "uptime_pass": not breaches & derive.BREACH_UPTIME,
                    "report_on_time": not breaches & derive.BREACH_REPORT,
                    "step_bps": p.new_step_bps,
                    "top_up_shortfall": money(p.top_up_shortfall, decimals),
                    "currency": currency,
                }
            )
    return out
