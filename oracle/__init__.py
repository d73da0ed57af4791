"""gpucredit oracle service: operators push signed telemetry, nodes sign and post reports.

Run one node with ``python -m oracle``; see docs/oracle-service.md.
"""

__version__ = "0.1.0"
