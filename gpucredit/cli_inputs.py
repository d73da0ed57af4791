"""The CLI's input files: the GPU fleet CSV, the lenders CSV and telemetry batches.

Every problem names the file, the row (the line number, the header being
line 1) and the column, and all problems of a file are reported together
(up to `MAX_PROBLEMS`), so one fix-and-retry cycle is enough.

Fleet CSV (one file = one Merkle batch = one model and depreciation class):

    vendor,serial,model,site,cost,in_service,attestation[,class]
    NVIDIA,H100-01,NVIDIA H100 SXM5 80GB,ashburn-1,25000,2026-01-15,attestations/H100-01.json

`cost` is in whole stablecoin units, `in_service` a date (or unix seconds),
`attestation` a file path (relative to the CSV) whose keccak256 is the GPU's
attestation hash, `class` the depreciation class (default 1).

Lenders CSV:

    address,country[,expires]
    0x70997970C51812dc3A010C7d01b50e0d17dc79C8,840,2027-12-31

`country` is an ISO 3166-1 numeric code; `expires` a date (default: --days
from now).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, keccak, to_checksum_address

from gpucredit.deployment import GpucreditError
from gpucredit.merkle import GpuLeaf, gpu_key, text_id
from gpucredit.termsheet import parse_amount, parse_timestamp

MAX_PROBLEMS = 20
FLEET_COLUMNS = ("vendor", "serial", "model", "site", "cost", "in_service", "attestation")
LENDER_COLUMNS = ("address", "country")


class InputError(GpucreditError):
    """A file the CLI cannot use; `problems` lists (row, column, reason)."""

    def __init__(self, path: Path | str, problems: list[tuple[int | None, str | None, str]]):
        self.path = str(path)
        self.problems = problems
        lines = []
        for row, column, reason in problems[:MAX_PROBLEMS]:
            where = ", ".join(
                part
                for part in (f"row {row}" if row else "", f"column {column}" if column else "")
                if part
            )
            lines.append(f"  {where}: {reason}" if where else f"  {reason}")
        more = len(problems) - MAX_PROBLEMS
        if more > 0:
            lines.append(f"  ... and {more} more")
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(lines))


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, [(None, None, exc.strerror or str(exc))]) from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(
                path,
                [
                    (
                        1,
                        None,
                        f"missing column(s) {', '.join(missing)}; expected {', '.join(required)}",
                    )
                ],
            )
        reader.fieldnames = header
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            yield (
                reader.line_num,
                {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)},
            )


def count_rows(path: Path) -> int:
    """Data rows (for a progress bar's total); 0 if unreadable."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return 0


# ---------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuRow:
    row: int
    vendor: str
    serial: str
    model: str
    site: str
    cost: int
    in_service_at: int
    attestation_file: str
    attestation_hash: bytes
    class_id: int

    def leaf(self, index: int) -> GpuLeaf:
        return GpuLeaf(
            index=index,
            gpu_key=gpu_key(self.vendor, self.serial),
            model=text_id(self.model),
            site_id=text_id(self.site),
            attestation_hash=self.attestation_hash,
            cost=self.cost,
            in_service_at=self.in_service_at,
        )


@dataclass(frozen=True)
class Fleet:
    path: Path
    rows: list[GpuRow]

    @property
    def leaves(self) -> list[GpuLeaf]:
        return [row.leaf(i) for i, row in enumerate(self.rows)]

    @property
    def model(self) -> str:
        return self.rows[0].model

    @property
    def class_id(self) -> int:
        return self.rows[0].class_id

    @property
    def total_cost(self) -> int:
        return sum(r.cost for r in self.rows)

    @property
    def in_service_at(self) -> int:
        return min(r.in_service_at for r in self.rows)

    @property
    def attestation_set_hash(self) -> bytes:
        """keccak256 of the GPUs' attestation hashes concatenated in batch order."""
        return keccak(b"".join(r.attestation_hash for r in self.rows))


def read_fleet(
    path: Path,
    *,
    decimals: int = 6,
    now: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Fleet:
    """Parses and checks a fleet CSV, hashing each attestation file."""
    path = Path(path)
    problems: list[tuple[int | None, str | None, str]] = []
    rows: list[GpuRow] = []
    seen: dict[tuple[str, str], int] = {}
    first: GpuRow | None = None
    hashes: dict[Path, bytes] = {}
    for line, raw in _rows(path, FLEET_COLUMNS):
        if progress is not None:
            progress(1)
        bad = len(problems)
        for column in ("vendor", "serial", "model", "site", "attestation"):
            if not raw.get(column):
                problems.append((line, column, "empty"))
        try:
            cost = parse_amount(raw.get("cost", ""), decimals)
            if cost == 0 or cost >= 2**128:
                raise ValueError("must be above zero and fit in uint128")
        except ValueError as exc:
            problems.append((line, "cost", f"{raw.get('cost')!r}: {exc}"))
            cost = 0
        text = raw.get("in_service", "")
        try:
            in_service = int(text) if text.isdigit() else parse_timestamp(text)
            if now is not None and in_service > now:
                raise ValueError("is in the future (the registry refuses it)")
        except ValueError as exc:
            problems.append((line, "in_service", f"{text!r}: {exc}"))
            in_service = 0
        class_text = raw.get("class") or "1"
        if not class_text.isdigit() or int(class_text) > 255:
            problems.append((line, "class", f"{class_text!r}: a depreciation class is 0-255"))
            class_id = 0
        else:
            class_id = int(class_text)
        attestation = raw.get("attestation", "")
        digest = b""
        if attestation:
            file = (path.parent / attestation).resolve()
            if file not in hashes:
                try:
                    hashes[file] = keccak(file.read_bytes())
                except OSError as exc:
                    problems.append(
                        (line, "attestation", f"cannot read {attestation}: {exc.strerror}")
                    )
            digest = hashes.get(file, b"")
        key = (raw.get("vendor", ""), raw.get("serial", ""))
        if all(key) and key in seen:
            problems.append(
                (line, "serial", f"GPU {key[0]} {key[1]} is already on row {seen[key]}")
            )
        elif all(key):
            seen[key] = line
        if len(problems) > bad:
            continue
        row = GpuRow(
            row=line,
            vendor=key[0],
            serial=key[1],
            model=raw["model"],
            site=raw["site"],
            cost=cost,
            in_service_at=in_service,
            attestation_file=attestation,
            attestation_hash=digest,
            class_id=class_id,
        )
        if first is None:
            first = row
        elif row.model != first.model:
            problems.append(
                (
                    line,
                    "model",
                    f"{row.model!r} differs from the batch's model {first.model!r} "
                    f"(row {first.row}): one CSV is one batch of one model, split the file",
                )
            )
            continue
        elif row.class_id != first.class_id:
            problems.append(
                (
                    line,
                    "class",
                    f"{row.class_id} differs from the batch's class {first.class_id} "
                    f"(row {first.row})",
                )
            )
            continue
        rows.append(row)
    if not rows and not problems:
        problems.append((None, None, "no GPU rows"))
    if len(rows) >= 2**32:
        problems.append((None, None, "more than 2^32 GPUs in one batch"))
    if problems:
        raise InputError(path, problems)
    return Fleet(path, rows)


def batch_file(fleet: Fleet, batch_id: int, root: bytes, registration: dict[str, Any]) -> dict:
    """What `operator register` writes next to the CSV: enough to prove any GPU later."""
    return {
        "batch_id": batch_id,
        "root": "0x" + root.hex(),
        "registration": registration,
        "csv": str(fleet.path),
        "gpus": [
            {
                "row": r.row,
                "vendor": r.vendor,
                "serial": r.serial,
                "model": r.model,
                "site": r.site,
                "cost": r.cost,
                "in_service_at": r.in_service_at,
                "attestation_file": r.attestation_file,
                "attestation_hash": "0x" + r.attestation_hash.hex(),
                "class": r.class_id,
            }
            for r in fleet.rows
        ],
    }


# ---------------------------------------------------------------------------
# Lenders
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LenderRow:
    row: int
    address: str
    country: int
    expires_at: int


def read_lenders(path: Path, *, default_expiry: int, now: int) -> list[LenderRow]:
    path = Path(path)
    problems: list[tuple[int | None, str | None, str]] = []
    lenders: list[LenderRow] = []
    seen: dict[str, int] = {}
    for line, raw in _rows(path, LENDER_COLUMNS):
        bad = len(problems)
        address = raw.get("address", "")
        if not is_address(address):
            problems.append((line, "address", f"{address!r} is not an address"))
        elif to_checksum_address(address) in seen:
            problems.append(
                (
                    line,
                    "address",
                    f"{address} is already on row {seen[to_checksum_address(address)]}",
                )
            )
        country = raw.get("country", "")
        if not country.isdigit() or not 0 < int(country) < 1000:
            problems.append(
                (line, "country", f"{country!r}: an ISO 3166-1 numeric code, e.g. 840 (US)")
            )
        expires = default_expiry
        if raw.get("expires"):
            try:
                expires = parse_timestamp(raw["expires"])
            except ValueError as exc:
                problems.append((line, "expires", str(exc)))
        if expires <= now:
            problems.append((line, "expires", "the KYC expiry must be in the future"))
        if len(problems) > bad:
            continue
        checksummed = to_checksum_address(address)
        seen[checksummed] = line
        lenders.append(LenderRow(line, checksummed, int(country), expires))
    if not lenders and not problems:
        problems.append((None, None, "no lender rows"))
    if problems:
        raise InputError(path, problems)
    return lenders


# ---------------------------------------------------------------------------
# Telemetry
# ---------------------------------------------------------------------------


def read_telemetry(text: str, source: str) -> list[dict[str, Any]]:
    """One telemetry batch body (JSON object) or a list of them."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(source, [(None, None, f"not JSON: {exc}")]) from None
    batches = data if isinstance(data, list) else [data]
    problems: list[tuple[int | None, str | None, str]] = []
    for i, batch in enumerate(batches):
        where = f"batch {i}" if isinstance(data, list) else "batch"
        if not isinstance(batch, dict):
            problems.append((None, None, f"{where}: must be a JSON object"))
            continue
        unknown = set(batch) - {"batch_id", "samples", "revenue", "signature"}
        if unknown:
            problems.append((None, None, f"{where}: unknown field(s) {', '.join(sorted(unknown))}"))
        if not batch.get("samples") and not batch.get("revenue"):
            problems.append((None, None, f"{where}: needs `samples` and/or `revenue`"))
    if problems:
        raise InputError(source, problems)
    return batches
