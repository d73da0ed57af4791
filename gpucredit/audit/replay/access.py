"""Roles (access control) and identities (KYC): who may call what, and whom a note may reach."""

from __future__ import annotations

from gpucredit.audit.export import (
    Event,
)
from gpucredit.audit.replay.base import (
    ReplayBase,
)


class AccessReplay(ReplayBase):
    """Role grants and revocations; the identity registry's whitelist."""

    def _role(self, ev: Event) -> None:
        args = ev["args"]
        roles = self.roles.setdefault(ev["address"].lower(), {})
        members = roles.setdefault(str(args["role"]).lower(), set())
        if ev["event"] == "RoleGranted":
            members.add(str(args["account"]).lower())
        else:
            members.discard(str(args["account"]).lower())

    def _has_role(self, contract: str, role: str, account: str) -> bool:
        return account.lower() in self.roles.get(contract.lower(), {}).get(role, set())

    def _need_role(self, ev: Event, role: str, role_name: str, account: str) -> None:
        ok = self._has_role(ev["address"], role, account)
        self._require(ev, f"{role_name} of {account}", ok, f"{account} lacks {role_name}")

    def _identity_registered(self, ev: Event) -> None:
        a = ev["args"]
        expires = int(a["expiresAt"])
        future = expires > ev["timestamp"]
        self._require(ev, "expiry in the future", future, "IdentityExpiryInPast")
        self.identities.register(str(a["account"]).lower(), expires)

    def _identity_removed(self, ev: Event) -> None:
        self.identities.remove(str(ev["args"]["account"]).lower())

    def _identity_frozen(self, ev: Event) -> None:
        a = ev["args"]
        self.identities.freeze(str(a["account"]).lower(), bool(a["frozen"]))

    def _verified(self, ev: Event, account: str) -> None:
        problem = self.identities.problem(account.lower(), ev["timestamp"])
        self._rule(ev, f"{account} whitelisted", problem)
