"""Schemas from the data beside a manifest: Parquet footers, CSV heads, formats by name."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import crawler.enrich as enrich_module
from cairn.models import SchemaField
from crawler.enrich import (
    MAX_PARQUET_FOOTER_BYTES,
    SchemaReadError,
    arrow_type_name,
    csv_columns,
    csv_schema,
    guess_format,
    parquet_columns,
    parquet_schema,
)


class CountingReader(io.RawIOBase):
    """A seekable file that counts the bytes handed out, to prove what was (not) read."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner = inner
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(buffer)
        self.bytes_read += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        data = self.inner.read(size)
        self.bytes_read += len(data)
        return data


def write_parquet(path: Path, table: pa.Table, **kwargs: object) -> bytes:
    pq.write_table(table, path, **kwargs)
    return path.read_bytes()


# --- Parquet -----------------------------------------------------------------------------------


def test_parquet_schema_types_and_nullability(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("amount", pa.float64()),
            pa.field("store", pa.string()),
            pa.field("open", pa.bool_(), nullable=False),
            pa.field("at", pa.timestamp("ms")),
            pa.field("at_utc", pa.timestamp("us", tz="UTC")),
            pa.field("day", pa.date32()),
            pa.field("codes", pa.list_(pa.int64())),
            pa.field("price", pa.decimal128(10, 2)),
            pa.field("attrs", pa.map_(pa.string(), pa.int32())),
            pa.field("where", pa.struct([("lat", pa.float64()), ("lon", pa.float64())])),
            pa.field("kind", pa.dictionary(pa.int8(), pa.string())),
        ]
    )
    table = pa.table(
        {
            "id": [1, 2],
            "amount": [1.5, None],
            "store": ["a", None],
            "open": [True, False],
            "at": [0, 1],
            "at_utc": [0, 1],
            "day": [0, 1],
            "codes": [[1, 2], None],
            "price": [None, None],
            "attrs": [[("k", 1)], []],
            "where": [{"lat": 1.0, "lon": 2.0}, None],
            "kind": ["x", "y"],
        },
        schema=schema,
    )
    path = tmp_path / "part-0.parquet"
    write_parquet(path, table)
    with path.open("rb") as f:
        fields = parquet_schema(f)
        assert not f.closed  # the caller's file stays the caller's
    assert [(c.name, c.type, c.nullable) for c in fields] == [
        ("id", "int64", False),
        ("amount", "double", True),
        ("store", "string", True),
        ("open", "bool", False),
        ("at", "timestamp[ms]", True),
        ("at_utc", "timestamp[us, tz=UTC]", True),
        ("day", "date32", True),
        ("codes", "list<int64>", True),
        ("price", "decimal(10, 2)", True),
        ("attrs", "map<string, int32>", True),
        ("where", "struct<lat: double, lon: double>", True),
        ("kind", "string", True),
    ]


def test_parquet_schema_ignores_garbage_row_groups(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array(range(10_000), pa.int64()), "name": ["x"] * 10_000})
    data = write_parquet(tmp_path / "good.parquet", table, compression="none")
    # Layout: "PAR1" <column chunks> <footer> <footer length: 4 bytes> "PAR1".
    footer_len = int.from_bytes(data[-8:-4], "little")
    data_end = len(data) - 8 - footer_len
    garbage = bytes([0xA5]) * (data_end - 4)
    broken = data[:4] + garbage + data[data_end:]
    assert len(broken) == len(data)
    # The data really is unreadable now, so a schema can only have come from the footer.
    with pytest.raises((OSError, pa.ArrowException)):
        pq.read_table(io.BytesIO(broken))

    fields = parquet_schema(io.BytesIO(broken))
    assert [(c.name, c.type) for c in fields] == [("id", "int64"), ("name", "string")]


def test_parquet_schema_reads_only_the_tail_of_a_large_file(tmp_path: Path) -> None:
    rows = 600_000
    table = pa.table(
        {"a": pa.array(range(rows), pa.int64()), "b": pa.array(range(rows), pa.float64())}
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, compression="none", row_group_size=100_000)
    size = path.stat().st_size
    assert size > 8 * 1024 * 1024
    with path.open("rb") as f:
        reader = CountingReader(f)
        fields = parquet_schema(reader)  # type: ignore[arg-type]
    assert [c.name for c in fields] == ["a", "b"]
    assert reader.bytes_read <= 128 * 1024, reader.bytes_read


def sparse_parquet_claiming_a_huge_footer(path: Path, size: int) -> Path:
    """A sparse file that looks like Parquet whose footer claims nearly all of it."""
    with path.open("wb") as f:
        f.write(b"PAR1")
        f.seek(size - 8)
        f.write((size - 12).to_bytes(4, "little") + b"PAR1")
    return path


def test_a_footer_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # The review's file claimed 2 GiB; just over the cap shows the same without the memory.
    size = MAX_PARQUET_FOOTER_BYTES + 16 * 1024 * 1024
    path = sparse_parquet_claiming_a_huge_footer(tmp_path / "huge.parquet", size)
    with path.open("rb") as f:
        reader = CountingReader(f)  # type: ignore[arg-type]
        with pytest.raises(SchemaReadError) as info:
            parquet_schema(reader)  # type: ignore[arg-type]
    assert f"footer claims {size - 12} bytes" in str(info.value)
    assert reader.bytes_read <= 128 * 1024, reader.bytes_read


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a Parquet file: it is empty"),
        (b"PAR1", "too short to hold a footer"),
        (b"id,name\n1,a\n2,b\n" * 10, "not a Parquet file: bad magic bytes"),
        (b"PAR1" + b"\x00" * 100 + b"PAR1", "corrupt Parquet footer"),
        (b"PAR1" + b"\x00" * 100 + (10**6).to_bytes(4, "little") + b"PAR1", "footer length"),
        (b"PAR1" + b"\xff" * 100 + (50).to_bytes(4, "little") + b"PAR1", "corrupt Parquet footer"),
    ],
    ids=["empty", "magic-only", "csv", "zeros", "footer-too-long", "garbage-footer"],
)
def test_malformed_parquet_raises_schema_read_error(data: bytes, reason: str) -> None:
    with pytest.raises(SchemaReadError) as info:
        parquet_schema(io.BytesIO(data))
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(info.value).isprintable()  # bytes from the file never reach a log raw


def test_truncated_parquet_raises_schema_read_error(tmp_path: Path) -> None:
    data = write_parquet(tmp_path / "t.parquet", pa.table({"a": [1, 2, 3]}))
    with pytest.raises(SchemaReadError):
        parquet_schema(io.BytesIO(data[: len(data) // 2]))


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_schema_semicolon_delimiter_and_types() -> None:
    head = (
        b"store;amount;open;day;seen_at;note;units\n"
        b"1;10.5;true;2024-01-31;2024-01-31T10:00:00Z;first;3\n"
        b"2;7;False;2024-02-01;2024-02-01 11:30:00;second;4\n"
        b"3;-1e3;TRUE;2024-02-02;2024-02-02T00:00;third;5\n"
    )
    fields = csv_schema(head)
    assert [(c.name, c.type, c.nullable) for c in fields] == [
        ("store", "int64", False),
        ("amount", "double", False),  # ints and doubles mixed widen to double
        ("open", "bool", False),
        ("day", "date", False),
        ("seen_at", "timestamp", False),
        ("note", "string", False),
        ("units", "int64", False),
    ]


def test_csv_schema_empty_cells_make_columns_nullable() -> None:
    head = b"id,name,score,flag\n1,,1.5,\n2,b,,\n3,c,NA,\n"
    fields = {c.name: c for c in csv_schema(head)}
    assert (fields["id"].type, fields["id"].nullable) == ("int64", False)
    assert (fields["name"].type, fields["name"].nullable) == ("string", True)
    assert (fields["score"].type, fields["score"].nullable) == ("double", True)
    # Never a value: the type is unknown, so the widest one, and surely nullable.
    assert (fields["flag"].type, fields["flag"].nullable) == ("string", True)


def test_csv_schema_short_rows_and_mixed_values() -> None:
    head = b"a,b,c\n1,2024-01-01,x\n2\nfoo,2024-01-01T00:00:00,y\n"
    fields = {c.name: c for c in csv_schema(head)}
    assert fields["a"].type == "string"  # an int column with a word in it is text
    assert fields["b"].type == "timestamp"  # dates and timestamps widen to timestamp
    assert fields["b"].nullable and fields["c"].nullable  # row 2 has no value for them


def test_csv_schema_ignores_a_row_cut_by_the_read_limit() -> None:
    head = b"id,price\n1,2\n3,4\n5,6.7"  # the caller read a prefix; "6.7" may be "6.75,..."
    fields = csv_schema(head)
    assert [(c.name, c.type) for c in fields] == [("id", "int64"), ("price", "int64")]


def test_csv_schema_header_only_and_other_delimiters() -> None:
    assert [c.name for c in csv_schema(b"a\tb\tc\n")] == ["a", "b", "c"]
    assert [c.name for c in csv_schema(b"a|b\n1|2\n")] == ["a", "b"]
    assert [c.name for c in csv_schema(b"only\n1\n2\n")] == ["only"]
    assert [c.name for c in csv_schema(b"x;y\n", delimiter=";")] == ["x", "y"]


def test_csv_schema_quoted_fields_bom_and_blank_header_names() -> None:
    head = '\ufeff"id","full name",""\n1,"Smith, Ana",x\n'.encode()
    fields = csv_schema(head)
    assert [(c.name, c.type) for c in fields] == [
        ("id", "int64"),
        ("full name", "string"),
        ("column_3", "string"),
    ]


def test_csv_schema_reads_only_max_rows() -> None:
    rows = "".join(f"{i}\n" for i in range(10)) + "text\n"
    assert csv_schema(("n\n" + rows).encode(), max_rows=10)[0].type == "int64"
    assert csv_schema(("n\n" + rows).encode(), max_rows=11)[0].type == "string"


def test_csv_schema_legacy_encoding_keeps_header_names() -> None:
    fields = csv_schema("café;prix\n1;2\n".encode("latin-1"))
    assert [c.name for c in fields] == ["café", "prix"]


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"", "empty CSV"),
        (b"\n\n  \n", "empty CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ],
    ids=["empty", "blank-lines", "binary"],
)
def test_csv_schema_errors(head: bytes, reason: str) -> None:
    with pytest.raises(SchemaReadError, match=reason):
        csv_schema(head)


@pytest.mark.parametrize(
    "head",
    [b'a,"b,c\n1,2,3\n', b'a,"b,c\n1,2,3\n4,5,6\n', b'a;"b;c\n1;2;3\n', b'"a,b\n1,2\n'],
)
def test_a_header_with_an_unterminated_quote_is_a_schema_read_error(head: bytes) -> None:
    # Before: the quote swallowed the rows below into one column named 'b,c\n1,2,3'.
    column = 1 if head.startswith(b'"') else 2
    with pytest.raises(SchemaReadError, match=f"column {column} opens a quote"):
        csv_columns(head)


def test_a_quoted_header_on_one_line_still_reads() -> None:
    assert [c["name"] for c in csv_columns(b'a,"b,c"\n1,2\n')] == ["a", "b,c"]


def test_a_header_naming_a_column_twice_is_a_schema_read_error() -> None:
    # The catalogue refuses a schema with a column twice, which would lose the whole asset.
    with pytest.raises(SchemaReadError, match=r"'id' twice \(columns 1 and 3\)"):
        csv_columns(b"id,name,id\n1,a,2\n")
    with pytest.raises(SchemaReadError, match="'column_2' twice"):
        csv_columns(b"a,,column_2\n1,2,3\n")


def test_a_parquet_schema_naming_a_column_twice_is_a_schema_read_error() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["id", "id"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    with pytest.raises(SchemaReadError, match="'id' twice"):
        parquet_columns(buf)


# --- formats and type names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["part-0.parquet", "part-1.snappy.parquet", "_SUCCESS", "MANIFEST.yaml"], "parquet"),
        (["a.csv", "b.csv.gz", "c.parquet"], "csv"),
        (["rows.tsv"], "tsv"),
        (["events-1.jsonl", "events-2.ndjson", "schema.json"], "jsonl"),
        (["x.avro", ".x.avro.crc"], "avro"),
        (["y.orc"], "orc"),
        (["_delta_log/00000000000000000000.json", "part-0.parquet", "part-1.parquet"], "delta"),
        (["part-0.parquet", "_delta_log"], "delta"),
        ([".hoodie/hoodie.properties", "a.parquet"], "hudi"),
        (["model.onnx"], "onnx"),
        (["README", "notes.cairn.yaml", "LICENSE"], None),
        ([], None),
        (["a.json", "b.csv"], "json"),  # a tie goes to the first format seen
        (["DATA.CSV", "x.Cairn.YML", "Manifest.YML", ".", ""], "csv"),
        (["day=1\\part.parquet", "csv"], "parquet"),
    ],
)
def test_guess_format(names: list[str], expected: str | None) -> None:
    assert guess_format(names) == expected
    assert guess_format(iter(names)) == expected  # any iterable, consumed once


@pytest.mark.parametrize(
    ("arrow_type", "name"),
    [
        (pa.int64(), "int64"),
        (pa.uint8(), "uint8"),
        (pa.float32(), "float"),
        (pa.float64(), "double"),
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.bool_(), "bool"),
        (pa.binary(), "binary"),
        (pa.timestamp("ms"), "timestamp[ms]"),
        (pa.timestamp("ns", tz="Europe/Rome"), "timestamp[ns, tz=Europe/Rome]"),
        (pa.date32(), "date32"),
        (pa.list_(pa.int64()), "list<int64>"),
        (pa.large_list(pa.list_(pa.string())), "list<list<string>>"),
        (pa.list_(pa.float32(), 3), "list<float>[3]"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.decimal128(38, 9), "decimal(38, 9)"),
        (pa.duration("s"), "duration[s]"),
        (pa.null(), "null"),
    ],
)
def test_arrow_type_name(arrow_type: pa.DataType, name: str) -> None:
    assert arrow_type_name(arrow_type) == name


def test_arrow_type_name_bounds_deep_nesting() -> None:
    t: pa.DataType = pa.int64()
    for _ in range(200):
        t = pa.list_(t)
    name = arrow_type_name(t)
    assert name.startswith("list<list<") and "..." in name
    assert len(name) < 400


@pytest.mark.parametrize(
    "head",
    [
        b"store;amount;open\n1;10.5;true\n2;;False\n",
        b" ;b;" + b"x" * 300 + b"\nNA;1;2\n",  # blank and over-long names
        b"a\tb\n2024-01-31\t\n",
    ],
)
def test_csv_columns_are_the_schema_fields_json(head: bytes) -> None:
    # What the crawl sends must be exactly what the model would have dumped.
    columns = csv_columns(head)
    assert columns == [c.model_dump(mode="json", exclude_none=True) for c in csv_schema(head)]
    assert [SchemaField.model_validate(c) for c in columns] == csv_schema(head)


def test_parquet_columns_are_the_schema_fields_json() -> None:
    table = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "tags": pa.array([["a"]], pa.list_(pa.string())),
            "n" * 300: pa.array([1.5], pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    columns = parquet_columns(buf)
    buf.seek(0)
    fields = parquet_schema(buf)
    assert columns == [c.model_dump(mode="json", exclude_none=True) for c in fields]
    assert [c["type"] for c in columns] == ["int64", "list<string>", "double"]


def test_guess_format_answers_the_same_once_names_are_remembered() -> None:
    names = ["part-00001.json", "part-00002.json", "data.csv", "_SUCCESS", "MANIFEST.yaml"]
    first = [guess_format(names), guess_format(["data.csv.gz"]), guess_format(["_SUCCESS"])]
    again = [guess_format(names), guess_format(["data.csv.gz"]), guess_format(["_SUCCESS"])]
    assert first == again == ["json", "csv", None]
    # A table folder decides every time, whatever was remembered before it.
    assert guess_format(["_delta_log", *names]) == "delta"
    assert guess_format([*names, "_delta_log"]) == "delta"
    assert guess_format(["t/.hoodie/x", "a.parquet"]) == "hudi"
    # Remembered names stay bounded: many distinct names never grow the memory past it.
    many = [f"f{n}.parquet" for n in range(3 * enrich_module._NAME_VOTES_MAX)]
    assert guess_format(many) == "parquet"
    assert len(enrich_module._NAME_VOTES) <= enrich_module._NAME_VOTES_MAX


def test_csv_types_are_the_same_once_cells_are_remembered() -> None:
    head = b"a,b,c,d\n1,true,2026-01-31,x\n2.5,false,2026-02-30,1\n"
    first = csv_columns(head)
    assert [c["type"] for c in first] == ["double", "bool", "string", "string"]
    assert csv_columns(head) == first  # the same cells again, now remembered
    assert [c["type"] for c in csv_columns(b"a\n1\n2\n")] == ["int64"]
    # Remembered cells stay bounded.
    many = b"n\n" + b"".join(b"%d\n" % n for n in range(3 * enrich_module._CELL_KINDS_MAX))
    assert [c["type"] for c in csv_columns(many, max_rows=len(many))] == ["int64"]
    assert len(enrich_module._CELL_KINDS) <= enrich_module._CELL_KINDS_MAX
