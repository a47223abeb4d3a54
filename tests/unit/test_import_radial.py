"""The radial builder shared by every network importer."""

import pytest

from topology.importers.radial import Device, NetworkGraph, NotRadial
from topology.load import topology_from_rows


def _feeder_with_ring(closed: bool) -> NetworkGraph:
    graph = NetworkGraph("power")
    graph.add_point("grid", Device("SUB", "substation"))
    graph.insert(Device("CB-1", "feeder"), "grid", "b1")
    graph.connect("b1", "b2", "line 1-2")
    graph.connect("b2", "b3", "line 2-3")
    graph.insert(Device("T-3", "transformer"), "b3", "lv3")
    graph.hang("lv3", Device("B-3", "building", customers=4))
    graph.connect("b1", "b4", "line 1-4")
    if closed:
        graph.connect("b4", "b3", "line 4-3")
    return graph


def test_devices_parent_is_nearest_device_towards_the_infeed() -> None:
    """Buses and lines collapse: the transformer hangs off the feeder breaker, the building off
    the transformer, and parents come before children."""
    built = _feeder_with_ring(closed=False).build(["grid"])
    parents = {node.id: node.parent for node in built.nodes}
    assert parents == {"SUB": None, "CB-1": "SUB", "T-3": "CB-1", "B-3": "T-3"}
    topology = topology_from_rows([node.model_dump() for node in built.nodes])
    assert topology.path("B-3") == ("SUB", "CB-1", "T-3", "B-3")


def test_a_ring_closed_through_lines_is_reported_with_the_loop() -> None:
    """A closed ring is refused, and the message walks the ring from a point back to itself."""
    with pytest.raises(NotRadial) as raised:
        _feeder_with_ring(closed=True).build(["grid"])
    loop = raised.value.loop
    assert loop[0] == loop[-1] == "b1"
    assert {"line 1-2", "line 2-3", "line 1-4", "line 4-3"} <= set(loop)
    assert "not radial" in str(raised.value)


def test_two_infeeds_meeting_is_a_loop_between_them() -> None:
    """Two substations joined over closed lines form a loop through the grid."""
    graph = NetworkGraph("power")
    graph.add_point("g1", Device("S1", "substation"))
    graph.add_point("g2", Device("S2", "substation"))
    graph.connect("g1", "x", "line a")
    graph.connect("g2", "x", "line b")
    with pytest.raises(NotRadial) as raised:
        graph.build(["g1", "g2"])
    assert set(raised.value.loop) >= {"g1", "g2", "line a", "line b"}


def test_devices_no_infeed_reaches_are_listed_as_unfed() -> None:
    """A part of the model behind an open switch is left out and named, not silently dropped."""
    graph = _feeder_with_ring(closed=False)
    graph.insert(Device("T-9", "transformer"), "island", "lv9")
    graph.hang("lv9", Device("B-9", "building"))
    built = graph.build(["grid"])
    assert built.unfed == ["B-9", "T-9"]
    assert "T-9" not in {node.id for node in built.nodes}


def test_progress_is_reported_up_to_the_total() -> None:
    """The builder reports progress ending at done == total, for the CLI's progress bar."""
    seen: list[tuple[int, int]] = []
    _feeder_with_ring(closed=False).build(["grid"], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] > 0
