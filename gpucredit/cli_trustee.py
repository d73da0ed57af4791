"""`gpucredit trustee ...`: enforcement after a default (step in, wind down, hand over)."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucredit.chain import ChainError
from gpucredit.cli_common import (
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    address_arg,
    client,
    done,
    event_args,
    handle_errors,
    note_servicer,
    servicer_status,
    signer,
    tx_hash,
)

app = typer.Typer(
    help="Trustee workflows: step in after a default, finish the wind-down, hand the role over.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _trustee(c, note_id, key_env, keystore, password_file):
    account = signer("trustee", key_env, keystore, password_file)
    servicer = note_servicer(c, note_id)
    trustee = servicer.functions.trustee().call()
    if trustee != account.address:
        raise ChainError(
            f"this key ({account.address}) is not note {note_id}'s trustee ({trustee}): "
            "use the trustee's key (GPUCREDIT_TRUSTEE_KEY, --key-env or --keystore)"
        )
    return account, servicer


@app.command("step-in")
@handle_errors
def step_in(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Step in on a defaulted note: the liens on its GPUs pass to you, cash collateral and
    the reserve join the wind-down cash."""
    c = client()
    trustee, servicer = _trustee(c, note_id, key_env, keystore, password_file)
    status = servicer_status(servicer)
    if status != "Defaulted":
        raise CliError(
            f"note {note_id} is {status}: step-in needs a declared default "
            "(`gpucredit servicer declare-default`)"
        )
    receipt = c.send(servicer.functions.stepIn(), trustee, "step in")
    stepped = event_args(servicer, receipt, "SteppedIn")
    done(
        {
            "note_id": note_id,
            "trustee": trustee.address,
            "cash_collateral_applied": stepped.get("cashCollateralApplied", 0),
            "status": servicer_status(servicer),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"note {note_id}: trustee stepped in",
        decimals=c.decimals,
    )


@app.command("finish-wind-down")
@handle_errors
def finish_wind_down(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """End the wind-down: all cash pays fees, senior then junior interest and principal;
    tranches still owed anything are written off (the loss), the rest is the operator's."""
    c = client()
    trustee, servicer = _trustee(c, note_id, key_env, keystore, password_file)
    status = servicer_status(servicer)
    if status != "SteppedIn":
        raise CliError(f"note {note_id} is {status}: only a stepped-in note is wound down")
    receipt = c.send(servicer.functions.finishWindDown(), trustee, "finish the wind-down")
    result = {
        "note_id": note_id,
        "status": servicer_status(servicer),
        "tx": tx_hash(receipt),
    }
    result.update(event_args(servicer, receipt, "WoundUp"))
    done(result, json_out, f"note {note_id}: wind-down finished", decimals=c.decimals)


@app.command("transfer")
@handle_errors
def transfer_role(
    note_id: NoteId,
    new_trustee: Annotated[str, typer.Argument(help="Address of the new trustee.")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Hand the trustee role of the note over to another address."""
    target = address_arg(new_trustee, "NEW_TRUSTEE")
    c = client()
    trustee, servicer = _trustee(c, note_id, key_env, keystore, password_file)
    if target == trustee.address:
        raise CliError(f"{target} is the trustee already")
    receipt = c.send(servicer.functions.transferTrustee(target), trustee, "hand over the trustee")
    done(
        {"note_id": note_id, "old": trustee.address, "new": target, "tx": tx_hash(receipt)},
        json_out,
        f"note {note_id}: trustee handed over",
        decimals=c.decimals,
    )
