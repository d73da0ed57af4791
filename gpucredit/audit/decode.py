"""Fast event decoding: the audit export's JSON values, from per-event decoders built once.

`gpucredit.audit.export.decode_logs` (the reference) decodes each log with
eth_abi's generic `decode`, then walks the values to convert them to the
export's JSON (`to_json_value`), checksumming every address with keccak. At
the indexer's rates that is most of the time spent (bench/index_bench.py).
`FastDecoder` builds, once per event ABI and keyed by (contract, topic0), a
tree of small readers that go straight from the ABI encoding to the JSON
value: integers are read from their 32-byte words (wider than 53 bits as
decimal strings), addresses are checksummed once and cached, tuples become
objects keyed by component name, dynamic values follow their offsets.

The output is the reference's, value for value and type for type
(tests/index/test_indexer.py, test_fast_decoder_equals_reference, compares
both on every log of the demo year and on the synthetic history). The readers
assume a well-formed encoding, as the EVM writes it; a log whose data does not
decode falls back to the reference decoder, which raises what it raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cchecksum import to_checksum_address

from gpucredit.audit.export import AbiBook, Event, EventAbi, _hex, _int_bits, _is_dynamic

Reader = Callable[[bytes, int, int], Any]  # (data, base of the enclosing tuple, head position)

_WORD = 32
_ADDRESSES: dict[bytes, str] = {}  # 20 raw bytes -> checksummed, shared by every decoder
_ADDRESS_CACHE_MAX = 1_000_000


def checksum(raw: bytes) -> str:
    """The checksummed address of 20 raw bytes, cached."""
    got = _ADDRESSES.get(raw)
    if got is None:
        if len(_ADDRESSES) >= _ADDRESS_CACHE_MAX:
            _ADDRESSES.clear()
        got = _ADDRESSES[raw] = to_checksum_address("0x" + raw.hex())
    return got


def _checksum_text(address: str) -> str:
    """`to_checksum_address` of a hex string (a log's emitter), cached."""
    raw = bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
    return checksum(raw)


class _Type:
    """How one ABI type is laid out: dynamic or not, its head size, and its reader."""

    __slots__ = ("dynamic", "head", "read")

    def __init__(self, dynamic: bool, head: int, read: Reader) -> None:
        self.dynamic = dynamic
        self.head = head
        self.read = read


def _compile(item: dict[str, Any]) -> _Type:
    kind = item["type"]
    if kind.endswith("]"):
        inner = _compile(dict(item, type=kind[: kind.rindex("[")]))
        size = kind[kind.rindex("[") + 1 : -1]
        return _array(inner, int(size) if size else None)
    if kind == "tuple":
        return _tuple([(c["name"], _compile(c)) for c in item["components"]])
    return _elementary(kind)


def _uint_small(d: bytes, _base: int, p: int) -> int:
    return int.from_bytes(d[p : p + _WORD], "big")


def _uint_wide(d: bytes, _base: int, p: int) -> str:
    return str(int.from_bytes(d[p : p + _WORD], "big"))


def _int_small(d: bytes, _base: int, p: int) -> int:
    return int.from_bytes(d[p : p + _WORD], "big", signed=True)


def _int_wide(d: bytes, _base: int, p: int) -> str:
    return str(int.from_bytes(d[p : p + _WORD], "big", signed=True))


def _address(d: bytes, _base: int, p: int) -> str:
    return checksum(d[p + 12 : p + _WORD])


def _bool(d: bytes, _base: int, p: int) -> bool:
    return d[p + _WORD - 1] != 0


def _offset(d: bytes, base: int, p: int) -> int:
    """Where a dynamic value's tail starts; past the data is malformed (the slices
    below would otherwise read short and decode a wrong value)."""
    start = base + int.from_bytes(d[p : p + _WORD], "big")
    if start + _WORD > len(d):
        raise ValueError("offset past the end of the data")
    return start


def _length(d: bytes, start: int, size: int) -> int:
    n = int.from_bytes(d[start : start + _WORD], "big")
    if start + _WORD + n * size > len(d):
        raise ValueError("length past the end of the data")
    return n


def _string(d: bytes, base: int, p: int) -> str:
    start = _offset(d, base, p)
    length = _length(d, start, 1)
    return d[start + _WORD : start + _WORD + length].decode("utf-8")


def _bytes(d: bytes, base: int, p: int) -> str:
    start = _offset(d, base, p)
    length = _length(d, start, 1)
    return "0x" + d[start + _WORD : start + _WORD + length].hex()


def _elementary(kind: str) -> _Type:
    if kind == "address":
        return _Type(False, _WORD, _address)
    if kind == "bool":
        return _Type(False, _WORD, _bool)
    if kind == "string":
        return _Type(True, _WORD, _string)
    if kind == "bytes":
        return _Type(True, _WORD, _bytes)
    if kind.startswith("bytes"):
        n = int(kind[5:])

        def fixed(d: bytes, _base: int, p: int) -> str:
            return "0x" + d[p : p + n].hex()

        return _Type(False, _WORD, fixed)
    bits = _int_bits(kind)
    if bits is None:
        raise ValueError(f"unsupported ABI type {kind}")
    if kind.startswith("uint"):
        return _Type(False, _WORD, _uint_wide if bits > 53 else _uint_small)
    return _Type(False, _WORD, _int_wide if bits > 53 else _int_small)


def _array(inner: _Type, size: int | None) -> _Type:
    step = inner.head
    read_inner = inner.read
    if size is None:  # T[]: an offset to the length, then the elements as a tuple

        def dynamic(d: bytes, base: int, p: int) -> list[Any]:
            start = _offset(d, base, p)
            n = _length(d, start, step)
            first = start + _WORD
            return [read_inner(d, first, first + i * step) for i in range(n)]

        return _Type(True, _WORD, dynamic)
    if inner.dynamic:  # T[k] of dynamic T: an offset to k heads

        def offsets(d: bytes, base: int, p: int) -> list[Any]:
            start = _offset(d, base, p)
            return [read_inner(d, start, start + i * step) for i in range(size)]

        return _Type(True, _WORD, offsets)

    def inline(d: bytes, base: int, p: int) -> list[Any]:
        return [read_inner(d, base, p + i * step) for i in range(size)]

    return _Type(False, size * step, inline)


def _tuple(fields: list[tuple[str, _Type]]) -> _Type:
    layout: list[tuple[str, int, Reader]] = []
    at = 0
    for name, t in fields:
        layout.append((name, at, t.read))
        at += t.head
    if any(t.dynamic for _, t in fields):

        def dynamic(d: bytes, base: int, p: int) -> dict[str, Any]:
            start = _offset(d, base, p)
            return {name: read(d, start, start + rel) for name, rel, read in layout}

        return _Type(True, _WORD, dynamic)

    def inline(d: bytes, base: int, p: int) -> dict[str, Any]:
        return {name: read(d, base, p + rel) for name, rel, read in layout}

    return _Type(False, at, inline)


class _EventDecoder:
    """The args of one event from its topics and data."""

    __slots__ = ("abi", "name", "steps", "topics", "data_size")

    def __init__(self, abi: EventAbi) -> None:
        self.abi = abi
        self.name = abi.name
        # (name, from topic k or None, reader, head position in data)
        steps: list[tuple[str, int | None, Reader | None, int]] = []
        topic = 1
        at = 0
        for item in abi.inputs:
            if item.get("indexed"):
                if _is_dynamic(item["type"]):
                    steps.append((item["name"], topic, None, 0))  # keccak of the value
                else:
                    steps.append((item["name"], topic, _compile(item).read, 0))
                topic += 1
            else:
                t = _compile(item)
                steps.append((item["name"], None, t.read, at))
                at += t.head
        self.steps = steps
        self.topics = topic
        self.data_size = at

    def decode(self, topics: list[bytes], data: bytes) -> dict[str, Any]:
        if len(topics) != self.topics or len(data) < self.data_size:
            return self.abi.decode(topics, data)  # the reference raises on a malformed log
        args: dict[str, Any] = {}
        try:
            for name, k, read, at in self.steps:
                if k is None:
                    args[name] = read(data, 0, at)  # type: ignore[misc]
                elif read is None:
                    args[name] = "0x" + topics[k].hex()
                else:
                    args[name] = read(topics[k], 0, 0)
        except (IndexError, ValueError, UnicodeDecodeError):
            return self.abi.decode(topics, data)
        return args


class FastDecoder:
    """`export.decode_logs` with decoders built once per (contract, topic0)."""

    def __init__(self, book: AbiBook) -> None:
        self.book = book
        self.by_topic: dict[str, dict[bytes, _EventDecoder]] = {
            contract: {bytes.fromhex(t[2:]): _EventDecoder(abi) for t, abi in topics.items()}
            for contract, topics in book.by_topic.items()
        }

    def decode_logs(
        self,
        raw_logs: Iterable[dict[str, Any]],
        names: dict[str, str],
        timestamps: dict[int, int],
    ) -> list[Event]:
        """Decoded events sorted by (block, log index), as `export.decode_logs` returns them."""
        events: list[Event] = []
        by_topic = self.by_topic
        emitters: dict[Any, tuple[str, str]] = {}
        for log in raw_logs:
            raw_address = log["address"]
            known = emitters.get(raw_address)
            if known is None:
                address = (
                    _checksum_text(raw_address)
                    if isinstance(raw_address, str)
                    else checksum(bytes(raw_address))
                )
                known = emitters[raw_address] = (address, names[address.lower()])
            address, contract = known
            topics = [
                bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log["topics"]
            ]
            if not topics:
                continue  # anonymous events: none in gpucredit
            data = log["data"]
            data = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
            block = int(log["blockNumber"])
            decoder = by_topic[contract].get(topics[0])
            event: Event = {
                "block": block,
                "timestamp": timestamps[block],
                "tx": _hex(log["transactionHash"]),
                "log_index": int(log["logIndex"]),
                "contract": contract,
                "address": address,
            }
            if decoder is None:
                event["event"] = "(unknown)"
                event["args"] = {
                    "topics": ["0x" + t.hex() for t in topics],
                    "data": "0x" + data.hex(),
                }
            else:
                event["event"] = decoder.name
                event["args"] = decoder.decode(topics, data)
            events.append(event)
        events.sort(key=lambda e: (e["block"], e["log_index"]))
        return events
