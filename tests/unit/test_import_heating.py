"""The district heating importer on the example network in docs/examples/heating/."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from topology.importers.heating import import_heating
from topology.importers.radial import ImportedNetwork, NotRadial
from topology.load import topology_from_rows
from topology.model import Topology, TopologyError

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "heating"
NODES = EXAMPLES / "nodes.csv"
PIPES = EXAMPLES / "pipes.csv"
GEOJSON = EXAMPLES / "network.geojson"


def _topology(network: ImportedNetwork) -> Topology:
    return topology_from_rows([node.model_dump() for node in network.nodes])


def _tree(network: ImportedNetwork) -> list[dict[str, Any]]:
    return sorted((node.model_dump() for node in network.nodes), key=lambda row: row["id"])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_example_imports_to_the_expected_tree() -> None:
    """The example is one heat source, a valve, three heat substations, twelve buildings and
    nine premises; every building sits under a substation and every premise under its
    building; the closed tie pipe is named in a note."""
    network = import_heating([str(NODES), str(PIPES)])
    topology = _topology(network)
    kinds: dict[str, int] = {}
    for node in network.nodes:
        kinds[node.kind] = kinds.get(node.kind, 0) + 1
    assert kinds == {
        "heat_source": 1,
        "switch": 1,
        "heat_substation": 3,
        "building": 12,
        "premise": 9,
    }
    assert network.unfed == []
    assert topology.customers_under("HS-1") == 24
    assert topology.path("A5-2") == ("HS-1", "V-1", "HSS-B", "B-A5", "A5-2")
    assert topology.parent("B-L8") == "HSS-A"
    for node in topology.nodes.values():
        if node.kind == "building":
            assert topology.node(node.parent or "").kind == "heat_substation"
    assert any("P-T1" in note for note in network.notes)
    assert topology.resolve(address="Lindenweg 2, Musterstadt").node_id == "B-L2"


def test_csv_and_geojson_examples_import_to_the_same_tree() -> None:
    """The GeoJSON example (some pipes joined by coordinates alone) gives node for node the
    tree of the CSV pair, coordinates included."""
    from_csv = import_heating([str(NODES), str(PIPES)])
    from_geojson = import_heating([str(GEOJSON)])
    assert _tree(from_geojson) == _tree(from_csv)
    assert from_geojson.notes == from_csv.notes


def test_the_csv_files_are_told_apart_by_their_headers() -> None:
    """pipes.csv may come first: the header, not the order, says which file is which."""
    assert _tree(import_heating([str(PIPES), str(NODES)])) == _tree(
        import_heating([str(NODES), str(PIPES)])
    )


def test_opening_the_tie_pipe_reports_the_loop(tmp_path: Path) -> None:
    """With the tie between the B and C networks open, heat reaches JC-2 two ways: refused,
    with the loop naming the tie and the pipes around it."""
    pipes = _rows(PIPES)
    for pipe in pipes:
        if pipe["id"] == "P-T1":
            pipe["closed"] = "false"
    opened = _write(tmp_path / "pipes.csv", pipes)
    with pytest.raises(NotRadial) as raised:
        import_heating([str(NODES), str(opened)])
    loop = raised.value.loop
    assert loop[0] == loop[-1]
    assert {"P-T1", "P-05", "P-06", "HSS-B", "HSS-C"} <= set(loop)


def test_a_pipe_naming_an_unknown_node_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """A pipe to a node that is not in nodes.csv stops the import at that pipe's line."""
    pipes = _rows(PIPES)
    pipes[3]["to"] = "J-9"
    broken = _write(tmp_path / "pipes.csv", pipes)
    with pytest.raises(TopologyError) as raised:
        import_heating([str(NODES), str(broken)])
    assert (raised.value.source, raised.value.line) == (str(broken), 5)
    assert "unknown node 'J-9'" in str(raised.value)


def test_a_premise_naming_no_building_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """A premise whose building column names a heat substation is refused at its line."""
    nodes = _rows(NODES)
    row = next(i for i, node in enumerate(nodes) if node["id"] == "L2-1")
    nodes[row]["building"] = "HSS-A"
    broken = _write(tmp_path / "nodes.csv", nodes)
    with pytest.raises(TopologyError) as raised:
        import_heating([str(broken), str(PIPES)])
    assert (raised.value.source, raised.value.line) == (str(broken), row + 2)
    assert "not a building" in str(raised.value)


def test_an_unknown_kind_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """A kind the tree does not know (a typo) is refused rather than guessed."""
    nodes = _rows(NODES)
    nodes[4]["kind"] = "heat_substaton"
    broken = _write(tmp_path / "nodes.csv", nodes)
    with pytest.raises(TopologyError, match="unknown kind 'heat_substaton'") as raised:
        import_heating([str(broken), str(PIPES)])
    assert raised.value.line == 6


def test_a_closed_valve_cuts_what_lies_behind_it(tmp_path: Path) -> None:
    """Closing valve V-1 leaves it and its pipes out: the B and C networks are unfed."""
    nodes = [{**node, "closed": "yes" if node["id"] == "V-1" else ""} for node in _rows(NODES)]
    shut = _write(tmp_path / "nodes.csv", nodes)
    network = import_heating([str(shut), str(PIPES)])
    assert "HSS-B" in network.unfed and "B-B16" in network.unfed
    assert "V-1" not in {node.id for node in network.nodes}
    assert "HSS-A" in {node.id for node in network.nodes}


def test_semicolon_csv_with_decimal_commas_reads_the_same(tmp_path: Path) -> None:
    """A European spreadsheet export (`;` between columns, decimal commas) gives the same tree."""
    for name in ("nodes.csv", "pipes.csv"):
        rows = _rows(EXAMPLES / name)
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=";")
            writer.writerow(rows[0])
            for row in rows:
                writer.writerow(
                    [
                        value.replace(".", ",") if key in ("lat", "lon") else value
                        for key, value in row.items()
                    ]
                )
    european = import_heating([str(tmp_path / "nodes.csv"), str(tmp_path / "pipes.csv")])
    assert _tree(european) == _tree(import_heating([str(NODES), str(PIPES)]))


def _geojson(tmp_path: Path, change: Any) -> Path:
    document = json.loads(GEOJSON.read_text(encoding="utf-8"))
    change(document["features"])
    path = tmp_path / "network.geojson"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _feature(features: list[dict[str, Any]], feature_id: str) -> int:
    return next(i for i, f in enumerate(features) if f["properties"]["id"] == feature_id)


def test_geojson_pipe_ends_snap_within_a_millionth_of_a_degree(tmp_path: Path) -> None:
    """A pipe end half a millionth of a degree off its node still joins it."""

    def nudge(features: list[dict[str, Any]]) -> None:
        coordinates = features[_feature(features, "P-A2")]["geometry"]["coordinates"]
        coordinates[-1] = [coordinates[-1][0] + 5e-7, coordinates[-1][1] - 5e-7]

    network = import_heating([str(_geojson(tmp_path, nudge))])
    assert _topology(network).parent("B-L2") == "HSS-A"


def test_geojson_pipe_end_touching_two_nodes_is_an_error_naming_the_feature(
    tmp_path: Path,
) -> None:
    """Two nodes at one spot leave a pipe end without from/to ambiguous: the feature is named."""
    index: dict[str, int] = {}

    def stack(features: list[dict[str, Any]]) -> None:
        building = features[_feature(features, "B-L4")]
        features[_feature(features, "B-L6")]["geometry"] = building["geometry"]
        index["pipe"] = _feature(features, "P-A3")

    path = _geojson(tmp_path, stack)
    with pytest.raises(TopologyError) as raised:
        import_heating([str(path)])
    assert f"features[{index['pipe']}]" in str(raised.value)
    assert "B-L4, B-L6" in str(raised.value)


def test_geojson_pipe_naming_an_unknown_node_is_an_error_naming_the_feature(
    tmp_path: Path,
) -> None:
    """A from/to property naming no node is refused at that feature."""
    index: dict[str, int] = {}

    def rename(features: list[dict[str, Any]]) -> None:
        index["pipe"] = _feature(features, "P-01")
        features[index["pipe"]]["properties"]["to"] = "J-9"

    path = _geojson(tmp_path, rename)
    with pytest.raises(TopologyError) as raised:
        import_heating([str(path)])
    expected = f"{path}: features[{index['pipe']}]: pipe 'P-01': unknown node 'J-9'"
    assert str(raised.value) == expected


def test_one_csv_file_alone_is_refused() -> None:
    """The CSV form needs both files; one alone is an error saying so."""
    with pytest.raises(TopologyError, match=r"nodes\.csv and pipes\.csv"):
        import_heating([str(NODES)])
