"""Deployment manifests: what is deployed on a chain, in `deployments/<chain-id>.json`.

`scripts/deploy.py` writes a manifest when it deploys the shared protocol
(stablecoin, identity registry, collateral registry, telemetry oracle) and
reads it back on a re-run to reuse what is already there; the `gpucredit`
CLI reads it to find the contracts and adds every note it creates.

    manifest = Manifest.load(manifest_path(chain_id))
    manifest.address("collateral_registry")
    manifest.notes["1"].servicer.address

The shape (format 1) is documented in docs/deploy.md. Writes are atomic
(a temporary file renamed over the old one), so a crash never leaves half a
manifest behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CORE_CONTRACTS",
    "GpucreditError",
    "ContractRecord",
    "FleetRecord",
    "Manifest",
    "ManifestError",
    "NoteRecord",
    "RoleSet",
    "abi_hash",
    "artifacts_dir",
    "bytecode_hash",
    "deployments_dir",
    "load_artifact",
    "manifest_path",
    "repo_root",
]

FORMAT = 1
# Manifest key -> contract (artifact) name of the shared protocol, in deployment order.
CORE_CONTRACTS: dict[str, str] = {
    "stablecoin": "MockStablecoin",
    "identity_registry": "IdentityRegistry",
    "collateral_registry": "CollateralRegistry",
    "telemetry_oracle": "TelemetryOracle",
    # The implementations every note clones, and the factory that clones and
    # wires them in one transaction (it holds the registry's NOTE_FACTORY_ROLE).
    "note_tranche_implementation": "NoteTranche",
    "servicer_implementation": "Servicer",
    "note_factory": "NoteFactory",
}


class GpucreditError(Exception):
    """Base of the errors the gpucredit tooling reports to a person (CLI, deploy script)."""


class ManifestError(GpucreditError):
    """A manifest or artifact that cannot be read, or that lacks what is asked for."""


def repo_root() -> Path:
    """The checkout this package lives in (build/, deployments/ are found from here)."""
    return Path(__file__).resolve().parents[1]


def deployments_dir() -> Path:
    """Where manifests live: `$GPUCREDIT_DEPLOYMENTS_DIR`, else `<repo>/deployments`."""
    configured = os.environ.get("GPUCREDIT_DEPLOYMENTS_DIR")
    return Path(configured) if configured else repo_root() / "deployments"


def manifest_path(chain_id: int, directory: Path | None = None) -> Path:
    return (directory or deployments_dir()) / f"{chain_id}.json"


def artifacts_dir() -> Path:
    """Compiled contracts: `$GPUCREDIT_ARTIFACTS_DIR`, else `<repo>/build/contracts`."""
    configured = os.environ.get("GPUCREDIT_ARTIFACTS_DIR")
    return Path(configured) if configured else repo_root() / "build" / "contracts"


def load_artifact(name: str, directory: Path | None = None) -> dict[str, Any]:
    """A brownie build artifact (`abi`, `bytecode`, `natspec`, `compiler`, ...)."""
    path = (directory or artifacts_dir()) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(
            f"no compiled contract {path} (run `brownie compile` in the repository)"
        ) from None
    except ValueError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def abi_hash(abi: list[dict[str, Any]]) -> str:
    """keccak256 of the ABI as canonical JSON: changes when the interface changes."""
    return "0x" + keccak(_canonical(abi)).hex()


def bytecode_hash(bytecode: str) -> str:
    """keccak256 of the creation bytecode a contract was deployed from."""
    return "0x" + keccak(hexstr=bytecode if bytecode.startswith("0x") else "0x" + bytecode).hex()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContractRecord(_Model):
    """One deployed contract (or an external one the protocol uses, e.g. USDC)."""

    contract: str  # artifact name
    address: str
    external: bool = False  # not deployed by us (a real stablecoin)
    tx: str | None = None
    block: int | None = None
    deployer: str | None = None
    constructor_args: list[Any] = Field(default_factory=list)
    abi_hash: str | None = None
    bytecode_hash: str | None = None
    code_hash: str | None = None  # keccak256 of the runtime code on-chain


class RoleSet(_Model):
    """Who was given which role at deployment (addresses, checksummed)."""

    admin: str | None = None
    issuers: list[str] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)
    attestors: list[str] = Field(default_factory=list)
    kyc_agents: list[str] = Field(default_factory=list)
    fleet_admins: list[str] = Field(default_factory=list)
    valuers: list[str] = Field(default_factory=list)
    trustee: str | None = None
    oracle_signers: list[str] = Field(default_factory=list)


class FleetRecord(_Model):
    """The note's fleet on the telemetry oracle (fleet id = note id)."""

    operator: str
    genesis: int
    period_length: int
    heartbeat: int
    signers: list[str]
    quorum: int


class NoteRecord(_Model):
    """A note created from a term sheet: tranches (senior first) and servicer."""

    note_id: int
    name: str
    issuer: str
    tranches: dict[str, ContractRecord]  # by symbol, in seniority order
    servicer: ContractRecord
    fleet: FleetRecord
    subscription_start: int
    subscription_end: int
    maturity: int
    termsheet_hash: str | None = None
    termsheet: dict[str, Any] | None = None  # the validated term sheet, as applied
    block: int
    created_at: str = Field(default_factory=_now)

    def tranche(self, which: str) -> ContractRecord:
        """A tranche by symbol, `senior`/`junior`, or seniority index ("0", "1")."""
        records = list(self.tranches.values())
        lowered = which.lower()
        if which in self.tranches:
            return self.tranches[which]
        for symbol, record in self.tranches.items():
            if symbol.lower() == lowered:
                return record
        aliases = {"senior": 0, "junior": 1}
        index = aliases.get(lowered, int(which) if which.isdigit() else None)
        if index is not None and index < len(records):
            return records[index]
        names = ", ".join([*self.tranches, *list(aliases)[: len(records)]])
        raise ManifestError(f"note {self.note_id} has no tranche {which!r} (choose: {names})")


class Manifest(_Model):
    """Everything deployed on one chain."""

    format: int = FORMAT
    chain_id: int
    network: str
    deployer: str
    block: int  # first block of the deployment: event scans start here
    compiler: dict[str, Any] = Field(default_factory=dict)
    contracts: dict[str, ContractRecord] = Field(default_factory=dict)
    roles: RoleSet = Field(default_factory=RoleSet)
    notes: dict[str, NoteRecord] = Field(default_factory=dict)
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ManifestError(
                f"no deployment manifest at {path}: deploy first (`python -m gpucredit.run "
                "scripts/deploy.py --network <network>`, see docs/deploy.md) or pass --manifest"
            ) from None
        except ValueError as exc:
            raise ManifestError(f"{path} is not valid JSON: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
            )
            raise ManifestError(f"{path} is not a gpucredit manifest: {problems}") from None

    def save(self, path: Path) -> None:
        """Writes the manifest atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.updated_at = _now()
        text = json.dumps(self.model_dump(mode="json"), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def address(self, key: str) -> str:
        try:
            return self.contracts[key].address
        except KeyError:
            raise ManifestError(
                f"the manifest of chain {self.chain_id} has no {key!r} "
                f"(has: {', '.join(self.contracts) or 'nothing'})"
            ) from None

    def note(self, note_id: int) -> NoteRecord:
        try:
            return self.notes[str(note_id)]
        except KeyError:
            known = ", ".join(self.notes) or "none yet"
            raise ManifestError(
                f"note {note_id} is not in the manifest of chain {self.chain_id} "
                f"(notes: {known}; create one with `gpucredit issuer create-note`)"
            ) from None

    def add_note(self, note: NoteRecord) -> None:
        self.notes[str(note.note_id)] = note
