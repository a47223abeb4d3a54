"""Unit tests for the network model: loading, validation, tree queries and call placement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topology import (
    Node,
    Topology,
    TopologyError,
    UnresolvedLocation,
    load_topologies,
    load_topology,
    topology_from_rows,
)
from topology.address import normalise_address
from topology.load import FIELDS
from topology.samples import HEAT_CSV, POWER_CSV
from topology.samples.generate import heat_rows, power_rows, write

HEADER = ",".join(FIELDS)


@pytest.fixture(scope="module")
def heat() -> Topology:
    return load_topology(HEAT_CSV)


@pytest.fixture(scope="module")
def power() -> Topology:
    return load_topology(POWER_CSV)


@pytest.fixture(scope="module")
def both() -> Topology:
    return load_topologies([HEAT_CSV, POWER_CSV])


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "net.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --- samples --------------------------------------------------------------------------------


def test_heat_sample_has_the_documented_shape(heat: Topology) -> None:
    """heat.csv: HS1 -> 4 substations -> 5 buildings -> 12 flats with one customer each."""
    assert len(heat) == 1 + 4 + 20 + 240
    assert heat.children("HS1") == ("HSUB-1", "HSUB-2", "HSUB-3", "HSUB-4")
    assert len(heat.children("HSUB-1")) == 5
    assert heat.node("B-HSUB1-2").address == "12 Birch Street"
    assert heat.premises_under("B-HSUB1-2")[:2] == ("P-HSUB1-B2-01", "P-HSUB1-B2-02")
    assert heat.customers_under("HS1") == 240
    assert {node.utility for node in heat.nodes.values()} == {"heat"}


def test_power_sample_has_the_documented_shape(power: Topology) -> None:
    """power.csv: SUB1 -> 3 feeders -> 4 transformers -> 2 fuses -> 3 buildings -> 4 premises."""
    assert len(power) == 1 + 3 + 12 + 24 + 72 + 288
    assert power.children("SUB1") == ("FDR-1", "FDR-2", "FDR-3")
    assert power.customers_under("FDR-1") == 96
    assert power.customers_under("SUB1") == 288
    assert power.node("B-FDR1-T1-F2-3").address == "212 West 133rd Street"
    assert power.premises_under("B-FDR1-T1-F2-3") == tuple(
        f"P-FDR1-T1-F2-B3-{p}" for p in range(1, 5)
    )


def test_samples_merge_into_two_correlation_domains(both: Topology) -> None:
    """Loading both samples together keeps each network under its own root."""
    assert len(both) == 265 + 400
    assert both.root("P-HSUB1-B2-03") == "HS1"
    assert both.root("P-FDR1-T1-F2-B3-4") == "SUB1"


def test_generator_reproduces_the_committed_samples(tmp_path: Path) -> None:
    """Rerunning the generator rewrites the committed CSVs byte for byte."""
    write(tmp_path / "heat.csv", heat_rows())
    write(tmp_path / "power.csv", power_rows())
    assert (tmp_path / "heat.csv").read_bytes() == HEAT_CSV.read_bytes()
    assert (tmp_path / "power.csv").read_bytes() == POWER_CSV.read_bytes()


# --- loading --------------------------------------------------------------------------------


def test_csv_and_jsonl_load_the_same_topology(tmp_path: Path, power: Topology) -> None:
    """The same nodes written as JSON Lines load equal to the CSV."""
    path = tmp_path / "power.jsonl"
    lines = [node.model_dump_json() for node in power.nodes.values()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert dict(load_topology(path).nodes) == dict(power.nodes)


def test_empty_csv_cells_become_none_and_zero(tmp_path: Path) -> None:
    """Empty parent/address/lat/lon cells are None, an empty customers cell is 0."""
    topology = load_topology(_csv(tmp_path, "S,substation,,power,,,,"))
    assert topology.node("S") == Node(id="S", kind="substation", parent=None, utility="power")


def test_rows_build_a_topology_in_memory() -> None:
    """topology_from_rows accepts file-shaped dicts, with optional fields left out."""
    topology = topology_from_rows(
        [
            {"id": "S", "kind": "substation", "parent": None, "utility": "power"},
            {"id": "P", "kind": "premise", "parent": "S", "utility": "power", "customers": 3},
        ]
    )
    assert topology.customers_under("S") == 3


@pytest.mark.parametrize(
    ("rows", "header", "line", "fragment"),
    [
        (["S,substation,,power,0,,,"], "id,kind,parent", 1, "header must be"),
        (["S,substation,,power,0,,,", "F,trafo,S,power,0,,,"], HEADER, 3, "unknown kind 'trafo'"),
        (["S,substation,,gas,0,,,"], HEADER, 2, "unknown utility 'gas'"),
        (["S,substation,,power,ten,,,"], HEADER, 2, "customers must be a whole number"),
        (["S,substation,,power,-1,,,"], HEADER, 2, "customers must be a whole number"),
        (["S,substation,,power,0,,north,"], HEADER, 2, "lat must be a number"),
        (["S,substation,,power,0,,"], HEADER, 2, "expected 8 columns"),
        (
            ["S,substation,,power,0,,,", "F,feeder,S,power,0,,,", "S,fuse,F,power,0,,,"],
            HEADER,
            4,
            "duplicate id 'S' (first on line 2)",
        ),
        (
            ["S,substation,,power,0,,,", "B3,building,F9,power,0,,,"],
            HEADER,
            3,
            "unknown parent 'F9' for node 'B3'",
        ),
        (
            ["S,substation,,power,0,,,", "F1,feeder,B1,power,0,,,", "B1,building,F1,power,0,,,"],
            HEADER,
            4,
            "cycle through B1 -> F1 -> B1",
        ),
        (["S,substation,S,power,0,,,"], HEADER, 2, "cycle through S -> S"),
    ],
)
def test_csv_errors_name_the_file_and_line(
    tmp_path: Path, rows: list[str], header: str, line: int, fragment: str
) -> None:
    """Each kind of bad CSV row raises TopologyError naming the file and the offending line."""
    path = _csv(tmp_path, *rows, header=header)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.line == line
    assert f"{path}, line {line}: " in str(caught.value)
    assert fragment in str(caught.value)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    """A line that is not JSON raises TopologyError naming that line."""
    path = tmp_path / "net.jsonl"
    good = json.dumps({"id": "S", "kind": "substation", "parent": None, "utility": "power"})
    path.write_text(f"{good}\n\n{{'id': 'F'}}\n", encoding="utf-8")
    with pytest.raises(TopologyError, match=r"net\.jsonl, line 3: bad JSON") as caught:
        load_topology(path)
    assert caught.value.line == 3


def test_jsonl_rejects_unknown_fields(tmp_path: Path) -> None:
    """A misspelt field in a JSON line is an error, not silently ignored."""
    path = tmp_path / "net.jsonl"
    row = {"id": "S", "kind": "substation", "parent": None, "utility": "power", "custmers": 4}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(TopologyError, match=r"line 1: unknown field\(s\) custmers"):
        load_topology(path)


def test_unsupported_extension_is_rejected(tmp_path: Path) -> None:
    """Only .csv and .jsonl are read."""
    path = tmp_path / "net.txt"
    path.write_text(HEADER + "\n", encoding="utf-8")
    with pytest.raises(TopologyError, match="unsupported file type"):
        load_topology(path)


def test_merged_files_may_reference_parents_across_files(tmp_path: Path) -> None:
    """load_topologies resolves a parent defined in another file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    top = _csv(tmp_path / "a", "S,substation,,power,0,,,")
    leaf = _csv(tmp_path / "b", "P,premise,S,power,1,,,")
    assert load_topologies([top, leaf]).path("P") == ("S", "P")


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path) -> None:
    """An id repeated in a second file names the second file's line and the first file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _csv(tmp_path / "a", "S,substation,,power,0,,,")
    second = _csv(tmp_path / "b", "X,substation,,power,0,,,", "S,substation,,power,0,,,")
    with pytest.raises(TopologyError) as caught:
        load_topologies([first, second])
    assert str(caught.value) == (f"{second}, line 3: duplicate id 'S' (first at {first}, line 2)")


def test_from_nodes_uses_given_line_numbers() -> None:
    """from_nodes reports the caller's line numbers, or 1-based positions without them."""
    nodes = [
        Node(id="S", kind="substation", parent=None, utility="power"),
        Node(id="B3", kind="building", parent="F9", utility="power"),
    ]
    with pytest.raises(TopologyError, match=r"^line 7: unknown parent 'F9' for node 'B3'$"):
        Topology.from_nodes(nodes, lines=[4, 7])
    with pytest.raises(TopologyError, match=r"^line 2: "):
        Topology.from_nodes(nodes)


# --- tree queries ---------------------------------------------------------------------------


def test_ancestors_path_and_root(power: Topology) -> None:
    """ancestors run parent-first to the root; path runs root-first to the node."""
    premise = "P-FDR1-T1-F2-B3-4"
    chain = ("B-FDR1-T1-F2-3", "FU-FDR1-T1-2", "T-FDR1-1", "FDR-1", "SUB1")
    assert power.ancestors(premise) == chain
    assert power.path(premise) == (*reversed(chain), premise)
    assert power.root(premise) == "SUB1"
    assert power.root("SUB1") == "SUB1"
    assert power.ancestors("SUB1") == ()
    assert power.parent("FDR-1") == "SUB1"


def test_covers_and_child_towards(power: Topology) -> None:
    """covers includes the node itself; child_towards names the next hop down or None."""
    premise = "P-FDR1-T1-F2-B3-4"
    assert power.covers("FDR-1", premise)
    assert power.covers(premise, premise)
    assert not power.covers("FDR-2", premise)
    assert not power.covers(premise, "FDR-1")
    assert power.child_towards("FDR-1", premise) == "T-FDR1-1"
    assert power.child_towards("B-FDR1-T1-F2-3", premise) == premise
    assert power.child_towards(premise, premise) is None
    assert power.child_towards("FDR-2", premise) is None


def test_customers_under_takes_the_larger_of_own_count_and_children() -> None:
    """A node's own customer count stands when its children are not (fully) modelled."""
    topology = topology_from_rows(
        [
            {"id": "S", "kind": "substation", "parent": None, "utility": "power"},
            {"id": "B1", "kind": "building", "parent": "S", "utility": "power", "customers": 40},
            {"id": "B2", "kind": "building", "parent": "S", "utility": "power"},
            {"id": "P", "kind": "premise", "parent": "B2", "utility": "power", "customers": 1},
        ]
    )
    assert topology.customers_under("B1") == 40
    assert topology.customers_under("S") == 41


def test_unknown_node_raises_key_error_naming_it(power: Topology) -> None:
    """Queries on an unknown id raise KeyError naming the id."""
    assert "NOPE" not in power
    with pytest.raises(KeyError, match="unknown node 'NOPE'"):
        power.ancestors("NOPE")


def test_nodes_view_is_read_only(power: Topology) -> None:
    """The nodes mapping cannot be mutated from outside."""
    with pytest.raises(TypeError):
        power.nodes["X"] = power.node("SUB1")  # type: ignore[index]  # asserting it fails


# --- resolving calls ------------------------------------------------------------------------


def test_resolve_prefers_premise_then_building_then_node(both: Topology) -> None:
    """The most precise hint given wins, whatever else is given."""
    hints = {"building_id": "B-HSUB1-2", "node_id": "HSUB-1", "address": "12 Birch Street"}
    resolved = both.resolve(premise_id="P-HSUB1-B2-03", **hints)
    assert (resolved.node_id, resolved.how) == ("P-HSUB1-B2-03", "premise_id")
    resolved = both.resolve(**hints)
    assert (resolved.node_id, resolved.how) == ("B-HSUB1-2", "building_id")
    resolved = both.resolve(node_id="HSUB-1")
    assert (resolved.node_id, resolved.how, resolved.score) == ("HSUB-1", "node_id", 100.0)


def test_unknown_premise_is_unresolved() -> None:
    """An unknown premise id alone raises UnresolvedLocation naming it."""
    topology = load_topology(HEAT_CSV)
    with pytest.raises(UnresolvedLocation, match="unknown premise 'P-NOPE'"):
        topology.resolve(premise_id="P-NOPE")
    with pytest.raises(UnresolvedLocation, match="'B-HSUB1-2' is a building, not a premise"):
        topology.resolve(premise_id="B-HSUB1-2")


def test_bad_premise_falls_through_to_the_address(heat: Topology) -> None:
    """A mistyped premise id does not lose a call that also gave a good address."""
    resolved = heat.resolve(premise_id="P-NOPE", address="12 Birch Street, flat 3")
    assert (resolved.node_id, resolved.how) == ("P-HSUB1-B2-03", "address")


def test_resolve_by_exact_and_normalised_address(power: Topology) -> None:
    """Spelling variants of one address resolve to the same building as an exact match."""
    for spelling in ("212 West 133rd Street", "212 WEST  133 STREET", "212 West 133rd St."):
        resolved = power.resolve(address=spelling)
        assert (resolved.node_id, resolved.how, resolved.score) == (
            "B-FDR1-T1-F2-3",
            "address",
            100.0,
        )


def test_resolve_forgives_a_typo(heat: Topology) -> None:
    """A one-letter typo in the street name resolves fuzzily with its score."""
    resolved = heat.resolve(address="12 Brich Street")
    assert (resolved.node_id, resolved.how) == ("B-HSUB1-2", "address_fuzzy")
    assert 90 <= resolved.score < 100


def test_fuzzy_never_changes_the_house_number(heat: Topology) -> None:
    """A wrong house number is unresolved with suggestions, never another building."""
    with pytest.raises(UnresolvedLocation) as caught:
        heat.resolve(address="1212 Birch Street")
    assert caught.value.reason == "no node matches address '1212 Birch Street'"
    assert 0 < len(caught.value.suggestions) <= 5
    assert caught.value.suggestions[0].node_id == "B-HSUB1-2"


def test_no_hint_is_unresolved(heat: Topology) -> None:
    """A call with no location hints at all is unresolved."""
    with pytest.raises(UnresolvedLocation, match="no location given"):
        heat.resolve(address="  ")


def test_shared_address_prefers_the_building() -> None:
    """When nodes share an address the building wins, then the deepest node."""
    rows = [
        ("S", "heat_substation", None, "heat", "5 Oak Rd"),
        ("B", "building", "S", "heat", "5 Oak Road"),
        ("P", "premise", "B", "heat", "5 oak road"),
        ("X", "lateral", None, "water", "7 Elm St"),
        ("Y", "pipe", "X", "water", "7 Elm Street"),
    ]
    fields = ("id", "kind", "parent", "utility", "address")
    topology = topology_from_rows(dict(zip(fields, row, strict=True)) for row in rows)
    assert topology.resolve(address="5 Oak Road").node_id == "B"
    assert topology.resolve(address="7 elm street").node_id == "Y"


def test_suggest_lists_prefix_matches_shortest_first(heat: Topology) -> None:
    """Type-ahead returns the building before its flats, in flat order."""
    suggestions = heat.suggest("12 birch", limit=3)
    assert [s.node_id for s in suggestions] == ["B-HSUB1-2", "P-HSUB1-B2-01", "P-HSUB1-B2-02"]
    assert suggestions[0].address == "12 Birch Street"
    assert heat.suggest("") == []


def test_suggest_falls_back_to_fuzzy_matches(heat: Topology) -> None:
    """Text that prefixes nothing still gets the closest addresses."""
    suggestions = heat.suggest("Mapel Road 10")
    assert suggestions
    assert "Maple Road" in suggestions[0].address


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("212 W. 133rd St", "212 west 133 street"),
        ("212 WEST  133 STREET", "212 west 133 street"),
        ("12 Birch Street, Apt. 3", "12 birch street flat 3"),
        ("142-30 Jamaica Ave", "142-30 jamaica avenue"),
        ("Road - 5", "road 5"),
        ("O'Neil Blvd", "oneil boulevard"),
        ("北京市朝阳区建国路８８号", "北京市朝阳区建国路88号"),
    ],
)
def test_normalise_address(raw: str, normal: str) -> None:
    """Case, punctuation, ordinals, abbreviations and full-width digits normalise away."""
    assert normalise_address(raw) == normal


def test_an_address_on_two_networks_resolves_on_the_callers_network() -> None:
    """One street address on the heat and the power network: each utility finds its own node."""
    from correlators.routing import route
    from events.inbound import CallReported

    shared = topology_from_rows(
        [
            {"id": "HS", "kind": "heat_source", "parent": None, "utility": "heat"},
            {
                "id": "HB",
                "kind": "building",
                "parent": "HS",
                "utility": "heat",
                "address": "7 Elm Street",
            },
            {"id": "SUB", "kind": "substation", "parent": None, "utility": "power"},
            {
                "id": "PB",
                "kind": "building",
                "parent": "SUB",
                "utility": "power",
                "address": "7 Elm Street",
            },
        ]
    )
    assert shared.resolve(address="7 elm st", utility="heat").node_id == "HB"
    assert shared.resolve(address="7 Elm Street", utility="power").node_id == "PB"
    with pytest.raises(UnresolvedLocation, match="on the water network"):
        shared.resolve(address="7 Elm Street", utility="water")
    for utility, node in (("heat", "HB"), ("power", "PB")):
        call = CallReported(
            event_id=f"c-{utility}",
            occurred_at="2026-01-15T08:00:00Z",
            utility=utility,
            address="7 Elm Street",
        )
        assert route(shared, call)[0].node_id == node
