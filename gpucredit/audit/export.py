"""Events of a deployment, from the chain to JSON Lines and back.

A deployment is described by a manifest (see `Manifest` and docs/audit.md):

    {"chain_id": 31337,
     "start_block": 0,
     "contracts": {"CollateralRegistry": "0x..", "IdentityRegistry": "0x..",
                   "TelemetryOracle": "0x..",
                   "notes": [{"note_id": 1, "servicer": "0x..",
                              "tranches": ["0x..senior", "0x..junior"]}]}}

`export_events` reads every log of those contracts over JSON-RPC
(`eth_getLogs`, paginated by block range), decodes it with the ABIs brownie
writes to `build/contracts/*.json`, adds the block's timestamp, and sorts by
(block, log index). `write_jsonl` writes the archive: one header line (chain
id, block range, head hash, manifest, the deal terms and parties, the event
count and the archive's head) and one line per event, each carrying the hash
of the line before it (a hash chain, docs/audit.md):

    {"block": 57, "timestamp": 1767312000, "tx": "0x..", "log_index": 3,
     "contract": "Servicer", "address": "0x..", "event": "PeriodClosed",
     "args": {"period": 4, "inputs": {...}, "result": {...}}, "prev": "0x.."}

Values: integers of ABI types wider than 53 bits (uint64 and up, int64 and up)
are decimal strings, narrower ones JSON numbers; bytes and bytesN are 0x hex;
addresses are checksummed; tuples are objects keyed by component name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from gpucredit.audit.errors import AuditInputError

FORMAT = "gpucredit-audit/2"  # 2: each event line chained to the one before (`prev`)
LEGACY_FORMATS = ("gpucredit-audit/1",)  # unchained; read only without `verify`
# Compiled ABIs: $GPUCREDIT_ARTIFACTS_DIR (as for the rest of the tooling), else build/contracts.
DEFAULT_BUILD_DIR = Path(
    os.environ.get("GPUCREDIT_ARTIFACTS_DIR")
    or Path(__file__).resolve().parents[2] / "build" / "contracts"
)

REGISTRY = "CollateralRegistry"
IDENTITIES = "IdentityRegistry"
ORACLE = "TelemetryOracle"
SERVICER = "Servicer"
TRANCHE = "NoteTranche"
STABLECOIN = "MockStablecoin"
FACTORY = "NoteFactory"

# Contract names a manifest may use for the shared contracts, with aliases
# (the second of each is the key `scripts/deploy.py` writes, docs/deploy.md).
_CORE_ALIASES = {
    REGISTRY: (REGISTRY, "collateral_registry", "registry"),
    IDENTITIES: (IDENTITIES, "identity_registry", "identities", "identityRegistry"),
    ORACLE: (ORACLE, "telemetry_oracle", "oracle"),
    STABLECOIN: (STABLECOIN, "stablecoin", "usd", "asset"),
    # optional: with it, each note's creation event is replayed and checked
    FACTORY: (FACTORY, "note_factory", "factory"),
}
_REQUIRED_CORE = (REGISTRY, IDENTITIES, ORACLE)
_START_KEYS = ("start_block", "block", "deployed_at_block", "from_block")

Event = dict[str, Any]


# ---------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteDeployment:
    """One note: its servicer and its tranches, senior first."""

    note_id: int
    servicer: str
    tranches: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """Addresses of one deployment (checksummed) and the first block to read."""

    chain_id: int
    contracts: dict[str, str]
    notes: tuple[NoteDeployment, ...]
    start_block: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Reads the audit shape (docs/audit.md) or a deployment manifest (docs/deploy.md).

        A contract is an address or a record with an `address`. Shared
        contracts use their contract names or the deploy script's keys
        (`collateral_registry`, `identity_registry`, `telemetry_oracle`).
        `notes` is a list, or an object keyed by note id, inside `contracts`
        or at the top level; a note's `tranches` is a list (senior first) or an
        object by symbol in seniority order. The first block to read is
        `start_block` (or `block`, `deployed_at_block`, `from_block`), else 0.
        """
        if not isinstance(data, dict):
            raise AuditInputError("manifest: expected a JSON object")
        try:
            chain_id = int(data["chain_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditInputError("manifest: `chain_id` (an integer) is required") from exc
        raw_contracts = data.get("contracts")
        if not isinstance(raw_contracts, dict):
            raise AuditInputError("manifest: `contracts` (an object) is required")
        contracts: dict[str, str] = {}
        for name, aliases in _CORE_ALIASES.items():
            for alias in aliases:
                if alias in raw_contracts:
                    contracts[name] = _address(raw_contracts[alias], f"contracts.{alias}")
                    break
        missing = [name for name in _REQUIRED_CORE if name not in contracts]
        if missing:
            raise AuditInputError(f"manifest: contracts {', '.join(missing)} missing")
        raw_notes = raw_contracts.get("notes", data.get("notes"))
        if isinstance(raw_notes, dict):
            raw_notes = [
                dict(note, note_id=note.get("note_id", key)) for key, note in raw_notes.items()
            ]
        if not isinstance(raw_notes, list) or not raw_notes:
            raise AuditInputError("manifest: `contracts.notes` (a non-empty list) is required")
        notes = [_note(note, f"notes[{i}]") for i, note in enumerate(raw_notes)]
        start = next((data[key] for key in _START_KEYS if data.get(key) is not None), 0)
        return cls(chain_id, contracts, tuple(notes), int(start))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except OSError as exc:
            raise AuditInputError(f"manifest: cannot read {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise AuditInputError(f"manifest: {path} is not JSON: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The canonical shape (notes inside `contracts`)."""
        contracts: dict[str, Any] = dict(self.contracts)
        contracts["notes"] = [
            {"note_id": n.note_id, "servicer": n.servicer, "tranches": list(n.tranches)}
            for n in self.notes
        ]
        return {"chain_id": self.chain_id, "start_block": self.start_block, "contracts": contracts}

    def contract_names(self) -> dict[str, str]:
        """Lower-case address -> contract name, for every contract to export.

        The stablecoin is not exported: on a public chain its logs are every
        transfer of every holder, and no decision reads them.
        """
        names = {
            address.lower(): name for name, address in self.contracts.items() if name != STABLECOIN
        }
        for note in self.notes:
            names[note.servicer.lower()] = SERVICER
            for tranche in note.tranches:
                names[tranche.lower()] = TRANCHE
        return names


def _note(note: Any, where: str) -> NoteDeployment:
    try:
        tranches = note["tranches"]
        if isinstance(tranches, dict):
            tranches = list(tranches.values())
        if not isinstance(tranches, list) or not 1 <= len(tranches) <= 2:
            raise AuditInputError(f"manifest: {where}.tranches: one or two tranches")
        return NoteDeployment(
            note_id=int(note["note_id"]),
            servicer=_address(note["servicer"], f"{where}.servicer"),
            tranches=tuple(_address(t, f"{where}.tranches[{j}]") for j, t in enumerate(tranches)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditInputError(f"manifest: {where} needs note_id, servicer and tranches") from exc


def _address(value: Any, where: str) -> str:
    if isinstance(value, dict):
        value = value.get("address")
    try:
        return to_checksum_address(value)
    except (TypeError, ValueError) as exc:
        raise AuditInputError(f"manifest: {where} is not an address: {value!r}") from exc


# ---------------------------------------------------------------------------
# ABI codec
# ---------------------------------------------------------------------------


def _canonical_type(item: dict[str, Any]) -> str:
    kind = item["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item["components"])
        return f"({inner}){kind[5:]}"
    return kind


def _int_bits(kind: str) -> int | None:
    for prefix in ("uint", "int"):
        if kind.startswith(prefix):
            digits = kind[len(prefix) :]
            return int(digits) if digits else 256
    return None


def to_json_value(item: dict[str, Any], value: Any) -> Any:
    """An ABI-decoded value as it goes into the JSON Lines file."""
    kind = item["type"]
    if kind.endswith("]"):
        inner = dict(item, type=kind[: kind.rindex("[")])
        return [to_json_value(inner, v) for v in value]
    if kind == "tuple":
        components = item["components"]
        if isinstance(value, dict):
            return {c["name"]: to_json_value(c, value[c["name"]]) for c in components}
        return {c["name"]: to_json_value(c, v) for c, v in zip(components, value, strict=True)}
    if kind == "address":
        return to_checksum_address(value)
    if kind == "bool":
        return bool(value)
    if kind == "string":
        return str(value)
    if kind.startswith("bytes"):
        if isinstance(value, str):
            return value.lower() if value.startswith("0x") else "0x" + value.lower()
        return "0x" + bytes(value).hex()
    bits = _int_bits(kind)
    if bits is not None:
        return str(int(value)) if bits > 53 else int(value)
    raise AuditInputError(f"unsupported ABI type {kind}")


@dataclass
class EventAbi:
    contract: str
    name: str
    inputs: list[dict[str, Any]]
    topic0: str
    data_types: list[str] = field(default_factory=list)

    def decode(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        values = iter(abi_decode(self.data_types, data)) if self.data_types else iter(())
        indexed = iter(topics[1:])
        args: dict[str, Any] = {}
        for item in self.inputs:
            if item.get("indexed"):
                topic = next(indexed)
                if _is_dynamic(item["type"]):
                    args[item["name"]] = "0x" + bytes(topic).hex()  # keccak of the value
                else:
                    (value,) = abi_decode([_canonical_type(item)], bytes(topic))
                    args[item["name"]] = to_json_value(item, value)
            else:
                args[item["name"]] = to_json_value(item, next(values))
        return args

    def encode_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Python values (ints, bools, hex strings, dicts) in the file's encoding."""
        return {item["name"]: to_json_value(item, args[item["name"]]) for item in self.inputs}


def _is_dynamic(kind: str) -> bool:
    return kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("tuple")


class AbiBook:
    """Event ABIs of the gpucredit contracts, by contract and by topic."""

    CONTRACTS = (REGISTRY, IDENTITIES, ORACLE, SERVICER, TRANCHE, STABLECOIN, FACTORY)

    def __init__(self, build_dir: Path | None = None) -> None:
        self.build_dir = Path(build_dir or DEFAULT_BUILD_DIR)
        self.events: dict[str, dict[str, EventAbi]] = {}
        self.by_topic: dict[str, dict[str, EventAbi]] = {}
        self.abis: dict[str, list[dict[str, Any]]] = {}
        for contract in self.CONTRACTS:
            path = self.build_dir / f"{contract}.json"
            if not path.exists():
                raise AuditInputError(
                    f"ABI {path} missing: run `brownie compile` first (build/ is not committed)"
                )
            abi = json.loads(path.read_text())["abi"]
            self.abis[contract] = abi
            named: dict[str, EventAbi] = {}
            topics: dict[str, EventAbi] = {}
            for item in abi:
                if item["type"] != "event":
                    continue
                types = ",".join(_canonical_type(i) for i in item["inputs"])
                signature = f"{item['name']}({types})"
                event = EventAbi(
                    contract=contract,
                    name=item["name"],
                    inputs=item["inputs"],
                    topic0="0x" + keccak(text=signature).hex(),
                    data_types=[_canonical_type(i) for i in item["inputs"] if not i.get("indexed")],
                )
                named[event.name] = event
                topics[event.topic0] = event
            self.events[contract] = named
            self.by_topic[contract] = topics

    def event(self, contract: str, name: str) -> EventAbi:
        return self.events[contract][name]


# ---------------------------------------------------------------------------
# Export over JSON-RPC
# ---------------------------------------------------------------------------


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _is_range_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        marker in text
        for marker in ("too many", "range", "limit", "exceed", "-32005", "10000 results", "timeout")
    )


def fetch_logs(
    w3: Any,
    addresses: Sequence[str],
    from_block: int,
    to_block: int,
    page_size: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """`eth_getLogs` over [from_block, to_block] in pages of `page_size` blocks.

    A page the node refuses (too many results, range too large) is split in
    half and retried, down to a single block.
    """
    logs: list[dict[str, Any]] = []
    start = from_block
    size = max(1, page_size)
    while start <= to_block:
        end = min(to_block, start + size - 1)
        try:
            query = {"address": list(addresses), "fromBlock": start, "toBlock": end}
            page = w3.eth.get_logs(query)
        except Exception as exc:  # web3 raises provider-specific errors
            if size > 1 and _is_range_error(exc):
                size = max(1, size // 2)
                continue
            raise
        logs.extend(log for log in page if not log.get("removed", False))
        if progress is not None:
            progress(end - from_block + 1, to_block - from_block + 1)
        start = end + 1
    return logs


def _block_timestamps(w3: Any, numbers: Iterable[int]) -> dict[int, int]:
    wanted = sorted(set(numbers))
    stamps: dict[int, int] = {}
    for i in range(0, len(wanted), 100):
        chunk = wanted[i : i + 100]
        try:
            with w3.batch_requests() as batch:
                for number in chunk:
                    batch.add(w3.eth.get_block(number))
                blocks = batch.execute()
        except Exception:  # providers without batch support
            blocks = [w3.eth.get_block(number) for number in chunk]
        for number, block in zip(chunk, blocks, strict=True):
            stamps[number] = int(block["timestamp"])
    return stamps


def decode_logs(
    raw_logs: Iterable[dict[str, Any]],
    names: dict[str, str],
    book: AbiBook,
    timestamps: dict[int, int],
) -> list[Event]:
    """Decoded events sorted by (block, log index)."""
    events: list[Event] = []
    for log in raw_logs:
        address = to_checksum_address(log["address"])
        contract = names[address.lower()]
        topics = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log["topics"]]
        if not topics:
            continue  # anonymous events: none in gpucredit
        abi = book.by_topic[contract].get("0x" + topics[0].hex())
        data = log["data"]
        data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        block = int(log["blockNumber"])
        event: Event = {
            "block": block,
            "timestamp": timestamps[block],
            "tx": _hex(log["transactionHash"]),
            "log_index": int(log["logIndex"]),
            "contract": contract,
            "address": address,
        }
        if abi is None:
            event["event"] = "(unknown)"
            event["args"] = {"topics": ["0x" + t.hex() for t in topics], "data": "0x" + data.hex()}
        else:
            event["event"] = abi.name
            event["args"] = abi.decode(topics, data)
        events.append(event)
    events.sort(key=lambda e: (e["block"], e["log_index"]))
    return events


def read_terms(w3: Any, manifest: Manifest, book: AbiBook, block: int | str) -> dict[str, Any]:
    """The deal terms fixed at deployment, which no event carries.

    `Servicer.covenantTerms()` and `NoteTranche.terms()` are constructor
    arguments, immutable afterwards; the replay takes them from the header,
    and an auditor checks them against the signed term sheet.
    """
    servicers: dict[str, Any] = {}
    tranches: dict[str, Any] = {}
    for note in manifest.notes:
        servicer = w3.eth.contract(address=note.servicer, abi=book.abis[SERVICER])
        item = _function_output(book.abis[SERVICER], "covenantTerms")
        raw = servicer.functions.covenantTerms().call(block_identifier=block)
        servicers[note.servicer] = to_json_value(item, raw)
        for address in note.tranches:
            tranche = w3.eth.contract(address=address, abi=book.abis[TRANCHE])
            item = _function_output(book.abis[TRANCHE], "terms")
            raw = tranche.functions.terms().call(block_identifier=block)
            tranches[address] = to_json_value(item, raw)
    return {"servicers": servicers, "tranches": tranches}


def read_parties(w3: Any, manifest: Manifest, book: AbiBook, block: int | str) -> dict[str, Any]:
    """Who each fleet's reports come from, as the oracle holds it at `block`.

    The oracle's `fleet(id)` (operator, consumer, period grid, quorum, signer
    version) and
    `signers(id)`: the replay checks the last `FleetRegistered` /
    `FleetOperatorChanged` and `SignersChanged` of each fleet against them, and
    `--verify-chain` reads them again from the chain.
    """
    oracle = w3.eth.contract(address=manifest.contracts[ORACLE], abi=book.abis[ORACLE])
    item = _function_output(book.abis[ORACLE], "fleet")
    fleets: dict[str, Any] = {}
    for note in manifest.notes:
        config = to_json_value(
            item, oracle.functions.fleet(note.note_id).call(block_identifier=block)
        )
        if not int(config["periodLength"]):
            continue  # not registered (yet)
        signers = oracle.functions.signers(note.note_id).call(block_identifier=block)
        fleets[str(note.note_id)] = {
            "operator": config["operator"],
            "consumer": config["consumer"],
            "genesis": int(config["genesis"]),
            "periodLength": int(config["periodLength"]),
            "heartbeat": int(config["heartbeat"]),
            "quorum": int(config["quorum"]),
            "signerVersion": int(config["signerVersion"]),
            "signers": [to_checksum_address(a) for a in signers],
        }
    parties: dict[str, Any] = {"fleets": fleets}
    if FACTORY in manifest.contracts:  # the stablecoin every note of the factory pays in
        factory = w3.eth.contract(address=manifest.contracts[FACTORY], abi=book.abis[FACTORY])
        asset = factory.functions.parties().call(block_identifier=block)[0]
        parties["asset"] = to_checksum_address(asset)
    return parties


def _function_output(abi: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in abi:
        if item["type"] == "function" and item["name"] == name:
            return item["outputs"][0]
    raise AuditInputError(f"ABI has no function {name}")


@dataclass
class Export:
    """A header (chain, range, manifest, terms) and the decoded events."""

    header: dict[str, Any]
    events: list[Event]


def export_events(
    w3: Any,
    manifest: Manifest,
    *,
    from_block: int | None = None,
    to_block: int | None = None,
    page_size: int = 2_000,
    build_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Export:
    """Every event of the deployment in [from_block, to_block], decoded and sorted."""
    chain_id = int(w3.eth.chain_id)
    if chain_id != manifest.chain_id:
        raise AuditInputError(f"chain id {chain_id} is not the manifest's {manifest.chain_id}")
    book = AbiBook(build_dir)
    first = manifest.start_block if from_block is None else from_block
    head = w3.eth.get_block("latest" if to_block is None else to_block)
    last = int(head["number"])
    names = manifest.contract_names()
    addresses = [to_checksum_address(a) for a in names]
    raw = fetch_logs(w3, addresses, first, last, page_size, progress)
    stamps = _block_timestamps(w3, (int(log["blockNumber"]) for log in raw))
    # the indexer's decoder: the reference's output (`decode_logs`), value for value and
    # type for type (tests/index/test_indexer.py), built once per event ABI
    from gpucredit.audit.decode import FastDecoder  # imports this module

    events = FastDecoder(book).decode_logs(raw, names, stamps)
    header = {
        "format": FORMAT,
        "chain_id": chain_id,
        "from_block": first,
        "to_block": last,
        "head_hash": _hex(head["hash"]),
        "manifest": manifest.to_dict(),
        "terms": read_terms(w3, manifest, book, "latest"),
        "parties": read_parties(w3, manifest, book, last),
        "events": len(events),
    }
    return Export(header, events)


# ---------------------------------------------------------------------------
# JSON Lines: the archive, a hash chain
# ---------------------------------------------------------------------------

_EVENT_KEYS = ("block", "timestamp", "tx", "log_index", "contract", "address", "event", "args")
_EVENT_KEY_SET = frozenset(_EVENT_KEYS)
# Header fields the chain itself determines: left out of the seed (line 2's `prev`).
CHAIN_FIELDS = ("events", "archive_head")


def line_hash(text: str) -> str:
    """SHA-256 of one line as written (UTF-8, without its newline), 0x hex."""
    return "0x" + hashlib.sha256(text.encode()).hexdigest()


def header_seed(header: dict[str, Any]) -> str:
    """What line 2's `prev` is: the hash of the header without the chain's own
    fields (the count and the head), canonical JSON (sorted keys, no spaces)."""
    rest = {key: value for key, value in header.items() if key not in CHAIN_FIELDS}
    return line_hash(json.dumps(rest, sort_keys=True, separators=(",", ":")))


def event_line(event: Event, prev: str | None = None) -> str:
    """One event line; with `prev` (the previous line's hash) as the archive writes it."""
    record = {key: event[key] for key in _EVENT_KEYS}
    if prev is not None:
        record["prev"] = prev
    return json.dumps(record, separators=(",", ":"))


def archive_lines(header: dict[str, Any], events: Iterable[Event]) -> list[str]:
    """The archive's lines: a header, then one line per event, each carrying the
    hash of the line before it (line 2: of the header's seed); the header
    records the count (`events`) and the last line's hash (`archive_head`)."""
    out: list[str] = []
    prev = header_seed(header)
    for event in events:
        line = event_line(event, prev)
        out.append(line)
        prev = line_hash(line)
    head = dict(header, format=FORMAT, events=len(out), archive_head=prev)
    return [json.dumps(head, separators=(",", ":")), *out]


def seal(lines: list[str]) -> list[str]:
    """Re-chains an archive's lines after an edit (what anyone rewriting a file
    can do: the chain proves a file whole, not that it is the chain's; that is
    `--verify-chain`). Used by tests that tamper with an archive to exercise the
    model behind the chain."""
    header = json.loads(lines[0])
    events = [json.loads(line) for line in lines[1:] if line.strip()]
    return archive_lines(header, events)


def write_jsonl(export: Export, path: Path) -> None:
    """The archive: one header line, then one chained line per event."""
    lines = archive_lines(export.header, export.events)
    export.header.update(json.loads(lines[0]))
    with Path(path).open("w") as out:
        for line in lines:
            out.write(line + "\n")


@dataclass
class Loaded:
    """A parsed JSON Lines file: header, events in file order, and line numbers."""

    header: dict[str, Any]
    events: list[Event]
    problems: list[tuple[int, str]] = field(default_factory=list)


def read_jsonl(path: Path, *, verify: bool = True) -> Loaded:
    """Parses an archive; refuses one whose hash chain breaks (`parse_lines`)."""
    loads: Callable[[str], Any]
    try:
        from ujson import loads  # about twice as fast as json on these lines
    except ImportError:  # pragma: no cover - ujson is in requirements.lock
        from json import loads
    try:
        with Path(path).open() as handle:
            return parse_lines(handle, loads, verify=verify)
    except OSError as exc:
        raise AuditInputError(f"cannot read {path}: {exc}") from exc


def parse_lines(
    lines: Iterable[str], loads: Callable[[str], Any] = json.loads, *, verify: bool = True
) -> Loaded:
    """Parses an archive's lines.

    With `verify` (the default) the hash chain is checked as the lines are
    read, and the first line where it breaks (an edited, removed, inserted,
    reordered or appended line, a cut end) refuses the file with
    `AuditInputError` naming that line. Without it (tests that exercise the
    model behind the chain), lines that are not valid events are reported as
    problems, not fatal, and an unchained (format 1) file is accepted.
    """
    iterator: Iterator[str] = iter(lines)
    try:
        first = next(iterator)
    except StopIteration as exc:
        raise AuditInputError("empty events file: no header line") from exc
    try:
        header = loads(first)
    except ValueError as exc:
        raise AuditInputError(f"line 1: header is not JSON: {exc}") from exc
    formats = (FORMAT,) if verify else (FORMAT, *LEGACY_FORMATS)
    if not isinstance(header, dict) or header.get("format") not in formats:
        found = header.get("format") if isinstance(header, dict) else None
        if verify and found in LEGACY_FORMATS:
            raise AuditInputError(
                f"line 1: {found} has no hash chain: re-export the archive (format {FORMAT})"
            )
        raise AuditInputError(f"line 1: not a {FORMAT} header")
    events: list[Event] = []
    problems: list[tuple[int, str]] = []
    prev = header_seed(header) if verify else ""
    announced = _as_count(header.get("events")) if verify else None
    if verify and announced is None:
        raise AuditInputError("line 1: the header has no event count (`events`)")
    last = 1  # the last line with content
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        last = number
        if verify:
            if announced is not None and len(events) == announced:
                raise AuditInputError(
                    f"line {number}: beyond the {announced} events the header announces (padded)"
                )
            text = line.rstrip("\r\n")
        try:
            event = loads(line)
        except ValueError as exc:
            if verify:
                raise AuditInputError(
                    f"line {number}: hash chain broken: not JSON ({exc})"
                ) from exc
            problems.append((number, f"not JSON: {exc}"))
            continue
        if not isinstance(event, dict) or not event.keys() >= _EVENT_KEY_SET:
            if verify:
                raise AuditInputError(f"line {number}: hash chain broken: not an event line")
            problems.append((number, "not an event line (missing keys)"))
            continue
        if verify:
            recorded = event.pop("prev", None)
            if recorded != prev:
                raise AuditInputError(
                    f"line {number}: hash chain broken: prev {recorded} is not the hash of "
                    f"the line before ({prev}): a line edited, removed, inserted or moved "
                    f"at or before line {number}"
                )
            prev = line_hash(text)
        else:
            event.pop("prev", None)
        event["line"] = number
        events.append(event)
    if verify:
        if len(events) < (announced or 0):
            raise AuditInputError(
                f"line {last + 1}: the header announces {announced} events, the file "
                f"ends after {len(events)} (truncated)"
            )
        if header.get("archive_head") != prev:
            raise AuditInputError(
                f"line {last}: the last line hashes to {prev}, the header's archive_head is "
                f"{header.get('archive_head')}"
            )
    return Loaded(header, events, problems)


def _as_count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None
