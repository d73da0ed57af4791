"""`gpucredit operator ...` (fleet, collateral, telemetry, revenue) and `gpucredit attestor ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from web3.logs import DISCARD

from gpucredit.chain import ChainError, Client
from gpucredit.cli_common import (
    BATCH_STATUS,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    PasswordFile,
    client,
    emit,
    err,
    handle_errors,
    kv_table,
    money,
    out,
    progress,
    signer,
    table,
    units,
    when,
)
from gpucredit.cli_inputs import batch_file, count_rows, read_fleet, read_telemetry
from gpucredit.merkle import MerkleTree, text_id

app = typer.Typer(
    help="Operator workflows: register and pledge GPUs, top up, push telemetry, pay revenue.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
attestor_app = typer.Typer(
    help="Attestor workflow: confirm a registered GPU batch (register -> attest -> pledge).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
NoteOpt = Annotated[int, typer.Option("--note", help="Note id the fleet is financed by.")]


def _operator(key_env, keystore, password_file):
    return signer("operator", key_env, keystore, password_file)


def _require_operator_role(c: Client, who: str) -> None:
    registry = c.core("collateral_registry").functions
    if not registry.hasRole(registry.OPERATOR_ROLE().call(), who).call():
        raise ChainError(
            f"{who} lacks OPERATOR_ROLE on the collateral registry: use the operator's key, or "
            "deploy with this address among the operators (scripts/deploy.py operators=...)"
        )


@app.command()
@handle_errors
def register(
    fleet_csv: Annotated[
        Path,
        typer.Argument(
            help="CSV: vendor,serial,model,site,cost,in_service,attestation[,class]; one model "
            "and class per file (see examples/fleet.csv)."
        ),
    ],
    note: NoteOpt,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write the batch file (every GPU leaf, to prove any GPU later). "
            "Default: `<csv>.batch-<id>.json` next to the CSV.",
        ),
    ] = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Register the GPUs of a CSV as ONE Merkle batch (one transaction, whatever the
    count). Each row's attestation file is hashed (keccak256) into its leaf. Every bad
    row is reported (line and column) before anything is sent."""
    c = client()
    operator = _operator(key_env, keystore, password_file)
    registry = c.core("collateral_registry")
    issuer = registry.functions.noteInfo(note).call()[0]
    if int(issuer, 16) == 0:
        raise CliError(f"note {note} does not exist in the collateral registry")
    _require_operator_role(c, operator.address)
    now = c.now()
    with progress(json_out) as bar:
        task = bar.add_task("reading GPUs and hashing attestations", total=count_rows(fleet_csv))
        fleet = read_fleet(
            fleet_csv, decimals=c.decimals, now=now, progress=lambda n: bar.advance(task, n)
        )
        build = bar.add_task("building the Merkle tree", total=1)
        tree = MerkleTree(fleet.leaves)
        bar.advance(build)
        send = bar.add_task("registering the batch (1 transaction)", total=1)
        registration = (
            issuer,
            tree.root,
            len(fleet.rows),
            fleet.total_cost,
            text_id(fleet.model),
            fleet.class_id,
            fleet.in_service_at,
            fleet.attestation_set_hash,
        )
        receipt = c.send(
            registry.functions.registerBatch(registration), operator, "register the batch"
        )
        bar.advance(send)
    batch_id = registry.events.BatchRegistered().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["batchId"]
    record = batch_file(
        fleet,
        batch_id,
        tree.root,
        {
            "issuer": issuer,
            "count": len(fleet.rows),
            "total_cost": fleet.total_cost,
            "model": fleet.model,
            "class": fleet.class_id,
            "in_service_at": fleet.in_service_at,
            "attestation_hash": "0x" + fleet.attestation_set_hash.hex(),
            "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
            "gas_used": receipt["gasUsed"],
        },
    )
    target = out_file or fleet_csv.with_name(f"{fleet_csv.stem}.batch-{batch_id}.json")
    target.write_text(json.dumps(record, indent=1) + "\n")
    result = {
        "batch_id": batch_id,
        "gpus": len(fleet.rows),
        "root": "0x" + tree.root.hex(),
        "total_cost": fleet.total_cost,
        "model": fleet.model,
        "gas_used": receipt["gasUsed"],
        "batch_file": str(target),
    }
    emit(
        result,
        json_out,
        lambda r: out.print(
            f"batch {r['batch_id']}: {r['gpus']:,} GPUs ({r['model']}, cost "
            f"{money(r['total_cost'], c.decimals)}) under root {r['root'][:18]}..., "
            f"{r['gas_used']:,} gas; next: `gpucredit attestor attest {r['batch_id']}`, then "
            f"`gpucredit operator pledge {r['batch_id']} --note {note}`; "
            f"batch file {r['batch_file']}"
        ),
    )


def _batch(c: Client, batch_id: int) -> tuple:
    header = c.core("collateral_registry").functions.batchInfo(batch_id).call()
    if header[5] == 0:
        raise CliError(f"batch {batch_id} does not exist")
    return header


@app.command()
@handle_errors
def pledge(
    batch_id: Annotated[int, typer.Argument(help="Batch id (printed by `operator register`).")],
    note: NoteOpt,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Pledge an attested batch to a note (its GPUs then secure the note's lenders)."""
    c = client()
    operator = _operator(key_env, keystore, password_file)
    header = _batch(c, batch_id)
    if header[5] == 1:
        raise CliError(
            f"batch {batch_id} is Registered, not Attested yet: the attestor runs "
            f"`gpucredit attestor attest {batch_id}` first"
        )
    registry = c.core("collateral_registry")
    receipt = c.send(
        registry.functions.pledgeBatch(batch_id, note), operator, f"pledge batch {batch_id}"
    )
    value = registry.events.BatchPledged().process_receipt(receipt, errors=DISCARD)[0]["args"][
        "collateralValue"
    ]
    emit(
        {"batch_id": batch_id, "note_id": note, "note_collateral_value": value},
        json_out,
        lambda r: out.print(
            f"batch {batch_id} pledged to note {note}: "
            f"collateral value now {money(value, c.decimals)}"
        ),
    )


@app.command("top-up")
@handle_errors
def top_up(
    note: NoteOpt,
    batch: Annotated[
        int | None, typer.Option(help="Pledge this attested batch as the top-up.")
    ] = None,
    cash: Annotated[
        str | None, typer.Option(help="Post this much stablecoin as cash collateral instead.")
    ] = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Answer a top-up requirement: pledge another batch or post cash collateral, then
    clear the requirement (cureTopUp) when collateral now suffices."""
    if (batch is None) == (cash is None):
        raise CliError("give exactly one of --batch ID or --cash AMOUNT")
    c = client()
    operator = _operator(key_env, keystore, password_file)
    servicer = c.record(c.manifest.note(note).servicer)
    required, deadline = servicer.functions.topUp().call()
    before = sum(servicer.functions.collateral().call())
    if batch is not None:
        registry = c.core("collateral_registry")
        c.send(registry.functions.pledgeBatch(batch, note), operator, f"pledge batch {batch}")
    else:
        assert cash is not None
        amount = units(cash, c.decimals, "--cash")
        usd = c.core("stablecoin")
        if usd.functions.allowance(operator.address, servicer.address).call() < amount:
            c.send(
                usd.functions.approve(servicer.address, amount), operator, "approve the stablecoin"
            )
        c.send(servicer.functions.postCashCollateral(amount), operator, "post cash collateral")
    after = sum(servicer.functions.collateral().call())
    cured = False
    if required and after >= required:
        c.send(servicer.functions.cureTopUp(), operator, "cure the top-up")
        cured = True
    result = {
        "note_id": note,
        "required_collateral": required,
        "deadline": deadline,
        "collateral_before": before,
        "collateral_after": after,
        "cured": cured,
        "still_short": max(required - after, 0) if required else 0,
    }
    d = c.decimals
    emit(
        result,
        json_out,
        lambda r: out.print(
            kv_table(
                f"note {note}: top-up",
                {
                    "requirement": f"{money(r['required_collateral'], d)} by {when(r['deadline'])}"
                    if r["required_collateral"]
                    else "none outstanding",
                    "collateral before": money(r["collateral_before"], d),
                    "collateral after": money(r["collateral_after"], d),
                    "cured": "yes"
                    if r["cured"]
                    else (
                        "no: still short " + money(r["still_short"], d)
                        if r["still_short"]
                        else "nothing to cure"
                    ),
                },
            )
        ),
    )


@app.command("pay-revenue")
@handle_errors
def pay_revenue(
    note: NoteOpt,
    amount: Annotated[str, typer.Argument(help="Stablecoin amount, e.g. 250000 or 1.2M.")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Pay revenue into the SPV account (the note's servicer) for the current period; the
    next period close runs it through the waterfall."""
    c = client()
    operator = _operator(key_env, keystore, password_file)
    servicer = c.record(c.manifest.note(note).servicer)
    value = units(amount, c.decimals)
    usd = c.core("stablecoin")
    balance = usd.functions.balanceOf(operator.address).call()
    if balance < value:
        raise CliError(
            f"{operator.address} holds {money(balance, c.decimals)}, "
            f"less than {money(value, c.decimals)}"
        )
    if usd.functions.allowance(operator.address, servicer.address).call() < value:
        c.send(usd.functions.approve(servicer.address, value), operator, "approve the stablecoin")
    receipt = c.send(servicer.functions.payRevenue(value), operator, "pay revenue")
    total = servicer.events.RevenueReceived().process_receipt(receipt, errors=DISCARD)[0]["args"][
        "periodRevenueCash"
    ]
    emit(
        {"note_id": note, "paid": value, "period_revenue_cash": total},
        json_out,
        lambda r: out.print(
            f"paid {money(value, c.decimals)} into note {note}'s servicer; revenue this period "
            f"{money(total, c.decimals)}"
        ),
    )


@app.command("push-telemetry")
@handle_errors
def push_telemetry(
    source: Annotated[
        str,
        typer.Argument(
            help="Telemetry batch JSON file (an object or a list of them), or - for stdin."
        ),
    ],
    note: NoteOpt,
    node: Annotated[
        list[str],
        typer.Option(
            "--node",
            envvar="GPUCREDIT_ORACLE_NODES",
            help="Oracle node base URL; repeat for each node (push to every node). "
            "Env GPUCREDIT_ORACLE_NODES: comma-separated.",
        ),
    ],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 30.0,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Sign telemetry with the fleet operator's key (EIP-712 TelemetryBatch, exactly as the
    oracle service checks it; see docs/oracle-service.md) and push it to every node. A
    batch without a batch_id gets a random one; re-pushing the same batch is safe."""
    from gpucredit.telemetry_signing import new_batch_id, sign_batch

    text = sys.stdin.read() if source == "-" else _read(Path(source))
    batches = read_telemetry(text, "stdin" if source == "-" else source)
    nodes = [u.strip().rstrip("/") for item in node for u in item.split(",") if u.strip()]
    if not nodes:
        raise CliError("no oracle node: pass --node URL (repeatable) or set GPUCREDIT_ORACLE_NODES")
    c = client()
    operator = _operator(key_env, keystore, password_file)
    oracle = c.core("telemetry_oracle")
    fleet = oracle.functions.fleet(note).call()
    if fleet[3] == 0:
        raise CliError(f"fleet {note} is not registered on the oracle (create the note first)")
    if fleet[0] != operator.address:
        raise ChainError(
            f"this key ({operator.address}) is not fleet {note}'s operator ({fleet[0]}): "
            "the oracle nodes accept telemetry signed by the operator's key only"
        )
    chain_id = c.w3.eth.chain_id
    results = []
    for batch in batches:
        body = {k: v for k, v in batch.items() if k != "signature"}
        body.setdefault("batch_id", new_batch_id())
        signed = sign_batch(operator.key, chain_id, oracle.address, note, body)
        for url in nodes:
            endpoint = f"{url}/v1/fleets/{note}/telemetry"
            try:
                response = httpx.post(endpoint, json=signed, timeout=timeout)
            except httpx.HTTPError as exc:
                results.append(
                    {
                        "node": url,
                        "batch_id": body["batch_id"],
                        "status": None,
                        "ok": False,
                        "code": "unreachable",
                        "message": str(exc),
                    }
                )
                continue
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            replayed = response.status_code == 409 and error.get("code") == "batch_replayed"
            results.append(
                {
                    "node": url,
                    "batch_id": body["batch_id"],
                    "status": response.status_code,
                    "ok": response.status_code == 201 or replayed,
                    "code": error.get("code")
                    or ("accepted" if response.status_code == 201 else ""),
                    "message": error.get("message") or "",
                    "response": payload,
                }
            )
    result = {"note_id": note, "results": results}

    def render(r: dict[str, Any]) -> None:
        rows = [
            (x["node"], x["batch_id"][:12] + "...", x["status"], x["code"], x["message"])
            for x in r["results"]
        ]
        out.print(
            table(f"telemetry for fleet {note}", ("node", "batch", "HTTP", "code", "message"), rows)
        )

    emit(result, json_out, render)
    failed = [x for x in results if not x["ok"]]
    if failed:
        err.print(f"[bold red]error:[/] {len(failed)} push(es) rejected or failed (see above)")
        raise typer.Exit(1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


# ---------------------------------------------------------------------------
# attestor
# ---------------------------------------------------------------------------


@attestor_app.command()
@handle_errors
def attest(
    batch_id: Annotated[int, typer.Argument(help="Batch id to attest.")],
    batch_file_path: Annotated[
        Path | None,
        typer.Option(
            "--batch-file",
            help="The operator's batch file: its GPUs are re-hashed into the Merkle root and the "
            "attestation set hash, and the attestation refused if either differs on-chain.",
        ),
    ] = None,
    attestation_hash: Annotated[
        str | None,
        typer.Option(
            help="Record this 0x hash of your attestation documents instead of the operator's."
        ),
    ] = None,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Attest a registered batch: you confirm its GPUs exist as described."""
    c = client()
    attestor = signer("attestor", key_env, keystore, password_file)
    header = _batch(c, batch_id)
    if BATCH_STATUS[header[5]] != "Registered":
        raise CliError(f"batch {batch_id} is {BATCH_STATUS[header[5]]}, not Registered")
    if batch_file_path is not None:
        _check_batch_file(batch_file_path, header)
    digest = bytes(header[10])
    if attestation_hash is not None:
        try:
            digest = bytes.fromhex(attestation_hash.removeprefix("0x"))
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise CliError(f"--attestation-hash {attestation_hash!r} is not 32 bytes of hex")
    registry = c.core("collateral_registry")
    c.send(registry.functions.attestBatch(batch_id, digest), attestor, f"attest batch {batch_id}")
    emit(
        {"batch_id": batch_id, "attestation_hash": "0x" + digest.hex(), "gpus": header[2]},
        json_out,
        lambda r: out.print(
            f"batch {batch_id} ({r['gpus']:,} GPUs) attested: {r['attestation_hash']}"
        ),
    )


def _check_batch_file(path: Path, header: tuple) -> None:
    from eth_utils import keccak

    from gpucredit.merkle import GpuLeaf, gpu_key

    try:
        data = json.loads(path.read_text())
        leaves = [
            GpuLeaf(
                index=i,
                gpu_key=gpu_key(g["vendor"], g["serial"]),
                model=text_id(g["model"]),
                site_id=text_id(g["site"]),
                attestation_hash=bytes.fromhex(g["attestation_hash"][2:]),
                cost=g["cost"],
                in_service_at=g["in_service_at"],
                class_id=g["class"],
            )
            for i, g in enumerate(data["gpus"])
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(
            f"{path} is not a batch file written by `operator register`: {exc}"
        ) from None
    root = MerkleTree(leaves).root
    if root != bytes(header[0]):
        raise CliError(
            f"{path}: its GPUs hash to root 0x{root.hex()}, "
            f"the batch has 0x{bytes(header[0]).hex()}"
        )
    attestations = keccak(b"".join(leaf.attestation_hash for leaf in leaves))
    if attestations != bytes(header[10]):
        raise CliError(
            f"{path}: the attestation hashes do not match the batch's attestation set hash"
        )
