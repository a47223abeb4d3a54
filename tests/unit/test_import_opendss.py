"""The OpenDSS importer on the IEEE 13, 34 and 123 node test feeders and on small scripts.

The counts are what the importer makes of the real feeders (measured once, then pinned): a
change in them means the mapping changed, which the docs then have to say.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from topology.importers.opendss import import_opendss
from topology.importers.radial import ImportedNetwork, NotRadial
from topology.load import topology_from_rows
from topology.model import Topology, TopologyError

FEEDERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ieee-test-feeders"


def _feeder(relative: str) -> Path:
    path = FEEDERS / relative
    if not path.exists():
        reason = f"IEEE test feeder not found at {path} (see shared/data/README.md)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI has shared/ beside the clone: a skip there would hide a loss
        pytest.skip(reason)
    return path


def _import(path: Path) -> ImportedNetwork:
    return import_opendss([str(path)])


def _topology(network: ImportedNetwork) -> Topology:
    return topology_from_rows([node.model_dump() for node in network.nodes])


def _kinds(network: ImportedNetwork) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for node in network.nodes:
        kinds[node.kind] = kinds.get(node.kind, 0) + 1
    return kinds


def _script(tmp_path: Path, text: str, name: str = "master.dss") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


FEEDER_COUNTS = [
    pytest.param(
        "13Bus/IEEE13Nodeckt.dss",
        {
            "substation": 1,
            "feeder": 1,
            "switch": 1,
            "transformer": 1,
            "building": 9,
            "premise": 693,
        },
        id="ieee13",
    ),
    pytest.param(
        "34Bus/ieee34Mod1.dss",
        {"substation": 1, "feeder": 1, "transformer": 1, "building": 28, "premise": 367},
        id="ieee34-mod1",
    ),
    pytest.param(
        "34Bus/ieee34Mod2.dss",
        {"substation": 1, "feeder": 1, "transformer": 1, "building": 25, "premise": 355},
        id="ieee34-mod2",
    ),
    pytest.param(
        "123Bus/IEEE123Master.dss",
        {
            "substation": 1,
            "feeder": 1,
            "switch": 7,
            "transformer": 1,
            "building": 85,
            "premise": 698,
        },
        id="ieee123",
    ),
    pytest.param(
        "123Bus/IEEE123Switches.dss",
        {
            "substation": 1,
            "feeder": 1,
            "switch": 5,
            "transformer": 1,
            "building": 85,
            "premise": 698,
        },
        id="ieee123-switches",
    ),
]


@pytest.mark.parametrize(("relative", "counts"), FEEDER_COUNTS)
def test_ieee_feeder_imports_to_pinned_counts(relative: str, counts: dict[str, int]) -> None:
    """Each IEEE feeder becomes one tree with the pinned number of nodes per kind, and every
    device is reached from the source."""
    network = _import(_feeder(relative))
    assert _kinds(network) == counts
    assert network.unfed == []
    topology = _topology(network)
    roots = [node.id for node in network.nodes if node.parent is None]
    assert len(roots) == 1
    assert topology.customers_under(roots[0]) == counts["premise"]


@pytest.mark.parametrize(("relative", "counts"), FEEDER_COUNTS)
def test_every_premise_is_fed_from_the_substation_through_a_feeder(
    relative: str, counts: dict[str, int]
) -> None:
    """A premise's path starts at the substation and passes a feeder breaker, then its
    building: a call can be blamed on every device between it and the source."""
    topology = _topology(_import(_feeder(relative)))
    premises = [node for node in topology.nodes.values() if node.kind == "premise"]
    assert len(premises) == counts["premise"]
    for premise in premises:
        kinds = [topology.node(node_id).kind for node_id in topology.path(premise.id)]
        assert kinds[0] == "substation"
        assert kinds[1] == "feeder"
        assert kinds[-2:] == ["building", "premise"]


def test_ieee13_maps_transformer_switch_and_regulators() -> None:
    """In the 13-node feeder the substation transformer and the regulator bank vanish into the
    substation, line 650632 is the feeder, XFM1 feeds bus 634 and switch 671692 feeds 692/675."""
    topology = _topology(_import(_feeder("13Bus/IEEE13Nodeckt.dss")))
    prefix = "ieee13nodeckt"
    assert topology.path(f"{prefix}/bus-634")[:3] == (
        f"{prefix}/source",
        f"{prefix}/650632",
        f"{prefix}/xfm1",
    )
    assert topology.parent(f"{prefix}/bus-675") == f"{prefix}/671692"
    assert topology.parent(f"{prefix}/bus-692") == f"{prefix}/671692"
    assert not any("reg" in node_id or node_id.endswith("/sub") for node_id in topology.nodes)
    # 671: 1155 kW at one premise per 5 kW
    assert len(topology.premises_under(f"{prefix}/bus-671")) == 231


def test_ieee123_switches_nest() -> None:
    """In the 123-node feeder a switch downstream of another has it as an ancestor: Sw5 sits
    under Sw4 under Sw2, Sw6 (and transformer XFM1 behind it) under Sw2, Sw3 beside Sw2, all
    under the feeder switch Sw1."""
    topology = _topology(_import(_feeder("123Bus/IEEE123Switches.dss")))
    assert topology.node("ieee123/sw1").kind == "feeder"
    assert topology.ancestors("ieee123/sw5") == (
        "ieee123/sw4",
        "ieee123/sw2",
        "ieee123/sw1",
        "ieee123/source",
    )
    assert topology.parent("ieee123/sw6") == "ieee123/sw2"
    assert topology.parent("ieee123/xfm1") == "ieee123/sw6"
    assert topology.parent("ieee123/sw3") == "ieee123/sw1"
    assert topology.covers("ieee123/sw4", "ieee123/bus-104")
    assert not topology.covers("ieee123/sw2", "ieee123/bus-35")


def test_ieee123_normally_open_switches_are_left_out_and_named() -> None:
    """The open ties Sw7 and Sw8 cut the graph: they are no nodes, and a note names them."""
    network = _import(_feeder("123Bus/IEEE123Switches.dss"))
    ids = {node.id for node in network.nodes}
    assert {"ieee123/sw7", "ieee123/sw8"}.isdisjoint(ids)
    assert any("ieee123/sw7, ieee123/sw8" in note for note in network.notes)


def test_ieee123_bus_addresses_resolve_to_their_building() -> None:
    """The synthetic address 'Bus 48, ieee123' lands on the building at bus 48."""
    topology = _topology(_import(_feeder("123Bus/IEEE123Master.dss")))
    assert topology.resolve(address="Bus 48, ieee123").node_id == "ieee123/bus-48"


def test_closing_a_normally_open_switch_reports_the_loop(tmp_path: Path) -> None:
    """Closing tie Sw8 (bus 54 to 94) makes a ring through both branches: refused, with the
    loop walking from a bus back to itself through Sw8."""
    switches = _feeder("123Bus/IEEE123Switches.dss")
    master = _script(tmp_path, f'Redirect "{switches}"\nClose Line.Sw8 term=2\n')
    with pytest.raises(NotRadial) as raised:
        _import(master)
    loop = raised.value.loop
    assert loop[0] == loop[-1]
    assert {"ieee123/sw8", "54", "94"} <= set(loop)
    assert raised.value.source == str(master)


SMALL = """\
Clear
New Circuit.demo basekv=115 bus1=src  // a stiff source
New Transformer.sub phases=3 windings=2 buses=[src mv] kvs=[115 12.47]
! a bank of three single-phase regulators: one connection, not three
New Transformer.rega phases=1 buses=[mv.1 mvr.1] kvs=[7.2 7.2]
New Transformer.regb like=rega buses=[mv.2 mvr.2]
New Transformer.regc like=rega buses=[mv.3 mvr.3]
New Line.head bus1=mvr bus2=b1
New Line.l2 b1 b2
New Fuse.f2 MonitoredObj=Line.l2
New Transformer.t3 phases=3 windings=2
~wdg=1 bus=b2 kv=12.47
~ wdg=2 bus=lv kv=0.4
New Line.sw4 bus1=lv bus2=lv2 switch=yes
New Load.small bus1=lv2.1 kW=1
New Load.big bus1=lv2.2 kW=12
New Line.l5 bus1=b1 bus2=b5
Line.l5.enabled=no
New Load.cut bus1=b5 kW=5
New Capacitor.c1 bus1=b1 kvar=300
Redirect loadshapes.dss
Set VoltageBases=[115 12.47 0.4]
calcv
Solve
"""


def test_a_small_script_maps_every_element_kind(tmp_path: Path) -> None:
    """Substation transformer and regulator bank collapse, the fused line is a fuse, the
    step-down a transformer, `switch=yes` a switch; premises come from kW; a disabled line
    cuts its branch; a missing redirect is only a note."""
    network = _import(_script(tmp_path, SMALL))
    topology = _topology(network)
    premise = "demo/big-1"
    assert topology.path(premise) == (
        "demo/source",
        "demo/head",
        "demo/l2",
        "demo/t3",
        "demo/sw4",
        "demo/bus-lv2",
        premise,
    )
    assert [topology.node(node_id).kind for node_id in topology.path(premise)] == [
        "substation",
        "feeder",
        "fuse",
        "transformer",
        "switch",
        "building",
        "premise",
    ]
    # 1 kW -> at least one premise; 12 kW -> two at one per 5 kW
    assert topology.premises_under("demo/bus-lv2") == ("demo/big-1", "demo/big-2", "demo/small-1")
    assert topology.node("demo/bus-lv2").address == "Bus lv2, demo"
    assert network.unfed == ["demo/bus-b5", "demo/cut-1"]
    assert any("loadshapes.dss" in note and "missing" in note for note in network.notes)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("New Lien.l3 bus1=b1 bus2=b3", "unknown class 'lien'"),
        ("Frobnicate everything", "unknown command 'Frobnicate'"),
        ('New Line.l3 bus1=b1 bus2="b3', "unbalanced"),
        ("Open Line.nowhere", "line.nowhere is not defined"),
    ],
)
def test_a_malformed_line_is_an_error_naming_file_and_line(
    tmp_path: Path, bad: str, reason: str
) -> None:
    """An unknown class or command, an unclosed quote or an undefined element stops the import
    with the file and line, rather than silently dropping part of the network."""
    path = _script(tmp_path, f"New Circuit.t bus1=a\nNew Line.l1 bus1=a bus2=b1\n{bad}\n")
    with pytest.raises(TopologyError) as raised:
        _import(path)
    assert raised.value.line == 3
    assert raised.value.source == str(path)
    assert reason in str(raised.value)
    assert f"{path}, line 3: " in str(raised.value)


def test_an_error_in_a_redirected_file_names_that_file(tmp_path: Path) -> None:
    """The line number is the redirected file's own, and so is the file named."""
    _script(tmp_path, "New Line.l1 bus1=a bus2=b\nNew Line.l2 bus1=b\n~ bus2=(c\n", "lines.dss")
    master = _script(tmp_path, "New Circuit.t bus1=a\nRedirect lines.dss\n")
    with pytest.raises(TopologyError) as raised:
        _import(master)
    assert (raised.value.source, raised.value.line) == (str(tmp_path / "lines.dss"), 3)


def test_a_missing_master_is_an_error(tmp_path: Path) -> None:
    """A master file that is not there is an error naming it, not an empty network."""
    missing = tmp_path / "nothere.dss"
    with pytest.raises(TopologyError) as raised:
        _import(missing)
    assert raised.value.source == str(missing)


def test_a_script_without_a_circuit_is_an_error(tmp_path: Path) -> None:
    """Lines without `New Circuit` have no source to walk from."""
    with pytest.raises(TopologyError, match="no 'New Circuit'"):
        _import(_script(tmp_path, "New Linecode.x nphases=3\n"))
