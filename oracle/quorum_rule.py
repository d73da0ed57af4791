"""The fault rule of a set of oracle nodes: ``n >= 3f + 1``, quorum ``2f + 1``.

``n`` nodes sign a fleet's observations; up to ``f`` of them may lie or stay
silent. A report needs ``2f + 1`` distinct observations: among them at most
``f`` lie, so the median lies within the honest range, and the ``n - f``
honest nodes still make a quorum when ``f`` are down, which needs
``n - f >= 2f + 1``, i.e. ``n >= 3f + 1`` (Chainlink's ``setConfig`` refuses
``3f >= n`` for the same reason). The contract enforces this per fleet; a node
checks its own configuration at start-up and refuses one that breaks it.
"""

from __future__ import annotations


def max_fault_bound(nodes: int) -> int:
    """The largest ``f`` that ``nodes`` nodes tolerate: ``floor((n - 1) / 3)``."""
    return (nodes - 1) // 3


def quorum_for(fault_bound: int) -> int:
    """Observations a report needs when ``fault_bound`` nodes may be faulty."""
    return 2 * fault_bound + 1


def node_set_violation(nodes: int, fault_bound: int) -> str | None:
    """Why ``nodes`` nodes cannot tolerate ``fault_bound`` faulty ones, or None."""
    if fault_bound < 0:
        return f"the fault bound f = {fault_bound} is negative"
    needed = 3 * fault_bound + 1
    if nodes < needed:
        return (
            f"{nodes} node(s) cannot tolerate f = {fault_bound} faulty one(s): "
            f"n >= 3f + 1 needs at least {needed} nodes (this node and {needed - 1} peers); "
            f"{nodes} node(s) tolerate f = {max_fault_bound(nodes)}"
        )
    return None
