"""The line reader of manifests written the usual way (``crawler.manifest._parse_lines``) reads
exactly what libyaml's event builders read, and hands every other file to them: on generated
manifests, on chosen ones either side of its limits, and on random ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crawler.manifest as manifest_module
from benchmarks.gen_tree import make_assets, manifest_yaml
from crawler.manifest import ParsedDocument, parse_manifest
from crawler.problems import Problem

PATH = "team/MANIFEST.yaml"

# Files the line reader takes (and must read as libyaml does).
LINE_SHAPED = [
    "name: a\ntype: dataset\n",
    "# a comment first\n\nname: a\n  # an indented comment\ntype: dataset\n\n",
    "name: a\ntype: dataset\ntags:\n- x\n- y\nowners:\n  - ana@example.com\n",
    "name: a\ntype: dataset\ntags: [x,y , z]\ndepends_on: []\nowners: [ ]\n",
    "name: a\ntype: dataset\nlabels:\n    tier: 3\n    pii: no\n    ratio: 0.5\n    none: ~\n"
    "    hex: 0x1F\n    sexagesimal: 1:20\n    under: 1_000\npublished_on: 2026-01-31\n",
    'name: \'quoted name\'\ntype: "dataset"\ndescription: "it\'s #1: the best"\n',
    "name: a\ntype: dataset\ndescription: a:b, c[1] {x} 50% a#b x@y `z` é\n",
    "name: a\ntype: dataset\nlocation: ./part-*.parquet\nformat: parquet\n",
    "name: a\ntype: dataset\npublished_on: 2026-01-31T10:00:00Z\nversions:\n  v1: s3://x/1\n",
    "name: a\ntype: dataset\nlabels:\n  key.with/slash-and_dash: v\n",
    "name: a   \ntype: dataset\ntags: [a b, c]\nlocation:\nformat: ''\n",
    "name: a\ntype: dataset\nextra:\n  id: fixed-id\n",
    "name: a\ntype: dataset\ntags:\n- x  \n-   y \nlabels:\n  zone: gold  \n",
]

# Files it hands to libyaml: what libyaml reads otherwise, or reports, or the reader doubts.
NOT_LINE_SHAPED = [
    "",
    "# only a comment\n",
    "---\nname: a\ntype: dataset\n",  # an explicit document
    "name: a\ntype: dataset\n---\nname: b\ntype: dataset\n",  # several
    "name: a\ntype: dataset\ndescription: two\n  lines\n",  # a multi-line plain scalar
    "name: a\ntype: dataset\ndescription: |\n  literal\n",
    "name: a\ntype: dataset\ndescription: >\n  folded\n",
    "name: a # a comment after a value\ntype: dataset\n",
    "name: a\ntype: dataset\ntags: [a, b] # comment\n",
    'name: "esc\\u00e9"\ntype: dataset\n',  # an escape
    "name: 'it''s'\ntype: dataset\n",
    "name: a\ntype: dataset\nlabels: {tier: 1}\n",  # a flow mapping
    "name: a\ntype: dataset\ntags: ['x']\n",  # quotes in a flow list
    "name: a\ntype: dataset\ntags: [a: b]\n",
    "name: a\ntype: dataset\ntags: [a,]\n",
    "name: a\ntype: dataset\nschema:\n  - name: id\n    type: int64\n",  # deeper nesting
    "name: a\ntype: dataset\nlabels:\n  a: 1\n   b: 2\n",  # a ragged block
    "name: a\ntype: dataset\nlabels:\n  a:\n    b: 1\n",
    "name: a\ntype: dataset\ntags:\n- x\n  - y\n",
    "name: a\ntype: dataset\ntags:\n  -x\n",
    "name: a\ntype: dataset\ntags:\n  -\n",
    "  name: a\n  type: dataset\n",  # an indented root
    "name: &n a\ntype: dataset\n",  # an anchor
    "name: *n\ntype: dataset\n",
    "name: !!str a\ntype: dataset\n",  # a tag
    "name: -a\ntype: dataset\n",
    "name: a:\ntype: dataset\n",
    "name: a: b\ntype: dataset\n",
    "name:a\ntype: dataset\n",
    "name : a\ntype: dataset\n",
    "'name': a\ntype: dataset\n",
    "name: a\ntype: dataset\nyes: 1\n",  # a key that is not text
    "name: a\ntype: dataset\n1: x\n",
    "name: a\ntype: dataset\nname: b\n",  # a duplicate
    "name: a\ntype: dataset\nlabels:\n  k: 1\n  k: 2\n",
    "name: a\r\ntype: dataset\r\n",
    "name: a\ntype: dataset\n\tlabels: x\n",
    "name: a\u2028b\ntype: dataset\n",
    "name: a\ntype: dataset\n# a comment\x85description: after a line break (NEL)\n",
    "name: a\ntype: dataset\n# a comment\u2029tags: [x]\n",
    "name: a\ntype: dataset\nlabels:\n  k: <<\n",
    "name: a\ntype: dataset\nlabels:\n  big: 99999999999999999999\n",
    "name: a\ntype: dataset\ndepends_on:\n- ~ \n",  # null, spaces after it or not
    "name: a\ntype: dataset\nunknown_field: 1\n",  # a warning, with its line
    "name: a\ntype: 7\n",  # a validation error
    "type: dataset\n",
    "name: a\ntype: dataset\ndepends_on: b\ndepends-on: [c]\n",
    "- a\n- b\n",
    "just text\n",
]


def _libyaml(text: str) -> tuple[list[ParsedDocument], list[Problem]]:
    """What parse_manifest gives without the line reader."""
    original = manifest_module._parse_lines
    manifest_module._parse_lines = lambda _text: None  # type: ignore[assignment]
    try:
        return parse_manifest(text.encode(), PATH)
    finally:
        manifest_module._parse_lines = original


def _read(documents: list[ParsedDocument]) -> list[tuple[int, int, dict[str, Any]]]:
    return [(d.index, d.line, d.manifest.model_dump()) for d in documents]


def _same_as_libyaml(text: str) -> None:
    lines = manifest_module._parse_lines(text)
    assert lines is not None, text
    documents, problems = _libyaml(text)
    assert problems == []
    assert _read(lines) == _read(documents)
    assert parse_manifest(text.encode(), PATH) == (lines, [])


def test_generated_manifests_are_read_line_by_line_as_libyaml_reads_them() -> None:
    for i, asset in enumerate(make_assets(400)):
        _same_as_libyaml(manifest_yaml(asset, dash_alias=i % 2 == 1))


@pytest.mark.parametrize("text", LINE_SHAPED)
def test_the_usual_shapes_are_read_line_by_line(text: str) -> None:
    _same_as_libyaml(text)


@pytest.mark.parametrize("text", NOT_LINE_SHAPED)
def test_other_files_go_to_libyaml(text: str) -> None:
    assert manifest_module._parse_lines(text) is None
    # parse_manifest answers as libyaml's builders do, problems and all.
    assert parse_manifest(text.encode(), PATH) == _libyaml(text)


# Random manifests: lines of every shape the reader knows and of many it refuses, with
# scalars YAML 1.1 resolves in surprising ways, after a valid start half of the time.
ATOMS = [
    "a", "x y", "yes", "No", "on", "OFF", "true", "False", "~", "null", "Null", "", " ",
    "1", "-1", "+1", "0x1F", "017", "0o17", "0b101", "1_000", "1:20", "1.5", ".5", "1e3",
    "1.0e+3", ".inf", "-.inf", ".nan", "2026-01-31", "2026-01-31 10:00:00", "2026-1-1",
    "2026-01-31T10:00:00Z", "=", "<<", "a:b", "a: b", "a:", "a #b", "a#b", "#a", "-a",
    "- a", "?a", "[a]", "{a}", "a[1]", "'q'", '"d"', "it's", 'say "hi"', "&a", "*a", "!a",
    "|", ">", "%a", "@a", "`a", "é", "a\\b", ",a", "a,b", "9" * 20,
]  # fmt: skip
_ATOMS = st.sampled_from(ATOMS) | st.text(alphabet="ab1:-#' \"[],.{}&*!|>%@_/~é", max_size=8)
KEYS = [
    "name", "type", "description", "tags", "owners", "labels", "depends_on", "depends-on",
    "location", "format", "versions", "extra", "zone", "tier", "yes", "null", "1", "a.b",
    "x-y", "Name", "'name'", "name ", "-", "? a",
]  # fmt: skip
_KEYS = st.sampled_from(KEYS)


@st.composite
def _line(draw: st.DrawFn) -> str:
    key, atom, other = draw(_KEYS), draw(_ATOMS), draw(_ATOMS)
    indent = " " * draw(st.sampled_from([0, 0, 0, 1, 2, 2, 4]))
    return draw(
        st.sampled_from(
            [
                f"{indent}{key}: {atom}",
                f"{indent}{key}:",
                f"{indent}{key}: [{atom}, {other}]",
                f"{indent}{key}: []",
                f"{indent}- {atom}",
                f"{indent}-  {atom}  ",
                f"{indent}{key}: '{atom}'",
                f'{indent}{key}: "{atom}"',
                f"{indent}{atom}",
                f"{indent}# {atom}",
                "",
                "---",
                f"{indent}{key}: {atom} # c",
                f"{indent}{key}:{atom}",
                f"{indent}{key}:  {atom}  ",
            ]
        )
    )


@st.composite
def _document(draw: st.DrawFn) -> str:
    """A manifest's fields each written in one of the shapes the line reader knows."""
    lines = [f"name: {draw(_ATOMS)}", "type: dataset"]
    fields = ["description", "tags", "owners", "labels", "depends_on", "location", "extra"]
    for key in draw(st.lists(st.sampled_from(fields), unique=True, max_size=4)):
        shape = draw(st.sampled_from(["scalar", "flow", "entries", "block", "empty"]))
        indent = " " * draw(st.sampled_from([0, 2, 4]))
        atoms = draw(st.lists(_ATOMS, min_size=1, max_size=3))
        if shape == "scalar":
            lines.append(f"{key}: {atoms[0]}")
        elif shape == "flow":
            lines.append(f"{key}: [{', '.join(atoms)}]")
        elif shape == "entries":
            lines += [f"{key}:", *(f"{indent}- {a} " for a in atoms)]
        elif shape == "block":
            names = draw(st.lists(_KEYS, min_size=len(atoms), max_size=len(atoms)))
            pairs = zip(names, atoms, strict=True)
            lines += [f"{key}:", *(f"{indent or '  '}{k}: {a}" for k, a in pairs)]
        else:
            lines.append(f"{key}:")
    return "\n".join(lines) + "\n"


@settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.booleans(), st.lists(_line(), max_size=8), _document())
def test_random_files_are_read_as_libyaml_reads_them_or_handed_over(
    valid_start: bool, lines: list[str], document: str
) -> None:
    text = ("name: a\ntype: dataset\n" if valid_start else "") + "\n".join(lines) + "\n"
    _read_as_libyaml_or_handed_over(text)
    _read_as_libyaml_or_handed_over(document)


def _read_as_libyaml_or_handed_over(text: str) -> None:
    read = manifest_module._parse_lines(text)
    if read is None:
        return
    documents, problems = _libyaml(text)
    assert problems == [], text
    assert _read(read) == _read(documents), text


def test_every_atom_in_every_place_is_read_as_libyaml_reads_it() -> None:
    # The property above checks only the files the line reader takes: here each atom goes in
    # each place a value can be, the reader must take a fair share, and read those right.
    places = [
        "labels:\n  zone: {}\n",
        "tags: [{}, b]\n",
        "tags:\n- {}\n",
        "owners:\n  - {}\n",
        "description: {}\n",
        "description: '{}'\n",
        'description: "{}"\n',
    ]
    taken = 0
    for place in places:
        for atom in ATOMS:
            text = "name: a\ntype: dataset\n" + place.format(atom)
            read = manifest_module._parse_lines(text)
            if read is not None:
                taken += 1
                documents, problems = _libyaml(text)
                assert problems == [] and _read(read) == _read(documents), text
    assert taken >= len(places) * len(ATOMS) // 3
