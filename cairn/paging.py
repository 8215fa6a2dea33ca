"""Paging shared by every service: opaque keyset cursors, and Mastro's page-numbered shape.

Cairn's own routes page with ``limit`` and ``cursor`` (the sort key of the last item, encoded,
so there is no result cap); Mastro's routes answer ``{data, pagination}`` with page numbers.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from cairn.errors import InvalidCursor

# Mastro's page numbers: its clients hold them in 32-bit ints, and the offset they make
# ((page - 1) * perPage) must stay within the stores' 64-bit integers.
MAX_PAGE = 2**31 - 1


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidCursor(
            "The cursor is not one this server issued; pass next_cursor from a previous page "
            "unchanged, or omit it to start from the first page."
        ) from exc
    if not isinstance(key, list) or not key:
        raise InvalidCursor("The cursor is malformed; omit it to start from the first page.")
    return key


def mastro_page(data: list[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    """Mastro's paginated answer: ``{data, pagination: {total, page, perPage, ...}}``."""
    total_pages = (total + per_page - 1) // per_page if per_page else 0
    return {
        "data": data,
        "pagination": {
            "total": total,
            "page": page,
            "perPage": per_page,
            # Mastro's pager sends 0 where there is no such page; its clients read an int.
            "prev": page - 1 if page > 1 else 0,
            "next": page + 1 if page < total_pages else 0,
            "totalPage": total_pages,
        },
    }
