"""`gpucredit`: the command line of issuers, lenders, operators and attestors.

    gpucredit issuer create-note examples/termsheet.yaml
    gpucredit issuer whitelist examples/lenders.csv
    gpucredit lender subscribe 1 250k --tranche senior
    gpucredit operator register fleet.csv --note 1
    gpucredit lender position 1 --json

It talks to the chain with web3.py, finds the contracts in the deployment
manifest (`deployments/<chain-id>.json`, written by scripts/deploy.py) and
their ABIs in build/contracts. Keys come from environment variables
(`GPUCREDIT_<ROLE>_KEY`) or keystore files, never from the repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gpucredit import (
    cli_dev,
    cli_fleet,
    cli_index,
    cli_issuer,
    cli_kyc,
    cli_lender,
    cli_operator,
    cli_registry,
    cli_risk,
    cli_servicer,
    cli_trustee,
    cli_web,
)
from gpucredit.audit import cli as audit_cli
from gpucredit.cli_common import (
    DEFAULT_RPC_URL,
    SETTINGS,
    JsonOut,
    client,
    emit,
    handle_errors,
    out,
    table,
)

app = typer.Typer(
    name="gpucredit",
    help="GPU-backed SPV notes: issuer, lender, operator and attestor workflows on-chain.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    rpc_url: Annotated[
        str,
        typer.Option(
            "--rpc-url",
            envvar="GPUCREDIT_RPC_URL",
            help="JSON-RPC endpoint of the chain (env GPUCREDIT_RPC_URL).",
        ),
    ] = DEFAULT_RPC_URL,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            envvar="GPUCREDIT_MANIFEST",
            # in backticks: the markdown help renderer drops a bare <chain-id> as HTML
            help="Deployment manifest to use (env GPUCREDIT_MANIFEST). Default: "
            "`deployments/<chain-id>.json`, or `$GPUCREDIT_DEPLOYMENTS_DIR/<chain-id>.json`.",
        ),
    ] = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            envvar="GPUCREDIT_ARTIFACTS_DIR",
            help="Directory of compiled contracts (env GPUCREDIT_ARTIFACTS_DIR). "
            "Default: build/contracts of this checkout (`brownie compile`).",
        ),
    ] = None,
) -> None:
    """Global options; they go before the command group, e.g.
    `gpucredit --rpc-url http://127.0.0.1:8545 lender position 1`."""
    SETTINGS.rpc_url = rpc_url
    SETTINGS.manifest = manifest
    SETTINGS.artifacts = artifacts
    if not out.is_terminal:  # piped or captured: wide tables instead of rich's 80 columns
        out.width = int(os.environ.get("COLUMNS") or 160)


app.add_typer(cli_issuer.app, name="issuer")
app.add_typer(cli_lender.app, name="lender")
app.add_typer(cli_operator.app, name="operator")
app.add_typer(cli_operator.attestor_app, name="attestor")
app.add_typer(cli_servicer.app, name="servicer")
app.add_typer(cli_trustee.app, name="trustee")
app.add_typer(cli_fleet.app, name="fleet")
app.add_typer(cli_registry.valuer_app, name="valuer")
app.add_typer(cli_registry.challenge_app, name="challenge")
app.add_typer(cli_kyc.app, name="kyc")
app.add_typer(cli_dev.app, name="dev")
cli_operator.attestor_app.command("reject")(cli_registry.reject)
cli_issuer.app.command("pause")(cli_kyc.pause)
cli_issuer.app.command("unpause")(cli_kyc.unpause)
app.add_typer(audit_cli.app, name="audit")
app.add_typer(cli_risk.app, name="risk")
app.command("index")(cli_index.index)
app.command("serve")(cli_web.serve)


@app.command()
@handle_errors
def deployment(json_out: JsonOut = False) -> None:
    """Show the deployment on the connected chain: contracts, roles and notes."""
    c = client()
    m = c.manifest
    result: dict[str, Any] = m.model_dump(mode="json")
    result["manifest_path"] = str(c.manifest_path)

    def render(r: dict[str, Any]) -> None:
        out.print(
            f"chain {r['chain_id']} ({r['network']}), deployed by {r['deployer']} from block "
            f"{r['block']}; solc {r['compiler'].get('solc')}; manifest {r['manifest_path']}"
        )
        rows = [
            (key, rec["contract"], rec["address"], rec.get("block") or "external")
            for key, rec in r["contracts"].items()
        ]
        out.print(table("contracts", ("key", "contract", "address", "block"), rows))
        roles = [
            (k, ", ".join(v) if isinstance(v, list) else (v or "-")) for k, v in r["roles"].items()
        ]
        out.print(table("roles", ("role", "addresses"), roles))
        notes = [
            (n["note_id"], n["name"], ", ".join(n["tranches"]), n["servicer"]["address"])
            for n in r["notes"].values()
        ]
        if notes:
            out.print(table("notes", ("id", "name", "tranches", "servicer"), notes))

    emit(result, json_out, render)


if __name__ == "__main__":
    app()
