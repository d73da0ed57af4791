"""`gpucredit lender ...`: subscribe, cancel, claim notes and coupons, redeem, position."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from web3.logs import DISCARD

from gpucredit.chain import ChainError, Client
from gpucredit.cli_common import (
    TRANCHE_STATES,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    account_for,
    address_arg,
    breach_names,
    client,
    emit,
    handle_errors,
    money,
    note_tranches,
    out,
    pct,
    signer,
    table,
    units,
    when,
)

app = typer.Typer(
    help="Lender workflows: subscribe, cancel, claim notes and coupons, redeem, position.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
TrancheOpt = Annotated[
    str,
    typer.Option(help="Tranche: its symbol (e.g. GPUS-27), `senior` or `junior`."),
]
AllTranchesOpt = Annotated[
    str | None, typer.Option(help="Only this tranche (symbol, `senior`, `junior`); default: all.")
]


def _lender(key_env, keystore, password_file):
    return signer("lender", key_env, keystore, password_file)


def _one(c: Client, note_id: int, tranche: str) -> tuple[str, Any]:
    return note_tranches(c, c.manifest.note(note_id), tranche)[0]


@app.command()
@handle_errors
def subscribe(
    note_id: NoteId,
    amount: Annotated[str, typer.Argument(help="Stablecoin amount, e.g. 250000, 250k or 1.5M.")],
    tranche: TrancheOpt = "senior",
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Request a subscription (ERC-7540 requestDeposit): approves the stablecoin and
    locks AMOUNT in the tranche until the issuer fulfils or you cancel."""
    c = client()
    lender = _lender(key_env, keystore, password_file)
    symbol, contract = _one(c, note_id, tranche)
    value = units(amount, c.decimals)
    identities = c.core("identity_registry").functions
    if not identities.isVerified(lender.address).call():
        country, expires_at, frozen = identities.identityOf(lender.address).call()
        why = "is frozen" if frozen else ("has expired KYC" if expires_at else "is not whitelisted")
        raise ChainError(
            f"lender {lender.address} {why} on the identity registry: the issuer adds it "
            "with `gpucredit issuer whitelist LENDERS.csv`"
        )
    usd = c.core("stablecoin")
    balance = usd.functions.balanceOf(lender.address).call()
    if balance < value:
        raise CliError(
            f"lender {lender.address} holds {money(balance, c.decimals)} of the stablecoin, "
            f"less than {money(value, c.decimals)}"
        )
    if usd.functions.allowance(lender.address, contract.address).call() < value:
        c.send(usd.functions.approve(contract.address, value), lender, "approve the stablecoin")
    c.send(
        contract.functions.requestDeposit(value, lender.address, lender.address),
        lender,
        f"subscribe to {symbol}",
    )
    pending = contract.functions.pendingDepositRequest(0, lender.address).call()
    result = {
        "note_id": note_id,
        "tranche": symbol,
        "lender": lender.address,
        "requested": value,
        "pending": pending,
    }
    emit(
        result,
        json_out,
        lambda r: out.print(
            f"{r['lender']} requested {money(r['requested'], c.decimals)} of {symbol}; "
            f"pending now {money(r['pending'], c.decimals)}"
        ),
    )


@app.command()
@handle_errors
def cancel(
    note_id: NoteId,
    tranche: TrancheOpt = "senior",
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Take back a pending subscription (while the window is open, or after the
    offering was cancelled)."""
    c = client()
    lender = _lender(key_env, keystore, password_file)
    symbol, contract = _one(c, note_id, tranche)
    pending = contract.functions.pendingDepositRequest(0, lender.address).call()
    if pending == 0:
        raise CliError(f"{lender.address} has no pending subscription in {symbol}")
    c.send(contract.functions.cancelDepositRequest(), lender, f"cancel the {symbol} subscription")
    emit(
        {"note_id": note_id, "tranche": symbol, "refunded": pending},
        json_out,
        lambda r: out.print(f"cancelled: {money(pending, c.decimals)} refunded from {symbol}"),
    )


def _each(
    c: Client,
    note_id: int,
    tranche: str | None,
    lender: Any,
    ready: str,
    action: str,
    event: str,
    fields: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Calls `action` on every selected tranche where `ready(lender)` is positive."""
    done = []
    for symbol, contract in note_tranches(c, c.manifest.note(note_id), tranche):
        getter = getattr(contract.functions, ready)
        args = (0, lender.address) if ready == "claimableDepositRequest" else (lender.address,)
        if getter(*args).call() == 0:
            continue
        receipt = c.send(getattr(contract.functions, action)(), lender, f"{action} on {symbol}")
        logs = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
        args_out = logs[0]["args"] if logs else {}
        done.append({"tranche": symbol, **{f: args_out.get(f, 0) for f in fields}})
    return done


def _render_claims(title: str, decimals: int, columns: tuple[str, ...]):
    def render(r: dict[str, Any]) -> None:
        if not r["claims"]:
            out.print(f"nothing to {title} for {r['lender']}")
            return
        rows = [(x["tranche"], *(money(x[f], decimals) for f in columns)) for x in r["claims"]]
        out.print(table(f"{title}: {r['lender']}", ("tranche", *columns), rows))

    return render


@app.command("claim-notes")
@handle_errors
def claim_notes(
    note_id: NoteId,
    tranche: AllTranchesOpt = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Claim the notes (tranche tokens) of fulfilled subscriptions and the refund of any
    unfilled part (after the issuer's `close`)."""
    c = client()
    lender = _lender(key_env, keystore, password_file)
    claims = _each(
        c,
        note_id,
        tranche,
        lender,
        "claimableDepositRequest",
        "claimShares",
        "SharesClaimed",
        ("shares", "refunded"),
    )
    emit(
        {"note_id": note_id, "lender": lender.address, "claims": claims},
        json_out,
        _render_claims("claim notes", c.decimals, ("shares", "refunded")),
    )


@app.command("claim-coupons")
@handle_errors
def claim_coupons(
    note_id: NoteId,
    tranche: AllTranchesOpt = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Claim every coupon the servicer has paid for your notes (pull, per tranche)."""
    c = client()
    lender = _lender(key_env, keystore, password_file)
    claims = _each(
        c,
        note_id,
        tranche,
        lender,
        "couponClaimable",
        "claimCoupon",
        "CouponClaimed",
        ("amount", "owedAfter"),
    )
    emit(
        {"note_id": note_id, "lender": lender.address, "claims": claims},
        json_out,
        _render_claims("claim coupons", c.decimals, ("amount", "owedAfter")),
    )


@app.command()
@handle_errors
def redeem(
    note_id: NoteId,
    tranche: AllTranchesOpt = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Redeem repaid principal (amortization, sweeps, maturity); the notes are burned
    once the tranche is fully repaid."""
    c = client()
    lender = _lender(key_env, keystore, password_file)
    claims = _each(
        c,
        note_id,
        tranche,
        lender,
        "principalClaimable",
        "redeem",
        "PrincipalRedeemed",
        ("amount", "faceBurned"),
    )
    emit(
        {"note_id": note_id, "lender": lender.address, "claims": claims},
        json_out,
        _render_claims("redeem", c.decimals, ("amount", "faceBurned")),
    )


def _why(c: Client, note_id: int) -> dict[str, Any]:
    """The servicer's last coupon step and last period close, from its events."""
    note = c.manifest.note(note_id)
    servicer = c.record(note.servicer)
    steps = c.events(servicer, "CouponStepped", note.block)
    closes = c.events(servicer, "PeriodClosed", note.block)
    why: dict[str, Any] = {"last_step": None, "last_period": None}
    if steps:
        s = steps[-1]["args"]
        why["last_step"] = {
            "period": s["period"],
            "old_step_bps": s["oldStepBps"],
            "new_step_bps": s["newStepBps"],
            "block": steps[-1]["blockNumber"],
        }
    if closes:
        inputs, result = closes[-1]["args"]["inputs"], closes[-1]["args"]["result"]
        why["last_period"] = {
            "period": inputs["period"],
            "report": {1: "reported", 2: "missed"}.get(inputs["reportStatus"], "none"),
            "utilization_bps": inputs["utilizationBps"],
            "uptime_bps": inputs["uptimeBps"],
            "dscr_bps": result["dscrBps"],
            "ltv_bps": result["ltvBps"],
            "ltv_limit_bps": result["ltvLimitBps"],
            "high_streak": result["highStreak"],
            "low_streak": result["lowStreak"],
            "step_bps": result["newStepBps"],
            "breaches": breach_names(result["breaches"]),
        }
    terms = servicer.functions.covenantTerms().call()
    why["rules"] = {
        "step_down": f"{terms[6]:+d} bps after {terms[5]} period(s) at >= {pct(terms[4])}",
        "step_up": f"{terms[9]:+d} bps after {terms[8]} period(s) below {pct(terms[7])}",
    }
    return why


def explain(why: dict[str, Any]) -> str:
    step, last = why["last_step"], why["last_period"]
    if last is None:
        return "no period closed yet: the rate is reference + spread (within floor and cap)"
    text = (
        f"period {last['period']} closed ({last['report']}): utilization "
        f"{pct(last['utilization_bps'])}, uptime {pct(last['uptime_bps'])}, "
        f"high/low streak {last['high_streak']}/{last['low_streak']}"
    )
    if last["breaches"]:
        text += f", breaches: {', '.join(last['breaches'])}"
    if step is not None:
        text += (
            f"; coupon step {step['old_step_bps']:+d} -> {step['new_step_bps']:+d} bps "
            f"at period {step['period']}"
        )
    else:
        text += "; no coupon step so far"
    return text + f" (rules: down {why['rules']['step_down']}; up {why['rules']['step_up']})"


@app.command()
@handle_errors
def position(
    note_id: NoteId,
    address: Annotated[
        str | None,
        typer.Option(help="Show this address's position (read-only; no key needed)."),
    ] = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Your position in each tranche: principal, accrued and claimable coupons, what you
    have claimed, and the current rate with the reason (last coupon step and period)."""
    c = client()
    lender = None if address else _lender(key_env, keystore, password_file)
    holder = account_for(lender, address)
    note = c.manifest.note(note_id)
    tranches = []
    for symbol, contract in note_tranches(c, note, None):
        t = contract.functions
        terms = t.terms().call()
        claimed = sum(
            log["args"]["amount"]
            for log in c.events(contract, "CouponClaimed", note.block, holder=holder)
        )
        redeemed = sum(
            log["args"]["amount"]
            for log in c.events(contract, "PrincipalRedeemed", note.block, holder=holder)
        )
        tranches.append(
            {
                "tranche": symbol,
                "state": TRANCHE_STATES[t.state().call()],
                "pending_request": t.pendingDepositRequest(0, holder).call(),
                "claimable_notes": t.claimableDepositRequest(0, holder).call(),
                "face": t.balanceOf(holder).call(),
                "principal_outstanding": t.principalOutstandingOf(holder).call(),
                "coupon_accrued": t.couponOwed(holder).call(),
                "coupon_claimable": t.couponClaimable(holder).call(),
                "coupon_claimed": claimed,
                "principal_claimable": t.principalClaimable(holder).call(),
                "principal_redeemed": redeemed,
                "rate_bps": t.currentRateBps().call(),
                "reference_rate_bps": terms[7],
                "spread_bps": terms[8],
                "step_bps": t.rateStepBps().call(),
                "floor_bps": terms[9],
                "cap_bps": terms[10],
            }
        )
    why = _why(c, note_id)
    result = {
        "note_id": note_id,
        "holder": holder,
        "tranches": tranches,
        "why": why,
        "explanation": explain(why),
    }
    d = c.decimals

    def render(r: dict[str, Any]) -> None:
        rows = [
            (
                x["tranche"],
                x["state"],
                money(x["pending_request"] + x["claimable_notes"], d),
                money(x["principal_outstanding"], d),
                money(x["coupon_accrued"], d),
                money(x["coupon_claimable"], d),
                money(x["coupon_claimed"], d),
                money(x["principal_claimable"], d),
                money(x["principal_redeemed"], d),
                f"{pct(x['rate_bps'])} = {pct(x['reference_rate_bps'])} + {x['spread_bps']} "
                f"{x['step_bps']:+d} bps [{pct(x['floor_bps'])}, {pct(x['cap_bps'])}]",
            )
            for x in r["tranches"]
        ]
        columns = (
            "tranche",
            "state",
            "requested",
            "principal",
            "accrued",
            "claimable",
            "claimed",
            "principal due",
            "redeemed",
            "rate = ref + spread + step [floor, cap]",
        )
        out.print(table(f"note {r['note_id']}: position of {r['holder']}", columns, rows))
        out.print(f"why: {r['explanation']}")

    emit(result, json_out, render)


@app.command()
@handle_errors
def transfer(
    note_id: NoteId,
    to: Annotated[str, typer.Argument(help="Address of the new holder (KYC-whitelisted).")],
    amount: Annotated[str, typer.Argument(help="Face amount of notes, e.g. 100000 or 100k.")],
    tranche: TrancheOpt = "senior",
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Transfer notes (tranche tokens, face) to another holder. Both sides must be
    whitelisted and not frozen; accrued coupons stay with whoever held the face while
    they accrued."""
    recipient = address_arg(to, "TO")
    c = client()
    lender = _lender(key_env, keystore, password_file)
    symbol, contract = _one(c, note_id, tranche)
    value = units(amount, c.decimals)
    if recipient == lender.address:
        raise CliError("TO is the sender: a transfer to yourself moves nothing")
    t = contract.functions
    balance = t.balanceOf(lender.address).call()
    if balance < value:
        raise CliError(
            f"{lender.address} holds {money(balance, c.decimals)} of {symbol}, "
            f"less than {money(value, c.decimals)} (claim pending notes with `lender claim-notes`)"
        )
    identities = c.core("identity_registry").functions
    for who, role in ((lender.address, "sender"), (recipient, "recipient")):
        if not identities.isVerified(who).call():
            _, expires_at, frozen = identities.identityOf(who).call()
            why = (
                "is frozen"
                if frozen
                else ("has expired KYC" if expires_at else "is not whitelisted")
            )
            raise ChainError(
                f"the {role} {who} {why} on the identity registry: the issuer adds it with "
                "`gpucredit issuer whitelist LENDERS.csv`"
            )
    if t.paused().call():
        raise CliError(f"{symbol} is paused: transfers wait until the guardian unpauses it")
    c.send(t.transfer(recipient, value), lender, f"transfer {symbol}")
    result = {
        "note_id": note_id,
        "tranche": symbol,
        "from": lender.address,
        "to": recipient,
        "amount": value,
        "from_balance": t.balanceOf(lender.address).call(),
        "to_balance": t.balanceOf(recipient).call(),
    }
    d = c.decimals
    emit(
        result,
        json_out,
        lambda r: out.print(
            table(
                f"note {note_id}: {symbol} transferred",
                ("from", "to", "amount", "sender now", "recipient now"),
                [
                    (
                        r["from"],
                        r["to"],
                        money(r["amount"], d),
                        money(r["from_balance"], d),
                        money(r["to_balance"], d),
                    )
                ],
            )
        ),
    )


@app.command("cancel-offering")
@handle_errors
def cancel_offering(
    note_id: NoteId,
    tranche: AllTranchesOpt = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Cancel an offering the issuer did not draw down within the drawdown window (30 days
    after the subscription end; anyone may), then `lender claim-notes` refunds you."""
    c = client()
    caller = _lender(key_env, keystore, password_file)
    now = c.now()
    cancelled = []
    for symbol, contract in note_tranches(c, c.manifest.note(note_id), tranche):
        t = contract.functions
        state = TRANCHE_STATES[t.state().call()]
        if state == "Cancelled":
            continue
        if state not in ("Subscription", "Closed"):
            raise CliError(f"{symbol} is {state}: only an offering not drawn down is cancelled")
        deadline = t.terms().call()[5] + t.DRAWDOWN_WINDOW().call()
        if now <= deadline:
            raise CliError(
                f"{symbol}: the issuer may still draw down until {when(deadline)}; "
                "anyone may cancel after that"
            )
        c.send(t.cancelOffering(), caller, f"{symbol}: cancel the offering")
        cancelled.append(symbol)
    emit(
        {"note_id": note_id, "cancelled": cancelled},
        json_out,
        lambda r: out.print(
            f"offering cancelled: {', '.join(r['cancelled']) or 'nothing left to cancel'}"
        ),
    )
