"""Small formatting helpers the templates use: match highlighting, sizes, dates.

Highlighting escapes every piece of user text before it wraps a match in ``<mark>``, so the
result is safe to mark as HTML whatever the text holds.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from markupsafe import Markup, escape

from cairn.wording import noun_for

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32
SNIPPET_CHARS = 220


def terms(query: str | None) -> tuple[str, ...]:
    """The words of a query, as the catalogue's full-text search splits them, folded as it
    folds them (lower case, no diacritics)."""
    if not query:
        return ()
    if not query.isascii():
        # A decomposed accent (e + U+0300) is no word character: composed, "crème" is one
        # word, as the search reads it.
        query = unicodedata.normalize("NFC", query)
    seen: dict[str, None] = {}
    for word in _WORD.findall(query)[:MAX_TERMS]:
        seen.setdefault(word.translate(_FOLDS), None)
    return tuple(seen)


class _Folds(dict[int, str]):
    """``str.translate``'s table: a character to its lower-case form without diacritics
    ("É" to "e"), as the index reads it, where that is one character, so that a match in the
    folded text is at the same place in the text; any other character stays as it is."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        decomposed = unicodedata.normalize("NFKD", char.lower())
        folded = "".join(c for c in decomposed if not unicodedata.combining(c))
        result = folded if len(folded) == 1 else char
        if len(self) < MAX_FOLDS:  # hostile text must not grow it for ever
            self[code] = result
        return result


MAX_FOLDS = 1 << 16
_FOLDS = _Folds()


def _searchable(text: str) -> str:
    """``text`` as the words are matched in it: folded, of the same length (ASCII text is
    matched as it is, case aside)."""
    return text if text.isascii() else text.translate(_FOLDS)


@lru_cache(maxsize=256)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    # A term matches at the start of a word (the search matches terms and prefixes), and only
    # the part typed is marked. Longest first, so "sales" wins over "sal" when both are terms.
    # "_" splits words, as in the index.
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})", re.IGNORECASE | re.UNICODE)


def highlight(text: str | None, words: tuple[str, ...]) -> Markup:
    """``text`` escaped, with each word that starts with a query term in ``<mark>``."""
    if not text:
        return Markup("")
    pattern = _pattern(words)
    if pattern is None:
        return escape(text)
    out: list[str] = []
    last = 0
    # Found in the folded text (so "cafe" marks "Café", as the search found it), cut from
    # the text as written: both have the same length.
    for match in pattern.finditer(_searchable(text)):
        out.append(str(escape(text[last : match.start()])))
        out.append(f"<mark>{escape(text[match.start() : match.end()])}</mark>")
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def snippet(text: str | None, words: tuple[str, ...], size: int = SNIPPET_CHARS) -> Markup:
    """A window of ``text`` around its first match, highlighted; the start when none match."""
    if not text:
        return Markup("")
    text = " ".join(text.split())
    if len(text) <= size:
        return highlight(text, words)
    pattern = _pattern(words)
    match = pattern.search(_searchable(text)) if pattern else None
    start = 0
    if match is not None and match.end() > size - 20:
        start = max(0, match.start() - size // 3)
        space = text.find(" ", start)
        if 0 <= space < match.start():
            start = space + 1
    end = min(len(text), start + size)
    if end < len(text):
        space = text.rfind(" ", start + size // 2, end)
        if space > 0:
            end = space
    piece = text[start:end]
    result = highlight(piece, words)
    prefix = Markup("… ") if start > 0 else Markup("")
    suffix = Markup(" …") if end < len(text) else Markup("")
    return prefix + result + suffix


def size(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return "—"
    n = float(value)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            if unit == "bytes":
                return f"{int(n):,} bytes"
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PB"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def when(value: Any) -> str:
    """A timestamp as people read it: ``2025-06-16 05:00 UTC``."""
    parsed = parse_time(value)
    if parsed is None:
        return "—" if not value else str(value)
    return parsed.strftime("%Y-%m-%d %H:%M UTC")


def ago(value: Any, now: datetime | None = None) -> str:
    parsed = parse_time(value)
    if parsed is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - parsed).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, length in (
        ("year", 31536000),
        ("month", 2592000),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= length:
            n = int(seconds // length)
            text = counted(n, unit)
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def location(value: Any) -> str:
    """A location as people read it: ``file://`` URLs without percent-escapes."""
    text = str(value or "")
    if text.startswith("file://"):
        return unquote(text)
    return text


def number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def counted(value: Any, noun: str) -> str:
    """``value`` as ``number`` writes it, then ``noun``, plural unless it is one: "1 row",
    "2,000 rows" (nouns that take an s)."""
    return f"{number(value)} {noun_for(value, noun)}"
