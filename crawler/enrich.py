"""What the crawler learns from the data beside a manifest: schema and format.

Data files can be huge and live on remote volumes, so nothing here reads data it does not
need: Parquet schemas come from the footer alone, CSV schemas from a prefix of the file that
the caller has already read.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO

from cairn.models import MAX_SHORT, SchemaField

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where a Parquet footer is read, not here: the crawler's own process
# never reads one (its workers do), and the import costs ~100 ms and ~40 MB.

__all__ = [
    "Column",
    "SchemaReadError",
    "arrow_type_name",
    "csv_columns",
    "csv_schema",
    "guess_format",
    "parquet_columns",
    "parquet_schema",
]


# A SchemaField as JSON (name, type, nullable): valid by construction, names and types clipped
# to the model's limits.
Column = dict[str, str | bool]


class SchemaReadError(ValueError):
    """A data file's schema could not be read; the message says why."""


# --- Arrow / Parquet ---------------------------------------------------------------------------

_MAX_TYPE_DEPTH = 32  # nested types deeper than this are shown as "..."; a footer can nest freely


@cache
def _simple_names() -> dict[pa.DataType, str]:
    import pyarrow as pa

    return {
        pa.float16(): "float16",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.bool_(): "bool",
        pa.string(): "string",
        pa.large_string(): "string",
        pa.binary(): "binary",
        pa.large_binary(): "binary",
        pa.date32(): "date32",
        pa.date64(): "date64",
    }


def arrow_type_name(t: pa.DataType) -> str:
    """A short, readable name for an Arrow type, e.g. ``list<int64>`` or ``timestamp[ms]``.

    Storage details that do not change what a column holds are left out: large vs. normal
    offsets, dictionary encoding and list item field names.
    """
    return _type_name(t, 0)


def _type_name(t: pa.DataType, depth: int) -> str:
    if depth > _MAX_TYPE_DEPTH:
        return "..."
    simple = _simple_names().get(t)
    if simple is not None:
        return simple
    import pyarrow.types as types

    if types.is_dictionary(t):
        return _type_name(t.value_type, depth)
    if types.is_string_view(t):
        return "string"
    if types.is_binary_view(t):
        return "binary"
    if types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if types.is_fixed_size_list(t):
        return f"list<{_type_name(t.value_type, depth + 1)}>[{t.list_size}]"
    if types.is_list(t) or types.is_large_list(t) or types.is_list_view(t):
        return f"list<{_type_name(t.value_type, depth + 1)}>"
    if types.is_large_list_view(t):
        return f"list<{_type_name(t.value_type, depth + 1)}>"
    if types.is_map(t):
        key = _type_name(t.key_type, depth + 1)
        return f"map<{key}, {_type_name(t.item_type, depth + 1)}>"
    if types.is_struct(t):
        inner = ", ".join(
            f"{t.field(i).name}: {_type_name(t.field(i).type, depth + 1)}"
            for i in range(t.num_fields)
        )
        return f"struct<{inner}>"
    if types.is_decimal(t):
        return f"decimal({t.precision}, {t.scale})"
    if types.is_run_end_encoded(t):
        return _type_name(t.value_type, depth)
    return str(t)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHORT else text[: MAX_SHORT - 3] + "..."


# A footer holds the schema and every row group's column statistics: tens of MB for very wide,
# long files. One that claims more is corrupt or hostile, and Arrow would allocate all of it.
MAX_PARQUET_FOOTER_BYTES = 64 * 1024 * 1024
# Arrow reads this much of a file's end first; reading the same range here costs a remote
# volume no extra request (its file object keeps the last block).
_FOOTER_PROBE_BYTES = 64 * 1024


def _check_footer_size(f: BinaryIO) -> None:
    """Refuses a footer claiming more than ``MAX_PARQUET_FOOTER_BYTES`` before Arrow reads it."""
    try:
        end = f.seek(0, io.SEEK_END)
        f.seek(max(0, end - _FOOTER_PROBE_BYTES))
        tail = f.read(_FOOTER_PROBE_BYTES)[-8:]
        f.seek(0)
    except (OSError, ValueError):
        return  # not seekable: Arrow says so in its own words
    if len(tail) == 8 and tail[4:] == b"PAR1":
        claimed = int.from_bytes(tail[:4], "little")
        if claimed > MAX_PARQUET_FOOTER_BYTES:
            raise SchemaReadError(
                f"the Parquet footer claims {claimed} bytes, over the limit of "
                f"{MAX_PARQUET_FOOTER_BYTES} bytes; the file is corrupt or not meant to be "
                "read, so its schema was not read"
            )


def parquet_schema(f: BinaryIO) -> list[SchemaField]:
    """The columns of a Parquet file, read from its footer only (no row group is touched).

    ``f`` must be seekable; it is left open.
    """
    return [SchemaField(**column) for column in parquet_columns(f)]


def parquet_columns(f: BinaryIO) -> list[Column]:
    """``parquet_schema`` as the JSON form of each SchemaField, which is what a crawl sends:
    building a model per column only to dump it again was a tenth of a cold crawl's reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_footer_size(f)
    try:
        parquet = pq.ParquetFile(f)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise SchemaReadError(_parquet_reason(exc)) from None
    try:
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SchemaReadError(f"Parquet footer has a schema Arrow cannot read: {exc}") from None
    finally:
        parquet.close()
    fields: list[Column] = []
    for position, field in enumerate(schema, start=1):
        if not field.name:
            raise SchemaReadError(f"column {position} of the Parquet schema has no name")
        fields.append(
            {
                "name": _clip(field.name),
                "type": _clip(arrow_type_name(field.type)),
                "nullable": field.nullable,
            }
        )
    return _unique(fields, "the Parquet schema")


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


def _parquet_reason(exc: Exception) -> str:
    # Arrow quotes bytes from the file in its messages; keep them from reaching logs raw.
    text = _UNPRINTABLE.sub(" ", str(exc)).strip()
    lowered = text.lower()
    if "magic bytes" in lowered:
        return "not a Parquet file: bad magic bytes"
    if "size is 0 bytes" in lowered or "minimum file footer" in lowered:
        return "not a Parquet file: it is empty or too short to hold a footer"
    if "reported by footer" in lowered or "metadata size" in lowered:
        return f"corrupt Parquet file: the footer length does not fit the file ({text})"
    if "seek" in lowered and "support" in lowered:
        return "cannot read the Parquet footer: the file object is not seekable"
    if "thrift" in lowered:
        return f"corrupt Parquet footer: {text}"
    return f"cannot read the Parquet footer: {text}"


# --- CSV ---------------------------------------------------------------------------------------

_DELIMITERS = ",;\t|"
# Cells that mean "no value" in the exports we meet most (SQL dumps, pandas, R).
_NULLS = frozenset({"", "NA", "N/A", "NULL", "null", "None", "\\N"})
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)
_BOOLS = frozenset({"true", "false"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)

# Narrow -> wide; a column takes the widest kind any of its cells needs.
_NONE, _BOOL, _INT64, _DOUBLE, _DATE32, _TS, _STRING = range(7)
_TYPE_NAMES = {
    _NONE: "string",
    _BOOL: "bool",
    _INT64: "int64",
    _DOUBLE: "double",
    _DATE32: "date",
    _TS: "timestamp",
    _STRING: "string",
}


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


# Cells repeat across the files of a crawl (flags, dates, small numbers): how each short one
# reads is remembered, which skips the regular expressions. Bounded: cells come from anyone.
_CELL_KINDS: dict[str, int] = {}
_CELL_KINDS_MAX = 4096
_CELL_KINDS_LEN = 32


def _cell_kind(cell: str) -> int:
    if _INT.fullmatch(cell):
        return _INT64 if -(2**63) <= int(cell) < 2**63 else _DOUBLE
    if cell.lower() in _BOOLS:
        return _BOOL
    if _FLOAT.fullmatch(cell):
        return _DOUBLE
    if _DATE.fullmatch(cell):
        return _DATE32 if _valid_date(cell) else _STRING
    match = _TIMESTAMP.fullmatch(cell)
    if match:
        return _TS if _valid_date(match.group(1)) else _STRING
    return _STRING


def _widen(current: int, new: int) -> int:
    if current in (_NONE, new):
        return new
    numeric = (_INT64, _DOUBLE)
    if current in numeric and new in numeric:
        return _DOUBLE
    temporal = (_DATE32, _TS)
    if current in temporal and new in temporal:
        return _TS
    return _STRING


def _decode_csv(head: bytes) -> str:
    return _decoded_csv(head)[0]


def _decoded_csv(head: bytes) -> tuple[str, str]:
    """(the text of a CSV file's head, the encoding it was read in)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = head.decode("utf-16", errors="replace"), "utf-16"
    else:
        if b"\x00" in head:
            raise SchemaReadError("not a CSV file: it holds binary data (NUL bytes)")
        encoding = "utf-8"
        try:
            text = head.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            # ``head`` is a prefix, so a multi-byte character may be cut at the very end.
            if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
                text = head[: exc.start].decode("utf-8-sig")
            else:
                # Legacy exports (Windows-1252, Latin-1): header names stay readable.
                text, encoding = head.decode("latin-1"), "latin-1"
    return text.lstrip("\ufeff"), encoding


def csv_dialect(head: bytes) -> tuple[str, str]:
    """(delimiter, encoding) of a CSV file, from its head, as ``csv_columns`` reads it: what
    a reader of the whole file (the crawl's profile step) must use to see the same columns."""
    text, encoding = _decoded_csv(head)
    if not text.strip():
        return ",", encoding
    lines = text.splitlines(keepends=True)[:51]
    return _sniff_delimiter("".join(lines[:50]), lines[0]), encoding


def _sniff_delimiter(sample: str, header: str) -> str:
    # Fast path: only one candidate occurs in the header, as often as in the next lines.
    # csv.Sniffer costs ~0.5 ms a file, which a crawl of thousands of CSVs feels.
    present = [d for d in _DELIMITERS if d in header]
    if len(present) == 1:
        d = present[0]
        lines = sample.splitlines()[1:6]
        if '"' not in sample and all(line.count(d) == header.count(d) for line in lines):
            return d
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if delimiter and delimiter in header:
        return delimiter
    # The sniffer gives up on short or irregular samples; the header usually still tells.
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_schema(
    head: bytes, max_rows: int = 200, *, delimiter: str | None = None
) -> list[SchemaField]:
    """Columns of a CSV file from its first bytes: header names and types inferred from rows.

    ``head`` may be cut anywhere: a last line without a newline is ignored unless it is the
    only one. Types are ``int64``, ``double``, ``bool``, ``date``, ``timestamp`` or ``string``;
    a column is nullable when an empty (or NA/NULL) cell was seen. ``delimiter`` skips
    sniffing (e.g. ``"\\t"`` for TSV).
    """
    return [SchemaField(**column) for column in csv_columns(head, max_rows, delimiter=delimiter)]


def csv_columns(head: bytes, max_rows: int = 200, *, delimiter: str | None = None) -> list[Column]:
    """``csv_schema`` as the JSON form of each SchemaField (see ``parquet_columns``)."""
    text = _decode_csv(head)
    if not text.strip():
        raise SchemaReadError("empty CSV: no header line")
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines.pop()  # probably cut mid-row by the read limit
    lines = lines[: max_rows + 1]
    if delimiter is None:
        delimiter = _sniff_delimiter("".join(lines[:50]), lines[0])
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        rows = [next(reader, [])]
        _header_on_one_line(rows[0], reader.line_num)
        rows.extend(reader)
    except csv.Error as exc:
        raise SchemaReadError(f"cannot read the CSV: {exc}") from None
    if not any(cell.strip() for cell in rows[0]):
        raise SchemaReadError("empty CSV: the first line holds no column names")
    header = rows[0]
    cache = _CELL_KINDS
    kinds = [_NONE] * len(header)
    nullable = [False] * len(header)
    width = len(header)
    for row in rows[1:]:
        if not row:
            continue  # a blank line is not a row of empty cells
        for i in range(width):
            cell = row[i].strip() if i < len(row) else ""
            if cell in _NULLS:
                nullable[i] = True
                continue
            kind = kinds[i]
            if kind == _STRING:
                continue
            cell_kind = cache.get(cell)
            if cell_kind is None:
                cell_kind = _cell_kind(cell)
                if len(cell) <= _CELL_KINDS_LEN:
                    if len(cache) >= _CELL_KINDS_MAX:
                        cache.clear()
                    cache[cell] = cell_kind
            kinds[i] = _widen(kind, cell_kind)
    return _unique(
        [
            {
                "name": _clip(name.strip()) or f"column_{i + 1}",
                "type": _TYPE_NAMES[kinds[i]],
                "nullable": nullable[i] or kinds[i] == _NONE,
            }
            for i, name in enumerate(header)
        ],
        "the CSV header",
    )


def _header_on_one_line(header: list[str], lines_read: int) -> None:
    """Refuses a header whose quote the header line does not close.

    The reader would carry on into the rows below and make them one column's name (``a,"b,c``
    then ``1,2,3`` gave a column named ``b,c\\n1,2,3``). Which column the writer meant cannot
    be known, so the schema is not read rather than guessed."""
    if lines_read > 1 or (header and header[-1].endswith(("\n", "\r"))):
        raise SchemaReadError(
            f"the CSV header's column {len(header)} opens a quote that the header line does "
            "not close; close or remove the quote"
        )


def _unique(columns: list[Column], where: str) -> list[Column]:
    """``columns``, unless two share a name: the catalogue refuses such a schema (which would
    lose the whole asset), so it is a schema read problem of the file instead."""
    seen: dict[Any, int] = {}
    for index, column in enumerate(columns, start=1):
        first = seen.setdefault(column["name"], index)
        if first != index:
            raise SchemaReadError(
                f"{where} names column {column['name']!r} twice (columns {first} and {index})"
            )
    return columns


# --- format guessing ---------------------------------------------------------------------------

_EXTENSIONS = {
    "parquet": "parquet",
    "parq": "parquet",
    "pq": "parquet",
    "csv": "csv",
    "tsv": "tsv",
    "tab": "tsv",
    "json": "json",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "avro": "avro",
    "orc": "orc",
    "feather": "arrow",
    "arrow": "arrow",
    "ipc": "arrow",
    "xlsx": "excel",
    "xls": "excel",
    "h5": "hdf5",
    "hdf5": "hdf5",
    "npy": "numpy",
    "npz": "numpy",
    "onnx": "onnx",
    "safetensors": "safetensors",
    "pt": "pytorch",
    "pth": "pytorch",
    "ipynb": "notebook",
    "txt": "text",
    "xml": "xml",
    "sqlite": "sqlite",
    "db": "sqlite",
}
_COMPRESSION = frozenset({"gz", "bz2", "xz", "zst", "zstd", "lz4", "snappy", "zip"})
# Table formats are recognised by their metadata folders, whatever the data files say.
_TABLE_FOLDERS = {"_delta_log": "delta", ".hoodie": "hudi"}


_MANIFEST_NAMES = frozenset({"manifest.yaml", "manifest.yml"})
_MANIFEST_SUFFIXES = (".cairn.yaml", ".cairn.yml")


# Bare file name -> the format it votes for (None: no vote); bounded, names come from anyone.
_NAME_VOTES: dict[str, str | None] = {}
_NAME_VOTES_MAX = 4096
_UNSEEN: Any = object()


def _vote(name: str) -> str | None:
    """The format one file name votes for: its last known extension, after compression ones;
    none for hidden, ``_``-prefixed and manifest files."""
    if not name or name == "." or name[0] in "._":
        return None
    lowered = name.lower()
    if lowered in _MANIFEST_NAMES or lowered.endswith(_MANIFEST_SUFFIXES):
        return None
    suffixes = lowered.split(".")[1:]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def guess_format(filenames: Iterable[str]) -> str | None:
    """The data format of a folder from the names of its files, or None when nothing fits.

    Names may be bare or relative paths. A ``_delta_log`` (Delta Lake) or ``.hoodie`` (Hudi)
    folder decides outright; otherwise the most common known extension wins, ignoring
    compression suffixes (``.csv.gz`` is csv), hidden and ``_``-prefixed files (``_SUCCESS``,
    ``.crc``) and manifests.
    """
    # Runs for every document of a crawl: bare names (the common case) take the short way,
    # and a name seen before (part-00001.json is in every folder) is one lookup.
    votes: dict[str, int] = {}
    cache = _NAME_VOTES
    for filename in filenames:
        vote = cache.get(filename, _UNSEEN)
        if vote is _UNSEEN:
            if "/" in filename or "\\" in filename:
                # What PurePosixPath(...).parts gives, without building a path object per name.
                parts = [p for p in filename.replace("\\", "/").split("/") if p and p != "."]
                for part in parts:
                    table = _TABLE_FOLDERS.get(part)
                    if table is not None:
                        return table
                vote = _vote(parts[-1]) if parts else None
            else:
                table = _TABLE_FOLDERS.get(filename)
                if table is not None:
                    return table
                vote = _vote(filename)
                if len(cache) >= _NAME_VOTES_MAX:
                    cache.clear()
                cache[filename] = vote
        if vote is not None:
            votes[vote] = votes.get(vote, 0) + 1
    if not votes:
        return None
    # The first format to reach the highest count, as Counter.most_common(1) picks it.
    return max(votes, key=votes.__getitem__)
