"""``python -m oracle``: run one oracle node (API + worker) with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from oracle.app import create_app
from oracle.errors import OracleError
from oracle.settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
    except OracleError as exc:
        print(f"oracle: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
