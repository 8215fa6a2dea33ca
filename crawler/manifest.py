"""Parse manifest files safely (DESIGN sections 2 and 8).

Manifests come from anyone who can write to a data volume, so the parser treats them as
hostile: it never constructs anything but plain values, and bounds size, nesting and alias
expansion before a single pydantic model is built.

How it works: the YAML *event* stream from PyYAML's (C) parser is turned into Python values
by a small iterative builder here, not by ``yaml.compose``/``yaml.load``. Two reasons:

* libyaml's composer recurses in C once per nesting level, so a 1 MiB file of ``[[[[...``
  crashes the process, and its scanner is quadratic in flow depth; building from events lets
  us stop at ``MAX_DEPTH`` before either matters.
* We need the line and column of every key and list item to report pydantic errors where the
  user wrote the value, and we need to see duplicate keys, aliases and tags as they go by.

Most manifests never reach libyaml: they are written the usual way (keys at the start of their
lines, one-line values, indented blocks of ``- entries`` or ``key: value``), and
``_parse_lines`` reads that shape a line at a time for half the CPU, handing anything else,
or anything with something to report, to the event builders.

Choices worth knowing:

* Scalars resolve with PyYAML's safe rules (YAML 1.1: ``yes``/``no`` are booleans, ``2026-01-31``
  is a date, ``0x1F`` an int). Only these tags are accepted: ``!!str !!int !!float !!bool !!null
  !!timestamp !!seq !!map`` and the non-specific ``!``. Anything else (``!!python/...``,
  ``!!binary``, ``!!set``, custom tags) is reported and never constructed.
* Integers must fit in 64 bits, because every store and JSON encoder downstream needs that.
* Merge keys (``<<: *defaults``) are supported with YAML's semantics: explicit keys win over
  merged ones and, within ``<<: [*a, *b]``, earlier mappings win. Merged keys are reported at
  the line where they were written, inside the anchored mapping.
* UTF-8 (with or without a BOM) and UTF-16 *with* a BOM are accepted, as the YAML spec asks;
  anything else is rejected with the offset of the first bad byte.
* A syntax error, or nesting past ``MAX_DEPTH``, stops the file there: documents before it
  still count. Other errors only drop the document they are in.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeGuard

import yaml
from pydantic import AliasChoices, ValidationError
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from cairn.models import MASTRO_CRAWLER_FIELDS, DuplicateColumn, Manifest
from crawler.problems import Problem

__all__ = [
    "CLEAN_PATH_EVENTS",
    "MAX_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_NODES",
    "ParsedDocument",
    "field_position",
    "parse_manifest",
]

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000  # bound on constructed nodes, so alias bombs ("billion laughs") are rejected
# The most YAML events the clean path (see _parse_clean) reads before it hands a file to the
# checked builder: what a file that hits a bound costs on top of that bound's worth of events.
# A manifest with a 400-column schema still fits.
CLEAN_PATH_EVENTS = 4096

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# The C parser when libyaml is present; the pure-Python one gives the same events, only slower.
# Events are all we read, so the bare parser: CSafeLoader would also set up a constructor and a
# resolver in Python for every file, which cost more than the parse of a small manifest's head.
try:
    from yaml._yaml import CParser as _CParser

    _Loader: Any = _CParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


@dataclass(slots=True)
class ParsedDocument:
    index: int  # 0-based document index in the file
    line: int  # 1-based line where the document starts
    manifest: Manifest


# --- scalar resolution -------------------------------------------------------------------------

_Y = "tag:yaml.org,2002:"
_STR = _Y + "str"
_INT = _Y + "int"
_MAP = _Y + "map"
_SEQ = _Y + "seq"
_MERGE_TAG = _Y + "merge"

_SAFE = yaml.constructor.SafeConstructor()
_CONSTRUCT: dict[str, Callable[[ScalarNode], Any]] = {
    _INT: _SAFE.construct_yaml_int,
    _Y + "float": _SAFE.construct_yaml_float,
    _Y + "bool": _SAFE.construct_yaml_bool,
    _Y + "null": _SAFE.construct_yaml_null,
    _Y + "timestamp": _SAFE.construct_yaml_timestamp,
}
_KIND_OF_TAG = {
    _INT: "integer",
    _Y + "float": "number",
    _Y + "bool": "boolean",
    _Y + "null": "null",
    _Y + "timestamp": "date",
}

# PyYAML's implicit resolvers, keyed by first character. ``=`` (!!value) and ``!``/``&``/``*``
# (!!yaml) have no safe constructor; as plain text they can only mean the string itself.
_IMPLICIT: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: tuple(
        (_STR if tag in (_Y + "value", _Y + "yaml") else tag, regexp) for tag, regexp in pairs
    )
    for first, pairs in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    if first is not None
}

# Plain scalars repeat a lot across manifests (field names, types, tag words); remembering how
# they resolve skips the regular expressions. Bounded so hostile input cannot grow it.
_PLAIN_CACHE: dict[str, str] = {}
# The clean path's cache (see _clean_build): plain scalar -> its value. Every value a plain
# scalar resolves to (text, numbers, booleans, null, dates) is immutable, so sharing is safe.
_PLAIN_VALUES: dict[str, Any] = {}
_PLAIN_CACHE_MAX = 4096
_PLAIN_CACHE_LEN = 64
# No 64-bit integer needs more characters than this, even written in binary with a sign; longer
# ones are refused before conversion, which is quadratic for YAML 1.1's base-60 form (1:2:3).
_INT_MAX_CHARS = 70


class _Merge:
    """Stands for a plain ``<<`` until we know whether it sits in key position."""

    __slots__ = ()


_MERGE = _Merge()
_NOKEY: Any = object()


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_Y) :] if tag.startswith(_Y) else tag


def _tag_error(tag: str) -> str:
    shown = _show_tag(tag)
    if "python/" in tag:
        return (
            f"tag {shown} asks to build a Python object; manifests only hold plain values, "
            "so it was not constructed: remove the tag"
        )
    return (
        f"tag {shown} is not allowed in a manifest; remove it "
        "(only plain text, numbers, booleans, dates, lists and mappings are accepted)"
    )


def _short(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


class _DocError(Exception):
    """A problem that drops the current document (or, if ``fatal``, the rest of the file)."""

    def __init__(
        self,
        reason: str,
        mark: Any = None,
        *,
        fatal: bool = False,
        field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mark = mark
        self.fatal = fatal
        self.field = field


def _scalar(event: ScalarEvent) -> Any:
    tag = event.tag
    value = event.value
    if event.style == '"':
        # The file itself was checked for such characters; only escapes in double quotes
        # (\0, \a, \e, \x01) can still make them, and paths and stores downstream refuse them.
        bad = _NOT_PRINTABLE.search(value)
        if bad is not None:
            raise _DocError(
                f"{_char_name(bad.group())} (written as an escape in double quotes) is not "
                f"allowed in a manifest; remove it from {_short(value)}",
                event.start_mark,
            )
    if tag is None or tag == "!":
        if not event.implicit[0]:  # quoted or block scalar: always text
            return value
        tag = _PLAIN_CACHE.get(value)
        if tag is None:
            tag = _STR
            for candidate, regexp in _IMPLICIT.get(value[:1], ()):
                if regexp.match(value):
                    tag = candidate
                    break
            if len(value) <= _PLAIN_CACHE_LEN:
                if len(_PLAIN_CACHE) >= _PLAIN_CACHE_MAX:
                    _PLAIN_CACHE.clear()
                _PLAIN_CACHE[value] = tag
    if tag == _STR:
        return value
    if tag == _MERGE_TAG:
        return _MERGE
    construct = _CONSTRUCT.get(tag)
    if construct is None:
        raise _DocError(_tag_error(tag), event.start_mark)
    if tag == _INT and len(value) - value.count("_") > _INT_MAX_CHARS:
        raise _DocError(
            f"{_short(value)} is not an integer that fits in 64 bits; "
            "quote it if it is meant as text",
            event.start_mark,
        )
    try:
        result = construct(ScalarNode(tag, value, event.start_mark, event.end_mark))
    except (ValueError, OverflowError, TypeError, KeyError, yaml.YAMLError) as exc:
        if tag == _INT:
            reason = (
                f"{_short(value)} is not an integer that fits in 64 bits; "
                "quote it if it is meant as text"
            )
        else:
            detail = getattr(exc, "problem", None) or str(exc)
            reason = (
                f"{_short(value)} is not a valid {_KIND_OF_TAG[tag]} ({detail}); "
                "fix it, or quote it if it is meant as text"
            )
        raise _DocError(reason, event.start_mark) from None
    if type(result) is int and not _INT64_MIN <= result <= _INT64_MAX:
        raise _DocError(
            f"integer {_short(value)} does not fit in 64 bits; quote it if it is meant as text",
            event.start_mark,
        )
    return result


# --- building values from events ---------------------------------------------------------------


class _Frame:
    """An open mapping or sequence while its events stream past."""

    __slots__ = (
        "anchor",
        "height",
        "is_map",
        "key",
        "key_mark",
        "mark",
        "marks",
        "merges",
        "obj",
        "start_nodes",
        "values",
    )

    def __init__(self, is_map: bool, anchor: str | None, start_nodes: int, mark: Any) -> None:
        self.is_map = is_map
        self.mark = mark
        self.obj: Any = {} if is_map else []
        self.marks: Any = {} if is_map else []
        # A mapping's value marks (key -> where its value starts), for errors about a value
        # written on a later line than its key.
        self.values: dict[Any, Any] = {}
        self.key: Any = _NOKEY
        self.key_mark: Any = None
        self.anchor = anchor
        self.start_nodes = start_nodes
        self.height = 0
        self.merges: list[dict[Any, Any]] | None = None


def _stack_path(stack: list[_Frame]) -> str | None:
    parts: list[str] = []
    for depth, frame in enumerate(stack):
        if depth == 8:  # a deeper path is noise to a reader; the line and column say where
            parts.append("...")
            break
        if frame.is_map:
            if frame.key is _NOKEY:
                break
            parts.append("<<" if frame.key is _MERGE else str(frame.key))
        else:
            parts.append(str(len(frame.obj)))
    return ".".join(parts) or None


# Where each key / list item was written: id(container) -> {key: Mark} or [Mark, ...]. A
# mapping's values are under -id(mapping): {key: Mark of the value}.
_Marks = dict[int, Any]


def _build(get_event: Callable[[], Any]) -> tuple[Any, Any, _Marks]:
    """Consume one document's events (after DocumentStart, through DocumentEnd).

    Returns the root value, the root's mark and the marks of every container (and of every
    mapping's values, see ``_Marks``).
    """
    stack: list[_Frame] = []
    marks: _Marks = {}
    # anchor -> (value, nodes it expands to, nesting height)
    anchors: dict[str, tuple[Any, int, int]] = {}
    open_anchors: set[str] = set()
    nodes = 0
    root: Any = None
    root_mark: Any = None
    try:
        while True:
            event = get_event()
            cls = type(event)
            if cls is ScalarEvent:
                value = _scalar(event)
                mark = event.start_mark
                nodes += 1
                height = 0
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1, 0)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                is_map = cls is MappingStartEvent
                tag = event.tag
                if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                    raise _DocError(_tag_error(tag), event.start_mark)
                if len(stack) >= MAX_DEPTH:
                    raise _DocError(
                        f"nested deeper than {MAX_DEPTH} levels; flatten the structure "
                        "(the rest of the file was not read)",
                        event.start_mark,
                        fatal=True,
                    )
                frame = _Frame(is_map, event.anchor, nodes, event.start_mark)
                nodes += 1
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                stack.append(frame)
                continue
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                frame = stack.pop()
                value = frame.obj
                if frame.merges:
                    _apply_merges(frame, marks)
                marks[id(value)] = frame.marks
                if frame.is_map:
                    marks[-id(value)] = frame.values
                height = frame.height + 1
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, nodes - frame.start_nodes, height)
                    open_anchors.discard(frame.anchor)
                mark = frame.mark
            elif cls is AliasEvent:
                name = event.anchor
                if name in open_anchors:
                    raise _DocError(
                        f"alias *{name} refers to a mapping or list that contains it; "
                        "recursive structures are not allowed",
                        event.start_mark,
                    )
                found = anchors.get(name)
                if found is None:
                    raise _DocError(
                        f"alias *{name} has no anchor &{name} before it in this document",
                        event.start_mark,
                    )
                value, size, height = found
                mark = event.start_mark
                nodes += size
                if nodes > MAX_NODES:
                    raise _DocError(
                        f"aliases expand past {MAX_NODES} values; "
                        "a manifest this large is almost certainly an alias bomb",
                        event.start_mark,
                    )
                if len(stack) + height > MAX_DEPTH:
                    raise _DocError(
                        f"alias *{name} nests the document deeper than {MAX_DEPTH} levels",
                        event.start_mark,
                    )
            elif cls is DocumentEndEvent:
                return root, root_mark, marks
            else:  # pragma: no cover - the parser only sends the events above inside a document
                continue

            if nodes > MAX_NODES:
                raise _DocError(
                    f"more than {MAX_NODES} values in one document; split it up",
                    event.start_mark,
                )
            if not stack:
                root = "<<" if value is _MERGE else value
                root_mark = mark
                continue
            top = stack[-1]
            if height > top.height:
                top.height = height
            if not top.is_map:
                top.obj.append("<<" if value is _MERGE else value)
                top.marks.append(mark)
                continue
            key = top.key
            if key is _NOKEY:
                if value is _MERGE:
                    top.key = _MERGE
                elif type(value) is dict or type(value) is list:
                    raise _DocError(
                        "a mapping key must be a plain value, not a list or mapping", mark
                    )
                elif value in top.obj:
                    first = top.marks[value]
                    parent = _stack_path(stack)
                    raise _DocError(
                        f"duplicate key {value!r} (first given at line {first.line + 1}); "
                        "keep only one",
                        mark,
                        field=f"{parent}.{value}" if parent else str(value),
                    )
                else:
                    top.key = value
                top.key_mark = mark
                continue
            if key is _MERGE:
                _add_merge(top, value, mark)
            else:
                top.obj[key] = "<<" if value is _MERGE else value
                top.marks[key] = top.key_mark
                top.values[key] = mark
            top.key = _NOKEY
    except _DocError as err:
        if err.field is None:
            err.field = _stack_path(stack)
        raise
    except yaml.YAMLError as exc:
        # Re-raised with the field being parsed, which a bare libyaml message never names.
        raise _DocError("", fatal=True, field=_stack_path(stack)) from exc


def _add_merge(frame: _Frame, value: Any, mark: Any) -> None:
    sources = value if type(value) is list else [value]
    for source in sources:
        if type(source) is not dict:
            raise _DocError(
                "a merge key (<<) takes a mapping or a list of mappings, e.g. <<: *defaults",
                mark,
            )
    if frame.merges is None:
        frame.merges = []
    frame.merges.extend(sources)


def _apply_merges(frame: _Frame, marks: _Marks) -> None:
    merged: dict[Any, Any] = {}
    merged_marks: dict[Any, Any] = {}
    merged_values: dict[Any, Any] = {}
    # Earlier sources win, so apply them last.
    for source in reversed(frame.merges or ()):
        merged.update(source)
        merged_marks.update(marks.get(id(source), {}))
        merged_values.update(marks.get(-id(source), {}))
    for key, value in merged.items():
        if key not in frame.obj:  # explicit keys win over merged ones
            frame.obj[key] = value
            frame.marks[key] = merged_marks.get(key)
            frame.values[key] = merged_values.get(key)


def _skip_document(get_event: Callable[[], Any]) -> bool:
    """Read past the rest of a bad document; False if it nests too deep to read on."""
    depth = 0
    while True:
        cls = type(get_event())
        if cls is DocumentEndEvent:
            return True
        if cls is MappingStartEvent or cls is SequenceStartEvent:
            depth += 1
            # The scanner slows down with flow depth, so even skipping must stop here.
            if depth > MAX_DEPTH:
                return False
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            depth -= 1


# --- decoding ----------------------------------------------------------------------------------

# What YAML 1.1 calls printable; anything else would be refused by the YAML reader anyway, and
# checking first lets us say where and why.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _char_name(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "NUL character"
    if 0xD800 <= code <= 0xDFFF:
        return f"lone surrogate U+{code:04X}"
    return f"control character U+{code:04X}"


def _line_col_of(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _decode(data: bytes, path: str) -> tuple[str | None, Problem | None]:
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return None, Problem(path, "the file is UTF-32 encoded; save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            return None, Problem(
                path,
                f"the file starts with a UTF-16 byte order mark but byte {exc.start} is not "
                "valid UTF-16; save it as UTF-8",
            )
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + 1
            return None, Problem(
                path,
                f"binary content: NUL byte at offset {nul} (line {line}); "
                "a manifest must be a YAML text file",
                line=line,
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            start = exc.start + (3 if data.startswith(codecs.BOM_UTF8) else 0)
            line = data.count(b"\n", 0, start) + 1
            column = start - (data.rfind(b"\n", 0, start) + 1) + 1
            return None, Problem(
                path,
                f"not valid UTF-8: byte 0x{data[start]:02x} at offset {start}; "
                "save the file as UTF-8",
                line=line,
                column=column,
            )
    if text.startswith("\ufeff"):
        text = text[1:]
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line, column = _line_col_of(text, bad.start())
        return None, Problem(
            path,
            f"binary content: {_char_name(bad.group())} at line {line}, column {column}; "
            "a manifest must be a YAML text file",
            line=line,
            column=column,
        )
    return text, None


# --- syntax errors -----------------------------------------------------------------------------


def _syntax_problem(exc: yaml.YAMLError, text: str, path: str, field: str | None) -> Problem:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return Problem(path, f"YAML error: {exc}", field=field)
    mark = exc.problem_mark
    context_mark = exc.context_mark
    problem = exc.problem or "invalid YAML"
    context = exc.context or ""
    lines = text.split("\n")
    at = lines[mark.line][mark.column : mark.column + 1] if mark.line < len(lines) else ""
    opened = (
        f"line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
    )
    if at == "\t" or "tab" in problem:
        hint = "indent with spaces; YAML does not allow tabs for indentation"
    elif "escape" in problem:
        hint = "inside double quotes a backslash starts an escape: write \\\\ or use single quotes"
    elif "quoted scalar" in context and ("end of stream" in problem or "document" in problem):
        hint = f"the quote opened at {opened} is never closed"
    elif "flow sequence" in context:
        hint = f"the '[' at {opened} is not closed with ']' (or a comma is missing)"
    elif "flow mapping" in context:
        hint = f"the '{{' at {opened} is not closed with '}}' (or a comma is missing)"
    elif "mapping values are not allowed" in problem:
        hint = "check the indentation of this line, or quote a value that contains ': '"
    elif "expected key" in problem or "block end" in problem:
        hint = "check the indentation of this line: it does not line up with the lines above"
    else:
        hint = "check the YAML syntax here"
    return Problem(
        path,
        f"YAML syntax error: {problem}; {hint}",
        line=mark.line + 1,
        column=mark.column + 1,
        field=field,
    )


# --- validation --------------------------------------------------------------------------------


def _field_names() -> tuple[frozenset[str], list[tuple[str, ...]]]:
    """Every key the model knows, and the groups of keys that name the same field."""
    # ``id`` is no Manifest field, but a known key: the crawler makes it the asset's id.
    known: set[str] = {"id"}
    groups: list[tuple[str, ...]] = []
    for name, info in Manifest.model_fields.items():
        names = [name]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names += [a for a in alias.choices if isinstance(a, str) and a != name]
        elif isinstance(alias, str) and alias != name:
            names.append(alias)
        known.update(names)
        if len(names) > 1:
            groups.append(tuple(names))
    return frozenset(known), groups


_KNOWN, _ALIAS_GROUPS = _field_names()
# Kept under extra like any unknown field, but documented (DESIGN 10): the crawl's profile
# step (crawler/profile_step.py) validates and evaluates them, so no warning here.
_KNOWN_EXTRA = frozenset({"checks"})
# Mastro's crawler writes the time it last found a manifest into it (``last-discovered-at``),
# one of the Mastro names DESIGN 2 accepts. The model drops it without a word: an asset's
# ``crawled_at`` is when this crawl found it, so a time copied from the file would be stale.
_QUIET_KEYS = _KNOWN_EXTRA | MASTRO_CRAWLER_FIELDS
_CLEAN_KEYS = _KNOWN | _QUIET_KEYS
_SPELLINGS = frozenset(name for group in _ALIAS_GROUPS for name in group)

_EXPECT = {
    "tags": "a list of strings",
    "owners": "a list of strings",
    "depends_on": "a list of asset names",
    "depends-on": "a list of asset names",
    "labels": "a mapping of names to text, numbers or booleans",
    "versions": "a mapping of version names to locations",
    "schema": "a list of columns like {name: id, type: int64}",
    "schema_": "a list of columns like {name: id, type: int64}",
    "extra": "a mapping",
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _quote_hint(value: Any) -> str:
    if isinstance(value, bool | int | float | date):
        return "; put it in quotes to make it text"
    return ""


def _reason(err: Mapping[str, Any], label: str, top: str) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{label} is required"
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"])
    if kind == "string_type":
        return f"{label} must be text, got {_kind(value)}{_quote_hint(value)}"
    if kind == "list_type":
        return f"{label} must be {_EXPECT.get(top, 'a list')}, got {_kind(value)}"
    if kind == "dict_type":
        return f"{label} must be {_EXPECT.get(top, 'a mapping')}, got {_kind(value)}"
    if kind in ("model_type", "model_attributes_type"):
        return f"{label} must be a mapping like {{name: id, type: int64}}, got {_kind(value)}"
    if kind == "string_too_long":
        return f"{label} is {len(str(value))} characters long; the limit is {ctx.get('max_length')}"
    if kind == "string_too_short":
        return f"{label} must not be empty"
    if kind == "too_long":
        return (
            f"{label} has {ctx.get('actual_length')} entries; the limit is {ctx.get('max_length')}"
        )
    if kind.startswith(("datetime", "date")):
        detail = f" ({ctx['error']})" if ctx.get("error") else ""
        return (
            f"{label} must be a date or date and time such as 2026-01-31T00:00:00Z, "
            f"got {value!r}{detail}"
        )
    if kind.startswith("bool"):
        return f"{label} must be true or false, got {value!r}"
    if kind == "extra_forbidden":
        if top in ("schema", "schema_"):
            return (
                f"unknown column field {label.rsplit('.', 1)[-1]!r}; "
                "a column has name, type, nullable and description"
            )
        return f"{label} cannot be given together with another spelling of the same field"
    return f"{label}: {err['msg']}"


# A label value is a scalar, a map or a list (cairn.models.AssetLabelValue).
_LABEL_UNION_MEMBERS = frozenset(
    {
        "str",
        "constrained-str",
        "int",
        "float",
        "bool",
        "none",
        "dict[constrained-str,any]",
        "list[any]",
    }
)


def _locate(root: dict[Any, Any], marks: _Marks, loc: tuple[Any, ...], *, key: bool = False) -> Any:
    """The mark of the deepest part of ``loc`` we know a position for: where its key was
    written, or where its value starts when that is on a later line (``tags:`` above its
    list), so the line is the value's; with ``key``, the last part's key mark whatever."""
    current: Any = root
    found = None
    last = len(loc) - 1
    for step, part in enumerate(loc):
        positions = marks.get(id(current))
        if positions is None:
            break
        try:
            mark = positions[part]
            value_mark = marks.get(-id(current), {}).get(part)
            current = current[part]
        except (KeyError, IndexError, TypeError):
            break
        value_elsewhere = value_mark is not None and (mark is None or value_mark.line != mark.line)
        if value_elsewhere and not (key and step == last):
            mark = value_mark
        if mark is not None:
            found = mark
    return found


def _validate(
    root: dict[Any, Any],
    marks: _Marks,
    doc_line: int,
    path: str,
    problems: list[Problem],
) -> Manifest | None:
    key_marks: dict[Any, Any] = marks.get(id(root), {})

    def at(key: Any) -> tuple[int | None, int | None]:
        mark = key_marks.get(key)
        return (mark.line + 1, mark.column + 1) if mark is not None else (doc_line, None)

    failed = False
    data = root
    bad_keys = [key for key in root if type(key) is not str]
    for key in bad_keys:
        line, column = at(key)
        problems.append(
            Problem(
                path,
                f"field names must be text, got {_kind(key)}; quote the key",
                line=line,
                column=column,
                field=str(key),
            )
        )
    for group in _ALIAS_GROUPS:
        given = [name for name in group if name in root]
        if len(given) > 1:
            line, column = at(given[1])
            spelled = " and ".join(repr(name) for name in given)
            problems.append(
                Problem(
                    path,
                    f"{spelled} are two spellings of the same field; keep one",
                    line=line,
                    column=column,
                    field=given[1],
                )
            )
            bad_keys.extend(given[1:])
    if "extra" in root and type(root["extra"]) is not dict:
        mark = _locate(root, marks, ("extra",))
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (doc_line, None)
        problems.append(
            Problem(
                path,
                f"extra must be a mapping, got {_kind(root['extra'])}",
                line=line,
                column=column,
                field="extra",
            )
        )
        bad_keys.append("extra")
    if bad_keys:
        failed = True
        data = {key: value for key, value in root.items() if key not in bad_keys}

    for key in data:
        if key not in _KNOWN and key not in _QUIET_KEYS:
            line, column = at(key)
            problems.append(
                Problem(
                    path,
                    f"unknown field {key!r} kept under extra",
                    line=line,
                    column=column,
                    field=key,
                    severity="warning",
                )
            )

    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        _report_validation(exc, root, marks, doc_line, path, problems)
        return None
    except (TypeError, ValueError) as exc:  # a model validator tripping over odd input
        problems.append(Problem(path, f"invalid manifest: {exc}", line=doc_line))
        return None
    return None if failed else manifest


def _report_validation(
    exc: ValidationError,
    root: dict[Any, Any],
    marks: _Marks,
    doc_line: int,
    path: str,
    problems: list[Problem],
) -> None:
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        key_error = bool(loc) and loc[-1] == "[key]"
        if key_error:
            loc = loc[:-1]
        top = str(loc[0]) if loc else ""
        duplicate = (err.get("ctx") or {}).get("error")
        if isinstance(duplicate, DuplicateColumn) and len(loc) == 1:
            loc = (*loc, duplicate.index, "name")  # the line of the second one, not of schema:
        union = top == "labels" and len(loc) == 3 and loc[2] in _LABEL_UNION_MEMBERS
        if union:
            loc = loc[:2]
        if loc in seen:
            continue
        seen.add(loc)
        label = ".".join(str(part) for part in loc) or "manifest"
        if key_error:
            reason = f"{label}: keys must be text, got {_kind(err.get('input'))}; quote the key"
        elif union:
            value = err.get("input")
            reason = (
                f"label {loc[1]!r} must be text, a number, a boolean or empty, "
                f"got {_kind(value)}{_quote_hint(value) if isinstance(value, date) else ''}"
            )
        else:
            reason = _reason(err, label, top)
        mark = _locate(root, marks, loc, key=key_error or err["type"] == "extra_forbidden")
        problems.append(
            Problem(
                path,
                reason,
                line=mark.line + 1 if mark is not None else doc_line,
                column=mark.column + 1 if mark is not None else None,
                field=label if loc else None,
            )
        )


# --- entry point -------------------------------------------------------------------------------


def parse_manifest(data: bytes, path: str) -> tuple[list[ParsedDocument], list[Problem]]:
    """Parse one manifest file: the good documents, and a problem for everything else.

    ``path`` is only used in problems. Never raises for bad input.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        return [], [
            Problem(
                path,
                f"manifest is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (1 MiB). "
                "Keep large content (schemas, docs) out of the manifest",
            )
        ]
    text, problem = _decode(data, path)
    if text is None:
        return [], [problem] if problem is not None else []

    try:
        documents, problems = _parse_text(text, path)
    except _LibyamlTooDeep as too_deep:
        documents, problems = _parse_prefix(text, path, too_deep)
    if not documents and not problems:
        problems.append(
            Problem(path, "the file holds no manifest: it is empty", severity="warning")
        )
    return documents, problems


def field_position(
    data: bytes, field: str, doc_line: int | None = None, *, name: str | None = None
) -> tuple[int, int] | None:
    """Where ``field`` (a dotted path: ``location``, ``checks.1.type``) is written in the
    document of ``data`` that starts at ``doc_line`` (its ``ParsedDocument.line``), or else in
    the first one whose ``name`` is ``name``: the 1-based line and column of its value (of its
    key when both are on one line, as ``_locate`` reports), or None when the file holds no
    such document or field (it changed since).

    For what the crawl finds wrong after the parse (a location outside the volume, a name
    another asset holds): a clean file's parse keeps no positions, which would cost every
    manifest of every crawl, so the file is read again here, on that error path only.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        return None
    text, _ = _decode(data, "")
    if text is None:
        return None
    loader = _Loader(text)
    try:
        while True:
            event = loader.get_event()
            cls = type(event)
            if cls is StreamEndEvent or event is None:
                return None
            if cls is not DocumentStartEvent:
                continue
            if doc_line is None and name is not None:
                try:
                    root, _, marks = _build(loader.get_event)
                except _DocError as err:
                    if err.fatal or not _skip_document(loader.get_event):
                        return None
                    continue
                if type(root) is dict and root.get("name") == name:
                    break
            elif event.start_mark.line + 1 == doc_line:
                root, _, marks = _build(loader.get_event)
                break
            elif not _skip_document(loader.get_event):
                return None
    except (_DocError, yaml.YAMLError):
        return None
    finally:
        loader.dispose()
    if type(root) is not dict:
        return None
    loc = tuple(int(part) if part.isdigit() else part for part in field.split("."))
    mark = _locate(root, marks, loc)
    return None if mark is None else (mark.line + 1, mark.column + 1)


class _LibyamlTooDeep(Exception):
    """libyaml stopped at its own nesting limit before our ``MAX_DEPTH`` check saw the events."""

    def __init__(self, error: yaml.MarkedYAMLError, field: str | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.field = field


def _is_libyaml_too_deep(exc: BaseException | None) -> TypeGuard[yaml.MarkedYAMLError]:
    # libyaml 0.2.6 (bundled with PyYAML >= 6.0.3 wheels) caps nesting at 1000 levels. Its
    # scanner reads ahead through a whole flow collection, so it reaches that cap before the
    # parser hands us the event at level 65.
    return (
        isinstance(exc, yaml.MarkedYAMLError)
        and exc.problem_mark is not None
        and "maximum nesting depth" in (exc.problem or "")
    )


def _parse_text(text: str, path: str) -> tuple[list[ParsedDocument], list[Problem]]:
    fast = _parse_lines(text)
    if fast is None:
        fast = _parse_clean(text)
    if fast is not None:
        return fast, []
    documents: list[ParsedDocument] = []
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        _parse_stream(loader.get_event, text, path, documents, problems)
    finally:
        loader.dispose()
    return documents, problems


def _parse_prefix(
    text: str, path: str, too_deep: _LibyamlTooDeep
) -> tuple[list[ParsedDocument], list[Problem]]:
    """The same report as when our own depth check catches it first (older libyaml).

    The text before the point where libyaml gave up nests no deeper than libyaml's cap, and
    everything up to our ``MAX_DEPTH`` check is in it, so parsing just that part reports the
    documents before it and the level where the structure goes too deep, at the same line,
    column and field on every PyYAML version. The prefix is bounded by libyaml's cap, so this
    second pass is cheap.
    """
    mark = too_deep.error.problem_mark
    assert mark is not None
    lines = text.split("\n", mark.line)
    cut = sum(len(line) + 1 for line in lines[: mark.line]) + mark.column
    documents, problems = _parse_text(text[:cut], path)
    if any(f"deeper than {MAX_DEPTH} levels" in p.reason for p in problems):
        return documents, problems
    # Only if libyaml's cap were ever set below ours: say so at the place libyaml stopped.
    problems = [p for p in problems if not p.reason.startswith("YAML syntax error")]
    problems.append(
        Problem(
            path,
            "nested deeper than the YAML reader allows; flatten the structure "
            "(the rest of the file was not read)",
            line=mark.line + 1,
            column=mark.column + 1,
            field=too_deep.field,
        )
    )
    return documents, problems


def _parse_stream(
    get_event: Callable[[], Any],
    text: str,
    path: str,
    documents: list[ParsedDocument],
    problems: list[Problem],
) -> None:
    index = -1
    try:
        while True:
            event = get_event()
            cls = type(event)
            if cls is StreamEndEvent or event is None:
                return
            if cls is not DocumentStartEvent:
                continue
            index += 1
            doc_line = event.start_mark.line + 1
            try:
                root, root_mark, marks = _build(get_event)
            except _DocError as err:
                cause = err.__cause__
                if _is_libyaml_too_deep(cause):
                    raise _LibyamlTooDeep(cause, err.field) from None
                if isinstance(cause, yaml.YAMLError):
                    problems.append(_syntax_problem(cause, text, path, err.field))
                    return
                mark = err.mark
                problems.append(
                    Problem(
                        path,
                        err.reason,
                        line=mark.line + 1 if mark is not None else doc_line,
                        column=mark.column + 1 if mark is not None else None,
                        field=err.field,
                    )
                )
                if err.fatal:
                    return
                if not _skip_document(get_event):
                    problems.append(
                        Problem(
                            path,
                            f"nested deeper than {MAX_DEPTH} levels after the error above; "
                            "the rest of the file was not read",
                            line=doc_line,
                        )
                    )
                    return
                continue
            if root is None:
                continue  # an empty document, e.g. after a trailing '---'
            if type(root) is not dict:
                problems.append(
                    Problem(
                        path,
                        f"a manifest document must be a mapping of fields, got {_kind(root)}",
                        line=root_mark.line + 1 if root_mark is not None else doc_line,
                        column=root_mark.column + 1 if root_mark is not None else None,
                    )
                )
                continue
            manifest = _validate(root, marks, doc_line, path, problems)
            if manifest is not None:
                documents.append(ParsedDocument(index=index, line=doc_line, manifest=manifest))
    except yaml.YAMLError as exc:
        if _is_libyaml_too_deep(exc):
            raise _LibyamlTooDeep(exc, None) from None
        problems.append(_syntax_problem(exc, text, path, None))


# --- the clean path ----------------------------------------------------------------------------
#
# Nearly every manifest a crawl reads is plain: mappings, lists and scalars, no anchors, tags
# or merge keys, and nothing to report. Recording where each key and item was written costs
# about as much as reading the events, and those positions are only ever read to report a
# problem. So a file is first read by the builder below, which keeps no positions and gives
# up (returns None) at the first thing it does not handle or that would be reported; the
# file is then read again, from the start, by the checked builder above, which reports it.
# Every bound (depth, node count) is enforced by both, so hostile input costs at most two
# bounded reads; a file read by this path gives the same documents as the checked one.


class _GiveUp(Exception):
    """Raised inside the clean path: the checked builder must read this file."""


# --- the usual manifest, read line by line ------------------------------------------------------

# A key as _parse_lines reads it: plain, one word (and text once resolved, see _key_value).
_LINE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
# What a plain scalar must not start with in _parse_lines: YAML's indicators (quotes are read
# before this check; '-' starts an entry, or a number it leaves to libyaml).
_LINE_INDICATORS = frozenset("-?:,[]{}#&*!|>%@`")
# Lines past which _parse_lines leaves a file to the event builders (their bounds apply).
_LINE_LIMIT = 1000
# Characters _parse_lines leaves to libyaml wherever they are: YAML's line breaks other than
# LF, and tabs (indentation they would be, or text they may be).
_OTHER_BREAKS = ("\r", "\x85", "\u2028", "\u2029", "\t")


def _parse_lines(text: str) -> list[ParsedDocument] | None:
    """The one document of a manifest written the usual way, or None: read it with libyaml.

    The usual way is a mapping of keys at the start of their lines, each with a one-line
    scalar, a one-line ``[flow, list]`` of scalars, or an indented block of ``- scalar`` lines
    or of ``key: scalar`` lines; comments on lines of their own and blank lines anywhere. That
    is most manifests, and reading it here costs half of what libyaml's events and the
    builder cost (which a crawl pays for every manifest). Anything else (quotes with escapes,
    a comment after a value, multi-line scalars, deeper nesting, anchors, tags, several
    documents, a line break other than LF, a tab) gives None, as does any doubt: libyaml then
    reads the file as before. Scalars resolve as the event builders resolve them (YAML 1.1,
    ``_scalar``); ``tests/test_manifest_lines.py`` compares the two readers on generated
    manifests and on random ones.
    """
    # CR, NEL, LS and PS break lines too, even inside what would be a comment here.
    if any(c in text for c in _OTHER_BREAKS):
        return None
    lines = text.split("\n")
    if len(lines) > _LINE_LIMIT:
        return None
    try:
        root, first = _line_mapping(lines)
    except (_GiveUp, _DocError):
        return None
    if root is None:
        return None
    try:
        manifest = _clean_validate(root)
    except _GiveUp:
        return None
    return [ParsedDocument(index=0, line=first + 1, manifest=manifest)]


def _line_mapping(lines: list[str]) -> tuple[dict[str, Any] | None, int]:
    """The top-level mapping of ``lines`` and the index of its first line (see _parse_lines);
    _GiveUp where the file is not written the usual way.

    One pass, a line at a time: this is the loop a crawl runs for every line of every
    manifest, so the block being filled and its indent are kept in locals."""
    root: dict[str, Any] = {}
    first = -1
    block_key: str | None = None  # the key whose value is an indented block, while it lasts
    block: Any = None  # that block (a list or a dict) once its first line was read
    block_indent = 0
    for number, line in enumerate(lines):
        body = line.lstrip(" ")
        if not body or body[0] == "#":
            continue  # a blank line or a comment of its own
        if not line.isprintable():
            raise _GiveUp  # a format or space character the checks below do not expect
        indent = len(line) - len(body)
        if indent == 0 and body[0] != "-":
            key, value = _key_value(body)
            if key in root:
                raise _GiveUp  # a duplicate: the checked builder reports it
            if first < 0:
                first = number
            # A value on the line ends any block; an empty one opens a block (else it is null).
            root[key] = _line_value(value) if value else None
            block_key, block = (None if value else key), None
            continue
        # A block's line ("- " entries may sit at the key's own indent). Anything indented
        # below a scalar would continue it (a multi-line scalar) or be an error.
        if block_key is None:
            raise _GiveUp
        if block is None:
            block = [] if body[:2] == "- " else {} if indent else None
            if block is None:
                raise _GiveUp
            root[block_key] = block
            block_indent = indent
        elif indent != block_indent:
            raise _GiveUp  # deeper nesting, or a ragged block
        if type(block) is list:
            if body[:2] != "- ":
                raise _GiveUp
            block.append(_line_value(body[2:].strip(" "), flow=False))
        else:
            key, value = _key_value(body)
            if not value or key in block:
                raise _GiveUp  # a block deeper still, or a duplicate
            block[key] = _line_value(value)
    return (root if first >= 0 else None), first


# Keys seen before (name, tags, zone, ...), already checked and resolved: one lookup each.
_LINE_KEYS: dict[str, str] = {}


def _key_value(line: str) -> tuple[str, str]:
    """(key, value text) of a ``key: value`` line without its indentation."""
    key, colon, value = line.partition(":")
    if not colon or (value and value[0] != " "):
        raise _GiveUp
    known = _LINE_KEYS.get(key)
    if known is None:
        if _LINE_KEY.fullmatch(key) is None or type(resolved := _plain(key)) is not str:
            raise _GiveUp  # quoted, spaced, or yes, no, null, a number: not a text key
        if len(_LINE_KEYS) >= _PLAIN_CACHE_MAX:
            _LINE_KEYS.clear()
        known = _LINE_KEYS[key] = resolved
    return known, value.strip(" ")


def _line_value(text: str, flow: bool = True) -> Any:
    """A value written on one line: a plain or simply quoted scalar, or (``flow``) a flow list
    of plain scalars."""
    if not text:
        raise _GiveUp
    head = text[0]
    if head == "[" and flow:
        if text[-1] != "]":
            raise _GiveUp
        inner = text[1:-1]
        if any(c in inner for c in "[]{}#:'\"\\"):
            raise _GiveUp
        if not inner.strip(" "):
            return []
        return [_line_value(item.strip(" "), flow=False) for item in inner.split(",")]
    if head == '"' or head == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != head or head in inner or "\\" in inner:
            raise _GiveUp
        return inner
    if head in _LINE_INDICATORS or ": " in text or " #" in text or text[-1] == ":":
        raise _GiveUp
    return _plain(text)


def _plain(text: str) -> Any:
    """A plain scalar's value, as the event builders resolve it."""
    value = _PLAIN_VALUES.get(text, _NOKEY)
    if value is _NOKEY:
        value = _resolve_plain(ScalarEvent(None, None, (True, False), text))
    return value


def _parse_clean(text: str) -> list[ParsedDocument] | None:
    """The documents of a file with nothing to report, or None: read it the checked way."""
    loader = _Loader(text)
    try:
        return _clean_stream(loader.get_event)
    except (_GiveUp, _DocError, yaml.YAMLError):
        return None
    finally:
        loader.dispose()


def _clean_stream(get_event: Callable[[], Any]) -> list[ParsedDocument]:
    documents: list[ParsedDocument] = []
    index = -1
    budget = CLEAN_PATH_EVENTS
    while True:
        event = get_event()
        budget -= 1
        cls = type(event)
        if cls is StreamEndEvent or event is None:
            return documents
        if budget < 0:
            raise _GiveUp
        if cls is not DocumentStartEvent:
            continue
        index += 1
        doc_line = event.start_mark.line + 1
        root, budget = _clean_build(get_event, budget)
        if root is None:
            continue  # an empty document, as the checked path skips it
        if type(root) is not dict:
            raise _GiveUp
        documents.append(ParsedDocument(index=index, line=doc_line, manifest=_clean_validate(root)))


def _clean_build(get_event: Callable[[], Any], budget: int) -> tuple[Any, int]:
    """One document's value (after DocumentStart, through DocumentEnd), without positions,
    and what is left of ``budget`` (events).

    This loop runs once per YAML event of every manifest a crawl reads, so it keeps the open
    container and its pending key in locals (the stack only holds the enclosing ones) and
    settles the usual scalars with one dictionary lookup."""
    stack: list[tuple[Any, Any]] = []  # the enclosing containers, each with its pending key
    top: Any = None  # the open container; None at the root
    key: Any = _NOKEY  # the open mapping's pending key (_NOKEY: none; lists too)
    root: Any = None
    plain = _PLAIN_VALUES
    while True:
        budget -= 1
        if budget < 0:
            raise _GiveUp
        event = get_event()
        cls = type(event)
        if cls is ScalarEvent:
            if event.anchor is not None:
                raise _GiveUp
            value = event.value
            if event.tag is not None:
                value = _scalar(event)
                if value is _MERGE:
                    raise _GiveUp
            elif event.implicit[0]:
                value = plain.get(value, _NOKEY)
                if value is _NOKEY:
                    value = _resolve_plain(event)
            elif event.style == '"' and not value.isprintable():
                value = _scalar(event)  # an escape may have made a character we refuse
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            if event.tag is not None or event.anchor is not None or len(stack) >= MAX_DEPTH:
                raise _GiveUp
            stack.append((top, key))
            top = {} if cls is MappingStartEvent else []
            key = _NOKEY
            continue
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            value = top
            top, key = stack.pop()
            if key is _NOKEY and type(top) is dict:
                raise _GiveUp  # a mapping or list as a key
        elif cls is DocumentEndEvent:
            return root, budget
        else:  # an alias (or anything unexpected): the checked path handles it
            raise _GiveUp
        if key is not _NOKEY:
            top[key] = value
            key = _NOKEY
        elif type(top) is list:
            top.append(value)
        elif top is None:
            root = value
        elif value in top:
            raise _GiveUp  # a duplicate key
        else:
            key = value


def _resolve_plain(event: ScalarEvent) -> Any:
    """A plain scalar's value, resolved as the checked path does, remembered if short."""
    value = _scalar(event)
    if value is _MERGE:
        raise _GiveUp
    text = event.value
    if len(text) <= _PLAIN_CACHE_LEN:
        if len(_PLAIN_VALUES) >= _PLAIN_CACHE_MAX:
            _PLAIN_VALUES.clear()
        _PLAIN_VALUES[text] = value
    return value


def _clean_validate(root: dict[Any, Any]) -> Manifest:
    """The manifest, when ``_validate`` would report nothing about ``root``; else _GiveUp."""
    # Set operations in C, not a loop per key: a key that is not text is in neither set.
    if not _CLEAN_KEYS.issuperset(root):
        raise _GiveUp
    if len(_SPELLINGS.intersection(root)) > 1:
        for group in _ALIAS_GROUPS:
            if sum(1 for name in group if name in root) > 1:
                raise _GiveUp
    if "extra" in root and type(root["extra"]) is not dict:
        raise _GiveUp
    try:
        return Manifest.model_validate(root)
    except (ValidationError, TypeError, ValueError):
        raise _GiveUp from None
