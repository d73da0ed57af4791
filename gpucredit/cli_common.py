"""What every `gpucredit` command shares: connection, keys, output, errors, amounts."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from web3.logs import DISCARD

from gpucredit.chain import Client, load_key
from gpucredit.deployment import GpucreditError, NoteRecord
from gpucredit.termsheet import parse_amount

DEFAULT_RPC_URL = "http://127.0.0.1:8545"

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@dataclass
class Settings:
    """Set by the root command's options (see gpucredit/cli.py)."""

    rpc_url: str = DEFAULT_RPC_URL
    manifest: Path | None = None
    artifacts: Path | None = None


SETTINGS = Settings()


def client() -> Client:
    return Client.connect(SETTINGS.rpc_url, SETTINGS.manifest, SETTINGS.artifacts)


# ---- options --------------------------------------------------------------

JsonOut = Annotated[
    bool,
    typer.Option("--json", help="Print the result as one JSON document (for scripts), no tables."),
]
KeyEnv = Annotated[
    str | None,
    typer.Option(
        "--key-env",
        metavar="VAR",
        help="Environment variable that holds the signing key (hex). "
        "Default: `GPUCREDIT_<ROLE>_KEY`, e.g. GPUCREDIT_LENDER_KEY.",
    ),
]
Keystore = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        metavar="FILE",
        help="Sign with an encrypted Ethereum keystore (v3 JSON) file instead of a key in the "
        "environment. Password: --password-file, GPUCREDIT_KEYSTORE_PASSWORD or a prompt.",
    ),
]
PasswordFile = Annotated[
    Path | None,
    typer.Option("--password-file", metavar="FILE", help="File holding the keystore's password."),
]
NoteId = Annotated[int, typer.Argument(help="Note id (as printed by `issuer create-note`).")]


def signer(role: str, key_env: str | None, keystore: Path | None, password_file: Path | None):
    """The signing account of `role` (issuer, lender, operator, attestor)."""
    return load_key(
        key_env=key_env or f"GPUCREDIT_{role.upper()}_KEY",
        keystore=keystore,
        password_file=password_file,
        prompt=(lambda text: typer.prompt(text, hide_input=True)) if sys.stdin.isatty() else None,
    )


# ---- errors ---------------------------------------------------------------


class CliError(GpucreditError):
    """A refusal with the reason and what to do."""


HANDLED = (GpucreditError,)  # CliError, ChainError, ManifestError, TermSheetError, InputError


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Prints known errors as `error: ...` (and as JSON with --json) and exits 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HANDLED as exc:
            if kwargs.get("json_out"):
                print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
            # the message is text, not markup: `[OPTIONS]` or `[floor, cap]` must stay
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper


# ---- output ---------------------------------------------------------------


def emit(result: Any, json_out: bool, render: Callable[[Any], None]) -> None:
    if json_out:
        print(json.dumps(result, indent=2, default=_json_default))
    else:
        render(result)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(title=escape(title), title_justify="left")
    for column in columns:
        t.add_column(escape(column), overflow="fold")
    for row in rows:
        t.add_row(*(escape(str(v)) for v in row))
    return t


def kv_table(title: str, items: dict[str, Any]) -> Table:
    t = Table(title=escape(title), title_justify="left", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in items.items():
        t.add_row(escape(key), escape(str(value)))
    return t


def progress(json_out: bool) -> Progress:
    """A progress bar on stderr (hidden with --json)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=json_out,
        transient=False,
    )


# ---- amounts and rates ------------------------------------------------------


def units(text: str, decimals: int, what: str = "amount") -> int:
    try:
        value = parse_amount(text, decimals)
    except ValueError as exc:
        raise CliError(f"{what} {text!r}: {exc}") from None
    if value == 0:
        raise CliError(f"{what} must be above zero")
    return value


def money(amount: int, decimals: int) -> str:
    return f"{Decimal(amount) / Decimal(10**decimals):,.2f}"


def pct(bps: int) -> str:
    return f"{bps / 100:.2f}%"


def when(ts: int) -> str:
    from datetime import UTC, datetime

    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---- notes ----------------------------------------------------------------

TRANCHE_STATES = ["Subscription", "Closed", "Active", "Repaid", "Cancelled", "WrittenOff"]
SERVICER_STATUS = ["Performing", "Defaulted", "SteppedIn", "Released"]


def servicer_status(servicer: Any) -> str:
    return SERVICER_STATUS[servicer.functions.status().call()]


def event_args(contract: Any, receipt: Any, name: str) -> dict[str, Any]:
    """The arguments of the first `name` event in `receipt` ({} when there is none)."""
    logs = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
    return dict(logs[0]["args"]) if logs else {}


NOTE_STATUS = ["None", "Open", "Released", "SteppedIn"]
BATCH_STATUS = [
    "None",
    "Registering",
    "Registered",
    "Attested",
    "Pledged",
    "Voided",
    "Rejected",
]
BREACHES = {
    1: "DSCR",
    2: "LTV",
    4: "uptime SLA",
    8: "stale report",
    16: "low utilization",
    32: "top-up open",
    64: "default",
}


def breach_names(mask: int) -> list[str]:
    return [name for bit, name in BREACHES.items() if mask & bit]


def note_tranches(c: Client, note: NoteRecord, which: str | None) -> list[tuple[str, Any]]:
    """[(symbol, web3 contract)] for `which` (a symbol, senior/junior) or all."""
    if which is None or which.lower() == "all":
        items = list(note.tranches.items())
    else:
        record = note.tranche(which)
        items = [(s, r) for s, r in note.tranches.items() if r.address == record.address]
    return [(symbol, c.record(record)) for symbol, record in items]


def account_for(account: LocalAccount | None, address: str | None) -> str:
    if address:
        from eth_utils import is_address, to_checksum_address

        if not is_address(address):
            raise CliError(f"--address {address!r} is not an address")
        return to_checksum_address(address)
    assert account is not None
    return account.address


def address_arg(text: str, what: str) -> str:
    """A checksummed address from user input, or a CliError naming the argument."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(text):
        raise CliError(f"{what} {text!r} is not an address (0x followed by 40 hex digits)")
    address = to_checksum_address(text)
    if int(address, 16) == 0:
        raise CliError(f"{what} is the zero address")
    return address


def tx_hash(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def note_servicer(c: Client, note_id: int) -> Any:
    """The web3 contract of a note's servicer (the note must be in the manifest)."""
    return c.record(c.manifest.note(note_id).servicer)


MONEY_KEYS = {
    "amount",
    "required",
    "collateral",
    "top_up_required",
    "cash_in",
    "cashIn",
    "fees",
    "equity",
    "balance",
    "balance_after",
    "balance_before",
    "cash_collateral_applied",
    "minted",
    "seniorInterest",
    "seniorPrincipal",
    "juniorInterest",
    "juniorPrincipal",
    "residual",
}
TIME_KEYS = {"eta", "deadline", "queued_until", "period_end", "before", "now"}


def done(result: dict[str, Any], json_out: bool, title: str, decimals: int | None = None) -> None:
    """Prints a one-transaction command's result: JSON (raw units), or a two-column
    table with amounts in stablecoin units (when `decimals` is given) and times in UTC."""

    def shown(key: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        if key in MONEY_KEYS and decimals is not None:
            return money(value, decimals)
        if key in TIME_KEYS:
            return when(value)
        return value

    emit(
        result,
        json_out,
        lambda r: out.print(kv_table(title, {k: shown(k, v) for k, v in r.items()})),
    )
