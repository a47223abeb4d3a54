"""Grouping: which alerts go out together as one notification, and when (pure, no clock).

Alertmanager's aggregation groups, keyed by receiver and incident instead of by labels, and
aware of merges. An alert joins the group of (receiver, its incident); when incidents are
merged, their groups become the survivor's, so a storm that opens 500 building incidents and
folds them into one heat-source incident within the wait is one notification for the survivor.

Each alert waiting in a group is due by the timing of the route that sent it, and the group
goes out when its first alert is due, taking everything pending along:
- in a group never notified, an alert is due `wait` after it came (`group_wait`), or, while
  new incidents keep opening in the same network (domain) for that receiver, `wait` after the
  latest of them, but no later than `wait_max` after it came (`group_wait_max`). A storm is
  recognised as one fault only as its reports add up: in issue 16's storm (10,000 calls, 500
  buildings, one heat source; bench/storm_peer.py on this machine, 2026-12-07) the roll-up to
  the heat source came about 30 s after the first building incident, so with the wait alone
  95 to 178 groups paged on their own; with the hold, one notification at 48 s;
- after that, growth (opened, escalated, repeat caller: more of the same fault) is due no
  sooner than `interval` after the last notification (`group_interval`); a change of state
  (confirmed, restored, stale, reminders, deadlines, SCADA sources) after its own `wait`.
Nothing is dropped: every alert added is in exactly one batch per receiver, unless `drop`
takes it back (its partition moved elsewhere).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# More of the same fault: updates about these are held to the group interval.
GROWTH_KINDS = frozenset({"incident_opened", "incident_escalated", "repeat_caller"})

# A group with nothing pending is forgotten this long after its last notification, so memory
# follows the open incidents; growth after that pages again after the wait.
RETAIN = timedelta(days=1)


@dataclass(frozen=True)
class Timing:
    """`group_wait`, `group_interval` and `group_wait_max` of the route that sent an alert."""

    wait: timedelta = timedelta(seconds=10)
    interval: timedelta = timedelta(seconds=300)
    wait_max: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class Batch:
    """One notification to send: what one receiver hears about one (surviving) incident."""

    receiver: str
    incident_id: str  # the survivor every alert in it was merged into (or its own incident)
    alerts: tuple[Mapping[str, Any], ...]  # in the order they came
    incidents: tuple[str, ...]  # every incident the group has covered, the survivor first
    update: bool  # the receiver was notified about this group before

    @property
    def alert_ids(self) -> tuple[str, ...]:
        return tuple(str(a["event_id"]) for a in self.alerts)

    @property
    def key(self) -> str:
        """Idempotency key: the alert's own key for one alert, else one for exactly these."""
        if len(self.alerts) == 1:
            return f"{self.alerts[0]['event_id']}/{self.receiver}"
        digest = hashlib.sha256("\n".join(sorted(self.alert_ids)).encode()).hexdigest()[:16]
        return f"group/{self.incident_id}/{digest}/{self.receiver}"

    @property
    def latest(self) -> Mapping[str, Any]:
        """The survivor's latest alert (else the latest one): the state the text leads with."""
        own = [a for a in self.alerts if a.get("incident_id") == self.incident_id]
        return (own or list(self.alerts))[-1]


@dataclass(frozen=True)
class _Waiting:
    alert: Mapping[str, Any]
    joined: datetime
    timing: Timing  # of the route that sent it here

    def due(self, sent_at: datetime | None, busy: datetime | None) -> datetime:
        """When it is due, given the group's last notification and the latest new incident in
        its network."""
        wait = self.timing.wait
        waited = self.joined + wait
        if sent_at is None:
            if busy is None:
                return waited
            cap = self.joined + max(wait, self.timing.wait_max)
            return min(max(waited, busy + wait), cap)
        if self.alert.get("kind") not in GROWTH_KINDS:
            return waited
        return max(waited, sent_at + self.timing.interval)


@dataclass
class _Group:
    receiver: str
    incident_id: str
    domain: str  # the network it is in: its first alert's
    pending: dict[str, _Waiting] = field(default_factory=dict)  # by alert id, as they came
    incidents: dict[str, None] = field(default_factory=dict)  # ordered set, survivor first
    sent_at: datetime | None = None

    def due_at(self, busy: datetime | None) -> datetime | None:
        return min((w.due(self.sent_at, busy) for w in self.pending.values()), default=None)


class Groups:
    """Pending groups keyed by (receiver, incident), following merges; no clock, no I/O."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}
        self._receivers: dict[str, set[str]] = {}  # incident -> receivers with a group of it
        self._into: dict[str, str] = {}  # merged incident -> the incident it was merged into
        self._sent: dict[tuple[str, str], datetime] = {}  # last notification per group key
        self._busy: dict[tuple[str, str], datetime] = {}  # (receiver, domain) -> latest new group

    # -- queries ----------------------------------------------------------------------------

    def survivor_of(self, incident_id: str) -> str:
        """The incident `incident_id` ends in after every merge known here."""
        seen = {incident_id}
        while incident_id in self._into:
            incident_id = self._into[incident_id]
            if incident_id in seen:  # a cycle no correlator makes; stop rather than spin
                break
            seen.add(incident_id)
        return incident_id

    def pending_ids(self) -> set[str]:
        """Ids of the alerts waiting in some group."""
        return {alert_id for g in self._groups.values() for alert_id in g.pending}

    def incidents(self) -> list[str]:
        """The incidents that have a group now (what a merge could still move)."""
        return list(self._receivers)

    def next_due(self) -> datetime | None:
        times = [t for g in self._groups.values() if (t := self._due_at(g)) is not None]
        return min(times, default=None)

    # -- changes ----------------------------------------------------------------------------

    def add(self, alert: Mapping[str, Any], receiver: str, timing: Timing, now: datetime) -> None:
        """`alert` waits for `receiver` in the group of its incident's survivor.

        An alert already waiting for that receiver changes nothing (delivery is at least once).
        """
        alert_id = str(alert["event_id"])
        # An alert about no incident is a group of its own: nothing else is the same fault.
        incident = str(alert.get("incident_id") or f"alert:{alert_id}")
        domain = str(alert.get("domain") or "")
        survivor = self.survivor_of(incident)
        if (receiver, survivor) not in self._groups and domain:
            self._busy[(receiver, domain)] = now  # a new incident in that network
        group = self._group(receiver, survivor, domain)
        if alert_id in group.pending:
            return
        group.pending[alert_id] = _Waiting(alert, now, timing)
        group.incidents.setdefault(incident)

    def merged(self, survivor: str, merged_ids: Iterable[str]) -> None:
        """`merged_ids` were folded into `survivor`: their groups become the survivor's."""
        target = self.survivor_of(survivor)
        for merged_id in merged_ids:
            source = self.survivor_of(merged_id)
            if source == target:
                continue
            self._into[source] = target
            for receiver in sorted(self._receivers.pop(source, set())):
                old = self._groups.pop((receiver, source))
                group = self._group(receiver, target, old.domain)
                group.pending = dict(
                    sorted({**group.pending, **old.pending}.items(), key=lambda kv: kv[1].joined)
                )
                group.incidents.update(old.incidents)
                group.incidents.setdefault(source)
                if old.sent_at is not None:
                    group.sent_at = max(group.sent_at or old.sent_at, old.sent_at)
            for receiver in self._receivers.get(target, set()):
                self._groups[(receiver, target)].incidents.setdefault(source)

    def follow(self, survivor_of: Callable[[str], str]) -> None:
        """Learn every merge `survivor_of` (a read model's view of merges) knows of."""
        for incident in self.incidents():
            survivor = survivor_of(incident)
            if survivor != incident:
                self.merged(survivor, [incident])

    def notified(self, receiver: str, incident_id: str, at: datetime) -> None:
        """`receiver` was notified about the incident's group at `at` (a record read back
        after a restart): growth waits for the interval from then."""
        key = (receiver, self.survivor_of(incident_id))
        self._sent[key] = max(self._sent.get(key, at), at)
        group = self._groups.get(key)
        if group is not None:
            group.sent_at = max(group.sent_at or at, at)

    def drop(self, alert_ids: Iterable[str]) -> None:
        """Take alerts back unsent: another worker owns them now and will send them."""
        gone = set(alert_ids)
        for key, group in list(self._groups.items()):
            for alert_id in gone & group.pending.keys():
                del group.pending[alert_id]
            if not group.pending and group.sent_at is None:
                self._forget(key)

    def due(self, now: datetime) -> list[Batch]:
        """The notifications due at `now`, one per group, earliest first; they leave the groups."""
        ready = sorted(
            (due_at, key)
            for key, group in self._groups.items()
            if (due_at := self._due_at(group)) is not None and due_at <= now
        )
        batches: list[Batch] = []
        for _, key in ready:
            group = self._groups[key]
            alerts = tuple(w.alert for w in group.pending.values())
            batches.append(
                Batch(
                    receiver=group.receiver,
                    incident_id=group.incident_id,
                    alerts=alerts,
                    incidents=tuple(group.incidents),
                    update=group.sent_at is not None,
                )
            )
            group.pending, group.sent_at = {}, now
            self._sent[key] = now
            over = any(
                a.get("kind") == "incident_restored" and a.get("incident_id") == group.incident_id
                for a in alerts
            )
            if over:  # the incident is over; a later alert about it starts afresh
                self._forget(key)
        for key, group in list(self._groups.items()):
            if not group.pending and group.sent_at is not None and now - group.sent_at > RETAIN:
                self._forget(key)
        for memory in (self._sent, self._busy):
            for old in [k for k, at in memory.items() if now - at > RETAIN]:
                del memory[old]
        return batches

    # -- internals --------------------------------------------------------------------------

    def _due_at(self, group: _Group) -> datetime | None:
        return group.due_at(self._busy.get((group.receiver, group.domain)))

    def _group(self, receiver: str, incident_id: str, domain: str = "") -> _Group:
        key = (receiver, incident_id)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(receiver, incident_id, domain)
            group.sent_at = self._sent.get(key)
            group.incidents.setdefault(incident_id)
            self._receivers.setdefault(incident_id, set()).add(receiver)
        return group

    def _forget(self, key: tuple[str, str]) -> None:
        del self._groups[key]
        receivers = self._receivers.get(key[1], set())
        receivers.discard(key[0])
        if not receivers:
            self._receivers.pop(key[1], None)
