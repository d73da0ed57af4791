"""`gpucredit kyc ...` (the identity registry's KYC agent) and the tranche
guardian's `issuer pause` / `issuer unpause` (the issuer holds GUARDIAN_ROLE
on its tranches). `issuer whitelist` adds identities."""

from __future__ import annotations

from typing import Annotated

import typer

from gpucredit.cli_common import (
    TRANCHE_STATES,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    address_arg,
    client,
    done,
    emit,
    handle_errors,
    note_tranches,
    out,
    signer,
    tx_hash,
    when,
)

app = typer.Typer(
    help="KYC agent (AGENT_ROLE on the identity registry; the issuer's key by default): "
    "show, freeze, unfreeze or remove an identity. `issuer whitelist` adds them.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
AccountArg = Annotated[str, typer.Argument(help="The identity's address.")]


def _identity(c, account: str) -> dict:
    identities = c.core("identity_registry").functions
    country, expires_at, frozen = identities.identityOf(account).call()
    return {
        "account": account,
        "country": country,
        "expires_at": expires_at,
        "frozen": frozen,
        "verified": identities.isVerified(account).call(),
    }


@app.command()
@handle_errors
def show(account: AccountArg, json_out: JsonOut = False) -> None:
    """An identity: country, KYC expiry, frozen, verified now."""
    who = address_arg(account, "ACCOUNT")
    c = client()
    result = _identity(c, who)
    if not result["expires_at"]:
        result["note"] = "not registered"
    emit(
        result,
        json_out,
        lambda r: out.print(
            f"{who}: country {r['country']}, KYC until {when(r['expires_at'])}, "
            f"{'frozen' if r['frozen'] else 'not frozen'}, "
            f"{'verified' if r['verified'] else 'NOT verified'}"
        ),
    )


def _agent_call(account: str, action: str, json_out, key_env, keystore, password_file) -> None:
    who = address_arg(account, "ACCOUNT")
    c = client()
    before = _identity(c, who)
    if not before["expires_at"]:
        raise CliError(f"{who} has no identity on the registry")
    if action == "freeze" and before["frozen"]:
        raise CliError(f"{who} is frozen already")
    if action == "unfreeze" and not before["frozen"]:
        raise CliError(f"{who} is not frozen")
    identities = c.core("identity_registry")
    fn = {
        "freeze": lambda: identities.functions.setFrozen(who, True),
        "unfreeze": lambda: identities.functions.setFrozen(who, False),
        "remove": lambda: identities.functions.removeIdentity(who),
    }[action]()
    agent = signer("issuer", key_env, keystore, password_file)
    receipt = c.send(fn, agent, f"{action} {who}")
    done({**_identity(c, who), "tx": tx_hash(receipt)}, json_out, f"{who}: {action}")


@app.command()
@handle_errors
def freeze(
    account: AccountArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Freeze an identity: it can neither transfer, receive, claim nor redeem."""
    _agent_call(account, "freeze", json_out, key_env, keystore, password_file)


@app.command()
@handle_errors
def unfreeze(
    account: AccountArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Lift a freeze."""
    _agent_call(account, "unfreeze", json_out, key_env, keystore, password_file)


@app.command()
@handle_errors
def remove(
    account: AccountArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Remove an identity from the registry (it may no longer subscribe or receive)."""
    _agent_call(account, "remove", json_out, key_env, keystore, password_file)


# ---- guardian (registered under `issuer`) -----------------------------------------


def _pause(note_id: int, tranche: str | None, on: bool, json_out, key_env, keystore, password_file):
    c = client()
    guardian = signer("issuer", key_env, keystore, password_file)
    changed = []
    for symbol, contract in note_tranches(c, c.manifest.note(note_id), tranche):
        if contract.functions.paused().call() == on:
            continue
        state = TRANCHE_STATES[contract.functions.state().call()]
        fn = contract.functions.pause() if on else contract.functions.unpause()
        c.send(fn, guardian, f"{'pause' if on else 'unpause'} {symbol} ({state})")
        changed.append(symbol)
    if not changed:
        raise CliError(
            f"note {note_id}: every selected tranche is {'paused' if on else 'unpaused'} already"
        )
    done(
        {"note_id": note_id, "tranches": ", ".join(changed), "paused": on},
        json_out,
        f"note {note_id}: {'paused' if on else 'unpaused'}",
    )


TrancheSel = Annotated[
    str | None, typer.Option(help="Only this tranche (symbol, `senior`, `junior`); default: all.")
]


@handle_errors
def pause(
    note_id: NoteId,
    tranche: TrancheSel = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Pause the note's tranches (guardian: transfers, claims and redemptions stop)."""
    _pause(note_id, tranche, True, json_out, key_env, keystore, password_file)


@handle_errors
def unpause(
    note_id: NoteId,
    tranche: TrancheSel = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Unpause the note's tranches (guardian)."""
    _pause(note_id, tranche, False, json_out, key_env, keystore, password_file)
