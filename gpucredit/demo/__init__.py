"""`make demo`: a year of a GPU-backed note, end to end, on a local chain.

Everything is real and runs on this machine: an anvil chain (its own process,
a free port), the protocol deployed by `scripts/deploy.py`, four oracle
nodes (`python -m oracle`, each with its own key and SQLite database, on
loopback), and the `gpucredit` CLI's commands for every step a person takes:

1. the issuer creates a senior and a junior note from examples/termsheet.yaml
   and whitelists the lenders of examples/lenders.csv;
2. three lenders subscribe (the junior tranche is oversubscribed and cut pro
   rata); the operator registers 1,000 GPUs from a CSV written by
   examples/make_fleet.py, the attestor attests them, the operator pledges
   them; the issuer closes the window and draws down;
3. twelve 30-day periods follow the seeds' story: strong utilization (the
   coupon steps down), a demand shock below 60 % (the coupon steps up, a
   collateral top-up is required, cash is swept to senior principal, equity
   is blocked), the operator pledges 250 more GPUs (the cure), recovery, and
   redemption at maturity. Each period the operator pushes signed telemetry
   to the four nodes and pays the revenue in; the nodes sign the period,
   gather a 3-of-4 quorum (f = 1), post the report and close the period
   on-chain. In the first demand-shock period node-d lies (it signs 95 %
   utilization: outvoted, the stored figures are the honest ones); in a
   recovery period node-c is down (the other three still post).

A period lasts 30 days of *chain* time: the demo moves anvil's clock
(`evm_increaseTime` + `evm_mine`) and the nodes run with
`GPUCREDIT_ORACLE_CLOCK=chain`, so "now" for them is the latest block's time.

At maturity the collateral is released, the lenders redeem and claim their
coupons, the fee recipient and the operator withdraw; the demo checks that
every stablecoin unit the servicer and the tranches still hold is claimable
by a named party (`ledger.py`). Then, with the chain still up, it writes an
auditable archive into the run folder (`archive.py`: `audit/manifest.json`,
`audit/events.jsonl`, the replay's report `audit/audit.html`, and
`index.sqlite` for the web app), replays it, and prints the exact commands
to replay it (`gpucredit audit replay --events ...`) and to browse it
(`gpucredit serve --db ...`). It prints a timeline (one row per period) and
where the logs are, stops every process it started (also on an error or
Ctrl-C) and exits 0 (1 if a step failed or the archive does not replay clean).

    python -m gpucredit.demo                  # what `make demo` runs
    python -m gpucredit.demo --dir /tmp/demo  # keep the run's files there
    python -m gpucredit.demo --keep           # `make demo KEEP=1`: the chain and the
                                              # nodes run on until Ctrl-C
    python -m gpucredit.demo --story default  # `make demo STORY=default`: the bad year

The bad year (`default.py`): a demand shock meets a lapsed cure; default,
trustee step-in, a missed report, a fire sale, the wind-down waterfall with
a loss to the junior tranche, the liens released.

The package, by concern: `setup.py` the deal's set-up told with the CLI
(chain, deployment, nodes, note, subscriptions, pledge, drawdown), `story.py`
the year, maturity and the archive, `default.py` the bad year,
`processes.py` what it runs (anvil, the deploy script, the oracle nodes, the
supervisor that stops them), `commands.py` the in-process CLI,
`telemetry.py` what the operator uploads, `timeline.py` a row per closed
period read back from the chain, `ledger.py` where every unit is,
`archive.py` the archive and its replay, `display.py` what it prints,
`__main__.py` the command line.
"""

from gpucredit.demo.processes import NODE_NAMES, DemoError, deploy_script
from gpucredit.story import STORY

__all__ = ["NODE_NAMES", "STORY", "DemoError", "deploy_script"]
