"""Routing: which receivers hear an alert, walking the Alertmanager-like tree (pure, no clock).

At each node the children are tried in order; a matching child handles the alert and, unless it
sets `continue`, ends the search at that level. A node none of whose children matched hands the
alert to its own receiver (inherited from the parent when unset). `on_duty_lead` and
`on_duty_supervisor` are resolved through the roster at `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from alerting.config import ON_DUTY_LEAD, ON_DUTY_SUPERVISOR, AlertingConfig, Route
from alerting.roster import on_duty
from alerting.silence import matches


def matching_receivers(alert: Mapping[str, Any], route: Route, inherited: str) -> list[str]:
    """Receiver names (on-duty names unresolved) the subtree at `route` sends the alert to."""
    own = route.receiver or inherited
    found: list[str] = []
    for child in route.routes:
        if not matches(child.match, alert):
            continue
        found.extend(matching_receivers(alert, child, own))
        if not child.continue_:
            break
    return found or [own]


def receivers_for(alert: Mapping[str, Any], config: AlertingConfig, now: datetime) -> list[str]:
    """The concrete receiver names for the alert at `now`, in route order, without repeats.

    When nobody is on duty the root receiver stands in, so an alert is never routed nowhere.
    """
    root = config.route.receiver or "log"
    shift = on_duty(config.roster, now)
    resolved: list[str] = []
    for name in matching_receivers(alert, config.route, root):
        if name == ON_DUTY_LEAD:
            name = shift.lead if shift is not None else root
        elif name == ON_DUTY_SUPERVISOR:
            name = shift.supervisor if shift is not None else root
        if name not in resolved:
            resolved.append(name)
    return resolved
