"""A corpus of hostile and broken manifests: each is reported, none crashes or executes code.

Every case names the file, and the line (and field) where one exists. Walking concerns
(symlink loops, FIFOs, directories named like manifests) are tested with the crawler.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import crawler.manifest as manifest_module
from crawler.manifest import (
    CLEAN_PATH_EVENTS,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_NODES,
    parse_manifest,
)
from crawler.problems import Problem

PATH = "hostile/x.cairn.yaml"
GOOD = "name: ok\ntype: dataset\n"


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    reason: str  # a piece of the reason that must be there
    line: int | None  # None: the problem is about the whole file
    field: str | None = None
    column: int | None = None


def case(
    id: str,
    text: str | bytes,
    reason: str,
    line: int | None,
    field: str | None = None,
    column: int | None = None,
) -> Case:
    data = text.encode() if isinstance(text, str) else text
    return Case(id, data, reason, line, field, column)


BILLION_LAUGHS = """\
name: lol
type: dataset
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

CASES = [
    # --- YAML syntax -------------------------------------------------------------------------
    case(
        "syntax-bad-indentation",
        "name: a\ntype: dataset\n  tags: [a]\n",
        "check the indentation",
        3,
        column=7,
    ),
    case(
        "syntax-dedent-in-list",
        "name: a\ntype: dataset\ntags:\n  - a\n - b\n",
        "does not line up",
        5,
    ),
    case(
        "syntax-unclosed-double-quote",
        'name: "sales\ntype: dataset\n',
        "quote opened at line 1, column 7 is never closed",
        3,
    ),
    case(
        "syntax-unclosed-single-quote",
        "name: a\ntype: dataset\ndescription: 'it is\n",
        "quote opened at line 3, column 14 is never closed",
        4,
    ),
    case(
        "syntax-quote-runs-into-next-document",
        'name: "sales\n---\nname: b\n',
        "quote opened at line 1, column 7 is never closed",
        2,
    ),
    case(
        "syntax-bad-escape",
        'name: "C:\\data\\q"\ntype: dataset\n',
        "a backslash starts an escape",
        1,
        field="name",
        column=10,
    ),
    case(
        "syntax-tab-indentation",
        "name: a\ntype: dataset\ntags:\n\t- a\n",
        "tabs",
        4,
        field="tags",
        column=1,
    ),
    case(
        "syntax-unclosed-bracket",
        "name: a\ntags: [a, b\ntype: dataset\n",
        "'[' at line 2, column 7 is not closed",
        3,
    ),
    case(
        "syntax-unclosed-brace",
        "name: a\ntype: dataset\nlabels: {a: 1\n",
        "'{' at line 3, column 9 is not closed",
        4,
    ),
    case(
        "syntax-colon-in-plain-value",
        "name: a: b\ntype: dataset\n",
        "quote a value that contains ': '",
        1,
    ),
    # --- size, depth, aliases ------------------------------------------------------------------
    # The expansion crosses the bound at the first alias of f (9**5 values each).
    case("alias-bomb", BILLION_LAUGHS, f"aliases expand past {MAX_NODES}", 8, field="f.0"),
    case(
        "too-many-values",
        "name: a\ntype: dataset\nbig: [" + "1," * (MAX_NODES + 10) + "1]\n",
        f"more than {MAX_NODES} values",
        3,
        field="big.99993",  # 7 values (the mapping, its keys, ...) come before the list
    ),
    case(
        "recursive-alias",
        "name: a\ntype: dataset\nloop: &me [1, *me]\n",
        "recursive structures are not allowed",
        3,
        field="loop.1",
    ),
    case(
        "undefined-alias",
        "name: a\ntype: dataset\nlabels: *nowhere\n",
        "alias *nowhere has no anchor",
        3,
        field="labels",
        column=9,
    ),
    case(
        "nul-escape-in-location",
        'name: a\ntype: dataset\nlocation: "data\\0/x"\n',
        "NUL character (written as an escape in double quotes) is not allowed",
        3,
        field="location",
        column=11,
    ),
    case(
        "escape-control-character-in-a-tag",
        'name: a\ntype: dataset\ntags: [ok, "bell\\a"]\n',
        "control character U+0007",
        3,
        field="tags.1",
    ),
    case(
        "nul-escape-in-a-key",
        'name: a\ntype: dataset\nlabels:\n  "k\\0": v\n',
        "NUL character",
        4,
        field="labels",
    ),
    case(
        "surrogate-escape-in-description",
        'name: a\ntype: dataset\ndescription: "\\ud800"\n',
        "escape",
        3,
        field="description",
    ),
    case(
        "flow-nesting-1000",
        "name: a\ntype: dataset\nx: " + "[" * 1000 + "]" * 1000 + "\n",
        f"nested deeper than {MAX_DEPTH} levels",
        3,
        column=3 + MAX_DEPTH,  # the 65th '[' (the document itself is level 1)
    ),
    case(
        "block-nesting-100",
        "".join("  " * i + "k:\n" for i in range(100)) + "  " * 100 + "v\n",
        f"nested deeper than {MAX_DEPTH} levels",
        MAX_DEPTH + 1,
    ),
    case(
        "alias-deepens-past-limit",
        "name: a\ntype: dataset\nd: &d "
        + "[" * 40
        + "]" * 40
        + "\nx: "
        + "[" * 30
        + "*d"
        + "]" * 30
        + "\n",
        f"alias *d nests the document deeper than {MAX_DEPTH} levels",
        4,
    ),
    # --- bytes that are not YAML text ----------------------------------------------------------
    case(
        "binary-png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        "binary content: NUL byte at offset 8",
        3,  # lines are counted by "\n"
    ),
    case(
        "nul-byte",
        b"name: a\ntype: data\x00set\n",
        "NUL byte at offset 18",
        2,
    ),
    case(
        "latin-1",
        "name: a\ntype: dataset\ndescription: Crème brûlée\n".encode("latin-1"),
        "not valid UTF-8: byte 0xe8 at offset 37",
        3,
        column=16,
    ),
    case(
        "raw-control-character",
        b"name: a\x07b\ntype: dataset\n",
        "control character U+0007 at line 1, column 8",
        1,
        column=8,
    ),
    case("utf-16-without-bom", GOOD.encode("utf-16-le"), "NUL byte at offset 1", 1),
    case("utf-32", GOOD.encode("utf-32"), "UTF-32", None),
    # --- tags: never constructed -------------------------------------------------------------
    case(
        "python-object-apply",
        "name: !!python/object/apply:os.system ['echo pwned']\ntype: dataset\n",
        "!!python/object/apply:os.system asks to build a Python object",
        1,
        field="name",
        column=7,
    ),
    case(
        "python-name",
        "name: a\ntype: dataset\nhook: !!python/name:os.system\n",
        "!!python/name:os.system",
        3,
        field="hook",
    ),
    case(
        "python-module",
        "name: a\ntype: dataset\nmod: !!python/module:subprocess ''\n",
        "!!python/module:subprocess",
        3,
        field="mod",
    ),
    case(
        "python-object-new",
        "name: a\ntype: dataset\nlabels: !!python/object/new:collections.Counter {}\n",
        "!!python/object/new:collections.Counter",
        3,
        field="labels",
    ),
    case(
        "python-tuple-on-sequence",
        "name: a\ntype: dataset\ntags: !!python/tuple [a, b]\n",
        "!!python/tuple",
        3,
        field="tags",
    ),
    case(
        "python-via-tag-directive",
        "%TAG !py! tag:yaml.org,2002:python/\n---\nname: !py!name:os.system x\ntype: dataset\n",
        "!!python/name:os.system",
        3,
    ),
    case(
        "custom-tag",
        "name: a\ntype: dataset\nlocation: !Ref BucketName\n",
        "tag !Ref is not allowed",
        3,
        field="location",
    ),
    case(
        "binary-tag",
        "name: a\ntype: dataset\nblob: !!binary aGVsbG8=\n",
        "tag !!binary is not allowed",
        3,
    ),
    case("set-tag", "name: a\ntype: dataset\ntags: !!set {a, b}\n", "tag !!set is not allowed", 3),
    # --- structure -----------------------------------------------------------------------------
    case(
        "duplicate-top-level-key",
        "name: a\ntype: dataset\nname: b\n",
        "duplicate key 'name' (first given at line 1)",
        3,
        field="name",
        column=1,
    ),
    case(
        "duplicate-nested-key",
        "name: a\ntype: dataset\nlabels:\n  pii: 'no'\n  pii: 'yes'\n",
        "duplicate key 'pii' (first given at line 4)",
        5,
        field="labels.pii",
    ),
    case(
        "duplicate-key-by-value",
        "name: a\ntype: dataset\nversions: {1: a, 0x1: b}\n",
        "duplicate key 1",
        3,
    ),
    case(
        "complex-key",
        "name: a\ntype: dataset\n? [a, b]\n: c\n",
        "a mapping key must be a plain value",
        3,
    ),
    case(
        "merge-non-mapping",
        "name: a\ntype: dataset\nlabels:\n  <<: 5\n",
        "a merge key (<<) takes a mapping",
        4,
    ),
    case("document-is-a-list", "- name: a\n- type: dataset\n", "must be a mapping of fields", 1),
    case("document-is-a-scalar", "just some text\n", "must be a mapping of fields, got text", 1),
    case(
        "non-text-field-name",
        "name: a\ntype: dataset\n2024: sales\n",
        "field names must be text",
        3,
        field="2024",
    ),
    case(
        "two-spellings-of-one-field",
        "name: a\ntype: dataset\ndepends_on: [x]\ndepends-on: [y]\n",
        "two spellings of the same field",
        4,
        field="depends-on",
    ),
    case("extra-not-a-mapping", "name: a\ntype: dataset\nextra: [ab]\n", "extra must be", 3),
    # --- field values --------------------------------------------------------------------------
    case(
        "tags-as-mapping",
        "name: a\ntype: dataset\ntags: {sales: true}\n",
        "tags must be a list of strings, got a mapping",
        3,
        field="tags",
    ),
    case(
        "labels-as-list",
        "name: a\ntype: dataset\nlabels: [pii, gold]\n",
        "labels must be a mapping of names to text, numbers or booleans, got a list",
        3,
        field="labels",
    ),
    case(
        "name-as-number",
        "name: 12345\ntype: dataset\n",
        "name must be text, got a number (12345); put it in quotes",
        1,
        field="name",
    ),
    case(
        "name-too-long",
        f"type: dataset\nname: {'n' * 300}\n",
        "name is 300 characters long; the limit is 256",
        2,
        field="name",
    ),
    case(
        "name-with-escaped-control-characters",
        'name: "sales\\a\\x1b[31m"\ntype: dataset\n',
        "control character U+0007 (written as an escape in double quotes) is not allowed",
        1,
        field="name",
    ),
    case(
        "unknown-type",
        "name: a\ntype: spaceship\n",
        "type 'spaceship' is not one of: database, dataset",
        2,
        field="type",
    ),
    case("missing-name", "type: dataset\ndescription: x\n", "name is required", 1, field="name"),
    case(
        "missing-type",
        "# a comment first\nname: a\n",
        "type is required",
        2,  # where the document starts: the comment is not part of it
        field="type",
    ),
    case(
        "huge-integer",
        "name: a\ntype: dataset\nlabels: {rows: " + "9" * 5000 + "}\n",
        "is not an integer that fits in 64 bits",
        3,
        field="labels.rows",
        column=16,
    ),
    case(
        "integer-just-past-64-bits",
        f"name: a\ntype: dataset\nlabels: {{rows: {2**63}}}\n",
        "does not fit in 64 bits",
        3,
    ),
    case(
        # Nested label values are kept (Mastro's Hive crawler writes maps), within a bound.
        "label-value-nested-too-deep",
        "name: a\ntype: dataset\nlabels:\n  owner:\n    team: " + "{a: " * 40 + "x" + "}" * 40,
        "is nested more than 32 levels deep",
        5,  # where the value starts, below its key
        field="labels.owner",
    ),
    case(
        "label-value-is-a-date",
        "name: a\ntype: dataset\nlabels: {since: 2024-01-01}\n",
        "got a date; put it in quotes",
        3,
        field="labels.since",
    ),
    case(
        "schema-column-without-name",
        "name: a\ntype: table\nschema:\n  - {name: id, type: int64}\n  - {type: string}\n",
        "schema.1.name is required",
        5,
        field="schema.1.name",
    ),
    case(
        "schema-column-unknown-field",
        "name: a\ntype: table\nschema:\n  - {name: id, typ: int64}\n",
        "unknown column field 'typ'",
        4,
        field="schema.0.typ",
    ),
    case(
        "invalid-date",
        "name: a\ntype: dataset\npublished_on: 2026-02-30\n",
        "'2026-02-30' is not a valid date (day is out of range for month)",
        3,
        field="published_on",
        column=15,
    ),
    case(
        "unparseable-date-text",
        "name: a\ntype: dataset\npublished_on: last tuesday\n",
        "published_on must be a date or date and time",
        3,
        field="published_on",
    ),
    case(
        "description-too-long",
        "name: a\ntype: dataset\ndescription: " + "d" * 70_000 + "\n",
        "description is 70000 characters long; the limit is 65536",
        3,
    ),
]


def test_the_corpus_covers_at_least_25_kinds() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 25


@dataclass
class EventCount:
    """How much of a file the YAML reader was asked for: the parser's cost in a unit that does
    not depend on how busy the machine is (the suite asserts no wall-clock times)."""

    loaders: int = 0
    events: int = 0


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> EventCount:
    count = EventCount()

    class CountingLoader(manifest_module._Loader):  # type: ignore[name-defined,misc]
        def __init__(self, stream: str) -> None:
            count.loaders += 1
            super().__init__(stream)

        def get_event(self) -> Any:
            count.events += 1
            return super().get_event()

    monkeypatch.setattr(manifest_module, "_Loader", CountingLoader)
    return count


# Bounds are there to keep hostile input cheap, not only to reject it: a parse that stops at a
# bound reads at most the bound's worth of events (plus the document's framing), and at most
# CLEAN_PATH_EVENTS more: the clean path's try before it hands the file to the checked builder.
EVENT_BUDGET = MAX_NODES + 4 * MAX_DEPTH + 32 + CLEAN_PATH_EVENTS


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_manifest_is_reported(c: Case, reads: EventCount) -> None:
    docs, problems = parse_manifest(c.data, PATH)

    assert docs == []
    found = [p for p in problems if p.severity == "error" and c.reason in p.reason]
    assert found, "\n".join(str(p) for p in problems) or "no problem reported"
    problem = found[0]
    assert problem.path == PATH
    assert problem.line == c.line, str(problem)
    if c.column is not None:
        assert problem.column == c.column, str(problem)
    if c.field is not None:
        assert problem.field == c.field, str(problem)
    assert str(problem).startswith(PATH)
    assert reads.events <= EVENT_BUDGET, f"{reads.events} YAML events read"


def test_file_over_the_size_limit_is_rejected_without_parsing(reads: EventCount) -> None:
    # 12 MiB of what would otherwise be a valid manifest.
    data = (GOOD + "description: " + "x" * (12 * 1024 * 1024) + "\n").encode()
    docs, problems = parse_manifest(data, PATH)
    assert reads.loaders == 0
    assert docs == []
    assert len(problems) == 1
    assert problems[0].line is None
    assert f"the limit is {MAX_MANIFEST_BYTES} bytes (1 MiB)" in problems[0].reason


def test_file_at_exactly_the_size_limit_is_parsed() -> None:
    head = GOOD + "x_padding: "
    data = (head + "p" * (MAX_MANIFEST_BYTES - len(head) - 1) + "\n").encode()
    assert len(data) == MAX_MANIFEST_BYTES
    docs, problems = parse_manifest(data, PATH)
    assert [d.manifest.name for d in docs] == ["ok"]
    assert [p.severity for p in problems] == ["warning"]  # x_padding is an unknown field


def test_flow_nesting_filling_the_size_limit_is_cut_short(reads: EventCount) -> None:
    # libyaml's own composer recurses once per level (a crash at ~100k levels) and its scanner
    # slows quadratically with flow depth; both must be avoided, not just survived.
    half = (MAX_MANIFEST_BYTES - 16) // 2
    data = b"x: " + b"[" * half + b"]" * half
    docs, problems = parse_manifest(data, PATH)
    assert reads.events <= 4 * MAX_DEPTH
    assert docs == []
    assert [p.line for p in problems] == [1]
    assert "nested deeper than 64 levels" in problems[0].reason


def test_deep_nesting_after_an_error_does_not_stall_the_skip(reads: EventCount) -> None:
    data = b"name: !!python/name:os.system x\nb: " + b"[" * 300_000 + b"]" * 300_000
    _, problems = parse_manifest(data, PATH)
    assert reads.events <= 4 * MAX_DEPTH
    assert len(problems) == 2
    assert "nested deeper than" in problems[1].reason


def test_python_tags_never_execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    calls: list[object] = []

    def record(*args: object, **kwargs: object) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(os, "system", record)
    monkeypatch.setattr(subprocess, "Popen", record)
    payloads = [
        f"name: !!python/object/apply:os.system ['touch {marker}']\ntype: dataset\n",
        "name: a\ntype: dataset\n"
        f"x: !!python/object/apply:subprocess.Popen [[touch, '{marker}']]\n",
        f"name: a\ntype: dataset\nx: !!python/object/new:os.system ['touch {marker}']\n",
        f"name: a\ntype: dataset\nx: !!python/object/apply:builtins.open ['{marker}', 'w']\n",
        "%TAG !p! tag:yaml.org,2002:python/object/apply:\n---\n"
        f"name: !p!os.system ['touch {marker}']\ntype: dataset\n",
    ]
    for payload in payloads:
        docs, problems = parse_manifest(payload.encode(), PATH)
        assert docs == []
        assert any("was not constructed" in p.reason for p in problems), problems
    assert calls == []
    assert not marker.exists()


def test_utf16_with_byte_order_mark_is_accepted() -> None:
    # The YAML spec requires UTF-16 with a BOM to be read; the BOM makes it unambiguous.
    for encoding in ("utf-16", "utf-16-be"):
        data = "name: café\ntype: dataset\n".encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data
        docs, problems = parse_manifest(data, PATH)
        assert problems == []
        assert docs[0].manifest.name == "café"


def test_empty_and_comment_only_files_get_a_warning() -> None:
    for data in (b"", b"   \n\n", b"# only a comment\n", b"---\n...\n", b"~\n"):
        docs, problems = parse_manifest(data, PATH)
        assert docs == []
        assert [(p.severity, p.path) for p in problems] == [("warning", PATH)], data
        assert "empty" in problems[0].reason


def test_a_bad_document_does_not_hide_its_neighbours() -> None:
    text = "\n---\n".join(
        [
            GOOD,
            "name: !!python/name:os.system x\ntype: dataset\n",
            "name: b\ntype: dataset\nname: c\n",
            "- a list\n",
            "name: d\ntype: table\n",
        ]
    )
    docs, problems = parse_manifest(text.encode(), PATH)
    assert [(d.index, d.manifest.name) for d in docs] == [(0, "ok"), (4, "d")]
    assert [p.line for p in problems] == [5, 11, 14]


def test_problems_are_plain_data() -> None:
    _, problems = parse_manifest(b"name: a\ntype: nope\n", PATH)
    assert isinstance(problems[0], Problem)
    assert problems[0].to_dict()["line"] == 2


@pytest.fixture
def libyaml_cap() -> Iterator[Callable[[int], None]]:
    """Sets libyaml's own nesting cap (libyaml >= 0.2.6) for one test, then restores it."""
    c_yaml = getattr(yaml, "_yaml", None)
    getter = getattr(c_yaml, "_get_max_nest_level", None)
    setter = getattr(c_yaml, "_set_max_nest_level", None)
    before = getter() if getter else None

    def set_cap(levels: int) -> None:
        if setter is not None:  # an older libyaml has no cap: our own check always runs first
            setter(levels)

    yield set_cap
    if setter is not None and before is not None:
        setter(before)


@pytest.mark.parametrize("cap", [70, 1000, 100_000])
@pytest.mark.parametrize("one_line", [True, False])
def test_deep_flow_nesting_is_reported_alike_whichever_layer_catches_it(
    cap: int, one_line: bool, libyaml_cap: Callable[[int], None]
) -> None:
    # On one line libyaml's scanner reads ahead to its own cap before we see the events; with
    # one '[' per line it does not, and the line says which level was refused.
    libyaml_cap(cap)
    nest = "[" * 2000 if one_line else "\n" + " [\n" * 2000
    data = ("name: a\ntype: dataset\nx: " + nest + "]" * 2000 + "\n").encode()
    docs, problems = parse_manifest(data, PATH)
    assert docs == []
    where = (3, 3 + MAX_DEPTH) if one_line else (3 + MAX_DEPTH, 2)
    assert [(p.line, p.column, p.field) for p in problems] == [(*where, "x" + ".0" * 7 + "....")]
    assert f"nested deeper than {MAX_DEPTH} levels" in problems[0].reason


def test_nesting_refused_by_libyaml_below_our_limit_is_still_located(
    libyaml_cap: Callable[[int], None],
) -> None:
    libyaml_cap(20)
    data = b"name: a\ntype: dataset\n---\nname: b\ntype: dataset\nx: " + b"[" * 30 + b"]" * 30
    docs, problems = parse_manifest(data, PATH)
    assert [d.manifest.name for d in docs] == ["a"]
    assert len(problems) == 1
    assert problems[0].line == 6
    assert problems[0].field is not None and problems[0].field.startswith("x")
    assert "nested deeper than" in problems[0].reason
