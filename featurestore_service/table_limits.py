"""How large a Parquet upload becomes once decoded, and the limits that refuse a small file that
would take gigabytes of memory to read (a "decompression bomb").

A footer's "uncompressed size" is the size of the *encoded* pages, not of the values: 50 million
zeros, dictionary- and run-length-encoded, take 200 KB there and 400 MB in memory. So the decoded
size is worked out from each column chunk's value count and the width of its type, before any
page is decoded. Byte-array columns (strings, binary), whose width the footer does not tell, are
then measured exactly while the upload is checked, one column chunk at a time, read as Arrow
dictionaries where the file is dictionary-encoded, so measuring never expands a bomb either.

The guarantee the readers in ``featurestore_service.tables`` build on: every row group of a
stored table decodes to at most ``max_row_group_bytes`` of Arrow memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cairn.errors import PayloadTooLarge
from cairn.settings import Settings

# Rows per decoded batch while measuring: memory stays near one batch of one column.
MEASURE_BATCH_ROWS = 64 * 1024
# Read column chunks through a buffer of this size instead of loading each one whole.
READ_BUFFER_BYTES = 1024 * 1024

_PHYSICAL_BITS = {"BOOLEAN": 1, "INT32": 32, "INT64": 64, "INT96": 96, "FLOAT": 32, "DOUBLE": 64}


@dataclass(frozen=True, slots=True)
class TableLimits:
    max_rows: int
    max_row_group_bytes: int
    max_decoded_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TableLimits:
        return cls(
            max_rows=settings.table_max_rows,
            max_row_group_bytes=settings.table_max_row_group_bytes,
            max_decoded_bytes=settings.table_max_decoded_bytes,
        )


def check_decoded_size(path: Path, limits: TableLimits) -> None:
    """Refuses (413) a table past the limits: first from the footer alone, then by decoding
    every column chunk once (so a file that passes is known readable too)."""
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    if metadata.num_rows > limits.max_rows:
        raise _too_large(
            f"The Parquet file holds {metadata.num_rows:,} rows; the limit is "
            f"{limits.max_rows:,} (CAIRN_TABLE_MAX_ROWS). Split the table, or raise the setting."
        )
    _check_sizes(footer_sizes(parquet), limits)
    _check_sizes(_measured_sizes(path, parquet, limits), limits)


def footer_sizes(parquet: pq.ParquetFile) -> list[int]:
    """Decoded bytes per row group as far as the footer tells: exact for fixed-width columns,
    the encoded size (a lower bound) for byte arrays."""
    metadata = parquet.metadata
    schema = parquet.schema
    bits = [_value_bits(schema.column(i)) for i in range(metadata.num_columns)]
    sizes = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        total = 0
        for index in range(metadata.num_columns):
            chunk = row_group.column(index)
            if bits[index] is None:  # byte array: 32-bit offsets plus the bytes themselves
                total += chunk.num_values * 4 + chunk.total_uncompressed_size
            else:
                total += (chunk.num_values * bits[index] + 7) // 8
        sizes.append(total)
    return sizes


def _value_bits(column: pq.ColumnSchema) -> int | None:
    """Bits of Arrow memory per value of a leaf column (with validity and list offsets), or
    None for variable-width values."""
    if column.physical_type == "BYTE_ARRAY":
        return None
    if column.physical_type == "FIXED_LEN_BYTE_ARRAY":
        width = column.length * 8
    else:
        width = _PHYSICAL_BITS.get(column.physical_type, 64)
    if str(column.logical_type).startswith("Decimal"):
        width = max(width, 256 if column.precision > 38 else 128)
    extra = (1 if column.max_definition_level > 0 else 0) + 32 * column.max_repetition_level
    return width + extra


def _measured_sizes(path: Path, parquet: pq.ParquetFile, limits: TableLimits) -> list[int]:
    """Decoded bytes per row group, measured column chunk by column chunk; stops (413) as soon
    as a row group passes the limit, before decoding the rest."""
    metadata = parquet.metadata
    schema = parquet.schema
    dictionary_leaves = [
        schema.column(i).path
        for i in range(metadata.num_columns)
        if schema.column(i).physical_type == "BYTE_ARRAY"
        and not schema.column(i).path.endswith(".key_value.key")  # map keys stay plain
        and any(
            metadata.row_group(g).column(i).has_dictionary_page
            for g in range(metadata.num_row_groups)
        )
    ]
    reader = pq.ParquetFile(
        path,
        read_dictionary=dictionary_leaves or None,
        buffer_size=READ_BUFFER_BYTES,
        pre_buffer=False,
    )
    sizes = []
    for group in range(metadata.num_row_groups):
        total = 0
        for name in reader.schema_arrow.names:
            for batch in reader.iter_batches(
                batch_size=MEASURE_BATCH_ROWS, row_groups=[group], columns=[name], use_threads=False
            ):
                total += dense_nbytes(batch.column(0))
                if total > limits.max_row_group_bytes:
                    _check_sizes([0] * group + [total], limits)
        sizes.append(total)
    return sizes


def dense_nbytes(array: pa.Array) -> int:
    """Arrow memory ``array`` takes with every dictionary expanded (as it is served)."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        dictionary = array.dictionary
        validity = (len(array) + 7) // 8
        if _is_binary_like(dictionary.type):
            lengths = pc.take(pc.binary_length(dictionary), array.indices)
            used = pc.sum(lengths).as_py() or 0
            return used + 4 * len(array) + validity
        per_value = dense_nbytes(dictionary) // max(1, len(dictionary))
        return per_value * len(array) + validity
    if pa.types.is_map(kind):
        return 4 * len(array) + dense_nbytes(array.keys) + dense_nbytes(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return 8 * len(array) + dense_nbytes(array.flatten())
    if pa.types.is_struct(kind):
        return (len(array) + 7) // 8 + sum(dense_nbytes(field) for field in array.flatten())
    return int(array.nbytes)


def _is_binary_like(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _check_sizes(sizes: list[int], limits: TableLimits) -> None:
    for group, size in enumerate(sizes):
        if size > limits.max_row_group_bytes:
            raise _too_large(
                f"Row group {group} of the Parquet file decodes to at least {size:,} bytes in "
                f"memory; the limit is {limits.max_row_group_bytes:,} bytes per row group "
                "(CAIRN_TABLE_MAX_ROW_GROUP_BYTES). Write the file with smaller row groups "
                "(pyarrow: row_group_size=...), or raise the setting."
            )
    total = sum(sizes)
    if total > limits.max_decoded_bytes:
        raise _too_large(
            f"The Parquet file decodes to at least {total:,} bytes in memory; the limit is "
            f"{limits.max_decoded_bytes:,} bytes (CAIRN_TABLE_MAX_DECODED_BYTES). Split the "
            "table, or raise the setting."
        )


def _too_large(detail: str) -> PayloadTooLarge:
    return PayloadTooLarge(detail, errors=[{"field": "body", "message": detail}])


# --- Arrow IPC streams ---------------------------------------------------------------------------
#
# A compressed IPC batch (LZ4 or ZSTD buffers) says each buffer's decoded length in the first 8
# bytes of the buffer; the buffers' places are in the batch's flatbuffer metadata (Arrow's
# format/Message.fbs). Reading them from there measures a batch without decompressing it.

_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2  # fields of Message
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader union tags
_DICTIONARY_DATA = 1  # field of DictionaryBatch: its RecordBatch
_BATCH_BUFFERS, _BATCH_COMPRESSION = 2, 3  # fields of RecordBatch


def _field(meta: bytes, table: int, index: int) -> int | None:
    """Where field ``index`` of the flatbuffer table at ``table`` is, or None when absent."""
    vtable = table - struct.unpack_from("<i", meta, table)[0]
    vtable_size = struct.unpack_from("<H", meta, vtable)[0]
    entry = 4 + 2 * index
    if entry >= vtable_size:
        return None
    offset = struct.unpack_from("<H", meta, vtable + entry)[0]
    return table + offset if offset else None


def _follow(meta: bytes, at: int) -> int:
    """The table or vector an offset field at ``at`` points to."""
    return at + struct.unpack_from("<I", meta, at)[0]


def ipc_batch_decoded_bytes(message: pa.ipc.Message) -> int | None:
    """The decoded size of a record or dictionary batch's buffers; None for other messages."""
    meta = message.metadata.to_pybytes()
    root = struct.unpack_from("<I", meta, 0)[0]
    kind_at = _field(meta, root, _MESSAGE_HEADER_TYPE)
    header_at = _field(meta, root, _MESSAGE_HEADER)
    kind = meta[kind_at] if kind_at is not None else 0
    if header_at is None or kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return None
    batch = _follow(meta, header_at)
    if kind == _DICTIONARY_BATCH:
        data_at = _field(meta, batch, _DICTIONARY_DATA)
        if data_at is None:
            return None
        batch = _follow(meta, data_at)
    body = memoryview(message.body) if message.body is not None else memoryview(b"")
    if _field(meta, batch, _BATCH_COMPRESSION) is None:
        return len(body)  # uncompressed: the body is the batch
    buffers_at = _field(meta, batch, _BATCH_BUFFERS)
    if buffers_at is None:
        return 0
    vector = _follow(meta, buffers_at)
    total = 0
    for i in range(struct.unpack_from("<I", meta, vector)[0]):
        offset, length = struct.unpack_from("<qq", meta, vector + 4 + 16 * i)
        if length >= 8:
            decoded = struct.unpack_from("<q", body, offset)[0]
            # -1: this buffer was left uncompressed after its 8-byte prefix.
            total += length - 8 if decoded < 0 else decoded
    return total


def check_ipc_batch_sizes(path: Path, max_batch_bytes: int) -> None:
    """Refuses (413) an Arrow IPC stream with a batch that decodes past ``max_batch_bytes``,
    reading only each message's metadata and buffer prefixes (a 250 KB ZSTD batch of one
    repeated string decoded into 270 MB)."""
    with pa.memory_map(str(path)) as source:
        for index, message in enumerate(pa.ipc.MessageReader.open_stream(source)):
            try:
                size = ipc_batch_decoded_bytes(message)
            except (struct.error, IndexError) as exc:
                raise ValueError(f"message {index} has malformed metadata ({exc})") from exc
            if size is not None and size > max_batch_bytes:
                raise _too_large(
                    f"Message {index} of the Arrow IPC stream decodes to {size:,} bytes in "
                    f"memory; the limit is {max_batch_bytes:,} bytes per batch "
                    "(CAIRN_TABLE_MAX_ROW_GROUP_BYTES). Write smaller record batches, or "
                    "raise the setting."
                )
