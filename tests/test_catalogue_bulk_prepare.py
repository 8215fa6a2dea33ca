"""A bulk item's validation and storage document take shortcuts (a chunk validated in one
call, the document copied by hand, texts checked on their concatenation); each must give
what the exact path gives: the same stored bytes, content hash, results and errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from benchmarks.gen_tree import make_assets
from cairn.models import AssetWrite, _plain_doc, check_entries, check_labels
from cairn.settings import Settings
from catalogue_service.backends.base import PreparedWrite
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.service import Catalogue, all_valid, validation_message

PINNED = {
    "name": "web_items_000000",
    "type": "dataset",
    "description": "Daily items totals, in EUR. Référence dubimi.",
    "tags": ["snapshot-apac", "reference", "reference"],
    "labels": {"zone": "silver", "tier": 1, "pii": False, "ratio": 0.25, "none": None},
    "owners": ["eva.berg@example.com"],
    "schema": [
        {"name": "session_id", "type": "string"},
        {"name": "amount", "type": "double", "nullable": False, "description": "in EUR"},
    ],
    "depends_on": ["web_raw"],
}
# Written by the code before these shortcuts: a changed hash would make every recrawl
# rewrite every asset, and a changed document would change every answer.
PINNED_HASH = "43183a3c2308e83a736cc5ff4a67e0c43aafcce4d5bbceccbcef987f94668d6a"
PINNED_DOC = (
    b'{"name":"web_items_000000","type":"dataset","description":"Daily items totals, in EUR. '
    b'R\xc3\xa9f\xc3\xa9rence dubimi.","tags":["snapshot-apac","reference"],"labels":{"zone":'
    b'"silver","tier":1,"pii":false,"ratio":0.25,"none":null},"owners":["eva.berg@example.com"],'
    b'"location":null,"format":null,"schema":[{"name":"session_id","type":"string","nullable":'
    b'true,"description":null},{"name":"amount","type":"double","nullable":false,"description":'
    b'"in EUR"}],"depends_on":["web_raw"],"versions":{},"published_on":null,"extra":{},"id":'
    b'"n-d469d842205b8018937d9aaa","volume":null,"manifest_path":null,"size_bytes":null,'
    b'"modified_at":null,"crawled_at":null,"deleted":false}'
)

# Items the hand-made document does not cover (times, nested values, extra, versions maps)
# and ones it does, beside the generated assets.
VARIED: list[dict[str, Any]] = [
    {"name": "a", "type": "table"},
    {"name": " spaced ", "type": "table", "schema": None, "tags": []},
    {"name": "b", "type": "table", "crawled_at": "2024-05-01T10:00:00Z"},
    {"name": "c", "type": "table", "published-on": "2024-05-01T10:00:00.5+02:00"},
    {"name": "d", "type": "table", "modified_at": datetime(2024, 1, 2, tzinfo=UTC)},
    {"name": "e", "type": "table", "labels": {"map": {"a": [1, 2.5, None]}, "list": ["x"]}},
    {"name": "f", "type": "table", "versions": {"v1": "s3://x", "v2": {"f": "0a1b"}}},
    {"name": "g", "type": "table", "versions": {"v1": "s3://x"}, "unknown": {"k": 1}},
    {"name": "h", "type": "table", "schema": {"col": "int"}, "depends-on": ["a", "a"]},
    {"name": "i", "type": "table", "id": "x-1", "volume": "v", "manifest_path": "m.yaml"},
    {"name": "j", "type": "table", "size_bytes": 10, "deleted": True, "extra": {"n": 1}},
    {"name": "k\u00a0", "type": "table", "tags": ["t\u2028", "\u00e9"], "labels": {"k": "\xa0"}},
]


def _dumped(item: AssetWrite) -> dict[str, Any]:
    item.ensure_id()
    return item.model_dump(mode="json", by_alias=True)


def test_a_pinned_asset_keeps_its_document_and_hash() -> None:
    write = PreparedWrite.of(0, AssetWrite.model_validate(PINNED))
    assert orjson.dumps(write.doc) == PINNED_DOC
    assert write.content_hash == PINNED_HASH


@pytest.mark.parametrize("raw", [*make_assets(300), *VARIED])
def test_the_storage_document_is_model_dump(raw: dict[str, Any]) -> None:
    item = AssetWrite.model_validate(raw)
    doc = item.storage_doc()
    # Byte for byte, so key order counts too.
    assert orjson.dumps(doc) == orjson.dumps(_dumped(item))
    assert item.content_hash(doc) == item.content_hash(_dumped(item))
    # The document never shares a container with the model.
    assert doc["tags"] is not item.tags and doc["labels"] is not item.labels


def test_the_hand_made_document_covers_the_generated_assets() -> None:
    items = [AssetWrite.model_validate(raw) for raw in make_assets(50)]
    for item in items:
        item.ensure_id()
    assert all(_plain_doc(item) is not None for item in items)
    # Times too (every crawled asset has two); a nested label value still takes the exact path.
    assert _plain_doc(AssetWrite.model_validate(VARIED[2])) is not None
    assert _plain_doc(AssetWrite.model_validate(VARIED[5])) is None


@pytest.mark.parametrize(
    "when",
    [
        "2026-12-05T23:53:46.991071+00:00",
        "2026-12-05T23:53:46+02:00",
        "2026-12-05T23:53:46.000001-05:30",
        "2026-12-05T23:53:46.100Z",
        "2026-12-05T23:53:46",
        "1999-01-01",
        1700000000,
        1700000000.25,
        datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_a_crawled_assets_times_are_written_as_model_dump_writes_them(when: Any) -> None:
    raw = {
        "name": "t",
        "type": "dataset",
        "modified_at": when,
        "crawled_at": when,
        "published_on": when,
        "volume": "file:///v",
        "manifest_path": "a/MANIFEST.yaml",
        "size_bytes": 3,
    }
    item = AssetWrite.model_validate(raw)
    item.ensure_id()
    doc = _plain_doc(item)
    assert doc is not None
    assert orjson.dumps(doc) == orjson.dumps(_dumped(item))
    assert isinstance(doc["modified_at"], str)


def test_one_call_validates_a_chunk_as_each_item_alone() -> None:
    raws = [*make_assets(40), *VARIED]
    together = all_valid(raws)
    assert together is not None
    alone = [AssetWrite.model_validate(raw) for raw in raws]
    assert [m.model_dump() for m in together] == [m.model_dump() for m in alone]
    assert all_valid([*raws, {"name": "", "type": "table"}]) is None


def _error(raw: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        AssetWrite.model_validate(raw)
    return validation_message(caught.value)


def test_bad_items_in_a_chunk_get_their_own_errors(tmp_path: Path) -> None:
    bad = [
        {"name": "x\x07", "type": "table"},
        {"name": "y", "type": "table", "tags": ["ok", "t\x7f"]},
        {"name": "z", "type": "table", "owners": [""]},
        {"name": "w", "type": "table", "labels": {"k": "a" * 1025}},
        "not an object",
    ]
    raws: list[Any] = make_assets(6)
    for offset, item in enumerate(bad):
        raws.insert(1 + 2 * offset, item)
    store = SQLiteStore(tmp_path / "catalogue.db")
    store._open()
    try:
        answer = asyncio.run(Catalogue(store, Settings(data_dir=tmp_path)).bulk(raws))
    finally:
        store.db.close()
    errors = {r.index: r.error for r in answer.results if r.status == "error"}
    assert errors == {raws.index(item): _error(item) for item in bad}
    assert answer.created == 6 and answer.failed == len(bad)
    assert [r.index for r in answer.results] == list(range(len(raws)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", "b\x00"], "control characters"),
        (["a\x1f"], "control characters"),
        (["\x7f"], "control characters"),
        (["a" * 1025], "1025 characters"),
        (["a" * 600, "b" * 600], None),  # long together, each short enough
        (["\u00a0", "\u2028", "é"], None),  # not printable, yet no control character
        (["a", "a", "b"], None),
    ],
)
def test_entries_are_checked_each_on_its_own(values: list[str], message: str | None) -> None:
    if message is None:
        assert check_entries(values) == list(dict.fromkeys(values))
        assert check_labels({v: v for v in values}) == {v: v for v in values}
    else:
        with pytest.raises(ValueError, match=message):
            check_entries(values)
        with pytest.raises(ValueError, match=message):
            check_labels({"k": "v", **{f"k{i}": v for i, v in enumerate(values)}})
