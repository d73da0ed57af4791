"""`gpucredit audit ...`: export a deployment's events and replay them.

The main CLI mounts this sub-app: `app.add_typer(audit.cli.app, name="audit")`.

    gpucredit audit export --manifest deployments/31337.json --rpc $RPC -o events.jsonl
    gpucredit audit replay --events events.jsonl --report-dir audit/
    gpucredit audit replay --manifest deployments/31337.json --rpc $RPC --report-dir audit/
    gpucredit audit replay --events events.jsonl --verify-chain --rpc $RPC  # archive vs chain

Exit codes: 0 every decision agrees with the model, 1 at least one mismatch,
2 the input could not be read (manifest, file, RPC) or the archive's hash
chain breaks. `replay` writes its result to stdout, progress and errors to
stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpucredit.audit.errors import AuditError
from gpucredit.audit.export import (
    DEFAULT_BUILD_DIR,
    Export,
    Manifest,
    export_events,
    read_jsonl,
    write_jsonl,
)
from gpucredit.audit.replay import Mismatch, ReplayResult, compare_with_chain, replay, replay_events

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT = 0, 1, 2

app = typer.Typer(
    name="audit",
    help=(
        "Auditor's replay: export every event of a deployment to JSON Lines and replay them "
        "through an independent model of the covenant, coupon and waterfall rules."
    ),
    no_args_is_help=True,
    add_completion=False,
)

ManifestOption = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        "-m",
        help=(
            "Deployment manifest (docs/audit.md; the deploy script's manifest works as is). "
            "Default with --rpc: `deployments/<chain-id>.json`."
        ),
        dir_okay=False,
    ),
]
RpcOption = Annotated[
    str | None,
    typer.Option(
        "--rpc",
        envvar="GPUCREDIT_RPC_URL",
        help="JSON-RPC endpoint of the chain (default: $GPUCREDIT_RPC_URL).",
    ),
]
ToBlockOption = Annotated[
    int | None,
    typer.Option("--to-block", help="Last block to read (default: the chain's latest)."),
]
PageOption = Annotated[
    int,
    typer.Option(
        "--page-size",
        min=1,
        help="Blocks per eth_getLogs request; a refused page is halved and retried.",
    ),
]
BuildOption = Annotated[
    Path,
    typer.Option("--build-dir", help="Directory of the compiled ABIs (brownie's build/contracts)."),
]


def _web3(rpc: str) -> Any:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 60}))
    if not w3.is_connected():
        raise AuditError(f"cannot reach the RPC endpoint {rpc}")
    return w3


def _manifest(manifest_path: Path | None, w3: Any) -> Manifest:
    if manifest_path is None:
        from gpucredit.deployment import manifest_path as default_path

        manifest_path = default_path(int(w3.eth.chain_id))
        if not manifest_path.exists():
            raise AuditError(f"no manifest at {manifest_path}: pass --manifest")
    return Manifest.load(manifest_path)


def _export(
    console: Console,
    manifest: Manifest,
    w3: Any,
    *,
    from_block: int | None,
    to_block: int | None,
    page_size: int,
    build_dir: Path,
) -> Export:
    with Progress(
        TextColumn("reading logs"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} blocks"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("logs", total=1)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return export_events(
            w3,
            manifest,
            from_block=from_block,
            to_block=to_block,
            page_size=page_size,
            build_dir=build_dir,
            progress=advance,
        )


@app.command("export")
def export_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="JSON Lines file to write (header line, then events).",
            dir_okay=False,
        ),
    ],
    manifest: ManifestOption = None,
    rpc: RpcOption = None,
    from_block: Annotated[
        int | None,
        typer.Option("--from-block", help="First block (default: the manifest's start_block)."),
    ] = None,
    to_block: ToBlockOption = None,
    page_size: PageOption = 2_000,
    build_dir: BuildOption = DEFAULT_BUILD_DIR,
) -> None:
    """Write every event of a deployment to JSON Lines, sorted by (block, log index)."""
    console = Console(stderr=True)
    if rpc is None:
        console.print("[red]export needs --rpc (or $GPUCREDIT_RPC_URL)")
        raise typer.Exit(EXIT_INPUT)
    try:
        w3 = _web3(rpc)
        exported = _export(
            console,
            _manifest(manifest, w3),
            w3,
            from_block=from_block,
            to_block=to_block,
            page_size=page_size,
            build_dir=build_dir,
        )
        write_jsonl(exported, out)
    except AuditError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(EXIT_INPUT) from exc
    h = exported.header
    console.print(
        f"{len(exported.events):,} events from blocks {h['from_block']}..{h['to_block']} "
        f"(chain {h['chain_id']}) written to {out}"
    )


def _print_result(console: Console, result: ReplayResult, shown: int, source: str) -> None:
    table = Table(title=f"audit replay of {source}", show_header=False)
    table.add_row("events", f"{result.events:,}")
    table.add_row("transactions", f"{result.transactions:,}")
    table.add_row("period closes", str(result.closes))
    table.add_row("fields and rules checked", f"{result.fields_checked:,}")
    table.add_row("mismatches", str(len(result.mismatches)))
    console.print(table)
    _print_mismatches(console, result.mismatches, shown, "mismatches")


def _print_mismatches(console: Console, mismatches: list[Mismatch], shown: int, title: str) -> None:
    if not mismatches:
        return
    table = Table(title=f"{title} (first {min(shown, len(mismatches))} of {len(mismatches)})")
    for column in ("block", "tx", "log", "line", "event", "field", "expected", "recorded"):
        table.add_column(column, overflow="fold")
    for m in mismatches[:shown]:
        table.add_row(
            str(m.block),
            m.tx[:18],
            "" if m.log_index is None else str(m.log_index),
            "" if m.line is None else str(m.line),
            f"{m.contract}.{m.event}",
            m.field,
            str(m.expected),
            str(m.recorded),
        )
    console.print(table)


@app.command("replay")
def replay_command(
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            "-e",
            help="Replay this JSON Lines export instead of reading the chain.",
            dir_okay=False,
        ),
    ] = None,
    verify_chain: Annotated[
        bool,
        typer.Option(
            "--verify-chain",
            help=(
                "With --events: also compare every line, and the header's head hash, terms "
                "and parties, with the chain (needs --rpc; the manifest is the archive's "
                "unless --manifest is given)."
            ),
        ),
    ] = False,
    manifest: ManifestOption = None,
    rpc: RpcOption = None,
    to_block: ToBlockOption = None,
    page_size: PageOption = 2_000,
    build_dir: BuildOption = DEFAULT_BUILD_DIR,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            "-r",
            help="Write audit.md (+ charts/*.png) and a self-contained audit.html here.",
            file_okay=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Write the summary and every mismatch as JSON here.", dir_okay=False
        ),
    ] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Mismatches to print.")] = 20,
    decimals: Annotated[
        int, typer.Option("--decimals", min=0, help="Stablecoin decimals, for the report.")
    ] = 6,
) -> None:
    """Replay a deployment's events through the reference model; exit 1 on any mismatch.

    Reads a JSON Lines archive (--events; refused, exit 2, where its hash chain
    breaks) or the chain (--manifest and --rpc, from the manifest's start
    block). Every recorded decision (rates, ratios, top-ups, sweeps, waterfall
    buckets, payments, claims, who is paid) is compared with the model's; each
    difference is listed with its block, transaction, line, field, expected and
    recorded value. The result goes to stdout; progress and errors to stderr.
    """
    console = Console(stderr=True)
    archive: list[Mismatch] = []
    try:
        if events is not None:
            loaded = read_jsonl(events)
            replayed = loaded.events
            source = str(events)
            result = replay(loaded)
            if verify_chain:
                if rpc is None:
                    raise AuditError("--verify-chain needs --rpc (or $GPUCREDIT_RPC_URL)")
                w3 = _web3(rpc)
                # the archive's own manifest, unless one is given to check it against
                deployment = (
                    Manifest.load(manifest)
                    if manifest is not None
                    else Manifest.from_dict(loaded.header.get("manifest"))
                )
                on_chain = _export(
                    console,
                    deployment,
                    w3,
                    from_block=int(loaded.header.get("from_block", 0)),
                    to_block=int(loaded.header["to_block"]),
                    page_size=page_size,
                    build_dir=build_dir,
                )
                archive = compare_with_chain(loaded, on_chain.events, on_chain.header)
        elif rpc is not None:
            w3 = _web3(rpc)
            exported = _export(
                console,
                _manifest(manifest, w3),
                w3,
                from_block=None,
                to_block=to_block,
                page_size=page_size,
                build_dir=build_dir,
            )
            source = f"{rpc} (chain {exported.header['chain_id']})"
            replayed = exported.events
            result = replay_events(exported.header, exported.events)
        else:
            raise AuditError("give --events FILE, or --rpc (with --manifest)")
    except AuditError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(EXIT_INPUT) from exc

    out = Console()  # the result goes to stdout, so that a pipe gets it
    _print_result(out, result, show, source)
    _print_mismatches(out, archive, show, "file vs chain differences")
    if report_dir is not None:
        from gpucredit.audit.report import write_report

        paths = write_report(result, report_dir, source=source, decimals=decimals, events=replayed)
        out.print(f"report: {paths['markdown']} and {paths['html']}")
    if json_out is not None:
        payload = {
            "source": source,
            "ok": result.ok and not archive,
            "events": result.events,
            "transactions": result.transactions,
            "closes": result.closes,
            "fields_checked": result.fields_checked,
            "mismatches": [m.to_dict() for m in result.mismatches],
            "archive_differences": [m.to_dict() for m in archive],
        }
        Path(json_out).write_text(json.dumps(payload, indent=2, default=str))
    if result.mismatches or archive:
        out.print(f"[red]FAIL: {len(result.mismatches) + len(archive)} difference(s)")
        raise typer.Exit(EXIT_MISMATCH)
    out.print("[green]PASS: every recorded decision agrees with the model")
