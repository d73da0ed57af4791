"""`gpucredit serve`: the read-only web app over the index (docs/web.md).

gpucredit index && gpucredit serve --port 8400   # http://127.0.0.1:8400
"""

from __future__ import annotations

from typing import Annotated

import typer

from gpucredit.cli_common import out
from gpucredit.cli_index import DbOption
from gpucredit.index.follower import DEFAULT_DB


def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")
    ] = 8400,
) -> None:
    """Serve the notes, lender, audit pages and exports from the index (read-only)."""
    import uvicorn

    from gpucredit.web.app import create_app

    out.print(f"gpucredit web app on http://{host}:{port} (index {db})")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")
