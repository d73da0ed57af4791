"""`gpucredit ... --help` shows every `<placeholder>` its help text has.

The help is rendered as markdown (rich), which drops a bare `<chain-id>` as an
HTML tag: `gpucredit --help` said "Default: deployments/.json".

Run with `python -m pytest -p no:pytest-brownie tests/service/test_cli_help.py`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from gpucredit.cli import app

PLACEHOLDER = re.compile(r"<[A-Za-z][\w-]*>")
COMMAND = get_command(app)


def _commands(command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _flat(text: str) -> str:
    """The help without rich's box drawing and line wrapping."""
    return re.sub(r"[\s│]+", " ", text)


def test_the_real_gpucredit_help_shows_the_manifest_default():
    gpucredit = Path(sys.executable).parent / "gpucredit"
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [str(gpucredit), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    help_text = _flat(result.stdout)
    assert "Default: deployments/<chain-id>.json, or" in help_text
    assert "$GPUCREDIT_DEPLOYMENTS_DIR/<chain-id>.json" in help_text
    assert "deployments/.json" not in help_text


@pytest.mark.parametrize(
    "path", [path for path, _ in _commands(COMMAND)], ids=lambda p: " ".join(p) or "gpucredit"
)
def test_every_placeholder_of_a_help_text_is_shown(path):
    command = COMMAND
    for name in path:
        command = command.commands[name]
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    placeholders = {m for text in texts for m in PLACEHOLDER.findall(text)}
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    assert [p for p in sorted(placeholders) if p not in shown] == []


def test_an_error_message_keeps_its_brackets_and_placeholders():
    """Errors were printed as rich markup: `[options]` or `[floor, cap]` vanished."""
    from gpucredit.cli_common import CliError, handle_errors

    @handle_errors
    def fails(json_out: bool = False) -> None:
        raise CliError(
            "see `gpucredit [OPTIONS] lender`, deployments/<chain-id>.json, [floor, cap]"
        )

    result = CliRunner().invoke(typer_app(fails), [])
    assert result.exit_code == 1
    assert (
        "error: see `gpucredit [OPTIONS] lender`, deployments/<chain-id>.json, [floor, cap]"
        in _flat(result.output)
    )


def test_a_table_keeps_brackets_in_headers_and_cells():
    from rich.console import Console

    from gpucredit.cli_common import kv_table, table

    console = Console(record=True, width=200)
    console.print(table("t [x]", ("rate [floor, cap]",), [("[a] b",)]))
    console.print(kv_table("kv", {"field [unit]": "[value]"}))
    text = console.export_text()
    for shown in ("t [x]", "rate [floor, cap]", "[a] b", "field [unit]", "[value]"):
        assert shown in text


def typer_app(fn):
    import typer

    one = typer.Typer()
    one.command()(fn)
    return one


def test_docs_cli_md_lists_every_command():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    leaves = [" ".join(p) for p, c in _commands(COMMAND) if p and not hasattr(c, "commands")]
    # `gpucredit GROUP COMMAND`, or `COMMAND` after a slash in a row of its group
    missing = [
        path
        for path in leaves
        if f"gpucredit {path}" not in docs and f"/ `{path.split()[-1]}" not in docs
    ]
    assert missing == []
