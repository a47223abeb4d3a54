"""Unit tests for grouping: group_wait, group_interval, merges, and that nothing is dropped."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.group import Batch, Groups, Timing

T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
TIMING = Timing(wait=timedelta(seconds=10), interval=timedelta(seconds=300))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(event_id: str, incident: str, kind: str = "incident_opened", **fields: Any) -> dict:
    return {"event_id": event_id, "incident_id": incident, "kind": kind, **fields}


def storm(groups: Groups, buildings: int, receiver: str = "lead") -> None:
    """`buildings` building incidents open one a tenth of a second apart, then all merge into
    the first one, which rolls up to the heat source: as the correlator decides a storm."""
    for n in range(1, buildings + 1):
        groups.add(alert(f"a/B{n}/opened", f"B{n}"), receiver, TIMING, at(n / 10))
    rolled = alert("a/B1/rolled_up", "B1", "incident_escalated", device_id="HS-1")
    groups.add(rolled, receiver, TIMING, at(5.5))
    groups.merged("B1", [f"B{n}" for n in range(2, buildings + 1)])


def test_fifty_building_incidents_merged_within_the_wait_are_one_notification() -> None:
    """50 building incidents merged into one within the wait: one batch for the survivor."""
    groups = Groups()
    storm(groups, 50)
    assert groups.due(at(10)) == []  # the first alert came at 0.1 s: due at 10.1 s
    [batch] = groups.due(at(10.1))
    assert (batch.receiver, batch.incident_id, batch.update) == ("lead", "B1", False)
    assert len(batch.incidents) == 50 and batch.incidents[0] == "B1"
    assert len(batch.alerts) == 51 and batch.latest["event_id"] == "a/B1/rolled_up"
    assert batch.key.startswith("group/B1/") and batch.key.endswith("/lead")
    assert groups.due(at(3600)) == [] and groups.pending_ids() == set()


def test_a_storm_recognised_after_the_wait_is_still_one_notification() -> None:
    """Building incidents open for 30 s, the roll-up merges them all at 32 s: while new ones
    keep opening in the network the first pages wait, so the survivor pages once."""
    groups = Groups()
    for n in range(1, 61):
        item = alert(f"a/B{n}/opened", f"B{n}", domain="HS")
        groups.add(item, "lead", TIMING, at(n / 2))
        assert groups.due(at(n / 2)) == []
    groups.add(
        alert("a/B1/rolled_up", "B1", "incident_escalated", domain="HS"), "lead", TIMING, at(32)
    )
    groups.merged("B1", [f"B{n}" for n in range(2, 61)])
    assert groups.next_due() == at(40)  # the wait after the last new incident (30 s)
    [batch] = groups.due(at(40))
    assert batch.incident_id == "B1" and len(batch.incidents) == 60 and len(batch.alerts) == 61


@pytest.mark.parametrize(
    ("last_opened", "due"),
    [
        (0, 10),  # alone in its network: the wait
        (25, 35),  # new incidents until 25 s: the wait after the last
        (55, 60),  # ... but no longer than group_wait_max after it came
        (100, 60),
    ],
)
def test_a_first_page_waits_while_its_network_keeps_opening_incidents(
    last_opened: float, due: float
) -> None:
    """Separate faults in a network where incidents keep opening: each pages separately, the
    wait after the latest new incident there, at most group_wait_max after it came."""
    groups = Groups()
    groups.add(alert("a/X", "X", domain="HS"), "lead", TIMING, at(0))
    for n, seconds in enumerate(range(5, int(last_opened) + 1, 5)):
        groups.add(alert(f"a/Y{n}", f"Y{n}", domain="HS"), "lead", TIMING, at(seconds))
    assert [b.incident_id for b in groups.due(at(due) - timedelta(milliseconds=1))] == []
    assert "X" in [b.incident_id for b in groups.due(at(due))]


def test_other_networks_and_receivers_do_not_hold_a_first_page() -> None:
    """New incidents in another network, or routed to another receiver, change no wait."""
    groups = Groups()
    groups.add(alert("a/X", "X", domain="HS"), "lead", TIMING, at(0))
    for n in range(1, 10):
        groups.add(alert(f"a/Y{n}", f"Y{n}", domain="OTHER"), "lead", TIMING, at(n))
        groups.add(alert(f"a/Z{n}", f"Z{n}", domain="HS"), "desk", TIMING, at(n))
    assert [b.incident_id for b in groups.due(at(10))] == ["X"]


def test_two_separate_faults_are_two_notifications() -> None:
    """Two incidents never merged page separately, each after its own wait."""
    groups = Groups()
    groups.add(alert("a/X/opened", "X"), "lead", TIMING, at(0))
    groups.add(alert("a/Y/opened", "Y"), "lead", TIMING, at(4))
    assert [b.incident_id for b in groups.due(at(10))] == ["X"]
    assert [b.incident_id for b in groups.due(at(14))] == ["Y"]


@pytest.mark.parametrize(
    ("kind", "later", "due"),
    [
        # Growth after the first notification waits for the interval from it...
        ("incident_opened", 20, 310),
        ("incident_escalated", 20, 310),
        ("repeat_caller", 20, 310),
        # ... or its own wait, if that ends later.
        ("incident_escalated", 305, 315),
        # A change of state goes out after its own wait.
        ("incident_confirmed", 20, 30),
        ("incident_restored", 20, 30),
        ("incident_unacknowledged", 20, 30),
        ("deadline_escalated", 20, 30),
    ],
)
def test_after_the_first_notification_growth_waits_for_the_interval(
    kind: str, later: float, due: float
) -> None:
    """Growth is an update no sooner than group_interval; a change of state waits group_wait."""
    groups = Groups()
    groups.add(alert("a/X/opened", "X"), "lead", TIMING, at(0))
    [first] = groups.due(at(10))
    assert not first.update
    groups.add(alert(f"a/X/{kind}", "X", kind), "lead", TIMING, at(later))
    assert groups.next_due() == at(due)
    assert groups.due(at(due) - timedelta(milliseconds=1)) == []
    [update] = groups.due(at(due))
    assert update.update and update.alert_ids == (f"a/X/{kind}",)


def test_everything_pending_goes_with_a_change_of_state() -> None:
    """A restore due after its wait takes the growth waiting in the group along."""
    groups = Groups()
    groups.add(alert("a/X/opened", "X"), "lead", TIMING, at(0))
    groups.due(at(10))
    groups.add(alert("a/X/grew", "X", "incident_escalated"), "lead", TIMING, at(20))
    groups.add(alert("a/X/restored", "X", "incident_restored"), "lead", TIMING, at(25))
    [batch] = groups.due(at(35))
    assert batch.alert_ids == ("a/X/grew", "a/X/restored")
    assert batch.latest["kind"] == "incident_restored"


def test_each_alert_waits_as_long_as_its_route_says() -> None:
    """A route with a shorter wait (restorations at once) brings its receiver's group forward."""
    groups = Groups()
    groups.add(alert("a/X/opened", "X"), "lead", TIMING, at(0))
    quick = Timing(wait=timedelta(seconds=2), interval=TIMING.interval)
    groups.add(alert("a/X/restored", "X", "incident_restored"), "lead", quick, at(3))
    [batch] = groups.due(at(5))
    assert batch.alert_ids == ("a/X/opened", "a/X/restored")


def test_an_incident_merged_after_its_own_notification_grows_the_survivor() -> None:
    """A group already notified, merged into another: its growth is the survivor's update."""
    groups = Groups()
    groups.add(alert("a/X/opened", "X"), "lead", TIMING, at(0))
    groups.add(alert("a/Y/opened", "Y"), "lead", TIMING, at(1))
    assert len(groups.due(at(11))) == 2
    groups.merged("X", ["Y"])
    groups.add(alert("a/Y/grew", "Y", "incident_escalated"), "lead", TIMING, at(20))
    assert groups.due(at(300)) == []  # X was notified at 11 s: the update waits until 311 s
    [update] = groups.due(at(311))
    assert (update.incident_id, update.update, update.incidents) == ("X", True, ("X", "Y"))


def test_merges_of_merges_end_in_one_survivor() -> None:
    """B merged into A, then A into S: an alert about B joins S's group."""
    groups = Groups()
    groups.add(alert("a/B", "B"), "lead", TIMING, at(0))
    groups.merged("A", ["B"])
    groups.merged("S", ["A"])
    groups.add(alert("a/B/restored", "B", "incident_restored"), "lead", TIMING, at(1))
    assert groups.survivor_of("B") == "S"
    [batch] = groups.due(at(10))
    assert batch.incident_id == "S" and set(batch.incidents) == {"S", "A", "B"}


def test_follow_learns_merges_from_a_read_model() -> None:
    """`follow` asks a lookup (the incident book) where each grouped incident ended up."""
    groups = Groups()
    for name in ("B1", "B2", "C1"):
        groups.add(alert(f"a/{name}", name), "lead", TIMING, at(0))
    merged_into = {"B2": "B1"}
    groups.follow(lambda incident: merged_into.get(incident, incident))
    assert sorted(b.incident_id for b in groups.due(at(10))) == ["B1", "C1"]


def test_receivers_are_grouped_apart() -> None:
    """The lead and the supervisor each get their own notification about one incident."""
    groups = Groups()
    groups.add(alert("a/X", "X"), "lead", TIMING, at(0))
    groups.add(alert("a/X", "X"), "supervisor", Timing(wait=timedelta(0)), at(0))
    assert [b.receiver for b in groups.due(at(0))] == ["supervisor"]
    assert [b.receiver for b in groups.due(at(10))] == ["lead"]


def test_a_duplicate_alert_changes_nothing() -> None:
    """The same alert id twice (delivery is at least once) is in the notification once."""
    groups = Groups()
    groups.add(alert("a/X", "X"), "lead", TIMING, at(0))
    groups.add(alert("a/X", "X"), "lead", TIMING, at(2))
    [batch] = groups.due(at(10))
    assert batch.alert_ids == ("a/X",) and batch.key == "a/X/lead"


def test_a_notification_read_back_after_a_restart_holds_growth_to_the_interval() -> None:
    """`notified` (a record from before a restart): new growth waits for the interval."""
    groups = Groups()
    groups.notified("lead", "X", at(0))
    groups.add(alert("a/X/grew", "X", "incident_escalated"), "lead", TIMING, at(5))
    assert groups.next_due() == at(300)


def test_dropped_alerts_leave_their_groups() -> None:
    """Alerts of a partition another worker took over are taken back unsent."""
    groups = Groups()
    groups.add(alert("a/X", "X"), "lead", TIMING, at(0))
    groups.add(alert("a/Y", "Y"), "lead", TIMING, at(0))
    groups.drop(["a/X"])
    assert groups.pending_ids() == {"a/Y"} and groups.incidents() == ["Y"]
    assert [b.incident_id for b in groups.due(at(10))] == ["Y"]


def test_an_alert_without_an_incident_is_a_group_of_its_own() -> None:
    """Alerts naming no incident are never folded together."""
    groups = Groups()
    groups.add({"event_id": "x1", "kind": "scada_source_lost"}, "lead", TIMING, at(0))
    groups.add({"event_id": "x2", "kind": "scada_source_lost"}, "lead", TIMING, at(0))
    assert len(groups.due(at(10))) == 2


def test_the_group_key_names_exactly_its_alerts() -> None:
    """A group's idempotency key is the same for the same alerts, in any order, and differs
    when one more is in it (a receiver that de-duplicates keeps the bigger update)."""

    def batch(*ids: str) -> Batch:
        alerts = tuple(alert(i, "S") for i in ids)
        return Batch("lead", "S", alerts, incidents=("S",), update=False)

    assert batch("a", "b").key == batch("b", "a").key != batch("a", "b", "c").key
    assert batch("a").key == "a/lead"


Op = tuple[str, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "merge", "due", "wait"]),
        st.integers(0, 5),  # incident
        st.integers(0, 2),  # receiver, or the incident merged into
    ),
    max_size=60,
)
KINDS = ["incident_opened", "incident_escalated", "incident_confirmed", "incident_restored"]


@settings(max_examples=200, deadline=None)
@given(ops)
def test_nothing_is_dropped_and_nothing_is_sent_twice(script: list[Op]) -> None:
    """Any mix of alerts, merges and flushes: each alert reaches each receiver exactly once."""
    groups, now, batches = Groups(), T0, []
    added: set[tuple[str, str]] = set()
    for step, (op, incident, other) in enumerate(script):
        if op == "add":
            receiver = ["lead", "supervisor", "desk"][other]
            kind = KINDS[step % len(KINDS)]
            item = alert(f"a{step}", f"I{incident}", kind, domain=f"D{incident % 2}")
            groups.add(item, receiver, TIMING, now)
            added.add((f"a{step}", receiver))
        elif op == "merge":
            groups.merged(f"I{other}", [f"I{incident}"])
        elif op == "due":
            batches += groups.due(now)
        else:
            now += timedelta(seconds=incident * 40)
    batches += groups.due(now + timedelta(days=2))
    sent = Counter((alert_id, b.receiver) for b in batches for alert_id in b.alert_ids)
    assert set(sent) == added and max(sent.values(), default=1) == 1
    assert groups.pending_ids() == set()
