"""Exceptions of the audit package.

`AuditError` derives from the tooling's one base exception
(`gpucredit.deployment.GpucreditError`), so the `gpucredit` CLI reports audit
errors like any other.
"""

from __future__ import annotations

from gpucredit.deployment import GpucreditError


class AuditError(GpucreditError):
    """Base class of every error the audit tooling raises."""


class AuditInputError(AuditError):
    """A manifest, an events file or an RPC answer the audit cannot use."""
