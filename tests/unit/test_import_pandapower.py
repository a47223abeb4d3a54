"""pandapower and SimBench models to the supply tree (`topology.importers.pandapower`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandapower as pp
import pytest

from topology.importers.pandapower import import_network, import_pandapower, load_network
from topology.importers.radial import ImportedNetwork, NotRadial
from topology.load import topology_from_rows
from topology.model import Topology


def _kinds(net: ImportedNetwork) -> Counter[str]:
    return Counter(node.kind for node in net.nodes)


def _topology(net: ImportedNetwork) -> Topology:
    return topology_from_rows([node.model_dump() for node in net.nodes])


def _street(ring_closed: bool = False) -> Any:
    """20 kV infeed, one MV/LV transformer, and an LV ring 1-2-3-4-1 open at bus 3 on line 4-3;
    one household at each of buses 2, 3 and 4."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, vn_kv=20.0, name="MV")  # bus 0; the LV buses are 1 to 4
    lv = [mv, *(pp.create_bus(net, vn_kv=0.4, geodata=(7.8 + i / 100, 48.4)) for i in range(1, 5))]
    pp.create_ext_grid(net, mv)
    pp.create_transformer(net, mv, lv[1], std_type="0.4 MVA 20/0.4 kV")
    for a, b in ((1, 2), (2, 3), (1, 4), (4, 3)):
        pp.create_line(net, lv[a], lv[b], 0.1, "NAYY 4x50 SE", name=f"L{a}-{b}")
    pp.create_switch(net, lv[3], element=3, et="l", closed=ring_closed, type="LS")
    for bus in (2, 3, 4):
        pp.create_load(net, lv[bus], p_mw=0.003)
    return net


@pytest.fixture(scope="module")
def oberrhein() -> ImportedNetwork:
    return import_pandapower(["mv_oberrhein"])


@pytest.fixture(scope="module")
def schutterwald() -> ImportedNetwork:
    return import_pandapower(["lv_schutterwald"])


def test_cigre_lv_premises_sit_under_substation_feeder_transformer_building() -> None:
    """Every CIGRE LV premise is reached substation -> feeder -> ... transformer ... ->
    building -> premise, and nothing is left unfed."""
    net = import_pandapower(["cigre_lv"])
    topology = _topology(net)
    premises = [node.id for node in net.nodes if node.kind == "premise"]
    assert len(premises) == 15
    assert net.unfed == []
    for premise in premises:
        kinds = [topology.node(node_id).kind for node_id in topology.path(premise)]
        assert kinds[:2] == ["substation", "feeder"]
        assert "transformer" in kinds[2:-2]
        assert kinds[-2:] == ["building", "premise"]


def test_mv_oberrhein_counts(oberrhein: ImportedNetwork) -> None:
    """mv_oberrhein: two substations, four feeder breakers, 312 closed load-break switches and
    147 synthesised MV/LV stations whose premises (18558) stay below 20k, with a note."""
    assert _kinds(oberrhein) == {
        "substation": 2,
        "feeder": 4,
        "switch": 312,
        "transformer": 147,
        "building": 2367,
        "premise": 18558,
    }
    assert oberrhein.unfed == []
    assert any("synthesised" in note for note in oberrhein.notes)
    assert len({node.address for node in oberrhein.nodes if node.kind == "premise"}) == 18558


def test_mv_oberrhein_premises_resolve_by_address(oberrhein: ImportedNetwork) -> None:
    """Synthetic addresses are unique, so a call with a premise's address lands on it."""
    topology = _topology(oberrhein)
    premise = next(node for node in oberrhein.nodes if node.kind == "premise")
    assert premise.address is not None
    assert topology.resolve(address=premise.address).node_id == premise.id


def test_lv_schutterwald_counts(schutterwald: ImportedNetwork) -> None:
    """lv_schutterwald: 14 substations each with its MV/LV transformer, a building and a
    premise per household (1506), and the opened ring switch named in the notes."""
    assert _kinds(schutterwald) == {
        "substation": 14,
        "transformer": 14,
        "fuse": 289,
        "building": 1506,
        "premise": 1506,
    }
    assert schutterwald.unfed == []
    assert any("opened switch 273" in note for note in schutterwald.notes)
    premise = next(node for node in schutterwald.nodes if node.kind == "premise")
    assert premise.lat is not None and 48 < premise.lat < 49  # GeoJSON is lon, lat
    assert premise.lon is not None and 7 < premise.lon < 8


def test_lv_schutterwald_as_shipped_is_refused_with_its_ring() -> None:
    """The shipped file closes one LV ring; without the documented open point the import
    fails naming the ring's five lines."""
    net, name, _ = load_network("lv_schutterwald")
    net.switch.at[273, "closed"] = True
    with pytest.raises(NotRadial) as raised:
        import_network(net, name)
    lines = {label.split()[0] for label in raised.value.loop if label.startswith("line:")}
    assert lines == {"line:13417", "line:8820", "line:8293", "line:8294", "line:8823"}


def test_cigre_mv_is_radial_as_shipped_and_closing_s1_closes_a_loop() -> None:
    """CIGRE MV imports with S1-S3 open; closing S1 is a ring the error names."""
    net, name, _ = load_network("cigre_mv")
    assert import_network(net, name).unfed == []
    net.switch.loc[net.switch.name == "S1", "closed"] = True
    with pytest.raises(NotRadial) as raised:
        import_network(net, name)
    assert any(label.startswith("line:14 ") for label in raised.value.loop)


def test_simbench_lv_grid_by_code() -> None:
    """A SimBench code loads through simbench: its 26 LV line switches become fuses between
    the one transformer and the 13 households."""
    net = import_pandapower(["1-LV-rural1--0-sw"])
    assert _kinds(net) == {
        "substation": 1,
        "transformer": 1,
        "fuse": 26,
        "building": 13,
        "premise": 13,
    }
    assert net.unfed == []


def test_closing_the_open_switch_reports_the_loop_through_the_lines() -> None:
    """A small LV ring closed through its switch is refused, the loop naming all four lines."""
    with pytest.raises(NotRadial) as raised:
        import_network(_street(ring_closed=True), "street")
    assert {"line:0 (L1-2)", "line:1 (L2-3)", "line:2 (L1-4)", "line:3 (L4-3)"} <= set(
        raised.value.loop
    )
    assert "not radial" in str(raised.value)


def test_open_ring_is_a_tree_from_substation_to_premises() -> None:
    """With the ring open each household hangs off its bus's building under the transformer,
    and coordinates come from the bus geodata (lon, lat)."""
    net = import_network(_street(), "street")
    parents = {node.id: node.parent for node in net.nodes}
    assert parents["TR-0"] == "SUB-0"
    assert {parents[f"B-bus{bus}"] for bus in (2, 3, 4)} == {"TR-0"}
    assert [parents[f"P-{load}"] for load in range(3)] == ["B-bus2", "B-bus3", "B-bus4"]
    premise = next(node for node in net.nodes if node.id == "P-0")
    assert (premise.lat, premise.lon) == pytest.approx((48.4, 7.82))
    assert premise.address == "Bus 2, street, unit 1"


def test_out_of_service_line_cuts_what_only_it_feeds() -> None:
    """Taking line 1-4 out of service cuts bus 4 (the ring is open): its building and premise
    are listed as unfed and left out of the tree."""
    street = _street()
    street.line.at[2, "in_service"] = False
    net = import_network(street, "street")
    assert net.unfed == ["B-bus4", "P-2"]
    assert "B-bus4" not in {node.id for node in net.nodes}


def test_parallel_transformers_at_the_substation_are_not_a_loop() -> None:
    """Two HV/MV transformers in parallel fold into one substation; the feeder below it is
    reached once, and the MV load becomes a made-up station of 2 kW households."""
    net = pp.create_empty_network()
    hv = pp.create_bus(net, vn_kv=110.0)
    mv = pp.create_bus(net, vn_kv=20.0)
    far = pp.create_bus(net, vn_kv=20.0)
    pp.create_ext_grid(net, hv)
    for _ in range(2):
        pp.create_transformer(net, hv, mv, std_type="25 MVA 110/20 kV")
    line = pp.create_line(net, mv, far, 1.0, "NA2XS2Y 1x95 RM/25 12/20 kV")
    breaker = pp.create_switch(net, mv, element=line, et="l", type="CB")
    pp.create_load(net, far, p_mw=0.1)
    imported = import_network(net, "parallel")
    parents = {node.id: node.parent for node in imported.nodes}
    assert parents[f"FDR-sw{breaker}"] == "SUB-0"
    assert parents["TR-load0"] == f"FDR-sw{breaker}"
    assert _kinds(imported)["premise"] == 50  # 0.1 MW / 2 kW
    assert _kinds(imported)["building"] == 7  # up to 8 premises each


def test_json_file_source(tmp_path: Path) -> None:
    """A pandapower JSON file imports like the net it holds, named by the file's stem."""
    path = tmp_path / "street.json"
    pp.to_json(_street(), str(path))
    from_file = import_pandapower([str(path)])
    assert from_file.nodes == import_network(_street(), "street").nodes


def test_unknown_name_lists_the_accepted_ones() -> None:
    """An unknown source is a ValueError naming the networks and formats accepted."""
    with pytest.raises(ValueError, match="mv_oberrhein, lv_schutterwald, cigre_mv, cigre_lv"):
        import_pandapower(["mv_atlantis"])


def test_exactly_one_source() -> None:
    """Two sources (or none) are refused rather than silently importing the first."""
    with pytest.raises(ValueError, match="exactly one source"):
        import_pandapower(["cigre_lv", "cigre_mv"])
