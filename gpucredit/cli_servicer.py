"""`gpucredit servicer ...`: the note's servicer (the SPV account), whoever calls.

Closing a period, paying drawn capital on to the operator, clearing a cured
top-up, declaring a default whose cure lapsed, counting proven defects and
releasing the collateral once every tranche is repaid are open to anyone
(a keeper, the issuer, a lender); `withdraw` pays the caller what the
servicer holds for it (fees to the fee recipient, equity to the operator,
recoveries to the lienholder). Each command checks what it can before it
sends anything and says why it refuses.
"""

from __future__ import annotations

from typing import Any

import typer

from gpucredit.chain import Client
from gpucredit.cli_common import (
    TRANCHE_STATES,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    client,
    done,
    emit,
    event_args,
    handle_errors,
    money,
    note_servicer,
    note_tranches,
    servicer_status,
    signer,
    tx_hash,
    when,
)

app = typer.Typer(
    help="Servicer (SPV account) actions anyone may call, and withdrawals of fees and equity. "
    "Key: `GPUCREDIT_SERVICER_KEY` unless --key-env/--keystore says otherwise.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _caller(key_env, keystore, password_file):
    return signer("servicer", key_env, keystore, password_file)


@app.command("close-period")
@handle_errors
def close_period(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Close the note's next period (anyone; the oracle nodes normally do it): needs the
    period's report on-chain, or the period stale (then it closes as missed)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    if servicer_status(servicer) == "Released":
        raise CliError(f"note {note_id} is released: no period is left to close")
    period = servicer.functions.nextPeriodToClose().call()
    receipt = c.send(servicer.functions.closePeriod(), caller, f"close period {period}")
    closed = event_args(servicer, receipt, "PeriodClosed")
    result = closed.get("result", {})
    done(
        {
            "note_id": note_id,
            "period": period,
            "dscr_bps": result.get("dscrBps"),
            "ltv_bps": result.get("ltvBps"),
            "breaches": result.get("breaches"),
            "step_bps": result.get("newStepBps"),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: period {period} closed",
        decimals=c.decimals,
    )


@app.command()
@handle_errors
def disburse(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Pay the servicer's unallocated cash (drawn capital) on to the operator (anyone; only
    the operator receives while the note performs)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    receipt = c.send(servicer.functions.disburseCapital(), caller, "disburse the capital")
    paid = event_args(servicer, receipt, "CapitalDisbursed")
    done(
        {
            "note_id": note_id,
            "operator": paid.get("operator"),
            "amount": paid.get("amount", 0),
            "status": servicer_status(servicer),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: capital disbursed",
        decimals=c.decimals,
    )


@app.command()
@handle_errors
def cure(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Clear an outstanding top-up requirement once collateral meets it (anyone)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    required, deadline = servicer.functions.topUp().call()
    if deadline == 0:
        raise CliError(f"note {note_id} has no top-up requirement outstanding")
    have = sum(servicer.functions.collateral().call())
    if have < required:
        raise CliError(
            f"note {note_id}: collateral {money(have, c.decimals)} is below the requirement "
            f"{money(required, c.decimals)} (due {when(deadline)}): pledge more or post cash "
            "(`gpucredit operator top-up`)"
        )
    receipt = c.send(servicer.functions.cureTopUp(), caller, "cure the top-up")
    done(
        {"note_id": note_id, "required": required, "collateral": have, "tx": tx_hash(receipt)},
        json_out,
        f"note {note_id}: top-up cured",
        decimals=c.decimals,
    )


@app.command("declare-default")
@handle_errors
def declare_default(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Declare the note in default once a top-up's cure period lapsed uncured (anyone); the
    trustee may then step in (`gpucredit trustee step-in`)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    status = servicer_status(servicer)
    if status != "Performing":
        raise CliError(f"note {note_id} is {status}, not Performing")
    required, deadline = servicer.functions.topUp().call()
    if deadline == 0:
        raise CliError(f"note {note_id} has no top-up requirement outstanding: no default")
    if c.now() <= deadline:
        raise CliError(f"note {note_id}: the cure period runs until {when(deadline)}")
    receipt = c.send(servicer.functions.declareDefault(), caller, "declare the default")
    done(
        {"note_id": note_id, "required": required, "deadline": deadline, "tx": tx_hash(receipt)},
        json_out,
        f"note {note_id}: default declared",
        decimals=c.decimals,
    )


@app.command("record-defects")
@handle_errors
def record_defects(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Count the defects proven in the note's batches since the last count (anyone): a
    performing note whose collateral is now short gets a top-up requirement."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    registry = c.core("collateral_registry")
    defects = registry.functions.noteInfo(note_id).call()[4]
    seen = servicer.functions.defectsSeen().call()
    if defects <= seen:
        raise CliError(f"note {note_id}: no new defect ({defects} proven, {seen} recorded)")
    receipt = c.send(servicer.functions.recordDefects(), caller, "record the defects")
    required = event_args(servicer, receipt, "TopUpRequired")
    done(
        {
            "note_id": note_id,
            "new_defects": defects - seen,
            "defects": defects,
            "top_up_required": required.get("requiredCollateral", 0),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: defects recorded",
        decimals=c.decimals,
    )


def _tranche_states(c: Client, note_id: int) -> dict[str, str]:
    return {
        symbol: TRANCHE_STATES[contract.functions.state().call()]
        for symbol, contract in note_tranches(c, c.manifest.note(note_id), None)
    }


@app.command("release-collateral")
@handle_errors
def release_collateral(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Release the note's collateral once every tranche is repaid (or cancelled): the cash
    left pays fees and any interest still due, the rest is the operator's equity
    (`servicer withdraw`), and the GPUs are free again (anyone)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    status = servicer_status(servicer)
    if status == "Released":
        raise CliError(f"note {note_id} is already released")
    states = _tranche_states(c, note_id)
    open_ = [f"{s} {state}" for s, state in states.items() if state not in ("Repaid", "Cancelled")]
    if open_:
        raise CliError(
            f"note {note_id} is not repaid ({', '.join(open_)}): the collateral is released "
            "only when every tranche is Repaid or Cancelled"
        )
    receipt = c.send(servicer.functions.releaseCollateral(), caller, "release the collateral")
    wound = event_args(servicer, receipt, "WoundUp")
    done(
        {
            "note_id": note_id,
            "cash_in": wound.get("cashIn", 0),
            "fees": wound.get("fees", 0),
            "equity": wound.get("residual", 0),
            "collateral_status": "Released",
            "tranches": _tranche_states(c, note_id),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: collateral released",
        decimals=c.decimals,
    )


@app.command()
@handle_errors
def withdraw(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Withdraw what the servicer holds for you: fees (the fee recipient), equity (the
    operator; e.g. `--key-env GPUCREDIT_OPERATOR_KEY`), recoveries (the trustee that
    stepped in)."""
    c = client()
    caller = _caller(key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    amount = servicer.functions.withdrawable(caller.address).call()
    if amount == 0:
        raise CliError(
            f"nothing to withdraw for {caller.address} from note {note_id}'s servicer "
            "(only the fee recipient, the operator and a trustee that stepped in are paid here)"
        )
    usd = c.core("stablecoin").functions
    before = usd.balanceOf(caller.address).call()
    receipt = c.send(servicer.functions.withdraw(), caller, "withdraw")
    event = event_args(servicer, receipt, "Withdrawn")
    done(
        {
            "note_id": note_id,
            "account": caller.address,
            "amount": event.get("amount", amount),
            "fees": bool(event.get("fees", False)),
            "balance_after": usd.balanceOf(caller.address).call(),
            "balance_before": before,
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: withdrawn",
        decimals=c.decimals,
    )


@app.command()
@handle_errors
def show(note_id: NoteId, json_out: JsonOut = False) -> None:
    """The servicer at a glance (read-only, no key): status, next period to close,
    collateral, top-up, reserve, and what the operator and the fee recipient may withdraw."""
    from gpucredit.cli_common import kv_table, out

    c = client()
    servicer = note_servicer(c, note_id)
    s = servicer.functions
    value, cash = s.collateral().call()
    required, deadline = s.topUp().call()
    operator = c.manifest.note(note_id).fleet.operator
    result = {
        "note_id": note_id,
        "status": servicer_status(servicer),
        "next_period_to_close": s.nextPeriodToClose().call(),
        "collateral_value": value,
        "cash_collateral": cash,
        "top_up_required": required,
        "top_up_deadline": deadline,
        "reserve": s.reserveBalance().call(),
        "period_revenue_cash": s.periodRevenueCash().call(),
        "trustee": s.trustee().call(),
        "operator_withdrawable": s.withdrawable(operator).call(),
        "chain_time": c.now(),
    }
    d = c.decimals

    def render(r: dict[str, Any]) -> None:
        items = dict(r)
        for key in (
            "collateral_value",
            "cash_collateral",
            "top_up_required",
            "reserve",
            "period_revenue_cash",
            "operator_withdrawable",
        ):
            items[key] = money(r[key], d)
        items["top_up_deadline"] = when(r["top_up_deadline"])
        items["chain_time"] = when(r["chain_time"])
        out.print(kv_table(f"note {note_id}: servicer", items))

    emit(result, json_out, render)
