"""The `gpucredit` CLI, run in the demo's process: every step a person takes is
one of its commands, with `--json`; each call and its answer go to cli.log."""

from __future__ import annotations

import contextlib
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import click

from gpucredit.demo.processes import DemoError
from gpucredit.story import USD


def amount_arg(amount: int) -> str:
    """An amount in 6-decimal units as the CLI takes it (whole units, exact)."""
    return str(Decimal(amount) / USD)


class Cli:
    """`gpucredit ... --json` in this process; every call and its output go to cli.log."""

    def __init__(self, rpc_url: str, manifest: Path, log: IO[str]) -> None:
        from typer.main import get_command

        from gpucredit.cli import app

        self.command = get_command(app)
        self.base = ["--rpc-url", rpc_url, "--manifest", str(manifest)]
        self.log = log

    def __call__(
        self, *args: str, key_env: str | None = None, partial: bool = False
    ) -> dict[str, Any]:
        """The command's JSON answer. `partial`: a command that exits 1 after printing
        its answer (a push some node refused) returns that answer instead of raising."""
        argv = [*args, "--json"] + (["--key-env", key_env] if key_env else [])
        shown = "gpucredit " + " ".join(argv)
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = self.command.main(
                    args=[*self.base, *argv], prog_name="gpucredit", standalone_mode=False
                )
        except click.exceptions.Abort:  # click's form of a Ctrl-C inside the command
            code = 130
        self.log.write(f"$ {shown}\n{stdout.getvalue()}{stderr.getvalue()}\n")
        self.log.flush()
        if code == 130:
            raise KeyboardInterrupt(shown)
        if code == 1 and partial and stdout.getvalue().strip():
            return json.loads(stdout.getvalue())
        if code:
            message = stderr.getvalue().strip() or stdout.getvalue().strip()
            raise DemoError(f"`{shown}` failed (exit {code}): {message}")
        return json.loads(stdout.getvalue())
