"""`gpucredit dev ...`: shortcuts for a local development chain only.

Every command first checks that the node is a local development node
(anvil, Hardhat or Ganache, by `web3_clientVersion`) on a local chain id
(31337 or 1337) and refuses otherwise, before it reads a manifest or a key.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from web3 import HTTPProvider, Web3

from gpucredit.chain import ChainError
from gpucredit.cli_common import (
    SETTINGS,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    NoteId,
    PasswordFile,
    address_arg,
    client,
    done,
    handle_errors,
    money,
    units,
    when,
)

LOCAL_CHAIN_IDS = (31337, 1337)
LOCAL_NODES = ("anvil", "hardhat", "ganache")

app = typer.Typer(
    help="Local development chains only (chain id 31337 or 1337, an anvil, Hardhat or Ganache "
    "node): mint the mock stablecoin, move chain time to the next period end.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def require_local(rpc_url: str) -> tuple[Web3, str]:
    """The node's web3 and its family (anvil, hardhat, ganache), or a ChainError."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        chain_id = w3.eth.chain_id
        version = str(w3.client_version)
    except Exception as exc:  # noqa: BLE001 - requests/OS errors differ by cause
        raise ChainError(f"cannot reach the RPC endpoint {rpc_url}: {exc}") from None
    family = next((name for name in LOCAL_NODES if name in version.lower()), None)
    if chain_id not in LOCAL_CHAIN_IDS or family is None:
        raise ChainError(
            f"refusing: `gpucredit dev` runs on a local development chain only, and {rpc_url} is "
            f"chain {chain_id} served by {version!r} (needs chain id 31337 or 1337 and an "
            "anvil, Hardhat or Ganache node)"
        )
    return w3, family


def _rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in response:
        raise ChainError(f"{method}: {response['error'].get('message', response['error'])}")
    return response.get("result")


@app.command()
@handle_errors
def fund(
    address: Annotated[str, typer.Argument(help="Account to fund.")],
    amount: Annotated[str, typer.Argument(help="Mock stablecoin to mint, e.g. 50M or 250k.")],
    eth: Annotated[
        float,
        typer.Option(
            help="Also set the account's ether balance to this much (gas money); 0: leave it."
        ),
    ] = 0.0,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Mint the deployment's mock stablecoin to ADDRESS. Signed by the mock's owner: the key
    in `GPUCREDIT_DEV_KEY` (or --key-env/--keystore) if given, else sent from the owner's
    address through the node's account impersonation (anvil, Hardhat)."""
    import os

    w3, family = require_local(SETTINGS.rpc_url)
    to = address_arg(address, "ADDRESS")
    if eth < 0:
        raise CliError("--eth must not be negative")
    c = client()
    record = c.manifest.contracts.get("stablecoin")
    if record is None or record.external or record.contract != "MockStablecoin":
        raise CliError(
            "the deployment's stablecoin is not the mock this chain deployed: nothing to mint"
        )
    value = units(amount, c.decimals)
    usd = c.core("stablecoin")
    owner = usd.functions.owner().call()
    variable = key_env or "GPUCREDIT_DEV_KEY"
    if keystore is not None or os.environ.get(variable):
        from gpucredit.cli_common import signer

        account = signer("dev", variable, keystore, password_file)
        if account.address != owner:
            raise ChainError(f"the key's account {account.address} is not the mock's owner {owner}")
        receipt = c.send(usd.functions.mint(to, value), account, "mint the mock stablecoin")
    else:
        if family == "ganache":
            raise CliError("Ganache: pass the mock owner's key in GPUCREDIT_DEV_KEY")
        _rpc(w3, f"{family}_impersonateAccount", owner)
        try:
            txid = usd.functions.mint(to, value).transact({"from": owner})
            receipt = c.w3.eth.wait_for_transaction_receipt(txid, timeout=60)
        finally:
            _rpc(w3, f"{family}_stopImpersonatingAccount", owner)
        if receipt["status"] != 1:
            raise ChainError("mint reverted")
    if eth:
        _rpc(w3, f"{family}_setBalance", to, hex(int(eth * 10**18)))
    done(
        {
            "address": to,
            "minted": value,
            "balance": usd.functions.balanceOf(to).call(),
            "eth": w3.eth.get_balance(to),
            "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
        },
        json_out,
        f"{to}: +{money(value, c.decimals)} mock stablecoin",
        decimals=c.decimals,
    )


def _warp(w3: Web3, c: Any, target: int) -> int:
    now = c.now()
    while now < target:
        _rpc(w3, "evm_increaseTime", target - now)
        _rpc(w3, "evm_mine")
        now = c.now()
    return now


@app.command("next-period")
@handle_errors
def next_period(
    note_id: NoteId,
    plus: Annotated[
        int,
        typer.Option(help="Seconds past the period end to land at (e.g. the nodes' settle time)."),
    ] = 0,
    json_out: JsonOut = False,
) -> None:
    """Move chain time to the end of the note's next period to close (plus `--plus`
    seconds) with evm_increaseTime and evm_mine; once the note is released, to the next
    period end after the latest block. Does nothing when chain time is past it already
    (close that period first)."""
    w3, _ = require_local(SETTINGS.rpc_url)
    if plus < 0:
        raise CliError("--plus must not be negative")
    c = client()
    note = c.manifest.note(note_id)
    fleet = c.core("telemetry_oracle").functions.fleet(note_id).call()
    genesis, length = fleet[2], fleet[3]
    servicer = c.record(note.servicer).functions
    before = c.now()
    if servicer.status().call() != 3:  # not Released: the period the note closes next
        period = servicer.nextPeriodToClose().call()
    else:
        period = max(before - genesis, 0) // length
    end = genesis + (period + 1) * length
    now = _warp(w3, c, end + plus)
    done(
        {
            "note_id": note_id,
            "period": period,
            "period_end": end,
            "before": before,
            "now": now,
            "advanced": now - before,
        },
        json_out,
        f"note {note_id}: period {period} ends {when(end)}; chain time now {when(now)}",
        decimals=c.decimals,
    )


@app.command()
@handle_errors
def advance(
    duration: Annotated[str, typer.Argument(help="How long: 3d, 12h, 90s or seconds.")],
    json_out: JsonOut = False,
) -> None:
    """Move chain time forward by DURATION (evm_increaseTime, evm_mine)."""
    from gpucredit.termsheet import parse_duration

    w3, _ = require_local(SETTINGS.rpc_url)
    try:
        seconds = int(duration) if duration.isdigit() else parse_duration(duration)
    except ValueError as exc:
        raise CliError(f"DURATION {duration!r}: {exc}") from None
    if seconds <= 0:
        raise CliError("DURATION must be above zero")
    c = client()
    before = c.now()
    now = _warp(w3, c, before + seconds)
    done(
        {"before": before, "now": now, "advanced": now - before},
        json_out,
        f"chain time {when(before)} -> {when(now)}",
        decimals=c.decimals,
    )
