"""`gpucredit risk`: price and stress a note before anyone subscribes (docs/risk.md).

Nothing here touches a chain: the term sheet is read and checked as
`gpucredit issuer create-note` reads it, and its periods are decided by the
same rules as the contracts (`gpucredit.risk.engine`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpucredit.cli_common import JsonOut, emit, handle_errors, out, progress, table
from gpucredit.termsheet import load_termsheet

app = typer.Typer(
    help="Credit risk of a note on its own rules: PD, LGD, EL, VaR, IRR, stress, pricing.",
    no_args_is_help=True,
)

TermsheetArg = Annotated[
    Path, typer.Argument(help="Term sheet YAML (as for `issuer create-note`).")
]
ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario",
        "-s",
        help="Scenario name (base, rent-deflation-40, generation-shock, miner-double-leverage, "
        "liquidity-vacuum) or a scenario YAML file.",
    ),
]
PathsOpt = Annotated[int, typer.Option("--paths", "-n", min=1, help="Monte Carlo paths.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same figures).")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="Processes to use. Default: one per core (1: in process)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="Run the chunks on a Dask cluster (e.g. tcp://10.0.0.5:8786) "
        "instead of local processes.",
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="STEM",
        help="Write STEM.md and a self-contained STEM.html with charts.",
    ),
]


def _spec(path: Path):
    from gpucredit.risk.simulate import EPOCH

    return load_termsheet(path).to_deal_spec(EPOCH)


def _executor(scheduler: str | None) -> Any:
    if scheduler is None:
        return None
    from gpucredit.risk.portfolio import dask_executor

    return dask_executor(scheduler)


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _render_run(r: dict[str, Any]) -> None:
    from gpucredit.risk.report import TRANCHE_HEAD, tranche_rows

    out.print(
        f"scenario {r['scenario']}: {r['paths']:,} paths, {r['term_periods']} periods to "
        f"maturity; event of default within the term {_pct(r['pd_event_of_default'])}"
    )
    out.print(table("tranches", TRANCHE_HEAD, tranche_rows(r)))
    ev = r["events_by_month"]
    months = len(next(iter(ev.values())))
    rows = [[name] + [f"{p:.0%}" for p in probs] for name, probs in ev.items()]
    out.print(
        table("covenant events by month", ["event"] + [str(m + 1) for m in range(months)], rows)
    )


@app.command("run")
@handle_errors
def run_cmd(
    termsheet: TermsheetArg,
    scenario: ScenarioOpt = "base",
    paths: PathsOpt = 100_000,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    report: ReportOpt = None,
    json_out: JsonOut = False,
) -> None:
    """Monte Carlo of one note: per tranche PD, LGD, EL, 99 % VaR and ES, IRR; events by month."""
    from gpucredit.risk.analysis import run_note
    from gpucredit.risk.report import write_reports
    from gpucredit.risk.scenario import load_scenario
    from gpucredit.risk.simulate import deal_params

    spec = _spec(termsheet)
    s = load_scenario(scenario)
    deal = deal_params(spec, s)
    with progress(json_out) as bar:
        task = bar.add_task(f"risk run ({s.name})", total=paths)
        r = run_note(
            deal,
            s,
            paths,
            seed,
            workers=workers,
            executor=_executor(scheduler),
            progress=lambda k: bar.advance(task, k),
        ).as_dict()
    r["inputs"] = {"termsheet": str(termsheet), "seed": seed, "scenario": s.model_dump()}
    if report is not None:
        md, page = write_reports(r, f"Risk of {termsheet.name} ({s.name})", report)
        r["report"] = {"markdown": str(md), "html": str(page)}
    emit(r, json_out, _render_run)
    if report is not None and not json_out:
        out.print(f"report: {r['report']['markdown']}, {r['report']['html']}")


@app.command("stress")
@handle_errors
def stress_cmd(
    termsheet: TermsheetArg,
    paths: Annotated[int, typer.Option("--paths", "-n", min=1, help="Paths per run.")] = 20_000,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    report: ReportOpt = None,
    json_out: JsonOut = False,
) -> None:
    """Named scenarios side by side, a tornado of drivers (senior and junior EL), break-evens."""
    from gpucredit.risk import report as rep
    from gpucredit.risk import stress
    from gpucredit.risk.scenario import NAMED, load_scenario

    spec = _spec(termsheet)
    with progress(json_out) as bar:
        task = bar.add_task("scenarios, tornado, break-even", total=3)
        scen = stress.compare_scenarios(spec, NAMED, paths, seed, workers=workers)
        bar.advance(task)
        torn = stress.tornado(
            spec, load_scenario("base"), max(paths // 4, 1), seed, workers=workers
        )
        bar.advance(task)
        be = stress.break_even(spec, load_scenario("base"))
        bar.advance(task)
    result = {"scenarios": scen, "tornado": torn, "break_even": be}
    if report is not None:
        svgs = []
        for k, name in enumerate(["senior", "junior"][: len(spec.tranches)]):
            rows = [(d["driver"], d["el_low"][k], d["el_high"][k]) for d in torn["drivers"]]
            svgs.append(rep.tornado_svg(f"Expected loss, {name}", rows, torn["base_el"][k]))
        md, page = rep.write_reports(
            scen["base"], f"Stress of {termsheet.name}", report, extra=svgs
        )
        text = md.read_text() + "\n## Scenarios\n\n" + _scenario_markdown(scen)
        md.write_text(text)
        result["report"] = {"markdown": str(md), "html": str(page)}

    def render(r: dict[str, Any]) -> None:
        rows = []
        for name, x in r["scenarios"].items():
            for t in x["tranches"]:
                rows.append(
                    [
                        name,
                        t["name"],
                        _pct(x["pd_event_of_default"]),
                        _pct(t["pd"]),
                        _pct(t["el"]),
                        _pct(t["var99"]),
                        _pct(t["irr_p50"]),
                    ]
                )
        out.print(
            table(
                "scenarios", ["scenario", "tranche", "EoD", "PD", "EL", "VaR 99%", "IRR p50"], rows
            )
        )
        trows = [
            [d["driver"], f"{d['low']:g} / {d['high']:g}"]
            + [f"{_pct(a)} / {_pct(b)}" for a, b in zip(d["el_low"], d["el_high"], strict=True)]
            for d in r["tornado"]["drivers"]
        ]
        out.print(
            table("tornado: EL at low / high", ["driver", "low / high", "senior", "junior"], trows)
        )
        brows = [
            [key, str(x["tranche"]), f"{x['value']:.3f}", x["note"]]
            for key, xs in r["break_even"].items()
            for x in xs
        ]
        out.print(table("break-even (central path)", ["driver", "tranche", "value", ""], brows))

    emit(result, json_out, render)


def _scenario_markdown(scen: dict[str, Any]) -> str:
    lines = ["| scenario | tranche | EoD | PD | EL | VaR 99% |", "|---|---|---|---|---|---|"]
    for name, x in scen.items():
        for t in x["tranches"]:
            lines.append(
                f"| {name} | {t['name']} | {_pct(x['pd_event_of_default'])} | {_pct(t['pd'])} | "
                f"{_pct(t['el'])} | {_pct(t['var99'])} |"
            )
    return "\n".join(lines) + "\n"


@app.command("price")
@handle_errors
def price_cmd(
    termsheet: TermsheetArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the proposed term sheet.")
    ],
    scenario: ScenarioOpt = "base",
    senior_el: Annotated[float, typer.Option(help="Senior expected loss target (share).")] = 0.005,
    junior_el: Annotated[float, typer.Option(help="Junior expected loss target (share).")] = 0.05,
    premium_bps: Annotated[
        int, typer.Option(help="Spread over expected loss per year, bps.")
    ] = 150,
    paths: Annotated[
        int, typer.Option("--paths", "-n", min=1, help="Paths per evaluation.")
    ] = 5_000,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    json_out: JsonOut = False,
) -> None:
    """Propose spreads, collateral ratio and step-up level for EL targets; write a term sheet."""
    import yaml

    from gpucredit.risk.pricing import Targets, price, write_termsheet
    from gpucredit.risk.scenario import load_scenario

    load_termsheet(termsheet)  # names any bad field first
    data = yaml.safe_load(termsheet.read_text())
    s = load_scenario(scenario)
    with progress(json_out) as bar:
        bar.add_task("pricing", total=None)
        r = price(data, s, Targets(senior_el, junior_el, premium_bps), paths, seed, workers=workers)
    write_termsheet(r["termsheet"], output, f"scenario {s.name}, targets {r['targets']}")
    r["output"] = str(output)

    def render(x: dict[str, Any]) -> None:
        out.print(
            f"fleet {x['fleet_gpus']} GPUs -> min collateral ratio "
            f"{x['min_collateral_ratio_pct']}%, "
            f"step-up below {x['step_up_utilization_bps'] / 100:g}% utilization, spreads "
            f"{', '.join(f'{b} bps' for b in x['spreads_bps'])}"
        )
        _render_run(x["result"])
        out.print(f"targets met: {x['targets_met']}; term sheet written to {x['output']}")

    emit(r, json_out, render)


@app.command("portfolio")
@handle_errors
def portfolio_cmd(
    termsheets: Annotated[list[Path], typer.Argument(help="Term sheets of the notes.")],
    scenario: ScenarioOpt = "base",
    paths: PathsOpt = 20_000,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOut = False,
) -> None:
    """Notes on shared market factors: joint loss distribution, several defaults in one year."""
    from gpucredit.risk.portfolio import NoteInput, run_portfolio
    from gpucredit.risk.scenario import load_scenario
    from gpucredit.risk.simulate import deal_params

    s = load_scenario(scenario)
    notes = [NoteInput(str(p), deal_params(_spec(p), s), s) for p in termsheets]
    with progress(json_out) as bar:
        task = bar.add_task("portfolio", total=paths)
        r = run_portfolio(
            notes,
            paths,
            seed,
            workers=workers,
            executor=_executor(scheduler),
            progress=lambda k: bar.advance(task, k),
        )

    def render(x: dict[str, Any]) -> None:
        out.print(
            f"{len(x['notes'])} notes, {x['paths']:,} paths: portfolio EL {_pct(x['el_share'])}, "
            f"VaR 99% {_pct(x['var99_share'])}, ES 99% {_pct(x['es99_share'])}; "
            f"P(2+ notes default in the same year) {_pct(x['p_two_or_more_default_same_year'])}"
        )
        out.print(
            table(
                "defaults",
                ["notes defaulting", "probability"],
                [[str(k), _pct(p)] for k, p in enumerate(x["p_defaults"])],
            )
        )

    emit(r, json_out, render)
