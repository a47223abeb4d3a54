"""Roles and what each may do (pure).

A person or system holds one or more roles; an endpoint needs one permission. Roles do not
nest on their own: a shift lead's extra rights are listed in full, and `admin` manages users
and keys only, so a key for a SCADA feed can never read callers' phone numbers.
"""

from enum import StrEnum
from typing import Literal, get_args

Role = Literal["agent", "shift_lead", "operations", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)


class Permission(StrEnum):
    LOOKUP = "lookup"  # is there a known fault here; incidents and their timelines
    REPORT_CALL = "report_call"  # post a caller's report
    ACT = "act"  # acknowledge, set cause and ETR, resolve
    SILENCE = "silence"  # mute alerts for a while
    SUPERVISE = "supervise"  # reports (callers' numbers for callbacks), notifications sent
    INGEST_SCADA = "ingest_scada"  # SCADA signals and planned works
    TOPOLOGY = "topology"  # read the network model; projection lag
    MANAGE_ACCESS = "manage_access"  # users and API keys


GRANTS: dict[Role, frozenset[Permission]] = {
    "agent": frozenset({Permission.LOOKUP, Permission.REPORT_CALL}),
    "shift_lead": frozenset(
        {
            Permission.LOOKUP,
            Permission.REPORT_CALL,
            Permission.ACT,
            Permission.SILENCE,
            Permission.SUPERVISE,
        }
    ),
    "operations": frozenset({Permission.LOOKUP, Permission.INGEST_SCADA, Permission.TOPOLOGY}),
    "admin": frozenset({Permission.MANAGE_ACCESS}),
}


def permits(roles: frozenset[str], permission: Permission) -> bool:
    return any(permission in GRANTS[role] for role in ROLES if role in roles)


def roles_with(permission: Permission) -> list[Role]:
    """The roles that grant a permission, for "needs role ..." answers and the API document."""
    return [role for role in ROLES if permission in GRANTS[role]]


def parse_roles(text: str) -> frozenset[Role]:
    """'agent,shift_lead' -> the roles; an unknown name is refused with the known ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"give at least one role: {', '.join(ROLES)}")
    unknown = [n for n in names if n not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; roles are: {', '.join(ROLES)}")
    return frozenset(n for n in ROLES if n in names)
