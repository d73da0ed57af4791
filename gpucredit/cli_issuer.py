"""`gpucredit issuer ...`: create notes from term sheets, whitelist lenders, run subscriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from gpucredit.chain import ZERO_ADDRESS, ChainError, Client
from gpucredit.cli_common import (
    BATCH_STATUS,
    NOTE_STATUS,
    TRANCHE_STATES,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    client,
    emit,
    handle_errors,
    kv_table,
    money,
    out,
    pct,
    progress,
    servicer_status,
    signer,
    table,
    when,
)
from gpucredit.cli_inputs import read_lenders
from gpucredit.deployment import ContractRecord, FleetRecord, NoteRecord
from gpucredit.protocol import deal_timeline, note_params, signer_order
from gpucredit.reports import NOTE_MIN_FAULT_BOUND, quorum_rule_violation
from gpucredit.termsheet import TermSheet, load_termsheet, termsheet_hash

app = typer.Typer(
    help="Issuer (SPV) workflows: term sheets, notes, KYC whitelist, subscriptions, status.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
FULFIL_CHUNK = 100
WHITELIST_CHUNK = 200
DAY = 86_400


def _issuer(key_env, keystore, password_file) -> LocalAccount:
    return signer("issuer", key_env, keystore, password_file)


def _require_role(contract: Any, role: str, who: str, where: str, fix: str) -> None:
    role_id = getattr(contract.functions, role)().call()
    if not contract.functions.hasRole(role_id, who).call():
        raise ChainError(f"{who} lacks {role} on the {where}: {fix}")


# ---------------------------------------------------------------------------
# validate / create-note
# ---------------------------------------------------------------------------


def _sheet_summary(sheet: TermSheet, now: int | None = None) -> dict[str, Any]:
    spec = sheet.to_deal_spec(now) if now is not None else None
    return {
        "name": sheet.name,
        "size": sum(t.size for t in sheet.tranches),
        "subscription": {"opens": sheet.subscription.opens, "length": sheet.subscription.length},
        "term": sheet.term,
        "maturity": sheet.maturity,
        "period": sheet.period,
        "heartbeat": sheet.heartbeat,
        "tranches": [
            {
                "name": t.name,
                "symbol": t.symbol,
                "seniority": t.seniority,
                "size": t.size,
                "min_subscription": t.min_subscription,
                "reference_rate_bps": t.reference_rate,
                "spread_bps": t.spread,
                "floor_bps": t.floor,
                "cap_bps": t.cap,
                "min_collateral_ratio_bps": t.min_collateral_ratio,
                "amortization": spec.tranches[i].amortization if spec else None,
            }
            for i, t in enumerate(sheet.tranches)
        ],
        "covenants": sheet.covenant_spec().__dict__,
        "oracle": {
            "signers": sheet.oracle.signers,
            "quorum": sheet.oracle.quorum,
            "fault_bound": sheet.oracle.fault_bound,
        },
    }


def _oracle_terms(oracle: dict[str, Any]) -> str:
    """quorum of n, and the f it tolerates: what a lender relies on."""
    signers = oracle["signers"]
    n = f"{len(signers)} signers" if signers else "the deployment's signers"
    f = oracle["fault_bound"]
    return f"quorum {oracle['quorum']} of {n}: tolerates f = {f} lying or silent"


def _render_sheet(result: dict[str, Any]) -> None:
    out.print(f"[bold]{result['name']}[/]: term sheet is valid")
    rows = [
        (
            t["symbol"],
            t["name"],
            money(t["size"], 6),
            pct(t["reference_rate_bps"]),
            f"{t['spread_bps']} bps",
            f"{pct(t['floor_bps'])} - {pct(t['cap_bps'])}",
            pct(t["min_collateral_ratio_bps"]),
        )
        for t in result["tranches"]
    ]
    columns = ("symbol", "name", "size", "reference", "spread", "floor - cap", "min coll.")
    out.print(table("tranches", columns, rows))
    cov = result["covenants"]
    out.print(
        kv_table(
            "covenants and steps",
            {
                "DSCR min": f"{cov['dscr_min_bps'] / 10_000:.2f}x",
                "max LTV (low util.)": f"{pct(cov['max_ltv_bps'])} "
                f"({pct(cov['low_util_max_ltv_bps'])})",
                "uptime SLA": pct(cov["uptime_sla_bps"]),
                "step down": f"{cov['step_down_bps']:+d} bps after {cov['step_down_periods']} "
                f"period(s) >= {pct(cov['step_down_util_bps'])}",
                "step up": f"{cov['step_up_bps']:+d} bps after {cov['step_up_periods']} "
                f"period(s) < {pct(cov['step_up_util_bps'])}",
                "sweep share": pct(cov["sweep_share_bps"]),
                "reserve": f"{cov['reserve_months']} months",
                "cure period": f"{cov['cure_period'] / DAY:g} days",
                "fee per period": money(cov["fee_per_period"], 6),
                "oracle": _oracle_terms(result["oracle"]),
            },
        )
    )


@app.command()
@handle_errors
def validate(
    termsheet: Annotated[
        Path, typer.Argument(help="Term sheet YAML (see examples/termsheet.yaml).")
    ],
    json_out: JsonOut = False,
) -> None:
    """Check a term sheet without touching any chain: every problem, with its field."""
    sheet = load_termsheet(termsheet)
    emit(_sheet_summary(sheet), json_out, _render_sheet)


def _parties(c: Client, sheet: TermSheet, issuer: str) -> dict[str, Any]:
    roles = c.manifest.roles
    operator = sheet.parties.operator
    if operator is None:
        if len(roles.operators) != 1:
            raise CliError(
                "parties.operator: not in the term sheet and the deployment has "
                f"{len(roles.operators)} operators {roles.operators}: name one"
            )
        operator = roles.operators[0]
    trustee = sheet.parties.trustee or roles.trustee
    if trustee is None:
        raise CliError("parties.trustee: not in the term sheet and the deployment has no trustee")
    signers = sheet.oracle.signers or roles.oracle_signers
    if not signers:
        raise CliError(
            "oracle.signers: not in the term sheet and the deployment has no oracle_signers"
        )
    problem = quorum_rule_violation(len(signers), sheet.oracle.quorum, NOTE_MIN_FAULT_BOUND)
    if problem is not None:
        raise CliError(f"oracle.quorum: {problem}")
    return {
        "operator": operator,
        "trustee": trustee,
        "fee_recipient": sheet.parties.fee_recipient or issuer,
        "signers": signer_order(list(signers)),
    }


def _render_note(result: dict[str, Any]) -> None:
    out.print(f"[bold green]note {result['note_id']}[/] created: {result['name']}")
    rows = [(s, a) for s, a in result["tranches"].items()]
    rows.append(("servicer", result["servicer"]))
    out.print(table("contracts", ("what", "address"), rows))
    out.print(
        f"subscriptions open {when(result['subscription_start'])} until "
        f"{when(result['subscription_end'])}; maturity {when(result['maturity'])}"
    )
    out.print(f"manifest updated: {result['manifest']}")


@app.command("create-note")
@handle_errors
def create_note(
    termsheet: Annotated[
        Path, typer.Argument(help="Term sheet YAML (see examples/termsheet.yaml).")
    ],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Create a note from a term sheet: open it in the collateral registry, deploy its
    tranches and servicer, wire them, register its fleet on the oracle, record it in
    the manifest. The term sheet is validated (and the issuer's roles checked) before
    anything is sent."""
    sheet = load_termsheet(termsheet)
    c = client()
    issuer = _issuer(key_env, keystore, password_file)
    registry = c.core("collateral_registry")
    oracle = c.core("telemetry_oracle")
    _require_role(
        registry,
        "ISSUER_ROLE",
        issuer.address,
        "collateral registry",
        "deploy with this address among the issuers (scripts/deploy.py issuers=...)",
    )
    _require_role(
        oracle,
        "FLEET_ADMIN_ROLE",
        issuer.address,
        "telemetry oracle",
        "deploy with this address among the fleet_admins (scripts/deploy.py fleet_admins=...)",
    )
    parties = _parties(c, sheet, issuer.address)
    now = c.now()
    spec = sheet.to_deal_spec(now)
    start = sheet.start(now)
    sub_end, maturity = deal_timeline(spec, start)

    factory = c.core("note_factory")
    params = note_params(
        spec,
        start,
        operator=parties["operator"],
        fee_recipient=parties["fee_recipient"],
        trustee=parties["trustee"],
    )
    with progress(json_out) as bar:
        task = bar.add_task("creating the note", total=2)

        def step(fn: Any, action: str) -> Any:
            receipt = c.send(fn, issuer, action)
            bar.advance(task)
            return receipt

        # One transaction: the note opened, its tranches and servicer cloned,
        # initialised and bound; nothing is left to set afterwards.
        receipt = step(
            factory.functions.createNote(params),
            "create the note (tranches, servicer, wiring) through the factory",
        )
        created = factory.events.NoteCreated().process_receipt(receipt, errors=DISCARD)[0]["args"]
        note_id = created["noteId"]
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()

        def clone(name: str, address: str) -> ContractRecord:
            return ContractRecord(
                contract=name,
                address=address,
                tx=tx_hash,
                block=receipt["blockNumber"],
                deployer=factory.address,
            )

        tranches = {
            t.symbol: clone("NoteTranche", address)
            for t, address in zip(spec.tranches, created["tranches"], strict=True)
        }
        servicer = clone("Servicer", created["servicer"])
        step(
            oracle.functions.registerFleet(
                note_id,
                parties["operator"],
                servicer.address,
                sub_end,
                spec.period_length,
                spec.heartbeat,
                parties["signers"],
                spec.quorum,
            ),
            "register the fleet on the oracle",
        )
    note_record = NoteRecord(
        note_id=note_id,
        name=sheet.name,
        issuer=issuer.address,
        tranches=tranches,
        servicer=servicer,
        fleet=FleetRecord(
            operator=parties["operator"],
            genesis=sub_end,
            period_length=spec.period_length,
            heartbeat=spec.heartbeat,
            signers=parties["signers"],
            quorum=spec.quorum,
        ),
        subscription_start=start,
        subscription_end=sub_end,
        maturity=maturity,
        termsheet_hash=termsheet_hash(termsheet),
        termsheet=sheet.model_dump(mode="json"),
        block=receipt["blockNumber"],
    )
    c.reload_manifest()
    c.manifest.add_note(note_record)
    c.save_manifest()
    result = {
        "note_id": note_id,
        "name": sheet.name,
        "tranches": {s: r.address for s, r in tranches.items()},
        "servicer": servicer.address,
        "operator": parties["operator"],
        "trustee": parties["trustee"],
        "signers": parties["signers"],
        "subscription_start": start,
        "subscription_end": sub_end,
        "maturity": maturity,
        "manifest": str(c.manifest_path),
    }
    emit(result, json_out, _render_note)


# ---------------------------------------------------------------------------
# whitelist
# ---------------------------------------------------------------------------


@app.command()
@handle_errors
def whitelist(
    lenders_csv: Annotated[
        Path, typer.Argument(help="CSV with columns address,country[,expires] (see examples/).")
    ],
    days: Annotated[
        int, typer.Option(help="KYC validity in days for rows without an `expires` date.")
    ] = 365,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Whitelist lenders (KYC identities) from a CSV. Rows are checked first; a bad row
    is reported with its line and column and nothing is sent."""
    c = client()
    now = c.now()
    lenders = read_lenders(lenders_csv, default_expiry=now + days * DAY, now=now)
    issuer = _issuer(key_env, keystore, password_file)
    identities = c.core("identity_registry")
    _require_role(
        identities,
        "AGENT_ROLE",
        issuer.address,
        "identity registry",
        "deploy with this address among the kyc_agents",
    )
    groups: dict[tuple[int, int], list[str]] = {}
    for lender in lenders:
        groups.setdefault((lender.country, lender.expires_at), []).append(lender.address)
    with progress(json_out) as bar:
        task = bar.add_task("whitelisting lenders", total=len(lenders))
        for (country, expiry), addresses in groups.items():
            for i in range(0, len(addresses), WHITELIST_CHUNK):
                chunk = addresses[i : i + WHITELIST_CHUNK]
                fn = identities.functions.registerIdentities(chunk, country, expiry)
                c.send(fn, issuer, f"whitelist {len(chunk)} lenders")
                bar.advance(task, len(chunk))
    result = {
        "whitelisted": [
            {"address": x.address, "country": x.country, "expires_at": x.expires_at, "row": x.row}
            for x in lenders
        ]
    }

    def render(r: dict[str, Any]) -> None:
        rows = [
            (x["row"], x["address"], x["country"], when(x["expires_at"])) for x in r["whitelisted"]
        ]
        out.print(
            table(
                f"{len(rows)} lenders whitelisted", ("row", "address", "country", "expires"), rows
            )
        )

    emit(result, json_out, render)


# ---------------------------------------------------------------------------
# subscriptions
# ---------------------------------------------------------------------------


def _requesters(c: Client, tranche: Any, from_block: int) -> list[str]:
    seen: dict[str, None] = {}
    for log in c.events(tranche, "DepositRequest", from_block):
        seen[log["args"]["controller"]] = None
    return list(seen)


@app.command("close")
@handle_errors
def close_subscriptions(
    note_id: NoteId,
    tranche: Annotated[
        str | None,
        typer.Option(help="Only this tranche (symbol, `senior` or `junior`); default: all."),
    ] = None,
    drawdown: Annotated[
        bool,
        typer.Option(
            "--drawdown/--no-drawdown",
            help="Draw the filled capital to the servicer once every request is fulfilled "
            "(needs the pledged collateral the term sheet asks for).",
        ),
    ] = True,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Close the subscription window, fulfil every requester (found from the tranche's
    DepositRequest events; an oversubscribed tranche is cut pro rata) and draw down.
    Safe to re-run: each step is skipped when already done."""
    from gpucredit.cli_common import note_tranches

    c = client()
    issuer = _issuer(key_env, keystore, password_file)
    note = c.manifest.note(note_id)
    selected = note_tranches(c, note, tranche)
    report: dict[str, Any] = {}
    with progress(json_out) as bar:
        for symbol, contract in selected:
            state = contract.functions.state().call()
            entry = report.setdefault(symbol, {"closed": False, "fulfilled": 0, "drawn": False})
            if state == 0:
                c.send(contract.functions.closeSubscription(), issuer, f"{symbol}: close")
                entry["closed"] = True
                state = 1
            if state == 1:
                pending = [
                    who
                    for who in _requesters(c, contract, note.block)
                    if contract.functions.pendingDepositRequest(0, who).call() > 0
                ]
                task = bar.add_task(f"{symbol}: fulfilling requests", total=len(pending))
                for i in range(0, len(pending), FULFIL_CHUNK):
                    chunk = pending[i : i + FULFIL_CHUNK]
                    c.send(contract.functions.fulfil(chunk), issuer, f"{symbol}: fulfil")
                    bar.advance(task, len(chunk))
                entry["fulfilled"] = len(pending)
        if drawdown:
            for symbol, contract in selected:
                if contract.functions.state().call() == 1:
                    c.send(contract.functions.drawdown(), issuer, f"{symbol}: drawdown")
                    report[symbol]["drawn"] = True
    for symbol, contract in selected:
        report[symbol]["state"] = TRANCHE_STATES[contract.functions.state().call()]
        report[symbol]["principal"] = contract.functions.originalPrincipal().call()
    result = {"note_id": note_id, "tranches": report}

    def render(r: dict[str, Any]) -> None:
        rows = [
            (
                s,
                "yes" if e["closed"] else "already",
                e["fulfilled"],
                "yes" if e["drawn"] else "no",
                e["state"],
                money(e["principal"], c.decimals),
            )
            for s, e in r["tranches"].items()
        ]
        columns = ("tranche", "closed now", "fulfilled", "drawn down", "state", "principal")
        out.print(table(f"note {note_id}: subscriptions", columns, rows))

    emit(result, json_out, render)


@app.command("cancel-offering")
@handle_errors
def cancel_offering(
    note_id: NoteId,
    tranche: Annotated[str | None, typer.Option(help="Only this tranche; default: all.")] = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Abandon the offering before drawdown: every requester can then `lender cancel`."""
    from gpucredit.cli_common import note_tranches

    c = client()
    issuer = _issuer(key_env, keystore, password_file)
    note = c.manifest.note(note_id)
    done = []
    for symbol, contract in note_tranches(c, note, tranche):
        c.send(contract.functions.cancelOffering(), issuer, f"{symbol}: cancel the offering")
        done.append(symbol)
    emit(
        {"note_id": note_id, "cancelled": done},
        json_out,
        lambda r: out.print(f"offering cancelled: {', '.join(r['cancelled'])}"),
    )


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def note_status(c: Client, note: NoteRecord) -> dict[str, Any]:
    registry = c.core("collateral_registry")
    oracle = c.core("telemetry_oracle")
    servicer = c.record(note.servicer)
    issuer, _servicer, status, lienholder, defects, batch_ids = registry.functions.noteInfo(
        note.note_id
    ).call()
    now = c.now()
    tranches = []
    for symbol, record in note.tranches.items():
        t = c.record(record).functions
        requesters = _requesters(c, c.record(record), note.block)
        pending = sum(t.pendingDepositRequest(0, who).call() for who in requesters)
        tranches.append(
            {
                "symbol": symbol,
                "address": record.address,
                "state": TRANCHE_STATES[t.state().call()],
                "max_size": t.terms().call()[2],
                "requesters": len(requesters),
                "pending_requests": pending,
                "original_principal": t.originalPrincipal().call(),
                "principal_outstanding": t.principalOutstanding().call(),
                "rate_bps": t.currentRateBps().call(),
                "step_bps": t.rateStepBps().call(),
                "interest_due": t.interestDue().call(),
                "principal_due": t.principalDue().call(),
            }
        )
    collateral_value, cash = servicer.functions.collateral().call()
    required, deadline = servicer.functions.topUp().call()
    fleet = oracle.functions.fleet(note.note_id).call()
    batches = []
    for batch_id in batch_ids:
        header = registry.functions.batchInfo(batch_id).call()
        batches.append(
            {
                "batch_id": batch_id,
                "count": header[2],
                "status": BATCH_STATUS[header[4]],
                "value": registry.functions.batchValue(batch_id).call(),
            }
        )
    return {
        "note_id": note.note_id,
        "name": note.name,
        "issuer": issuer,
        "collateral_status": NOTE_STATUS[status],
        "deficient": defects > 0,
        "defects": defects,
        "lienholder": lienholder if lienholder != ZERO_ADDRESS else None,
        "subscription": {
            "start": note.subscription_start,
            "end": note.subscription_end,
            "open_now": note.subscription_start <= now <= note.subscription_end,
        },
        "maturity": note.maturity,
        "tranches": tranches,
        "servicer": {
            "address": note.servicer.address,
            "status": servicer_status(servicer),
            "next_period_to_close": servicer.functions.nextPeriodToClose().call(),
            "collateral_value": collateral_value,
            "cash_collateral": cash,
            "top_up_required": required,
            "top_up_deadline": deadline,
            "reserve": servicer.functions.reserveBalance().call(),
            "trapped_cash": servicer.functions.trappedCash().call(),
            "period_revenue_cash": servicer.functions.periodRevenueCash().call(),
        },
        "fleet": {
            "operator": fleet[0],
            "genesis": fleet[2],
            "period_length": fleet[3],
            "heartbeat": fleet[4],
            "quorum": fleet[5],
            "signer_count": fleet[8],  # n
            "fault_bound": fleet[9],  # f: lying or silent signers tolerated
            "next_period": fleet[6],
            "signers": oracle.functions.signers(note.note_id).call(),
            "stale": oracle.functions.isStale(note.note_id).call(),
        },
        "batches": batches,
        "chain_time": now,
    }


@app.command()
@handle_errors
def status(note_id: NoteId, json_out: JsonOut = False) -> None:
    """A note at a glance: tranches, subscriptions, servicer, collateral, oracle fleet."""
    c = client()
    result = note_status(c, c.manifest.note(note_id))
    d = c.decimals

    def render(r: dict[str, Any]) -> None:
        sub = r["subscription"]
        window = "open" if sub["open_now"] else "closed"
        defects = f", {r['defects']} DEFECT(S)" if r["deficient"] else ""
        out.print(
            f"[bold]note {r['note_id']}[/]: {r['name']} (collateral {r['collateral_status']}"
            f"{defects}); subscriptions {window} "
            f"{when(sub['start'])} - {when(sub['end'])}; maturity {when(r['maturity'])}"
        )
        rows = [
            (
                t["symbol"],
                t["state"],
                money(t["max_size"], d),
                money(t["pending_requests"], d),
                t["requesters"],
                money(t["original_principal"], d),
                money(t["principal_outstanding"], d),
                pct(t["rate_bps"]),
                f"{t['step_bps']:+d}",
                money(t["interest_due"], d),
            )
            for t in r["tranches"]
        ]
        columns = (
            "tranche",
            "state",
            "size",
            "pending",
            "requesters",
            "principal",
            "outstanding",
            "rate",
            "step bps",
            "interest due",
        )
        out.print(table("tranches", columns, rows))
        s = r["servicer"]
        out.print(
            kv_table(
                "servicer (SPV account)",
                {
                    "status": s["status"],
                    "next period to close": s["next_period_to_close"],
                    "collateral value": money(s["collateral_value"], d),
                    "cash collateral": money(s["cash_collateral"], d),
                    "top-up required": (
                        f"{money(s['top_up_required'], d)} by {when(s['top_up_deadline'])}"
                        if s["top_up_required"]
                        else "none"
                    ),
                    "reserve / trapped": (
                        f"{money(s['reserve'], d)} / {money(s['trapped_cash'], d)}"
                    ),
                    "revenue this period": money(s["period_revenue_cash"], d),
                },
            )
        )
        f = r["fleet"]
        out.print(
            f"fleet: operator {f['operator']}, period {f['period_length'] // DAY}d from "
            f"{when(f['genesis'])}, next report {f['next_period']}, quorum {f['quorum']} of "
            f"n = {f['signer_count']} signers, tolerating f = {f['fault_bound']} lying or "
            f"silent{', STALE' if f['stale'] else ''}"
        )
        if r["batches"]:
            batch_rows = [
                (b["batch_id"], b["count"], b["status"], money(b["value"], d)) for b in r["batches"]
            ]
            out.print(table("pledged batches", ("batch", "GPUs", "status", "value"), batch_rows))

    emit(result, json_out, render)
