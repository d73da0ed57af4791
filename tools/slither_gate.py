"""Slither gate: `make slither` (and so `make test`) runs this.

    python tools/slither_gate.py [--summary PATH] [--triage PATH]

1. Compiles every `contracts/**/*.sol` in one standard-JSON compilation
   (crytic-compile with the solc-js adapter named in `slither.config.json`)
   and saves it as a crytic-compile archive. `slither contracts` alone would
   only see `contracts/*.sol`, and brownie mode cannot resolve
   OpenZeppelin's re-exporting files.
2. Runs the slither command line on that archive twice with `--json -`:
   once as usual, once with `--show-ignored-findings`. A finding only the
   second run reports is suppressed in the source by a
   `// slither-disable-next-line <detector>` comment.
3. Fails (exit 1) when
   - any high or medium finding is not suppressed;
   - a low or informational finding is not listed in the triage file
     (`docs/slither-triage.md`, section "Accepted findings");
   - a suppressed finding (any impact) is not listed in the section
     "Suppressed in source";
   - a triage row matches no finding of its section (stale), or has no
     justification.

A finding is matched by (detector, contract, function): the first element of
the finding, or the contract and function that contain it; `-` when there is
no enclosing function. `--summary PATH` writes the counts as JSON for
`bench/security.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "slither.config.json"
TRIAGE = ROOT / "docs" / "slither-triage.md"
ARCHIVE = ROOT / "build" / "slither" / "contracts.zip"
ACCEPTED = "Accepted findings"
SUPPRESSED = "Suppressed in source"
GATED = ("High", "Medium")


@dataclass(frozen=True)
class Key:
    detector: str
    contract: str
    function: str

    def __str__(self) -> str:
        return f"{self.detector} | {self.contract} | {self.function}"


@dataclass(frozen=True)
class Finding:
    key: Key
    impact: str
    id: str
    text: str


class GateError(Exception):
    """The gate could not run (compilation, slither itself, a malformed triage file)."""


def compile_archive(config: dict) -> Path:
    """One standard-JSON compilation of every contract, saved for slither."""
    from crytic_compile import CryticCompile, save_to_zip
    from crytic_compile.platform.solc_standard_json import SolcStandardJson

    # solc's own warnings (name shadowing, unoptimised code size) are not findings.
    logging.getLogger("CryticCompile").setLevel(logging.ERROR)

    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "contracts").rglob("*.sol"))
    if not sources:
        raise GateError("no Solidity files under contracts/")
    standard_json = SolcStandardJson()
    standard_json.add_source_files(sources)
    compilation = CryticCompile(
        standard_json,
        solc=str(ROOT / config["solc"]),
        solc_remaps=config.get("solc_remaps"),
        solc_working_dir=str(ROOT),
    )
    ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    save_to_zip([compilation], str(ARCHIVE))
    return ARCHIVE


def run_slither(archive: Path, *extra: str) -> list[dict]:
    """The detector results of `slither <archive> --json -`."""
    slither = Path(sys.executable).with_name("slither")
    command = [str(slither), str(archive), "--config-file", str(CONFIG), "--json", "-", *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise GateError(
            f"slither printed no JSON (exit {done.returncode}):\n{done.stderr}"
        ) from exc
    if not output.get("success"):
        raise GateError(f"slither failed: {output.get('error')}\n{done.stderr}")
    return output.get("results", {}).get("detectors", [])


def _enclosing(element: dict) -> tuple[str, str]:
    """(contract, function) of a result element, walking up its parents."""
    contract, function = "-", "-"
    node: dict | None = element
    while node is not None:
        kind = node.get("type")
        if kind == "function" and function == "-":
            function = node["name"]
        elif kind in ("contract", "interface", "library"):
            contract = node["name"]
            break
        node = node.get("type_specific_fields", {}).get("parent")
    return contract, function


def to_finding(result: dict) -> Finding:
    elements = result.get("elements") or [{}]
    contract, function = _enclosing(elements[0])
    first_line = result["description"].strip().splitlines()[0]
    return Finding(
        Key(result["check"], contract, function), result["impact"], result["id"], first_line
    )


def load_triage(path: Path) -> dict[str, dict[Key, str]]:
    """Section -> {key: justification} from the markdown tables of the triage file."""
    sections: dict[str, dict[Key, str]] = {ACCEPTED: {}, SUPPRESSED: {}}
    current: str | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if line.startswith("## "):
            title = line[3:].strip()
            current = next((name for name in sections if title.startswith(name)), None)
            continue
        if current is None or not line.startswith("|"):
            continue
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        if len(cells) != 4:
            raise GateError(f"{path}:{number}: expected 4 columns, got {len(cells)}")
        if cells[0] in ("detector", "") or set(cells[0]) <= set("-: "):
            continue  # header or separator
        key = Key(*cells[:3])
        if key in sections[current]:
            raise GateError(f"{path}:{number}: {key} listed twice")
        sections[current][key] = cells[3]
    return sections


def evaluate(
    visible: list[Finding], everything: list[Finding], triage: dict[str, dict[Key, str]]
) -> tuple[list[str], dict[str, int]]:
    """(failures, counts) of one gate run."""
    visible_ids = {f.id for f in visible}
    suppressed = [f for f in everything if f.id not in visible_ids]
    failures: list[str] = []
    for f in visible:
        if f.impact in GATED:
            failures.append(f"{f.impact.lower()} finding: {f.key}: {f.text}")
        elif f.key not in triage[ACCEPTED]:
            failures.append(f"untriaged {f.impact.lower()} finding: {f.key}: {f.text}")
    for f in suppressed:
        if f.key not in triage[SUPPRESSED]:
            failures.append(f"suppressed in source but not triaged: {f.key}: {f.text}")
    for section, found in ((ACCEPTED, visible), (SUPPRESSED, suppressed)):
        keys = {f.key for f in found}
        for key, why in triage[section].items():
            if key not in keys:
                failures.append(f"stale triage row ({section}): {key}")
            if not why:
                failures.append(f"triage row without a justification ({section}): {key}")
    impacts = Counter(f.impact for f in visible)
    counts = {
        "high": impacts["High"],
        "medium": impacts["Medium"],
        "low": impacts["Low"],
        "informational": impacts["Informational"],
        "optimization": impacts["Optimization"],
        "suppressed_in_source": len(suppressed),
        "triage_rows": sum(len(rows) for rows in triage.values()),
    }
    return failures, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, help="write the finding counts as JSON here")
    parser.add_argument("--triage", type=Path, default=TRIAGE, help="the triage file")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        config = json.loads(CONFIG.read_text())
        archive = compile_archive(config)
        visible = [to_finding(r) for r in run_slither(archive)]
        everything = [to_finding(r) for r in run_slither(archive, "--show-ignored-findings")]
        triage = load_triage(args.triage)
    except GateError as exc:
        print(f"slither gate: {exc}", file=sys.stderr)
        return 1
    failures, counts = evaluate(visible, everything, triage)

    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(counts, indent=2) + "\n")
    summary = ", ".join(f"{name} {value}" for name, value in counts.items())
    print(f"slither gate: {summary} ({time.monotonic() - started:.0f} s)")
    for failure in failures:
        print(f"  FAIL {failure}", file=sys.stderr)
    if failures:
        print(f"slither gate: {len(failures)} problem(s); see {args.triage}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
