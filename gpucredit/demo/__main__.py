"""`python -m gpucredit.demo` (what `make demo` runs): the command line, signals,
clean-up. See the package docstring (gpucredit/demo/__init__.py)."""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

import gpucredit.demo as package
from gpucredit.demo.default import DefaultDemo
from gpucredit.demo.display import Display
from gpucredit.demo.processes import REPO, DemoError
from gpucredit.demo.story import Demo


def default_run_dir() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return REPO / "var" / "demo" / stamp


STORIES = {"good": Demo, "default": DefaultDemo}
TITLES = {
    "good": "one year of a GPU-backed note, on a local chain",
    "default": "a bad year: demand shock, lapsed cure, default and wind-down, on a local chain",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gpucredit.demo",
        description=(package.__doc__ or "").split("\n\n")[0],
        epilog="Runs anvil, scripts/deploy.py, four `python -m oracle` nodes and the gpucredit "
        "CLI; writes an auditable archive (audit/manifest.json, audit/events.jsonl) and replays "
        "it; stops them all at the end (--keep: at Ctrl-C). See the package docstring "
        "(gpucredit/demo/__init__.py).",
    )
    parser.add_argument(
        "--story",
        choices=sorted(STORIES),
        default="good",
        help="good: the year of gpucredit/story.py (default); default: the bad year "
        "(demand shock, lapsed cure, default, trustee step-in, wind-down with a loss)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep anvil and the oracle nodes running after the story, until Ctrl-C, "
        "to explore the chain with the gpucredit CLI and the web app",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="directory for the run's logs, databases and files (default: var/demo/<UTC time>)",
    )
    parser.add_argument(
        "--period-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the nodes to report and close one period (default 90)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = (args.dir or default_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(width=170, highlight=False)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    # Ctrl-C stops the demo even when it was started in the background, where
    # the shell sets SIGINT to "ignore" and Python then leaves it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console.rule(f"[bold]gpucredit demo: {TITLES[args.story]}")
    display = Display(console)
    demo = STORIES[args.story](run_dir, display, args.period_timeout)
    code = 0
    shown = False
    try:
        demo.run()
        if args.keep:  # show everything now: the user explores while it runs
            show(display, demo, keep=True)
            shown = True
            demo.wait_for_ctrl_c()
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        code = 1
    except KeyboardInterrupt:
        if shown:
            console.print("Ctrl-C: stopping the chain and the nodes")
        else:
            console.print("[bold yellow]interrupted[/]: stopping everything the demo started")
            code = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
        console.print_exception()
        console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        demo.supervisor.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if code == 0 and not shown:
        show(display, demo, keep=False)
    if code == 0 and not demo.archive.ok:  # the demo's promise: its archive replays clean
        first = demo.archive.mismatches[0]
        console.print(
            f"[bold red]demo failed:[/] the replay of {demo.archive.events_file} found "
            f"{len(demo.archive.mismatches)} mismatch(es); the first: {first['contract']}."
            f"{first['event']} (line {first['line']}) {first['field']}: expected "
            f"{first['expected']}, recorded {first['recorded']}"
        )
        code = 1
    if not shown:
        display.logs(run_dir)
    stopped = ", ".join(f"{c.name} (pid {c.proc.pid})" for c in demo.supervisor.children)
    if stopped:
        console.print(f"stopped: {stopped}")
    return code


def show(display: Display, demo: Demo, keep: bool) -> None:
    """The timeline, the lenders, the archive and how to replay and browse it."""
    display.timeline(
        demo.rows, demo.summary.get("lenders", []), demo.subscriptions, story=demo.name
    )
    t = demo.timings
    display.console.print(
        f"done in {t['total']:.0f} s: set-up {t['setup']:.0f} s (deploy "
        f"{t['deploy_done']:.0f} s), {len(demo.rows)} periods and the end {t['year']:.0f} s"
    )
    display.archive(demo.archive, rpc_url=demo.chain.url if keep else None)
    if keep:
        display.logs(demo.run_dir)
        display.keeping(demo.chain.url, demo.manifest, demo.archive)


if __name__ == "__main__":
    sys.exit(main())
