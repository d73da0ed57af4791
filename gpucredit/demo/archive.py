"""The run's auditable archive: what an auditor replays after the demo.

At the end of a run, with the chain still up, the demo writes into
`<run>/audit/`:

- `manifest.json`: the audit manifest (`Manifest.to_dict`, docs/audit.md) of
  the deployment manifest the deploy script wrote (`<run>/deployments/31337.json`);
- `events.jsonl`: every event of the deployment (`export_events` + `write_jsonl`);
- `audit.md`, `audit.html`, `charts/`: the replay's report (`write_report`);

replays the archive offline (`read_jsonl` + `replay`, as `gpucredit audit
replay --events` does) and indexes the chain into `<run>/index.sqlite` for
the web app (`gpucredit serve --db ...`). Only the audit package's public
functions are used: the archive is whatever `gpucredit audit export` writes.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpucredit.audit.export import Manifest, export_events, read_jsonl, write_jsonl
from gpucredit.audit.replay import replay
from gpucredit.audit.report import write_report


@dataclass
class Archive:
    """Where the archive is and what its replay found."""

    events_file: Path
    manifest_file: Path
    deployment_manifest: Path
    report_dir: Path
    index_db: Path
    events: int
    closes: int
    fields_checked: int
    mismatches: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_file": str(self.events_file),
            "manifest_file": str(self.manifest_file),
            "deployment_manifest": str(self.deployment_manifest),
            "report_dir": str(self.report_dir),
            "index_db": str(self.index_db),
            "events": self.events,
            "closes": self.closes,
            "fields_checked": self.fields_checked,
            "ok": self.ok,
            "mismatches": self.mismatches,
            "replay_command": self.replay_command(),
        }

    def replay_command(self, rpc_url: str | None = None) -> str:
        """The exact command that replays the archive (and, with a live chain, checks it
        line by line against the chain's logs)."""
        argv = ["gpucredit", "audit", "replay", "--events", shown(self.events_file)]
        if rpc_url is not None:
            argv += ["--verify-chain", "--rpc", rpc_url, "--manifest", shown(self.manifest_file)]
        argv += ["--report-dir", shown(self.report_dir)]
        return shlex.join(argv)

    def serve_command(self) -> str:
        return shlex.join(["gpucredit", "serve", "--db", shown(self.index_db)])

    def index_command(self, rpc_url: str) -> str:
        """Follows the live chain into the same index (the demo kept running)."""
        argv = ["gpucredit", "--rpc-url", rpc_url, "--manifest", shown(self.deployment_manifest)]
        return shlex.join([*argv, "index", "--db", shown(self.index_db), "--follow"])


def shown(path: Path) -> str:
    """`path` relative to the working directory when it is under it (shorter to copy)."""
    cwd = Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def write_archive(w3: Any, deployment_manifest: Path, run_dir: Path) -> Archive:
    """Exports, replays, reports and indexes the run's deployment (chain still up)."""
    audit_dir = run_dir / "audit"
    audit_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(deployment_manifest)
    manifest_file = audit_dir / "manifest.json"
    manifest_file.write_text(json.dumps(manifest.to_dict(), indent=1) + "\n")
    events_file = audit_dir / "events.jsonl"
    write_jsonl(export_events(w3, manifest), events_file)
    loaded = read_jsonl(events_file)
    result = replay(loaded)
    write_report(result, audit_dir, source=shown(events_file), events=loaded.events)
    index_db = run_dir / "index.sqlite"
    index(w3, manifest, index_db)
    return Archive(
        events_file=events_file,
        manifest_file=manifest_file,
        deployment_manifest=deployment_manifest,
        report_dir=audit_dir,
        index_db=index_db,
        events=result.events,
        closes=result.closes,
        fields_checked=result.fields_checked,
        mismatches=[m.to_dict() for m in result.mismatches],
    )


def index(w3: Any, manifest: Manifest, db: Path) -> None:
    """What `gpucredit index --db DB` does, once, into the run's folder."""
    from gpucredit.index.follower import Indexer, engine_for

    engine = engine_for(str(db))
    try:
        Indexer(w3, manifest, engine).sync()
    finally:
        engine.dispose()
