"""The clean path of the manifest parser (documents without positions) gives exactly what the
checked builder gives, and hands every file with anything to report to the checked builder."""

from __future__ import annotations

from pathlib import Path

import pytest

import crawler.manifest as manifest_module
from crawler.manifest import CLEAN_PATH_EVENTS, ParsedDocument, parse_manifest
from crawler.problems import Problem

PATH = "team/MANIFEST.yaml"
ROOT = Path(__file__).resolve().parents[1]

# Files the clean path takes: plain mappings, lists and scalars of every kind it resolves.
CLEAN = [
    "name: a\ntype: dataset\n",
    "name: a\ntype: dataset\ndescription: \"quoted, with \\u00e9 escape\"\ntags: [x, 'y', z]\n",
    "name: a\ntype: dataset\nlabels: {tier: 3, pii: false, ratio: 0.5, none: ~, hex: 0x1F,"
    " oct: 017, yes_word: yes, '3': x}\npublished_on: 2026-01-31T10:00:00Z\n",
    "name: a\ntype: dataset\npublished_on: 2026-01-31\n",
    "name: a\ntype: dataset\nowners:\n  - ana@example.com\n  - bo@example.com\n"
    "depends_on: [b, c]\nversions: {v1: ./2024/, v2: ./2025/}\n",
    "name: a\ntype: dataset\nlocation: ./part-*.parquet\nformat: parquet\nschema:\n"
    "  - {name: id, type: int64}\n  - {name: amount, type: double, description: gross}\n",
    "name: a\ntype: dataset\ndescription: |\n  two\n  lines\nextra: {id: fixed-id}\n",
    "---\nname: a\ntype: dataset\n---\nname: b\ntype: model\n---\n",
    "name: a\ntype: dataset\ndepends-on: [b]\nchecks: [{column: id, not_null: true}]\n",
    "name: '123'\ntype: dataset\ndescription: >\n  folded\n  text\ntags: []\nlabels: {}\n",
    "name: !!str a\ntype: dataset\nlabels: {tier: !!int '3'}\n",  # allowed scalar tags
    'name: a\ntype: dataset\ndescription: "tab\\tand\\nnewline escapes"\n',  # allowed escapes
    "",  # empty: no documents; the "empty file" warning comes from parse_manifest either way
]

# Files the clean path must hand over: each has something to report, or something (anchors,
# tags, merge keys) only the checked builder handles.
HANDED_OVER = [
    "name: a\ntype: dataset\nunknown_field: 1\n",  # a warning, with its line
    "name: a\ntype: dataset\nname: b\n",  # duplicate key
    "name: [a\ntype: dataset\n",  # syntax error
    "name: a\ntype: 7\n",  # validation error
    "type: dataset\n",  # missing name
    "base: &b {tier: 1}\nname: a\ntype: dataset\nlabels: *b\n",  # anchor and alias
    "name: a\ntype: dataset\nlabels:\n  <<: {tier: 1}\n",  # merge key
    "name: a\ntype: dataset\nlabels: !!map {tier: 1}\n",  # a tag on a mapping
    "name: !!python/name:os.system a\ntype: dataset\n",  # refused tag
    "- a\n- b\n",  # not a mapping
    "name: a\ntype: dataset\ndepends_on: b\ndepends-on: [c]\n",  # two spellings
    "name: a\ntype: dataset\nextra: [1]\n",  # extra must be a mapping
    "name: a\ntype: dataset\n1: x\n",  # a key that is not text
    "name: a\ntype: dataset\nlabels: {big: 99999999999999999999}\n",  # past 64 bits
    'name: a\ntype: dataset\ndescription: "bell \\a"\n',  # a refused character, escaped
    "name: a\ntype: dataset\nlabels: {? [x, y] : 1}\n",  # a list as a key
    "name: a\ntype: dataset\nlabels: {? {x: 1} : 1}\n",  # a mapping as a key
    "name: a\ntype: dataset\ntags: [" + ", ".join(["t"] * CLEAN_PATH_EVENTS) + "]\n",  # long
]


def checked(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[ParsedDocument], list[Problem]]:
    with monkeypatch.context() as m:
        m.setattr(manifest_module, "_parse_clean", lambda text: None)
        return parse_manifest(data, PATH)


def as_tuples(docs: list[ParsedDocument]) -> list[tuple[int, int, dict[str, object]]]:
    return [(d.index, d.line, d.manifest.model_dump(mode="json", by_alias=True)) for d in docs]


@pytest.mark.parametrize("text", CLEAN)
def test_clean_files_take_the_clean_path_with_the_checked_results(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert manifest_module._parse_clean(text) is not None
    fast = parse_manifest(text.encode(), PATH)
    slow = checked(text.encode(), monkeypatch)
    assert as_tuples(fast[0]) == as_tuples(slow[0])
    assert fast[1] == slow[1]
    # Values keep their types (an int stays an int, a date a date), not only their JSON.
    assert [d.manifest for d in fast[0]] == [d.manifest for d in slow[0]]


@pytest.mark.parametrize("text", HANDED_OVER)
def test_files_with_something_to_report_go_to_the_checked_builder(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert manifest_module._parse_clean(text) is None
    fast = parse_manifest(text.encode(), PATH)
    slow = checked(text.encode(), monkeypatch)
    assert as_tuples(fast[0]) == as_tuples(slow[0])
    assert fast[1] == slow[1]


def test_a_reported_problem_keeps_its_line_and_field() -> None:
    # The clean path read it first and gave up: the report still says where.
    docs, problems = parse_manifest(
        b"name: a\ntype: dataset\nlabels:\n  tier: 3\ntags:\n  - ok\n  - {x: 1}\n", PATH
    )
    assert docs == []
    assert [(p.line, p.field) for p in problems] == [(7, "tags.1")]


def test_every_example_manifest_parses_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(ROOT.joinpath("examples").rglob("*.yaml"))
    manifests = [f for f in files if f.name == "MANIFEST.yaml" or f.name.endswith(".cairn.yaml")]
    assert len(manifests) >= 5
    for f in manifests:
        data = f.read_bytes()
        fast = parse_manifest(data, str(f))
        slow = checked(data, monkeypatch)
        assert as_tuples(fast[0]) == as_tuples(slow[0]), f
        assert fast[1] == slow[1], f


# Plain scalars of every kind YAML 1.1's safe rules resolve, each spelled so that the text
# alone does not say the type (``yes`` a boolean, ``0x1F`` an int, ``1_000`` too).
YAML_11_SCALARS = (
    "name: a\ntype: dataset\nextra: {a: yes, b: No, c: on, d: OFF, e: 0x1F, f: 017, g: 1_000,"
    " h: 0b101, i: 1:30, j: .5, k: 1e3, l: 1.5e-3, m: -2., n: ~, o: null, p: Null, q: 2026-01-31,"
    " r: 2026-01-31 10:00:00+02:00, s: 1.0, t: 1, u: true, v: y, w: '1', x: '', z: 0}\n"
)


def test_plain_scalars_resolve_the_same_both_ways_cold_and_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The clean path remembers how short plain scalars resolved: the second read comes from
    # that cache, and must give the values (and their types) the first read and the checked
    # builder give.
    manifest_module._PLAIN_VALUES.clear()
    data = YAML_11_SCALARS.encode()
    slow = checked(data, monkeypatch)
    assert slow[1] == []
    for _ in range(2):
        assert manifest_module._parse_clean(YAML_11_SCALARS) is not None
        fast = parse_manifest(data, PATH)
        assert fast[1] == []
        [got], [want] = fast[0], slow[0]
        assert got.manifest == want.manifest
        pairs = zip(got.manifest.extra.items(), want.manifest.extra.items(), strict=True)
        assert all(type(g[1]) is type(w[1]) for g, w in pairs)
    values = fast[0][0].manifest.extra
    assert (values["a"], values["d"], values["e"], values["g"], values["i"]) == (
        True,
        False,
        31,
        1000,
        90,
    )
    assert type(values["s"]) is float and type(values["t"]) is int and values["w"] == "1"
