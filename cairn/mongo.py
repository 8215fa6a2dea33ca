"""What both services' MongoDB backends share: the client, error mapping and migrations.

PyMongo's own asyncio client (``AsyncMongoClient``) is used; Motor, its predecessor, is
deprecated by MongoDB. Writes use ``w="majority"`` with the journal, so an acknowledged write
survives a crash of the server. No multi-document transaction is needed anywhere: every write
that must be atomic is a single document (FerretDB, the MongoDB-wire server the tests run on,
has no transactions either).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from cairn.errors import Unavailable
from cairn.settings import Settings

log = logging.getLogger("cairn.mongo")

try:
    from pymongo import AsyncMongoClient, WriteConcern
    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.errors import (
        AutoReconnect,
        ConnectionFailure,
        NetworkTimeout,
        OperationFailure,
        PyMongoError,
        ServerSelectionTimeoutError,
    )
except ImportError as exc:  # pragma: no cover - the registry turns this into a clear message
    raise ImportError(
        f"{exc}; the mongo backend needs pip install 'cairn-catalogue[mongo]'"
    ) from exc

__all__ = [
    "AsyncDatabase",
    "Migration",
    "PyMongoError",
    "busy",
    "connect",
    "literal",
    "migrate",
    "unavailable",
]

# Errors that mean "the server cannot be reached now", as opposed to a bad command.
UNREACHABLE = (ServerSelectionTimeoutError, AutoReconnect, ConnectionFailure, NetworkTimeout)

Migration = Callable[[AsyncDatabase], Awaitable[None]]

WRITE_CONFLICT = 112


def busy(exc: BaseException) -> bool:
    """Whether a command failed only because other writers held the data: nothing was
    written and the same command may simply be sent again. MongoDB says so with WriteConflict;
    FerretDB on SQLite answers "database is locked" (SQLITE_BUSY) under concurrent writes."""
    if not isinstance(exc, OperationFailure):
        return False
    return exc.code == WRITE_CONFLICT or "SQLITE_BUSY" in str(exc)


def connect(settings: Settings, app_name: str) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client (it connects lazily) and the configured database with durable writes."""
    timeout_ms = int(settings.mongo_timeout * 1000)
    client: AsyncMongoClient = AsyncMongoClient(
        settings.mongo_url.get_secret_value(),
        appname=app_name,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 6, 30_000),
        tz_aware=True,
        retryWrites=True,
    )
    db = client.get_database(settings.mongo_db, write_concern=WriteConcern(w="majority", j=True))
    return client, db


@contextlib.asynccontextmanager
async def unavailable(what: str) -> AsyncIterator[None]:
    """Turns "cannot reach MongoDB" into a 503 whose body says so; other errors pass."""
    try:
        yield
    except UNREACHABLE as exc:
        log.warning("MongoDB unreachable during %s: %s", what, exc)
        raise Unavailable(
            f"MongoDB cannot be reached ({type(exc).__name__}), so {what} did not happen; "
            "nothing was half-written. Retry when the database is back."
        ) from exc
    except OperationFailure as exc:
        if not busy(exc):
            raise
        log.warning("MongoDB too busy for %s: %s", what, exc)
        raise Unavailable(
            f"The database was too busy with other writes for {what} to finish; "
            "retry it (a retry of the same request is safe)."
        ) from exc


def literal(value: Any) -> Any:
    """A value that MongoDB compares for equality and never reads as an operator.

    Only a document (a dict) can be an operator in a find filter; a string such as
    ``'{"$ne": null}'`` or ``"$where"`` is compared as text. So a scalar passes as it is,
    anything else is refused. (Not wrapped in ``$eq``: FerretDB only pushes a plain equality
    down to its index, and ``$eq`` made each lookup by id read the whole collection.)
    """
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise TypeError(f"only scalar values are compared, got {type(value).__name__}")
    return value


async def migrate(db: AsyncDatabase, component: str, steps: Mapping[int, Migration]) -> int:
    """Runs the numbered steps newer than the stored schema version, in order; returns it.

    Each step must be idempotent (index creation is), because two processes starting at once
    may both run it before either records the new version.
    """
    meta = db.get_collection("cairn_meta")
    found = await meta.find_one({"_id": f"schema:{component}"})
    current = int(found["version"]) if found else 0
    for number in sorted(steps):
        if number <= current:
            continue
        log.info("MongoDB %s schema: applying migration %d", component, number)
        await steps[number](db)
        await meta.update_one(
            {"_id": f"schema:{component}"},
            {"$max": {"version": number}},
            upsert=True,
        )
        current = number
    return current
