"""The collateral registry beyond register/attest/pledge: the attestor's
rejection, anyone's defect proofs (`challenge`), and the valuer's model
registry and depreciation classes (`valuer`, timelocked when a change raises
values)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from gpucredit.cli_common import (
    BATCH_STATUS,
    CliError,
    JsonOut,
    KeyEnv,
    Keystore,
    PasswordFile,
    client,
    done,
    handle_errors,
    signer,
    tx_hash,
    when,
)
from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, text_id

challenge_app = typer.Typer(
    help="Anyone: void a batch with a proof that one of its GPU leaves contradicts its header "
    "or its registered keys (within the challenge window). Key: `GPUCREDIT_CHALLENGER_KEY`.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
valuer_app = typer.Typer(
    help="Valuer (VALUATION_ROLE): models and depreciation classes of the collateral registry; "
    "a change that raises values waits a timelock (queue, then execute or cancel).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
BatchId = Annotated[int, typer.Argument(help="Batch id.")]
CHALLENGEABLE = ("Registering", "Registered", "Attested", "Pledged")


def _header(registry: Any, batch_id: int) -> tuple:
    try:
        header = registry.functions.batchInfo(batch_id).call()
    except (ContractCustomError, ContractLogicError):  # the view reverts for an unknown batch
        raise CliError(f"batch {batch_id} does not exist") from None
    if header[4] == 0:
        raise CliError(f"batch {batch_id} does not exist")
    return header


# ---- attestor ---------------------------------------------------------------


@handle_errors
def reject(
    batch_id: BatchId,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Refuse a batch before it is pledged: its GPU keys stop blocking at once."""
    c = client()
    registry = c.core("collateral_registry")
    status = BATCH_STATUS[_header(registry, batch_id)[4]]
    if status not in ("Registering", "Registered", "Attested"):
        raise CliError(f"batch {batch_id} is {status}: only a batch not yet pledged is rejected")
    attestor = signer("attestor", key_env, keystore, password_file)
    receipt = c.send(registry.functions.rejectBatch(batch_id), attestor, f"reject batch {batch_id}")
    done(
        {"batch_id": batch_id, "was": status, "status": "Rejected", "tx": tx_hash(receipt)},
        json_out,
        f"batch {batch_id} rejected",
    )


# ---- challenges ---------------------------------------------------------------


def _leaves(path: Path) -> list[GpuLeaf]:
    """The leaves of a batch file (`operator register --out`); an entry may give its own
    `index`, `gpu_key` and `model_id` (hex), as a batch's committed leaves may."""
    try:
        data = json.loads(path.read_text())
        leaves = []
        for i, g in enumerate(data["gpus"]):
            key = g.get("gpu_key")
            model = g.get("model_id")
            leaves.append(
                GpuLeaf(
                    index=int(g.get("index", i)),
                    gpu_key=bytes.fromhex(key[2:]) if key else gpu_key(g["vendor"], g["serial"]),
                    model=bytes.fromhex(model[2:]) if model else text_id(g["model"]),
                    site_id=text_id(g["site"]),
                    attestation_hash=bytes.fromhex(g["attestation_hash"][2:]),
                    cost=int(g["cost"]),
                    in_service_at=int(g["in_service_at"]),
                )
            )
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CliError(f"{path} is not a batch file (`operator register --out`): {exc}") from None
    if not leaves:
        raise CliError(f"{path} holds no GPU")
    return leaves


def _prepare(c: Any, batch_id: int, batch_file: Path, index: int):
    registry = c.core("collateral_registry")
    header = _header(registry, batch_id)
    status = BATCH_STATUS[header[4]]
    if status not in CHALLENGEABLE:
        raise CliError(f"batch {batch_id} is {status}: nothing to challenge")
    window = registry.functions.CHALLENGE_WINDOW().call()
    if header[10] and c.now() > header[10] + window:
        raise CliError(
            f"batch {batch_id}: the challenge window closed at {when(header[10] + window)}"
        )
    leaves = _leaves(batch_file)
    if not 0 <= index < len(leaves):
        raise CliError(f"--index {index}: {batch_file} holds GPUs 0 to {len(leaves) - 1}")
    tree = MerkleTree(leaves)
    if tree.root != bytes(header[0]):
        raise CliError(
            f"{batch_file}: its GPUs hash to root 0x{tree.root.hex()}, batch {batch_id} "
            f"committed to 0x{bytes(header[0]).hex()}: no proof can be built from it"
        )
    return registry, header, leaves[index], tree.proof(index)


def _voided(c: Any, registry: Any, receipt: Any, batch_id: int, json_out: bool) -> None:
    logs = registry.events.BatchVoided().process_receipt(receipt, errors=DISCARD)
    args = logs[0]["args"] if logs else {}
    done(
        {
            "batch_id": batch_id,
            "note_id": args.get("noteId", 0),
            "gpu_key": "0x" + bytes(args.get("gpuKey", b"")).hex(),
            "reason": args.get("reason", ""),
            "tx": tx_hash(receipt),
        },
        json_out,
        f"batch {batch_id} voided",
    )


BatchFileOpt = Annotated[
    Path,
    typer.Option(
        "--batch-file", help="The batch's file of GPU leaves (`operator register --out`)."
    ),
]
IndexOpt = Annotated[int, typer.Option("--index", help="Position of the GPU in the batch file.")]


@challenge_app.command("bad-leaf")
@handle_errors
def bad_leaf(
    batch_id: BatchId,
    batch_file: BatchFileOpt,
    index: IndexOpt,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Void a batch with a leaf that contradicts its header: index beyond its count, another
    model, or in service before the batch's date."""
    c = client()
    registry, header, leaf, proof = _prepare(c, batch_id, batch_file, index)
    reasons = []
    if leaf.index >= header[2]:
        reasons.append("index out of range")
    if leaf.model != bytes(header[11]):
        reasons.append("model mismatch")
    if leaf.in_service_at < header[8]:
        reasons.append("in service before batch")
    if not reasons:
        raise CliError(
            f"GPU {index} of {batch_file} agrees with batch {batch_id}'s header (index, model, "
            "in-service date): nothing to prove (a wrong key: `challenge key-mismatch`)"
        )
    challenger = signer("challenger", key_env, keystore, password_file)
    receipt = c.send(
        registry.functions.proveBadLeaf(batch_id, leaf.as_tuple(), proof),
        challenger,
        f"prove a bad leaf in batch {batch_id}",
    )
    _voided(c, registry, receipt, batch_id, json_out)


@challenge_app.command("key-mismatch")
@handle_errors
def key_mismatch(
    batch_id: BatchId,
    batch_file: BatchFileOpt,
    index: IndexOpt,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Void a batch whose registered GPU key at a leaf's index is not the leaf's key (the
    keys come from the batch's GpusRegistered events)."""
    c = client()
    registry, _, leaf, proof = _prepare(c, batch_id, batch_file, index)
    chunks = registry.events.GpusRegistered().get_logs(
        from_block=0, argument_filters={"batchId": batch_id}
    )
    for log in chunks:
        first, keys = log["args"]["firstIndex"], [bytes(k) for k in log["args"]["keys"]]
        if first <= leaf.index < first + len(keys):
            break
    else:
        raise CliError(f"batch {batch_id} has no registered key at index {leaf.index} yet")
    if keys[leaf.index - first] == leaf.gpu_key:
        raise CliError(
            f"batch {batch_id} registered the leaf's own key at index {leaf.index}: "
            "nothing to prove"
        )
    challenger = signer("challenger", key_env, keystore, password_file)
    receipt = c.send(
        registry.functions.proveKeyMismatch(batch_id, leaf.as_tuple(), proof, first, keys),
        challenger,
        f"prove a key mismatch in batch {batch_id}",
    )
    _voided(c, registry, receipt, batch_id, json_out)


# ---- valuer -------------------------------------------------------------------


def _bps(value: int, what: str) -> int:
    if not 0 <= value <= 10_000:
        raise CliError(f"{what} {value} is not a basis-point value from 0 to 10000")
    return value


def _model_id(model: str) -> bytes:
    if model.startswith("0x") and len(model) == 66:
        try:
            return bytes.fromhex(model[2:])
        except ValueError:
            pass
    if not model.strip():
        raise CliError("MODEL is empty")
    return text_id(model)


def _valuer(key_env, keystore, password_file):
    return signer("valuer", key_env, keystore, password_file)


ModelArg = Annotated[
    str, typer.Argument(help="GPU model name as in the fleet CSV (or its 0x bytes32 id).")
]
ClassArg = Annotated[int, typer.Argument(help="Depreciation class id (0-255).", min=0, max=255)]


def _queued(receipt: Any, contract: Any, queued: str) -> int:
    logs = getattr(contract.events, queued)().process_receipt(receipt, errors=DISCARD)
    return logs[0]["args"]["eta"] if logs else 0


@valuer_app.command("set-model")
@handle_errors
def set_model(
    model: ModelArg,
    class_id: ClassArg,
    haircut_bps: Annotated[int, typer.Argument(help="Obsolescence haircut, basis points.")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Register a model or change its class and haircut: at once when it lowers values,
    else queued behind the timelock (then `valuer execute-model`)."""
    _bps(haircut_bps, "HAIRCUT_BPS")
    mid = _model_id(model)
    c = client()
    registry = c.core("collateral_registry")
    if not registry.functions.depreciationClass(class_id).call()[-1]:
        raise CliError(f"depreciation class {class_id} does not exist (`valuer set-class` first)")
    receipt = c.send(
        registry.functions.setModel(mid, class_id, haircut_bps),
        _valuer(key_env, keystore, password_file),
        "set the model",
    )
    eta = _queued(receipt, registry, "ModelQueued")
    done(
        {
            "model": model,
            "model_id": "0x" + mid.hex(),
            "class": class_id,
            "haircut_bps": haircut_bps,
            "queued_until": eta,
            "tx": tx_hash(receipt),
        },
        json_out,
        f"model {model}: " + (f"queued, executable from {when(eta)}" if eta else "set"),
    )


@valuer_app.command("set-class")
@handle_errors
def set_class(
    class_id: ClassArg,
    markdown_bps: Annotated[int, typer.Argument(help="Quarterly markdown, basis points.")],
    floor_bps: Annotated[int, typer.Argument(help="Residual value floor, basis points.")],
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Create or change a depreciation class: at once when new or lowering values, else
    queued behind the timelock (then `valuer execute-class`)."""
    _bps(markdown_bps, "MARKDOWN_BPS")
    _bps(floor_bps, "FLOOR_BPS")
    c = client()
    registry = c.core("collateral_registry")
    receipt = c.send(
        registry.functions.setDepreciationClass(class_id, markdown_bps, floor_bps),
        _valuer(key_env, keystore, password_file),
        "set the depreciation class",
    )
    eta = _queued(receipt, registry, "DepreciationClassQueued")
    done(
        {
            "class": class_id,
            "quarterly_markdown_bps": markdown_bps,
            "floor_bps": floor_bps,
            "queued_until": eta,
            "tx": tx_hash(receipt),
        },
        json_out,
        f"class {class_id}: " + (f"queued, executable from {when(eta)}" if eta else "set"),
    )


def _pending_action(
    kind: str, key: Any, label: str, action: str, json_out, key_env, keystore, password_file
):
    c = client()
    registry = c.core("collateral_registry")
    if kind == "model":
        eta = registry.functions.pendingModel(key).call()[2]
        fn = {"execute": registry.functions.executeModel, "cancel": registry.functions.cancelModel}
    else:
        eta = registry.functions.pendingDepreciationClass(key).call()[-1]
        fn = {
            "execute": registry.functions.executeDepreciationClass,
            "cancel": registry.functions.cancelDepreciationClass,
        }
    if eta == 0:
        raise CliError(f"{label}: no change is queued")
    if action == "execute" and c.now() < eta:
        raise CliError(f"{label}: the queued change is executable from {when(eta)}")
    receipt = c.send(
        fn[action](key), _valuer(key_env, keystore, password_file), f"{action} {label}"
    )
    done({"what": label, "action": action, "tx": tx_hash(receipt)}, json_out, f"{label}: {action}d")


@valuer_app.command("execute-model")
@handle_errors
def execute_model(
    model: ModelArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Apply a queued model change once its timelock has passed."""
    _pending_action(
        "model",
        _model_id(model),
        f"model {model}",
        "execute",
        json_out,
        key_env,
        keystore,
        password_file,
    )


@valuer_app.command("cancel-model")
@handle_errors
def cancel_model(
    model: ModelArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Drop a queued model change."""
    _pending_action(
        "model",
        _model_id(model),
        f"model {model}",
        "cancel",
        json_out,
        key_env,
        keystore,
        password_file,
    )


@valuer_app.command("execute-class")
@handle_errors
def execute_class(
    class_id: ClassArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Apply a queued depreciation class change once its timelock has passed."""
    _pending_action(
        "class",
        class_id,
        f"class {class_id}",
        "execute",
        json_out,
        key_env,
        keystore,
        password_file,
    )


@valuer_app.command("cancel-class")
@handle_errors
def cancel_class(
    class_id: ClassArg,
    json_out: JsonOut = False,
    key_env: KeyEnv = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Drop a queued depreciation class change."""
    _pending_action(
        "class", class_id, f"class {class_id}", "cancel", json_out, key_env, keystore, password_file
    )
