"""`gpucredit index`: follow the deployment's chain into SQL (docs/indexer.md).

gpucredit index                          # catch up into var/index.sqlite, then exit
gpucredit index --db postgresql+psycopg://u@host/db --confirmations 6 --follow
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from web3 import Web3

from gpucredit.audit.errors import AuditInputError
from gpucredit.audit.export import Manifest
from gpucredit.cli_common import SETTINGS, err, out
from gpucredit.index.follower import DEFAULT_DB, Indexer, engine_for

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="GPUCREDIT_INDEX_DB",
        help="SQLAlchemy URL or SQLite file of the index (env GPUCREDIT_INDEX_DB), e.g. "
        "`postgresql+psycopg://user@host/db`.",
    ),
]


def load_manifest(w3: Web3) -> Manifest:
    path = SETTINGS.manifest
    if path is None:
        from gpucredit.deployment import manifest_path

        path = manifest_path(int(w3.eth.chain_id))
    if not Path(path).exists():
        raise AuditInputError(f"no manifest at {path}: pass --manifest before `index`")
    return Manifest.load(Path(path))


def index(
    db: DbOption = DEFAULT_DB,
    confirmations: Annotated[
        int, typer.Option("--confirmations", "-n", min=0, help="Index blocks this deep only.")
    ] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep following new blocks until Ctrl-C.")
    ] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between polls (--follow).")] = 1.0,
    page_blocks: Annotated[
        int, typer.Option("--page-blocks", min=1, help="Blocks fetched and written per page.")
    ] = 2_000,
    to_block: Annotated[int | None, typer.Option("--to-block", help="Stop at this block.")] = None,
) -> None:
    """Index every protocol event of the deployment into SQL (resumable, reorg-safe)."""
    try:
        w3 = Web3(Web3.HTTPProvider(SETTINGS.rpc_url, request_kwargs={"timeout": 60}))
        manifest = load_manifest(w3)
        indexer = Indexer(
            w3,
            manifest,
            engine_for(db),
            confirmations=confirmations,
            page_blocks=page_blocks,
            build_dir=SETTINGS.artifacts,
        )
        with Progress(
            TextColumn("indexing blocks"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("index", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = indexer.sync(to_block=to_block, progress=progress)
        if result.reorged_from is not None:
            out.print(f"reorg: rolled back from block {result.reorged_from}")
        out.print(
            f"indexed blocks {result.from_block}..{result.to_block}: {result.events} new events"
        )
        while follow:
            time.sleep(poll)
            result = indexer.sync(to_block=to_block)
            if result.reorged_from is not None:
                out.print(f"reorg: rolled back from block {result.reorged_from}")
            if result.events:
                out.print(f"block {result.to_block}: {result.events} new events")
    except AuditInputError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
