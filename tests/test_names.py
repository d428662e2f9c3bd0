"""Names tables (commands/names.py) read by content: FreeSurfer LUT, FSL atlas XML, TSV, CSV and
JSON, their extra columns kept as description and colour."""

from __future__ import annotations

import pytest
from atlas import LUT, check_properties

from streamconv.commands.names import read_segment_names

FSL_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<atlas version="1.0">
  <header><name>Harvard-Oxford Subcortical Structural Atlas</name><type>Label</type></header>
  <data>
    <label index="0" x="58" y="119" z="59">Left Cerebral White Matter</label>
    <label index="1" x="62" y="136" z="70">Left Cerebral Cortex </label>
  </data>
</atlas>
"""


@pytest.mark.parametrize("name, text, expected", [
    ("lut.txt", LUT, {2: "Left-Cerebral-White-Matter", 4: "Left-Lateral-Ventricle"}),
    ("atlas.xml", FSL_XML, {1: "Left Cerebral White Matter", 2: "Left Cerebral Cortex"}),  # index + 1
    ("dseg.tsv", "index\tname\tabbreviation\tcolor\n1\tThalamus\tTH\t#ff0000\n2\tPutamen\tPU\tn/a\n",
     {1: "Thalamus", 2: "Putamen"}),
    ("names.csv", "1,Thalamus,deep grey\n2,Putamen\n", {1: "Thalamus", 2: "Putamen"}),
    ("names.json", '{"1": "Thalamus", "10": "Putamen"}', {1: "Thalamus", 10: "Putamen"}),
    ("misnamed.csv", LUT, {41: "Right-Cerebral-White-Matter"}),  # by content, not by extension
])
def test_tables_by_content(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    table = read_segment_names(path)
    names = {s.id: s.name for s in table.segments}
    assert all(names[i] == n for i, n in expected.items())
    from streamconv.commands.names import properties_info

    check_properties(properties_info(table))


def test_table_extras_become_description_and_colour(tmp_path):
    path = tmp_path / "dseg.tsv"
    path.write_text("index\tname\tabbreviation\tcolor\n1\tThalamus\tTH\t#FF0000\n2\tPutamen\tPU\tn/a\n")
    from streamconv.commands.names import properties_info

    properties = {p["id"]: p for p in properties_info(read_segment_names(path))["inline"]["properties"]}
    assert properties["description"]["values"] == ["abbreviation: TH", "abbreviation: PU"]
    assert properties["color"]["values"] == ["#ff0000", ""]
