"""Indexer throughput: events per second from a 100,000-event history into SQLite.

    python bench/index_bench.py [--events 100000] [--out bench/index.json]

Two runs of the same size: the common mix (the synthetic history as it comes:
mostly transfers, revenue and coupon claims) and the worst realistic one
(`heavy_mix`: only the events with the most to decode, arrays and wide tuples),
printed side by side and written to the JSON file (the second under `heavy`).
`index_events_per_cpu_s` is the same count over the process's CPU time: the
machine is shared, and the wall-clock figure moves with its load (`load_avg_1m`).

The history is the audit benchmark's synthetic one (gpucredit/audit/synthetic.py:
24 notes, three years, every kind of event), ABI-encoded back into raw logs
(topics and data, as `eth_getLogs` returns them). Timed, end to end: decoding
with the build ABIs (`gpucredit.audit.decode.FastDecoder`, what the follower
calls, equal to the audit export's `decode_logs`: tests/index/test_indexer.py),
writing the events and block hashes to a fresh SQLite file in pages of 2,000
blocks (`gpucredit.index.follower.write_rows`), and rebuilding every derived
table (`gpucredit.index.derive.rebuild`). JSON-RPC time is not in this figure
(it is the node's); the live lag is measured by tests/index/test_indexer.py
(test_live_lag) and written to the same file under `live_lag_*`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eth_abi import encode  # noqa: E402

from gpucredit.audit.decode import FastDecoder  # noqa: E402
from gpucredit.audit.export import AbiBook, _canonical_type  # noqa: E402
from gpucredit.audit.synthetic import synthetic_history  # noqa: E402
from gpucredit.index import derive  # noqa: E402
from gpucredit.index.follower import _set_meta, create_schema, engine_for, write_rows  # noqa: E402


def _py(item: dict[str, Any], value: Any) -> Any:
    kind = item["type"]
    if kind.endswith("]"):
        inner = dict(item, type=kind[: kind.rindex("[")])
        return [_py(inner, v) for v in value]
    if kind == "tuple":
        return tuple(_py(c, value[c["name"]]) for c in item["components"])
    if kind.startswith("bytes"):
        return bytes.fromhex(value[2:])
    if kind.startswith(("uint", "int")):
        return int(value)
    return value


def raw_logs(events: list[dict[str, Any]], book: AbiBook) -> list[dict[str, Any]]:
    """The events as `eth_getLogs` returns them."""
    out = []
    for ev in events:
        abi = book.event(ev["contract"], ev["event"])
        topics = [bytes.fromhex(abi.topic0[2:])]
        data_items = []
        for item in abi.inputs:
            value = ev["args"][item["name"]]
            if item.get("indexed"):
                if item["type"] in ("string", "bytes") or item["type"].endswith("]"):
                    topics.append(bytes.fromhex(value[2:]))
                else:
                    topics.append(encode([_canonical_type(item)], [_py(item, value)]))
            else:
                data_items.append(item)
        data = encode(
            [_canonical_type(i) for i in data_items],
            [_py(i, ev["args"][i["name"]]) for i in data_items],
        )
        out.append(
            {
                "address": ev["address"],
                "topics": topics,
                "data": data,
                "blockNumber": ev["block"],
                "transactionHash": bytes.fromhex(ev["tx"][2:]),
                "logIndex": ev["log_index"],
            }
        )
    return out


# The worst realistic case: only the events with the most to decode (period closes and
# waterfalls as wide tuples, oracle reports, payments, rate steps, schedules and signer
# sets as arrays, GPU registrations with 500 keys each), cycled to the same count.
HEAVY_MIN_DATA = 128  # bytes of ABI data: everything but transfers, claims and revenue


def heavy_mix(events: list[dict[str, Any]], book: AbiBook, n: int) -> list[dict[str, Any]]:
    """`n` events cycling through the history's heaviest ones, four per block."""
    heavy = [ev for ev in events if len(raw_logs([ev], book)[0]["data"]) >= HEAVY_MIN_DATA]
    out = []
    for i in range(n):
        ev = dict(heavy[i % len(heavy)])
        ev["block"] = 1 + i // 4
        ev["log_index"] = i % 4
        ev["timestamp"] = events[0]["timestamp"] + 12 * ev["block"]
        out.append(ev)
    return out


def run(n: int, page_blocks: int = 2_000, mix: str = "common") -> dict[str, Any]:
    started = time.perf_counter()
    history = synthetic_history(n)
    book = AbiBook()
    events = history.events if mix == "common" else heavy_mix(history.events, book, n)
    logs = raw_logs(events, book)
    stamps = {ev["block"]: ev["timestamp"] for ev in events}
    generate_s = time.perf_counter() - started
    header = history.header
    from gpucredit.audit.export import Manifest

    names = Manifest.from_dict(header["manifest"]).contract_names()
    with tempfile.TemporaryDirectory() as folder:
        engine = engine_for(str(Path(folder) / "index.sqlite"))
        create_schema(engine)
        with engine.begin() as conn:
            _set_meta(conn, "manifest", header["manifest"])
            _set_meta(conn, "terms", header["terms"])
        decoder = FastDecoder(book)
        t0 = time.perf_counter()
        c0 = time.process_time()
        first, last = logs[0]["blockNumber"], logs[-1]["blockNumber"]
        i = 0
        written = 0
        for start in range(first, last + 1, page_blocks):
            end = start + page_blocks - 1
            j = i
            while j < len(logs) and logs[j]["blockNumber"] <= end:
                j += 1
            page = decoder.decode_logs(logs[i:j], names, stamps)
            rows = [
                dict(
                    {k: ev[k] for k in ("block", "log_index", "timestamp", "tx", "contract")},
                    address=ev["address"],
                    event=ev["event"],
                    note_id=None,
                    args=ev["args"],
                )
                for ev in page
            ]
            info = {b: ("0x" + f"{b:064x}", stamps[b]) for b in {r["block"] for r in rows}}
            with engine.begin() as conn:
                write_rows(conn, rows, info, end)
            written += len(rows)
            i = j
        t1 = time.perf_counter()
        with engine.begin() as conn:
            from gpucredit.index.follower import read_meta

            derive.rebuild(conn, read_meta(conn))
        t2 = time.perf_counter()
        c2 = time.process_time()
        size_mb = os.path.getsize(Path(folder) / "index.sqlite") / 1e6
    assert written == n, (written, n)
    return {
        "index_events_per_s": round(n / (t2 - t0), 1),
        "index_events_per_cpu_s": round(n / (c2 - c0), 1),
        "events": n,
        "data_bytes_per_event": round(sum(len(log["data"]) for log in logs) / n, 1),
        "decode_and_write_s": round(t1 - t0, 3),
        "derive_s": round(t2 - t1, 3),
        "sqlite_mb": round(size_mb, 1),
        "generate_s": round(generate_s, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),  # other work on the machine meanwhile
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "index.json")
    args = parser.parse_args()
    common = run(args.events)
    heavy = run(args.events, mix="heavy")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous.update(common)
    previous["heavy"] = {k: v for k, v in heavy.items() if k not in ("cpus",)}
    previous["heavy"]["mix"] = f"events with at least {HEAVY_MIN_DATA} bytes of ABI data, cycled"
    args.out.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"{'':24} {'common mix':>12} {'heavy mix':>12}")
    for key in common:
        print(f"{key:24} {common[key]!s:>12} {heavy.get(key)!s:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
