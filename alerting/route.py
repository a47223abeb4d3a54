"""Routing: which receivers hear an alert, walking the Alertmanager-like tree (pure, no clock).

At each node the children are tried in order; a matching child handles the alert and, unless it
sets `continue`, ends the search at that level. A node none of whose children matched hands the
alert to its own receiver (inherited from the parent when unset). `on_duty_lead` and
`on_duty_supervisor` are resolved through the roster at `now`. A route's grouping
(`group_wait_seconds`, `group_interval_seconds`, `group_wait_max_seconds`) is inherited the
same way, from the file's top-level defaults down.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from alerting.config import ON_DUTY_LEAD, ON_DUTY_SUPERVISOR, AlertingConfig, Route
from alerting.group import Timing
from alerting.roster import on_duty
from alerting.silence import matches

DEFAULT_TIMING = Timing()


def _timing(route: Route, inherited: Timing) -> Timing:
    wait, interval = route.group_wait_seconds, route.group_interval_seconds
    wait_max = route.group_wait_max_seconds
    return Timing(
        wait=inherited.wait if wait is None else timedelta(seconds=wait),
        interval=inherited.interval if interval is None else timedelta(seconds=interval),
        wait_max=inherited.wait_max if wait_max is None else timedelta(seconds=wait_max),
    )


def matching_routes(
    alert: Mapping[str, Any], route: Route, inherited: str, timing: Timing = DEFAULT_TIMING
) -> list[tuple[str, Timing]]:
    """(receiver name, grouping) pairs the subtree at `route` sends the alert to (on-duty
    names unresolved)."""
    own, own_timing = route.receiver or inherited, _timing(route, timing)
    found: list[tuple[str, Timing]] = []
    for child in route.routes:
        if not matches(child.match, alert):
            continue
        found.extend(matching_routes(alert, child, own, own_timing))
        if not child.continue_:
            break
    return found or [(own, own_timing)]


def matching_receivers(alert: Mapping[str, Any], route: Route, inherited: str) -> list[str]:
    """Receiver names (on-duty names unresolved) the subtree at `route` sends the alert to."""
    return [name for name, _ in matching_routes(alert, route, inherited)]


def targets_for(
    alert: Mapping[str, Any], config: AlertingConfig, now: datetime
) -> list[tuple[str, Timing]]:
    """The concrete receivers for the alert at `now` with their route's grouping, in route
    order, without repeats (the first route to name a receiver sets its grouping).

    When nobody is on duty the root receiver stands in, so an alert is never routed nowhere.
    """
    root = config.route.receiver or "log"
    shift = on_duty(config.roster, now)
    defaults = Timing(
        wait=timedelta(seconds=config.group_wait_seconds),
        interval=timedelta(seconds=config.group_interval_seconds),
        wait_max=timedelta(seconds=config.group_wait_max_seconds),
    )
    resolved: dict[str, Timing] = {}
    for name, timing in matching_routes(alert, config.route, root, defaults):
        if name == ON_DUTY_LEAD:
            name = shift.lead if shift is not None else root
        elif name == ON_DUTY_SUPERVISOR:
            name = shift.supervisor if shift is not None else root
        resolved.setdefault(name, timing)
    return list(resolved.items())


def receivers_for(alert: Mapping[str, Any], config: AlertingConfig, now: datetime) -> list[str]:
    """The concrete receiver names for the alert at `now`, in route order, without repeats.

    When nobody is on duty the root receiver stands in, so an alert is never routed nowhere.
    """
    return [name for name, _ in targets_for(alert, config, now)]
