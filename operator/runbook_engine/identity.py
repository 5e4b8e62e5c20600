"""Who acted, as an authentication system vouched for it (never as a request field claims).

On a cluster the identity is the apiserver's `request.userInfo`, stamped on the object at
admission; locally it is the operating-system user running `runbookctl`. The ledger records it
beside what the request *claims* (`startedBy`, `tenantId`), so an auditor can tell the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_GROUPS = 64
MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user: its name, its groups and, where the authenticator gives one, uid."""

    username: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    source: str = "kubernetes"
    """Who vouched for it: `kubernetes` (apiserver authentication) or `os` (the local user)."""

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "username": self.username,
            "groups": list(self.groups),
            "source": self.source,
        }
        if self.uid:
            out["uid"] = self.uid
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Identity:
        groups = data.get("groups") or ()
        return cls(
            username=str(data["username"])[:MAX_TEXT],
            groups=tuple(str(g)[:MAX_TEXT] for g in list(groups)[:MAX_GROUPS]),
            uid=str(data["uid"])[:MAX_TEXT] if data.get("uid") else None,
            source=str(data.get("source") or "kubernetes"),
        )


def local_identity() -> Identity:
    """The operating-system user running this process (what `runbookctl run` records)."""
    import getpass
    import grp
    import os

    try:
        groups = tuple(sorted({grp.getgrgid(g).gr_name for g in os.getgroups()}))
    except (KeyError, OSError):
        groups = ()
    return Identity(getpass.getuser(), groups[:MAX_GROUPS], str(os.getuid()), source="os")
