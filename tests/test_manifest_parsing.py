"""Good manifests parse to the right fields; bad ones are reported at the right line and field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import yaml

import crawler.manifest as manifest_module
from crawler.manifest import ParsedDocument, parse_manifest
from crawler.problems import Problem

PATH = "sales/MANIFEST.yaml"

# The example from DESIGN section 2, comments and all.
DESIGN_EXAMPLE = """\
name: sales_daily                 # required; unique in the catalogue; 1-256 chars, no control chars
type: dataset                     # required; one of: database dataset featureset embedding model
                                  #   notebook pipeline report service stream table user workflow
                                  #   (the Mastro set; extra types can be allowed in config)
description: Daily sales per store, deduplicated.
tags: [sales, daily, gold]        # list of strings; searched exactly and by prefix
labels: {domain: retail, pii: "false"}   # map of string -> scalar
owners: [ana@example.com]
location: ./part-*.parquet        # optional; default is the manifest's folder
format: parquet                   # optional; guessed from the files otherwise
schema:                           # optional; read from Parquet/CSV when absent
  - {name: store_id, type: int64}
  - {name: amount, type: double, description: gross amount in EUR}
depends_on: [sales_raw, stores]   # names (or ids) of upstream assets: the lineage edges
versions: {v1: ./2024/, v2: ./2025/}    # optional named variants (Mastro field)
published_on: 2026-01-31T00:00:00Z
"""


def parse(text: str | bytes) -> tuple[list[ParsedDocument], list[Problem]]:
    data = text.encode() if isinstance(text, str) else text
    return parse_manifest(data, PATH)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def only_error(text: str) -> Problem:
    docs, problems = parse(text)
    assert docs == []
    found = errors(problems)
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


# --- good manifests ----------------------------------------------------------------------------


def test_design_example_parses_every_field() -> None:
    docs, problems = parse(DESIGN_EXAMPLE)
    assert problems == []
    assert len(docs) == 1
    doc = docs[0]
    assert (doc.index, doc.line) == (0, 1)
    m = doc.manifest
    assert m.name == "sales_daily"
    assert m.type == "dataset"
    assert m.description == "Daily sales per store, deduplicated."
    assert m.tags == ["sales", "daily", "gold"]
    assert m.labels == {"domain": "retail", "pii": "false"}
    assert m.owners == ["ana@example.com"]
    assert m.location == "./part-*.parquet"
    assert m.format == "parquet"
    assert m.schema_ is not None
    assert [(c.name, c.type, c.description) for c in m.schema_] == [
        ("store_id", "int64", None),
        ("amount", "double", "gross amount in EUR"),
    ]
    assert m.depends_on == ["sales_raw", "stores"]
    assert m.versions == {"v1": "./2024/", "v2": "./2025/"}
    assert m.published_on == datetime(2026, 1, 31, tzinfo=UTC)
    assert m.extra == {}


def test_mastro_manifest_parses_unchanged() -> None:
    # Shaped like the MANIFEST.yaml files Mastro's own tools write: hyphenated field names,
    # quoted strings, empty collections and an offset timestamp with microseconds; and the
    # time Mastro's crawler last found it, which the crawl stamps anew (crawled_at).
    text = """\
published-on: 2021-05-31T17:58:46.335714+02:00
last-discovered-at: 2021-06-01T08:00:00Z
name: "clickstream"
description: ""
depends-on: [raw_clicks, sessions]
type: dataset
labels: {team: web}
tags: []
versions: {}
"""
    docs, problems = parse(text)
    assert problems == []
    m = docs[0].manifest
    assert m.depends_on == ["raw_clicks", "sessions"]
    assert m.published_on == datetime(
        2021, 5, 31, 17, 58, 46, 335714, tzinfo=timezone(timedelta(hours=2))
    )
    assert m.description == ""
    assert m.extra == {}
    dumped = m.model_dump(mode="json", by_alias=True)
    assert dumped["depends_on"] == ["raw_clicks", "sessions"]


def test_multi_document_keeps_good_ones_and_reports_the_bad_one() -> None:
    text = """\
name: first
type: dataset
---
name: second
type: spaceship
---
name: third
type: table
"""
    docs, problems = parse(text)
    assert [(d.index, d.line, d.manifest.name) for d in docs] == [
        (0, 1, "first"),
        (2, 6, "third"),
    ]
    assert len(problems) == 1
    bad = problems[0]
    assert bad.path == PATH
    assert (bad.line, bad.column, bad.field) == (5, 1, "type")
    assert "type 'spaceship' is not one of" in bad.reason


def test_syntax_error_keeps_documents_before_it() -> None:
    text = "name: one\ntype: dataset\n---\nname: two\ntype: table\n---\nname: [broken\n"
    docs, problems = parse(text)
    assert [d.manifest.name for d in docs] == ["one", "two"]
    assert len(problems) == 1
    assert problems[0].reason.startswith("YAML syntax error")
    assert problems[0].line == 8  # end of file, where the '[' should have been closed
    assert "line 7, column 7" in problems[0].reason  # ... and where it was opened


def test_empty_documents_are_skipped_silently_but_counted() -> None:
    docs, problems = parse("---\n---\n# nothing here\n---\nname: a\ntype: dataset\n---\n")
    assert problems == []
    assert [(d.index, d.line) for d in docs] == [(2, 4)]


def test_unknown_fields_are_kept_under_extra_with_a_warning() -> None:
    docs, problems = parse("name: a\ntype: dataset\nretention: 30d\nsteward: {team: x}\n")
    assert docs[0].manifest.extra == {"retention": "30d", "steward": {"team": "x"}}
    assert [(p.severity, p.field, p.line, p.column) for p in problems] == [
        ("warning", "retention", 3, 1),
        ("warning", "steward", 4, 1),
    ]
    assert problems[0].reason == "unknown field 'retention' kept under extra"


def test_yaml_1_1_scalars_resolve_like_the_safe_loader() -> None:
    text = """\
name: "2024"
type: dataset
labels: {pii: no, rows: 0x10, ratio: 1.5e+3, sealed: ~, when: yes}
published_on: 2026-01-31
"""
    docs, problems = parse(text)
    assert problems == []
    m = docs[0].manifest
    assert m.name == "2024"
    assert m.labels == {"pii": False, "rows": 16, "ratio": 1500.0, "sealed": None, "when": True}
    assert m.published_on == datetime(2026, 1, 31)


def test_merge_keys_explicit_keys_win() -> None:
    text = """\
name: a
type: dataset
labels:
  <<: &common {domain: retail, tier: 1}
  tier: 2
versions:
  <<: [{v1: ./a/}, {v1: ./b/, v2: ./c/}]
"""
    docs, problems = parse(text)
    assert problems == []
    m = docs[0].manifest
    assert m.labels == {"domain": "retail", "tier": 2}
    assert m.versions == {"v1": "./a/", "v2": "./c/"}  # earlier merged mappings win


def test_merged_values_are_reported_where_they_were_written() -> None:
    text = """\
name: a
type: dataset
labels:
  <<: {domain: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
  tier: 1
"""
    problem = only_error(text)
    assert problem.field == "labels.domain"
    assert (problem.line, problem.column) == (4, 8)


def test_explicit_standard_tags_are_honoured() -> None:
    docs, problems = parse('name: !!str 123\ntype: dataset\nlabels: {n: !!int "7", f: ! 1.5}\n')
    assert problems == []
    assert docs[0].manifest.name == "123"
    assert docs[0].manifest.labels == {"n": 7, "f": 1.5}


def test_utf8_byte_order_mark_is_accepted() -> None:
    docs, problems = parse(b"\xef\xbb\xbfname: caf\xc3\xa9\ntype: dataset\n")
    assert problems == []
    assert docs[0].manifest.name == "café"


def test_shorthand_schema_mapping_is_accepted() -> None:
    docs, problems = parse("name: a\ntype: table\nschema: {id: int64, label: string}\n")
    assert problems == []
    assert docs[0].manifest.schema_ is not None
    assert [(c.name, c.type) for c in docs[0].manifest.schema_] == [
        ("id", "int64"),
        ("label", "string"),
    ]


# --- where errors are reported -----------------------------------------------------------------


def test_error_in_a_list_item_points_at_the_item() -> None:
    text = """\
name: a
type: dataset
tags:
  - sales
  - daily
  - gold
  - {oops: 1}
"""
    problem = only_error(text)
    assert problem.field == "tags.3"
    assert (problem.line, problem.column) == (7, 5)
    assert "must be text, got a mapping" in problem.reason


def test_error_in_a_schema_column_points_at_the_key() -> None:
    text = """\
name: a
type: table
schema:
  - name: id
    type: int64
  - name: amount
    type: [double]
"""
    problem = only_error(text)
    assert problem.field == "schema.1.type"
    assert (problem.line, problem.column) == (7, 5)
    assert "schema.1.type must be text, got a list" in problem.reason


def test_a_schema_naming_a_column_twice_is_reported_at_the_second() -> None:
    text = """\
name: a
type: table
schema:
  - name: id
    type: int64
  - name: amount
  - {name: id, type: string}
"""
    problem = only_error(text)
    assert problem.field == "schema.2.name"
    assert (problem.line, problem.column) == (7, 6)
    assert "column 'id'" in problem.reason and "twice" in problem.reason
    # The other documents of the file still parse.
    docs, problems = parse(text + "---\nname: b\ntype: table\nschema: [{name: id}]\n")
    assert [d.manifest.name for d in docs] == ["b"]
    assert [p.line for p in errors(problems)] == [7]


def test_field_path_uses_the_spelling_the_user_wrote() -> None:
    text = "name: a\ntype: dataset\ndepends-on:\n  - upstream\n  - 42\n"
    problem = only_error(text)
    assert problem.field == "depends-on.1"
    assert (problem.line, problem.column) == (5, 5)
    assert "put it in quotes" in problem.reason


def test_wrong_container_type_names_what_to_write() -> None:
    problem = only_error("name: a\ntype: dataset\ntags: {sales: 1}\n")
    assert problem.reason == "tags must be a list of strings, got a mapping"
    assert (problem.line, problem.column, problem.field) == (3, 1, "tags")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # A value on the line after its key: that line, where the value is.
        ("name: a\ntype:\n  spaceship\n", (3, 3, "type")),
        ("name: a\ntype: dataset\ntags:\n  sales: 1\n", (4, 3, "tags")),
        ("name: a\ntype: dataset\nowners:\n\n  # who\n  {ana: 1}\n", (6, 3, "owners")),
        ("name: a\ntype: dataset\nextra:\n  - 1\n", (4, 3, "extra")),
        (
            "name: a\ntype: dataset\nschema:\n  - name: id\n    type:\n      [x]\n",
            (6, 7, "schema.0.type"),
        ),
        # In a later document, below its '---'.
        ("name: a\ntype: dataset\n---\ntype: dataset\nname:\n  [x]\n", (6, 3, "name")),
        # On the key's line: the key's column, as before.
        ("name: a\ntype: dataset\nlocation: [x]\n", (3, 1, "location")),
    ],
)
def test_an_error_about_a_value_names_the_line_of_the_value(
    text: str, where: tuple[int, int, str]
) -> None:
    (problem,) = errors(parse(text)[1])
    assert (problem.line, problem.column, problem.field) == where, str(problem)


def test_an_unknown_column_field_stays_at_its_key() -> None:
    text = "name: a\ntype: table\nschema:\n  - name: id\n    typo:\n      x\n"
    problem = only_error(text)
    assert (problem.line, problem.column, problem.field) == (5, 5, "schema.0.typo")


def test_missing_required_field_points_at_the_document() -> None:
    docs, problems = parse("name: a\ntype: dataset\n---\n# second\ndescription: no name\n")
    assert [d.manifest.name for d in docs] == ["a"]
    found = {p.field: p for p in errors(problems)}
    assert set(found) == {"name", "type"}
    assert found["name"].reason == "name is required"
    assert found["name"].line == 3


def test_a_location_with_a_password_is_reported_without_the_password() -> None:
    problem = only_error("name: a\ntype: dataset\nlocation: postgres://etl:hunter2@db/sales\n")
    assert (problem.line, problem.field) == (3, "location")
    assert "holds a password" in problem.reason and "hunter2" not in str(problem)


def test_every_error_in_a_document_is_reported_at_once() -> None:
    text = "name: 7\ntype: nope\nowners: ana@example.com\n"
    docs, problems = parse(text)
    assert docs == []
    assert [(p.field, p.line) for p in problems] == [("name", 1), ("type", 2), ("owners", 3)]


# --- Problem -----------------------------------------------------------------------------------


def test_problem_renders_like_a_compiler_message() -> None:
    problem = Problem("a/MANIFEST.yaml", "tags must be a list", line=3, column=1, field="tags")
    assert str(problem) == "a/MANIFEST.yaml:3:1: tags: tags must be a list"
    assert str(Problem("a/MANIFEST.yaml", "too big")) == "a/MANIFEST.yaml: too big"
    assert str(Problem("x.yaml", "bad", line=2)) == "x.yaml:2: bad"
    assert problem.to_dict() == {
        "path": "a/MANIFEST.yaml",
        "reason": "tags must be a list",
        "line": 3,
        "column": 1,
        "field": "tags",
        "severity": "error",
    }


def test_pure_python_parser_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where libyaml is missing PyYAML's own parser is used; it must behave the same.
    texts = [
        DESIGN_EXAMPLE,
        "name: a\ntype: dataset\ntags: [a, b\n",
        "name: !!python/name:os.system x\ntype: dataset\n---\nname: b\ntype: table\n",
        "name: a\ntype: dataset\nx: " + "[" * 100 + "]" * 100 + "\n",
        "name: a\ntype: dataset\nlabels:\n  <<: {a: 1}\n  b: [2]\n",
    ]

    def outcome(text: str) -> tuple[list[ParsedDocument], list[tuple[object, ...]]]:
        docs, problems = parse(text)
        # The two parsers word syntax errors differently; our hint after the ';' is the same.
        return docs, [(p.line, p.column, p.field, p.reason.split("; ")[-1]) for p in problems]

    expected = [outcome(text) for text in texts]
    assert all(problems for _, problems in expected[1:4])
    monkeypatch.setattr(manifest_module, "_Loader", yaml.SafeLoader)
    assert [outcome(text) for text in texts] == expected
