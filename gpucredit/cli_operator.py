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
from gpucredit.merkle import MerkleTree, key_chunks, text_id

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


TX_GAS_CAP = 16_777_216  # EIP-7825: the most gas one transaction may use (Osaka)
REGISTERING, REGISTERED, ATTESTED, PLEDGED = 1, 2, 3, 4


def _resumable_batch(c: Client, registry: Any, operator: str, root: bytes) -> int | None:
    """The batch this operator opened for the same Merkle root: still
    registering (window open), to go on with, or already registered (nothing
    left to send); None to open a new one."""
    logs = registry.events.BatchRegistered().get_logs(
        from_block=0, argument_filters={"operator": operator}
    )
    window = registry.functions.REGISTRATION_WINDOW().call()
    for log in reversed(logs):
        if bytes(log["args"]["root"]) != root:
            continue
        header = registry.functions.batchInfo(log["args"]["batchId"]).call()
        if header[4] == REGISTERING and c.now() < header[9] + window:
            return log["args"]["batchId"]
        if header[4] in (REGISTERED, ATTESTED, PLEDGED):
            return log["args"]["batchId"]
    return None


@app.command()
@handle_errors
def register(
    fleet_csv: Annotated[
        Path,
        typer.Argument(
            help="CSV: vendor,serial,model,site,cost,in_service,attestation[,class]; one model "
            "per file (see examples/fleet.csv). The class is the model's in the registry: a "
            "class column, if any, must agree with it."
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
    chunk: Annotated[
        int,
        typer.Option(
            "--chunk",
            min=1,
            max=700,
            help="GPU keys per transaction (about 23,000 gas each; every transaction must "
            "stay under the 16,777,216 gas cap of EIP-7825).",
        ),
    ] = 500,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Register the GPUs of a CSV as one batch: the header (Merkle root over the
    leaves, totals, model) in one transaction, then the GPU keys in chunks of
    `--chunk`, as many transactions as needed, with a progress bar. Resumable: run
    it again after an interruption and it goes on with the same batch, skipping the
    chunks already on chain. Each row's attestation file is hashed (keccak256) into
    its leaf. Every bad row is reported (line and column) before anything is sent."""
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
        class_id, _, known = registry.functions.modelInfo(text_id(fleet.model)).call()
        if not known:
            raise CliError(
                f"model {fleet.model!r} is not in the registry's model registry: the valuer "
                "adds it (setModel, then executeModel within 7 days after the 2-day timelock)"
            )
        if fleet.class_id != class_id:
            raise CliError(
                f"the CSV says class {fleet.class_id}, the registry has {fleet.model!r} in "
                f"class {class_id}: the valuer sets the class, not the operator"
            )
        build = bar.add_task("building the Merkle tree", total=1)
        tree = MerkleTree(fleet.leaves)
        bar.advance(build)
        keys = [leaf.gpu_key for leaf in fleet.leaves]
        chunks = key_chunks(keys, chunk)
        batch_id = _resumable_batch(c, registry, operator.address, tree.root)
        receipts = []
        if batch_id is None:
            send = bar.add_task("registering the batch header", total=1)
            registration = (
                issuer,
                tree.root,
                len(fleet.rows),
                fleet.total_cost,
                text_id(fleet.model),
                fleet.in_service_at,
                fleet.attestation_set_hash,
            )
            receipt = c.send(
                registry.functions.registerBatch(registration), operator, "register the batch"
            )
            receipts.append(receipt)
            batch_id = registry.events.BatchRegistered().process_receipt(receipt, errors=DISCARD)[
                0
            ]["args"]["batchId"]
            bar.advance(send)
        done = registry.functions.batchInfo(batch_id).call()[3]
        todo = [(first, part) for first, part in chunks if first >= done]
        if any(first < done < first + len(part) for first, part in chunks):
            raise CliError(
                f"batch {batch_id} stopped at key {done}, inside a chunk of {chunk}: "
                "run again with the --chunk of the first run"
            )
        gpus = bar.add_task(
            f"registering {len(keys):,} GPU keys ({len(chunks)} transactions, "
            f"{len(chunks) - len(todo)} already on chain)",
            total=len(keys),
            completed=len(keys) - sum(len(part) for _, part in todo),
        )
        for first, part in todo:
            fn = registry.functions.registerGpus(batch_id, part)
            gas = fn.estimate_gas({"from": operator.address})
            if gas >= TX_GAS_CAP:
                raise CliError(
                    f"a chunk of {len(part)} keys needs {gas:,} gas, over the per-transaction "
                    f"cap of {TX_GAS_CAP:,}: use a smaller --chunk"
                )
            receipts.append(c.send(fn, operator, f"register GPU keys {first}-{first + len(part)}"))
            bar.advance(gpus, len(part))
    gas_used = sum(r["gasUsed"] for r in receipts)
    record = batch_file(
        fleet,
        batch_id,
        tree.root,
        {
            "issuer": issuer,
            "count": len(fleet.rows),
            "total_cost": fleet.total_cost,
            "model": fleet.model,
            "class": class_id,
            "in_service_at": fleet.in_service_at,
            "attestation_hash": "0x" + fleet.attestation_set_hash.hex(),
            "chunks": [{"first_index": first, "count": len(part)} for first, part in chunks],
            "txs": ["0x" + bytes(r["transactionHash"]).hex() for r in receipts],
            "gas_used": gas_used,
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
        "transactions": len(receipts),
        "max_tx_gas": max((r["gasUsed"] for r in receipts), default=0),
        "gas_used": gas_used,
        "batch_file": str(target),
    }
    emit(
        result,
        json_out,
        lambda r: out.print(
            f"batch {r['batch_id']}: {r['gpus']:,} GPUs ({r['model']}, cost "
            f"{money(r['total_cost'], c.decimals)}) under root {r['root'][:18]}..., "
            f"{r['transactions']} transactions, {r['gas_used']:,} gas; next: `gpucredit "
            f"attestor attest {r['batch_id']}`, then `gpucredit operator pledge "
            f"{r['batch_id']} --note {note}`; batch file {r['batch_file']}"
        ),
    )


def _batch(c: Client, batch_id: int) -> tuple:
    from gpucredit.cli_registry import _header

    return _header(c.core("collateral_registry"), batch_id)


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
    """Pledge an attested batch to a note (its GPUs then secure the note's lenders). The
    batch counts in the note's collateral value once its challenge window (3 days
    from attestation) has passed."""
    c = client()
    operator = _operator(key_env, keystore, password_file)
    header = _batch(c, batch_id)
    if header[4] in (1, 2):
        raise CliError(
            f"batch {batch_id} is not Attested yet: finish `gpucredit operator register`, "
            f"then the attestor runs `gpucredit attestor attest {batch_id}`"
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
    if BATCH_STATUS[header[4]] != "Registered":
        raise CliError(
            f"batch {batch_id} is {BATCH_STATUS[header[4]]}, not Registered (all its GPU keys)"
        )
    if batch_file_path is not None:
        _check_batch_file(batch_file_path, header)
    digest = bytes(header[12])
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
    if attestations != bytes(header[12]):
        raise CliError(
            f"{path}: the attestation hashes do not match the batch's attestation set hash"
        )
