"""Archive integrity: the file-level checks, and the file compared with the chain log by log."""

from __future__ import annotations

from typing import Any

from gpucredit.audit.export import (
    Event,
    Loaded,
)
from gpucredit.audit.replay.base import (
    Mismatch,
    ReplayBase,
    _as_int,
)


class ArchiveChecks(ReplayBase):
    """File-level checks: order, duplicates, block times, addresses, names."""

    def _structure(self, events: list[Event]) -> list[Event]:
        """File-level checks: order, duplicates, block times, addresses, names."""
        first = int(self.header.get("from_block", 0))
        last = self.header.get("to_block")
        previous: tuple[int, int] | None = None
        seen: set[tuple[int, int]] = set()
        stamps: dict[int, int] = {}
        tx_blocks: dict[str, int] = {}
        kept: list[Event] = []
        kinds: dict[str, str | None] = {}  # address as written -> contract name
        for ev in events:
            block, index, stamp = ev.get("block"), ev.get("log_index"), ev.get("timestamp")
            if type(block) is not int or type(index) is not int or type(stamp) is not int:
                block, index, stamp = _as_int(block), _as_int(index), _as_int(stamp)
                if block is None or index is None or stamp is None:
                    self._mismatch(ev, "block/log_index/timestamp", "integers", "malformed")
                    continue
            ev["block"], ev["log_index"], ev["timestamp"] = block, index, stamp
            key = (block, index)
            if key in seen:
                duplicate = f"duplicate of block {block} log {index}"
                self._mismatch(ev, "log_index", "a log seen once", duplicate)
                continue
            seen.add(key)
            if previous is not None and key < previous:
                self._mismatch(
                    ev,
                    "order",
                    f"after block {previous[0]} log {previous[1]}",
                    f"block {block} log {index}",
                )
            previous = key if previous is None or key > previous else previous
            if block < first or (last is not None and block > int(last)):
                self._mismatch(ev, "block", f"within {first}..{last}", block)
            known = stamps.setdefault(block, stamp)
            if known != stamp:
                self._mismatch(ev, "timestamp", known, stamp)
            tx_block = tx_blocks.setdefault(ev["tx"], block)
            if tx_block != block:
                self._mismatch(ev, "tx", f"one block ({tx_block}) per transaction", block)
            address = ev["address"]
            if address in kinds:
                kind = kinds[address]
            else:
                kind = kinds[address] = self.kind_of.get(str(address).lower())
            if kind is None:
                self._mismatch(ev, "address", "a contract of the manifest", ev["address"])
                continue
            if ev["contract"] != kind:
                self._mismatch(ev, "contract", kind, ev["contract"])
                ev["contract"] = kind
            if ev["event"] not in self.known_events.get(kind, ()):
                self._mismatch(ev, "event", f"an event of {kind}", ev["event"])
                continue
            kept.append(ev)
        kept.sort(key=lambda e: (e["block"], e["log_index"]))
        last_block, last_time = -1, -1
        for ev in kept:  # block times never go backwards
            if ev["block"] > last_block:
                if ev["timestamp"] < last_time:
                    floor = f">= {last_time} (block {last_block})"
                    self._mismatch(ev, "timestamp", floor, ev["timestamp"])
                last_block, last_time = ev["block"], ev["timestamp"]
        return kept


# Header fields read from the chain: the chain they were taken from (the hash
# of the last block read pins it), and what the export read with views.
HEADER_FROM_CHAIN = ("chain_id", "from_block", "to_block", "head_hash", "terms", "parties")


def compare_with_chain(
    loaded: Loaded, chain_events: list[Event], chain_header: dict[str, Any] | None = None
) -> list[Mismatch]:
    """Differences between an archived file and the chain's own logs, log by
    log, and (given the header of the same range read again from the chain)
    between the two headers: `head_hash` (the hash of the archive's last
    block), the chain id, the range, the terms and the parties."""
    out: list[Mismatch] = []
    if chain_header is not None:
        for name in HEADER_FROM_CHAIN:
            if name in chain_header and loaded.header.get(name) != chain_header[name]:
                where = {"block": chain_header.get("to_block", 0), "line": 1, "event": "header"}
                out.append(_diff(where, name, chain_header[name], loaded.header.get(name)))
    on_chain = {(e["block"], e["log_index"]): e for e in chain_events}
    in_file: dict[tuple[int, int], Event] = {}
    for ev in loaded.events:
        key = (_as_int(ev.get("block")) or 0, _as_int(ev.get("log_index")) or 0)
        in_file[key] = ev
    for key, ev in in_file.items():
        chain_ev = on_chain.get(key)
        if chain_ev is None:
            out.append(_diff(ev, "(event)", "not on chain", "in the file"))
            continue
        for name in ("timestamp", "tx", "address", "event", "args"):
            if ev.get(name) != chain_ev.get(name):
                out.append(_diff(ev, name, chain_ev.get(name), ev.get(name)))
    for key, chain_ev in on_chain.items():
        if key not in in_file:
            out.append(_diff(chain_ev, "(event)", "in the file", "missing"))
    out.sort(key=lambda m: (m.block, m.log_index or 0))
    return out


def _diff(ev: Event, name: str, expected: Any, recorded: Any) -> Mismatch:
    return Mismatch(
        block=int(ev.get("block", 0)),
        tx=str(ev.get("tx", "")),
        log_index=ev.get("log_index"),
        line=ev.get("line"),
        contract=str(ev.get("contract", "")),
        address=str(ev.get("address", "")),
        event=str(ev.get("event", "")),
        field=name,
        expected=expected,
        recorded=recorded,
    )
