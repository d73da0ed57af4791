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

It prints a timeline (one row per period) and where the logs are, stops every
process it started (also on an error or Ctrl-C) and exits 0.

    python -m gpucredit.demo                  # what `make demo` runs
    python -m gpucredit.demo --dir /tmp/demo  # keep the run's files there

The package, by concern: `story.py` the demo's story told with the CLI
(set-up, the note, the year, maturity), `processes.py` what it runs (anvil,
the deploy script, the oracle nodes, the supervisor that stops them),
`commands.py` the in-process CLI, `timeline.py` a row per closed period read
back from the chain, `display.py` what it prints, `__main__.py` the command
line.
"""

from gpucredit.demo.processes import NODE_NAMES, DemoError, deploy_script
from gpucredit.story import STORY

__all__ = ["NODE_NAMES", "STORY", "DemoError", "deploy_script"]
