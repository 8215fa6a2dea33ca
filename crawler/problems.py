"""What the crawler reports about a file it could not (fully) use.

A crawl never stops on one bad file (DESIGN section 8); instead each issue becomes a ``Problem``
that names the file and, where known, the line, column and field, so a person can fix it
without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(slots=True)
class Problem:
    path: str  # file path as shown to users (relative to the volume, or a URL)
    reason: str  # says what is wrong and what to fix
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # dotted field path, e.g. "schema.2.type"
    severity: Severity = "error"

    def __post_init__(self) -> None:
        # A local file name that is not UTF-8 reaches Python as lone surrogates, which no
        # report (JSON, a terminal) can print: shown with its bytes escaped instead.
        if not self.path.isascii():
            self.path = shown(self.path)
        if not self.reason.isascii():
            self.reason = shown(self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "reason": self.reason,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "severity": self.severity,
        }

    def __str__(self) -> str:
        # The "path:line:col:" prefix is what editors and CI log viewers turn into links.
        where = self.path if self.path.isprintable() else _escaped(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.field:
            return f"{where}: {self.field}: {self.reason}"
        return f"{where}: {self.reason}"


def _escaped(text: str) -> str:
    """``text`` on one line: a newline, tab or escape in a file name written as ``\\n``,
    ``\\t``, ``\\x1b``, so a report's line stays whole and a terminal is not redrawn."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def shown(text: str) -> str:
    """``text``, with the bytes of a name that was not UTF-8 (``os.fsdecode``'s lone
    surrogates) written as ``\\xNN``."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def utf8_name_problem(path: str) -> Problem | None:
    """The error for a manifest whose path is not UTF-8, which no asset can name."""
    if path.isascii() or shown(path) is path:
        return None
    return Problem(
        path=path,
        reason="the file's path is not valid UTF-8, so no asset can name it; rename the file "
        "or its folder in UTF-8 (e.g. convmv -f latin1 -t utf8)",
    )
