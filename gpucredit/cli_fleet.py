"""`gpucredit fleet ...`: the oracle's fleet of a note (fleet id = note id).

The fleet admin (the issuer's key: `create-note` needs FLEET_ADMIN_ROLE) queues
a change of the operator key or of the signer set; it waits the oracle's
SIGNER_CHANGE_DELAY, then is executed within the grace period, or cancelled.
Anyone marks a stale period missed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpucredit.chain import ChainError, Client
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
    emit,
    handle_errors,
    kv_table,
    out,
    signer,
    tx_hash,
    when,
)

app = typer.Typer(
    help="Fleet admin (the issuer's key): timelocked operator and signer changes of a note's "
    "oracle fleet; anyone: show the fleet, mark a stale period missed.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _fleet(c: Client, note_id: int) -> tuple[Any, tuple]:
    oracle = c.core("telemetry_oracle")
    try:
        config = oracle.functions.fleet(note_id).call()
    except Exception:  # noqa: BLE001 - FleetUnknown reverts the view
        raise CliError(f"fleet {note_id} is not registered on the oracle") from None
    return oracle, config


def _admin(c: Client, oracle: Any, key_env, keystore, password_file):
    account = signer("issuer", key_env, keystore, password_file)
    role = oracle.functions.FLEET_ADMIN_ROLE().call()
    if not oracle.functions.hasRole(role, account.address).call():
        raise ChainError(
            f"{account.address} lacks FLEET_ADMIN_ROLE on the telemetry oracle: use the "
            "issuer's key (--key-env / --keystore)"
        )
    return account


@app.command()
@handle_errors
def show(note_id: NoteId, json_out: JsonOut = False) -> None:
    """The fleet: operator, consumer, periods, signers and quorum, queued changes."""
    c = client()
    oracle, f = _fleet(c, note_id)
    signers = oracle.functions.signers(note_id).call()
    op_next, op_eta = oracle.functions.pendingOperatorChange(note_id).call()
    sig_next, quorum_next, sig_eta = oracle.functions.pendingSignerChange(note_id).call()
    result = {
        "note_id": note_id,
        "operator": f[0],
        "consumer": f[1],
        "genesis": f[2],
        "period_length": f[3],
        "heartbeat": f[4],
        "quorum": f[5],
        "next_period": f[6],
        "signers": signers,
        "pending_operator": {"operator": op_next, "eta": op_eta} if op_eta else None,
        "pending_signers": {"signers": sig_next, "quorum": quorum_next, "eta": sig_eta}
        if sig_eta
        else None,
    }

    def render(r: dict[str, Any]) -> None:
        items = {k: v for k, v in r.items() if not k.startswith("pending")}
        items["signers"] = ", ".join(r["signers"])
        items["genesis"] = when(r["genesis"])
        if r["pending_operator"]:
            p = r["pending_operator"]
            items["queued operator"] = f"{p['operator']} from {when(p['eta'])}"
        if r["pending_signers"]:
            p = r["pending_signers"]
            items["queued signers"] = (
                f"{', '.join(p['signers'])} quorum {p['quorum']} from {when(p['eta'])}"
            )
        out.print(kv_table(f"fleet {note_id}", items))

    emit(result, json_out, render)


@app.command("queue-operator")
@handle_errors
def queue_operator(
    note_id: NoteId,
    operator: Annotated[str, typer.Argument(help="The operator's new telemetry key (address).")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Queue a change of the fleet's operator key (replaces a queued one)."""
    target = address_arg(operator, "OPERATOR")
    c = client()
    oracle, f = _fleet(c, note_id)
    if f[0] == target:
        raise CliError(f"{target} is fleet {note_id}'s operator already")
    admin = _admin(c, oracle, key_env, keystore, password_file)
    receipt = c.send(
        oracle.functions.queueOperatorChange(note_id, target), admin, "queue the operator change"
    )
    _, eta = oracle.functions.pendingOperatorChange(note_id).call()
    done(
        {"note_id": note_id, "operator": target, "eta": eta, "tx": tx_hash(receipt)},
        json_out,
        f"fleet {note_id}: operator change queued (executable from {when(eta)})",
    )


@app.command("queue-signers")
@handle_errors
def queue_signers(
    note_id: NoteId,
    signer_addresses: Annotated[
        list[str], typer.Option("--signer", help="A signer address; repeat for each signer.")
    ],
    quorum: Annotated[int, typer.Option(help="Signatures a report needs: 2f + 1, n >= 3f + 1.")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Queue a new signer set and quorum for the fleet (replaces a queued one)."""
    signers = [address_arg(s, "--signer") for s in signer_addresses]
    if len(set(signers)) != len(signers):
        raise CliError("a --signer is repeated")
    n = len(signers)
    if quorum < 1 or quorum % 2 == 0 or n < 3 * ((quorum - 1) // 2) + 1 or quorum > n or n > 16:
        raise CliError(
            f"quorum {quorum} of {n} signers breaks the rule quorum = 2f + 1, n >= 3f + 1 "
            "(at most 16 signers)"
        )
    ordered = sorted(signers, key=lambda a: int(a, 16))
    c = client()
    oracle, _ = _fleet(c, note_id)
    admin = _admin(c, oracle, key_env, keystore, password_file)
    receipt = c.send(
        oracle.functions.queueSignerChange(note_id, ordered, quorum),
        admin,
        "queue the signer change",
    )
    _, _, eta = oracle.functions.pendingSignerChange(note_id).call()
    done(
        {
            "note_id": note_id,
            "signers": ordered,
            "quorum": quorum,
            "eta": eta,
            "tx": tx_hash(receipt),
        },
        json_out,
        f"fleet {note_id}: signer change queued (executable from {when(eta)})",
    )


def _execute_or_cancel(note_id, what, action, key_env, keystore, password_file, json_out):
    c = client()
    oracle, _ = _fleet(c, note_id)
    if what == "operator":
        pending, eta = oracle.functions.pendingOperatorChange(note_id).call()
    else:
        pending, _, eta = oracle.functions.pendingSignerChange(note_id).call()
    if eta == 0:
        raise CliError(f"fleet {note_id} has no {what} change queued")
    if action == "execute" and c.now() < eta:
        raise CliError(f"fleet {note_id}: the {what} change is executable from {when(eta)}")
    admin = _admin(c, oracle, key_env, keystore, password_file)
    name = f"{action}{'Operator' if what == 'operator' else 'Signer'}Change"
    receipt = c.send(getattr(oracle.functions, name)(note_id), admin, f"{action} the {what} change")
    done(
        {"note_id": note_id, what: pending, "action": action, "tx": tx_hash(receipt)},
        json_out,
        f"fleet {note_id}: {what} change {action}d",
    )


@app.command("execute-operator")
@handle_errors
def execute_operator(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Apply the queued operator change once its delay has passed."""
    _execute_or_cancel(note_id, "operator", "execute", key_env, keystore, password_file, json_out)


@app.command("cancel-operator")
@handle_errors
def cancel_operator(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Drop the queued operator change."""
    _execute_or_cancel(note_id, "operator", "cancel", key_env, keystore, password_file, json_out)


@app.command("execute-signers")
@handle_errors
def execute_signers(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Install the queued signer set once its delay has passed."""
    _execute_or_cancel(note_id, "signers", "execute", key_env, keystore, password_file, json_out)


@app.command("cancel-signers")
@handle_errors
def cancel_signers(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Drop the queued signer change."""
    _execute_or_cancel(note_id, "signers", "cancel", key_env, keystore, password_file, json_out)


@app.command("mark-missed")
@handle_errors
def mark_missed(
    note_id: NoteId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Mark the fleet's next period missed once it is stale (period end + heartbeat passed;
    anyone; key `GPUCREDIT_SERVICER_KEY` by default)."""
    c = client()
    oracle, f = _fleet(c, note_id)
    period = f[6]
    _, end = oracle.functions.periodBounds(note_id, period).call()
    if c.now() <= end + f[4]:
        raise CliError(f"fleet {note_id}: period {period} is stale only after {when(end + f[4])}")
    caller = signer("servicer", key_env, keystore, password_file)
    receipt = c.send(oracle.functions.markMissed(note_id), caller, f"mark period {period} missed")
    done(
        {"note_id": note_id, "period": period, "tx": tx_hash(receipt)},
        json_out,
        f"fleet {note_id}: period {period} marked missed",
    )
