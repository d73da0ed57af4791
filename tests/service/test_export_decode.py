"""`gpucredit audit export` decodes with the indexer's fast decoder
(gpucredit/audit/decode.py) and still writes the very archive the reference
decoding (`export.decode_logs`) wrote.

The demo years' archives (tests/fixtures/audit/*.jsonl, written with the
reference decoding) are turned back into the logs a node returns
(bench/index_bench.py `raw_logs`); `export_events` then runs over them, with the
node's other answers (chain id, head block, timestamps, terms, parties) taken
from the archive, and its file must equal the fixture byte for byte; the
reference decoding of the same logs gives the same lines.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness import ensure_artifacts

from gpucredit.audit import export
from gpucredit.audit.decode import FastDecoder
from gpucredit.audit.export import (
    AbiBook,
    Manifest,
    archive_lines,
    decode_logs,
    export_events,
    read_jsonl,
    write_jsonl,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "audit"
sys.path.insert(0, str(ROOT / "bench"))


@pytest.mark.parametrize("name", ["demo-year.jsonl", "default-year.jsonl"])
def test_export_with_the_fast_decoder_is_byte_identical(name, tmp_path, monkeypatch):
    ensure_artifacts("Servicer", "NoteTranche", "CollateralRegistry")
    from index_bench import raw_logs

    path = FIXTURES / name
    archive = read_jsonl(path)
    header = archive.header
    book = AbiBook()
    raw = raw_logs(archive.events, book)
    stamps = {ev["block"]: ev["timestamp"] for ev in archive.events}
    head = {"number": header["to_block"], "hash": bytes.fromhex(header["head_hash"][2:])}
    w3 = SimpleNamespace(eth=SimpleNamespace(chain_id=header["chain_id"], get_block=lambda _: head))
    monkeypatch.setattr(export, "fetch_logs", lambda *a, **k: list(raw))
    monkeypatch.setattr(export, "_block_timestamps", lambda _w3, numbers: stamps)
    monkeypatch.setattr(export, "read_terms", lambda *a: header["terms"])
    monkeypatch.setattr(export, "read_parties", lambda *a: header["parties"])
    reference = decode_logs(
        raw, Manifest.from_dict(header["manifest"]).contract_names(), book, stamps
    )

    calls = []
    fast = FastDecoder.decode_logs

    def spy(self, *args):
        calls.append(len(args[0]))
        return fast(self, *args)

    monkeypatch.setattr(FastDecoder, "decode_logs", spy)
    exported = export_events(w3, Manifest.from_dict(header["manifest"]))
    assert calls == [len(raw)]  # the export decoded with the fast decoder
    out = tmp_path / name
    write_jsonl(exported, out)
    assert out.read_bytes() == path.read_bytes()
    fields = {k: v for k, v in header.items() if k not in ("events", "archive_head")}
    assert archive_lines(fields, reference) == archive_lines(fields, exported.events)
