"""Importers from real network models into the topology format.

`radial` turns connectivity (buses, lines, switches, pipes) into the supply tree and reports
loops; `pandapower`, `opendss` and `heating` read one model format each; `write` saves the tree
as the CSV that `topology.load` reads.
"""
