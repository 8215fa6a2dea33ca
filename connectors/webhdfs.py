"""HDFS volumes over WebHDFS (``hdfs://`` and ``webhdfs://`` URLs), with the ``hdfs`` package.

URLs: ``hdfs://namenode:9870/path`` names the NameNode's HTTP (WebHDFS) port, 9870 when left
out; ``hdfs://nn1:9870,nn2:9870/path`` lists the NameNodes of an HA pair, and a logical name
from ``CAIRN_HDFS_NAMESERVICES`` (``hdfs://prod/path``) stands for such a list. A NameNode that
is down or in standby is skipped for the next one (the ``hdfs`` client rotates through the
list); when none answers, the call is retried with backoff before the volume gives up.

Walk: each directory listed with LISTSTATUS_BATCH (the NameNode's ``dfs.ls.limit`` entries per
request, 1,000 by default), entries yielded as each batch arrives, so a directory of a million
files never sits in memory whole. Each request waits a round trip on the NameNode, so up to
``list_concurrency`` of them (``CAIRN_CRAWL_LIST_CONCURRENCY``) are in flight at once, on as
many threads: other folders, or the next batch of a large one. Batches are handed out in the
order they were asked for, not the order they arrive, so the same tree is walked in the same
order every time (breadth first, a large folder's batches one after another). A directory that
cannot be listed (permissions, or deleted mid-walk) is reported and skipped; a NameNode that
cannot be reached at all fails the walk with a VolumeError, since every directory after it
would fail the same way.

Reads: ``read()`` asks for at most ``max_bytes + 1`` bytes, so the cap holds on the wire; ``open()``
returns a :class:`RangedFile` whose reads are OPEN requests with ``offset`` and ``length``.

Writes (``write_bytes``, and the feature store's blob store through :meth:`HdfsVolume.write_file`):
a part file is CREATEd empty, filled by APPEND, then RENAMEd onto the target in one NameNode
operation, so a reader sees the old file or the new one, never half of it.

Authentication: simple (``user.name``, from ``CAIRN_HDFS_USER``) or Kerberos/SPNEGO
(``CAIRN_HDFS_AUTH=kerberos``, with the ``kerberos`` extra and a ticket from ``kinit``).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import posixpath
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orjson

from connectors import http1, logredact
from connectors.base import ClosedOnExit, Entry, ProblemSink, make_entry, normalize_relpath
from connectors.errors import (
    AccessDenied,
    EntryNotFound,
    NotAFile,
    VolumeError,
    VolumeUnreachable,
)
from connectors.ranged import RangedFile, file_and_size, read_capped

try:
    import requests
    from hdfs import InsecureClient
    from hdfs.client import Client, _Request, _to_error
    from hdfs.util import HdfsError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"the hdfs:// connector needs the 'hdfs' package ({exc}); "
        "install it with: pip install 'cairn-catalogue[hdfs]'"
    ) from exc

log = logging.getLogger("cairn.connectors")
logredact.install()

DEFAULT_PORT = 9870
T = TypeVar("T")

# The ``hdfs`` package has no LISTSTATUS_BATCH (Hadoop 2.8+); its request factory builds the
# handler, so NameNode rotation and error decoding work for it as for the built-in operations.
_list_status_batch = _Request("GET").to_method("LISTSTATUS_BATCH")
# Its rename() cannot replace a file: with ``renameoptions`` the NameNode runs rename2, which
# can (OVERWRITE) and, unlike the plain rename, names the reason when it refuses.
_rename2 = _Request("PUT").to_method("RENAME")
_RETRIABLE = ("RetriableException", "StandbyException")
_ADDRESS = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>\d+))?$"
)


class NameNodeUnreachable(VolumeUnreachable):
    """No NameNode answered, after retries; a walk stops on this instead of reporting."""


def parse_namenodes(authority: str, nameservices: dict[str, list[str]]) -> list[str]:
    """``host:port`` items (or a logical name) as WebHDFS base URLs."""
    items = [a.strip() for a in authority.split(",") if a.strip()]
    if len(items) == 1 and items[0] in nameservices:
        items = list(nameservices[items[0]])
        if not items:
            raise VolumeError(f"HDFS nameservice {authority!r} lists no NameNode")
    if not items:
        raise VolumeError("hdfs:// URL names no NameNode (expected hdfs://host:port/path)")
    urls = []
    for item in items:
        bare = item.removeprefix("http://")
        match = _ADDRESS.match(bare)
        if match is None:
            raise VolumeError(f"not a NameNode address: {item!r} (expected host:port)")
        host = f"[{match['v6']}]" if match["v6"] else match["host"].lower()
        port = int(match["port"] or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise VolumeError(f"NameNode port out of range in {item!r}")
        urls.append(f"http://{host}:{port}")
    return urls


class HdfsVolume(ClosedOnExit):
    """An HDFS directory tree over WebHDFS; see the module docstring for the rules."""

    def __init__(
        self,
        namenodes: list[str],
        root: str,
        *,
        url: str,
        scheme: str = "hdfs",
        user: str | None = None,
        auth: str = "simple",
        timeout: float = 30.0,
        attempts: int = 3,
        list_concurrency: int = 1,
        read_concurrency: int = 8,
    ) -> None:
        if not root.startswith("/"):
            raise VolumeError(f"HDFS volume root must be absolute, not {root!r}")
        self.root = posixpath.normpath(root) if root != "/" else "/"
        self.url = url
        self.scheme = scheme
        self.namenodes = list(namenodes)
        self._attempts = max(1, attempts)
        self._user = user or getpass.getuser()
        self._timeout = timeout
        self.list_concurrency = max(1, list_concurrency)
        session = _session(self.namenodes[0])
        # One kept-alive connection per concurrent listing and per crawl reader thread;
        # requests' default pool of 10 would open and drop connections past that.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self.list_concurrency + max(1, read_concurrency)
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        joined = ";".join(self.namenodes)
        if auth == "simple":
            self._client: Client = InsecureClient(
                joined, user=self._user, timeout=timeout, session=session
            )
        elif auth == "kerberos":
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as exc:
                raise VolumeError(
                    "CAIRN_HDFS_AUTH=kerberos needs requests-kerberos: "
                    "pip install 'cairn-catalogue[kerberos]'"
                ) from exc
            self._client = KerberosClient(
                joined, mutual_auth="OPTIONAL", timeout=timeout, session=session
            )
        else:
            raise VolumeError(f"unknown HDFS authentication {auth!r}: use simple or kerberos")
        # Paths handed to the client are already absolute and normal; its resolve() would
        # also expand '#LATEST' markers, which have no business in a file name.
        self._client.resolve = lambda path: path
        # Listings over kept-alive bare HTTP (see _fast_json): with simple authentication and
        # no proxy only, where a request needs nothing but ``user.name``.
        self._fast = auth == "simple" and not session.proxies
        self._pools: dict[str, http1.Pool] = {}
        self._pools_lock = threading.Lock()
        self.requests = 0  # WebHDFS calls made, for tests and benchmarks
        self.direct_reads = 0  # reads a DataNode served without asking the NameNode first
        # Where the NameNode sent the last OPEN; None until then, or after it failed a read.
        self._datanode: _DataNode | None = None
        self._count_lock = threading.Lock()  # walks and reads call from several threads
        top = self._status(self.root, "")
        if top["type"] != "DIRECTORY":
            raise VolumeError(f"volume root {self.root!r} is not a directory", path="")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> HdfsVolume:
        from cairn.settings import get_settings

        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("hdfs", "webhdfs"):
            raise VolumeError(f"not an hdfs:// or webhdfs:// URL: {scheme}://...")
        if parts.query or parts.fragment:
            # Not echoed: a query string is where delegation tokens would hide.
            raise VolumeError(
                f"an {scheme}:// URL takes no query string or fragment; "
                "set the user with CAIRN_HDFS_USER"
            )
        authority = parts.netloc
        if "@" in authority:
            raise VolumeError(
                f"an {scheme}:// URL takes no user name or password; "
                "set the user with CAIRN_HDFS_USER"
            )
        settings = get_settings()
        namenodes = parse_namenodes(authority, settings.hdfs_nameservices)
        root = posixpath.normpath("/" + unquote(parts.path).lstrip("/")) if parts.path else "/"
        root = "/" if root == "//" else root
        canonical = f"{scheme}://{authority.lower()}{_quote_path(root)}"
        known = {"user", "auth", "timeout", "attempts", "list_concurrency", "read_concurrency"}
        unknown = set(options) - known
        if unknown:
            raise VolumeError(f"unknown HDFS volume options: {', '.join(sorted(unknown))}")
        return cls(
            namenodes,
            root,
            url=canonical,
            scheme=scheme,
            user=options.get("user", settings.hdfs_user),
            auth=options.get("auth", settings.hdfs_auth),
            timeout=options.get("timeout", settings.http_timeout),
            attempts=options.get("attempts", min(settings.http_retries, 4)),
            list_concurrency=options.get("list_concurrency", settings.crawl_list_concurrency),
            read_concurrency=options.get("read_concurrency", settings.crawl_read_concurrency),
        )

    def __repr__(self) -> str:
        return f"HdfsVolume({self.url!r})"

    def close(self) -> None:
        self._client._session.close()
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        if not rel:
            return self.root
        return f"{self.root}/{rel}" if self.root != "/" else f"/{rel}"

    def _call(self, rel: str, fn: Callable[[], T], *, attempts: int | None = None) -> T:
        """One WebHDFS call with retries; HDFS and network failures as VolumeErrors."""
        attempts = attempts or self._attempts
        delays: list[float] = []  # drawn at the first retry: most calls never need them
        for attempt in range(attempts):
            with self._count_lock:
                self.requests += 1
            try:
                return fn()
            except HdfsError as exc:
                name = getattr(exc, "exception", None)
                if name not in _RETRIABLE or attempt == attempts - 1:
                    raise _translate(exc, rel) from None
                reason = f"every NameNode answered {name}"
            except (requests.Timeout, requests.ConnectionError) as exc:
                if attempt == attempts - 1:
                    raise NameNodeUnreachable(
                        f"cannot reach WebHDFS at {', '.join(self.namenodes)} "
                        f"({_network_reason(exc)}); is that the NameNode's HTTP port "
                        f"(9870 by default, not the RPC port 8020)?",
                        path=rel,
                    ) from None
                reason = _network_reason(exc)
            except (ValueError, KeyError) as exc:
                raise VolumeError(
                    f"{rel or '<root>'}: unexpected answer from {', '.join(self.namenodes)} "
                    f"({type(exc).__name__}); is that a WebHDFS endpoint?",
                    path=rel,
                ) from None
            log.warning(
                "WebHDFS call for %r failed (%s); retry %d of %d",
                rel,
                reason,
                attempt + 1,
                attempts - 1,
            )
            delays = delays or _backoff(attempts)
            time.sleep(delays[attempt])
        raise AssertionError("unreachable")

    def _status(self, hdfs_path: str, rel: str) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            response = self._client._get_file_status(hdfs_path)
            return cast(dict[str, Any], response.json()["FileStatus"])

        try:
            return self._call(rel, call)
        except EntryNotFound:
            if not rel:
                raise EntryNotFound(f"volume root {self.root!r} does not exist", path="") from None
            raise

    def _batch(self, rel: str, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """One LISTSTATUS_BATCH of a directory: (statuses, whether more remain)."""
        hdfs_path = self._abs(rel)

        def call() -> dict[str, Any]:
            params = {"startAfter": after} if after is not None else {}
            answer = self._fast_json(hdfs_path, "LISTSTATUS_BATCH", params)
            if answer is not None and isinstance(answer.get("DirectoryListing"), dict):
                return cast(dict[str, Any], answer["DirectoryListing"])
            response = _list_status_batch(self._client, hdfs_path, **params)
            return cast(dict[str, Any], response.json()["DirectoryListing"])

        listing = self._call(rel, call)
        statuses = listing["partialListing"]["FileStatuses"]["FileStatus"]
        return statuses, bool(listing.get("remainingEntries")) and bool(statuses)

    def _fast_json(self, hdfs_path: str, op: str, params: dict[str, str]) -> Any:
        """The JSON of a successful GET ``op`` on the NameNode in use, over a kept-alive
        connection of :mod:`connectors.http1`; None when anything else happened (an error
        answer, a broken connection), for the caller to ask the ordinary way, which rotates
        NameNodes, decodes errors and retries as it always did.

        requests costs the crawler about 0.5 ms of CPU per call, this a fifth of it: over
        the two thousand listings of a 20,000-file volume, a quarter of a crawl's CPU. A
        connection that fails before its first answer, or times out, turns this off for the
        volume, so a NameNode that does not answer is waited for once more at most.
        """
        if not self._fast:
            return None
        base = self._client._urls[0]
        pool = self._pools.get(base)
        if pool is None:
            parts = urlsplit(base)
            if parts.scheme != "http" or not parts.hostname:
                return None
            with self._pools_lock:
                pool = self._pools.setdefault(
                    base, http1.Pool(parts.hostname, parts.port or 80, self._timeout)
                )
        query = urlencode({"op": op, **params, "user.name": self._user})
        target = f"/webhdfs/v1{quote(hdfs_path, safe='/')}?{query}"
        try:
            connection = pool.take()
            try:
                answer = connection.get(target)
            except (OSError, http1.BadAnswer) as exc:
                connection.close()
                if not connection.used or isinstance(exc, TimeoutError):
                    raise  # not a connection gone stale: a NameNode that does not answer
                # A kept-alive connection the NameNode had dropped: once more on a new one.
                connection = pool.connect()
                try:
                    answer = connection.get(target)
                except (OSError, http1.BadAnswer):
                    connection.close()
                    raise
        except (OSError, http1.BadAnswer):
            self._fast = False
            return None
        if answer.keep_alive:
            pool.give_back(connection)
        else:
            connection.close()
        if answer.status != 200 or not answer.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return None
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return None

    def _fetch(self, hdfs_path: str, rel: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file).

        An OPEN through the NameNode is two requests: the NameNode answers with a redirect to
        a DataNode, which serves the bytes (and closes the connection: DataNodes keep none
        alive). The redirect names the DataNode's WebHDFS endpoint with everything it needs
        besides the path (the user, the NameNode's RPC address, a delegation token under
        Kerberos), so later reads go to that DataNode straight away, which reads the blocks
        wherever they are. A read the DataNode does not serve (gone, token expired, any
        error) goes through the NameNode instead, whose answer then decides, and teaches
        the DataNode afresh.
        """
        if length <= 0:
            return b""

        def call() -> bytes:
            node = self._datanode
            if node is not None:
                data = node.read(hdfs_path, offset, length, self._timeout)
                if data is not None:
                    with self._count_lock:
                        self.direct_reads += 1
                    return data
                self._datanode = None
            return self._fetch_via_namenode(hdfs_path, offset, length)

        return self._call(rel, call)

    def _fetch_via_namenode(self, hdfs_path: str, offset: int, length: int) -> bytes:
        response = self._client._open(hdfs_path, offset=offset, length=length, noredirect="true")
        with response:
            if not response.headers.get("Content-Type", "").startswith("application/json"):
                # A NameNode older than Hadoop 2.8 ignores noredirect: the redirect was followed.
                return _first_bytes(response, length)
            location = str(response.json()["Location"])
        # Behind a proxy, DataNodes are reached through it too: requests knows how.
        node = None if self._client._session.proxies else _DataNode.from_location(location)
        if node is not None:
            data = node.read(hdfs_path, offset, length, self._timeout)
            if data is not None:
                self._datanode = node
                return data
        # Followed as the redirect always was: its errors decoded as the NameNode's are.
        response = self._client._session.get(location, stream=True, timeout=self._timeout)
        with response:
            if not response.ok:
                raise _to_error(response)
            return _first_bytes(response, length)

    # -- for writers beside the read-only Volume protocol (featurestore_service.blobstore) --------

    @property
    def client(self) -> Client:
        """The WebHDFS client, for calls the Volume protocol does not make (writes)."""
        return self._client

    def absolute(self, rel: str) -> str:
        """The HDFS path of ``rel`` (already normal) below this volume's root."""
        return self._abs(rel)

    def call(self, rel: str, fn: Callable[[], T]) -> T:
        """``fn`` with this volume's retries and error mapping; only for idempotent calls."""
        return self._call(rel, fn)

    def write_file(
        self, part: str, rel: str, data: bytes | Iterable[bytes], *, overwrite: bool
    ) -> None:
        """Writes ``data`` to the new file ``part``, then renames it to ``rel`` (both relative
        and normal). Without ``overwrite`` the rename refuses an existing ``rel`` (a VolumeError
        naming FileAlreadyExistsException). The part is deleted when anything fails."""
        client = self._client
        source, target = self._abs(part), self._abs(rel)
        renamed = False
        try:
            # Created empty first, then filled by APPEND: a CREATE whose body broke off may make
            # its file on the DataNode after the clean-up below has looked for it, while a file
            # that exists before the data is sent is surely gone once deleted.
            self._call(part, lambda: client.write(source, data=b"", overwrite=True))
            if data != b"":
                # One attempt: a stream half sent cannot be sent again.
                self._call(part, lambda: client.write(source, data=data, append=True), attempts=1)
            option = "OVERWRITE" if overwrite else "NONE"
            self._call(
                rel, lambda: _rename2(client, source, destination=target, renameoptions=option)
            )
            renamed = True
        finally:
            if not renamed:
                # The error that stopped the write says more than one from the clean-up.
                with contextlib.suppress(VolumeError):
                    self._call(part, lambda: client.delete(source))

    def rename(self, source: str, target: str) -> None:
        """Renames ``source`` to ``target`` (both relative and normal), atomically; refuses an
        existing ``target`` (a VolumeError naming FileAlreadyExistsException). Retried like
        any call, so a rename whose answer was lost may end in EntryNotFound although done."""
        client = self._client
        paths = self._abs(source), self._abs(target)
        self._call(
            target,
            lambda: _rename2(client, paths[0], destination=paths[1], renameoptions="NONE"),
        )

    def batches(self, rel: str) -> Iterator[list[dict[str, Any]]]:
        """The FileStatus records of one folder, a LISTSTATUS_BATCH answer at a time."""
        after: str | None = None
        while True:
            statuses, more = self._batch(rel, after)
            yield statuses
            if not more:
                return
            after = statuses[-1]["pathSuffix"]

    # -- the Volume protocol -------------------------------------------------------------------

    def walk(self, on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        report = on_problem or _log_problem
        new = make_entry
        # (directory, listing resumes after this name): asked for in this order
        todo: deque[tuple[str, str | None]] = deque([("", None)])
        asked: deque[tuple[str, Future[tuple[list[dict[str, Any]], bool]]]] = deque()
        pool = ThreadPoolExecutor(self.list_concurrency, thread_name_prefix="cairn-hdfs-list")
        try:
            while todo or asked:
                while todo and len(asked) < self.list_concurrency:
                    rel, after = todo.popleft()
                    asked.append((rel, pool.submit(self._batch, rel, after)))
                rel, future = asked.popleft()
                try:
                    batch, more = future.result()
                except NameNodeUnreachable:
                    raise
                except EntryNotFound:
                    report(rel, "disappeared during the walk, skipped")
                    continue
                except AccessDenied:
                    report(rel, "cannot list directory: permission denied")
                    continue
                except VolumeError as exc:
                    report(rel, f"cannot list directory: {exc}")
                    continue
                if more:
                    # Next in line: a large folder's batches come one after another.
                    todo.appendleft((rel, batch[-1]["pathSuffix"]))
                prefix = rel + "/" if rel else ""
                for status in batch:
                    name = status["pathSuffix"]
                    if not name:
                        # A file where a directory was listed: replaced since the parent's
                        # listing.
                        report(rel, "is no longer a directory, skipped")
                        continue
                    child = prefix + name
                    kind = status["type"]
                    mtime_ns = int(status["modificationTime"]) * 1_000_000
                    if kind == "FILE":
                        yield new(child, int(status["length"]), mtime_ns, False)
                    elif kind == "DIRECTORY":
                        yield new(child, 0, mtime_ns, True)
                        todo.append((child, None))
                    else:
                        report(child, f"not a regular file ({kind.lower()}), skipped")
        finally:
            # A walk left early (or failed) does not wait for listings nobody will read.
            pool.shutdown(wait=False, cancel_futures=True)

    def stat(self, path: str) -> Entry:
        rel = normalize_relpath(path)
        status = self._status(self._abs(rel), rel)
        mtime_ns = int(status["modificationTime"]) * 1_000_000
        if status["type"] == "DIRECTORY":
            return Entry(rel, 0, mtime_ns, True)
        if status["type"] == "FILE":
            return Entry(rel, int(status["length"]), mtime_ns, False)
        raise NotAFile(f"{rel!r} is not a regular file ({status['type'].lower()})", path=rel)

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        # With a listed size, no GETFILESTATUS: a missing file fails at its first OPEN.
        rel, size = file_and_size(self.stat, path, size)
        hdfs_path = self._abs(rel)

        def fetch(offset: int, length: int) -> bytes:
            return self._fetch(hdfs_path, rel, offset, length)

        return cast(BinaryIO, RangedFile(rel, max(0, size), fetch))

    def read(self, path: str, max_bytes: int) -> bytes:
        return read_capped(
            path, max_bytes, lambda rel, n: self._fetch(self._abs(rel), rel, 0, n), self.stat
        )

    def url_for(self, path: str) -> str:
        rel = normalize_relpath(path)
        if not rel:
            return self.url
        return self.url.rstrip("/") + "/" + _quote_path(rel)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replaces the file at ``path``: a hidden part file beside it, renamed over it."""
        rel = normalize_relpath(path)
        if not rel:
            raise NotAFile("the volume root is a folder, not a file", path="")
        folder, _, name = rel.rpartition("/")
        part = f".{name}.{uuid.uuid4().hex}.tmp"
        part = f"{folder}/{part}" if folder else part
        self.write_file(part, rel, data, overwrite=True)


@dataclass(frozen=True, slots=True)
class _DataNode:
    """A DataNode's WebHDFS endpoint, as an OPEN redirect named it."""

    host: str
    port: int
    # What the NameNode put in the redirect, but the operation, offset and length. Under
    # Kerberos that holds a delegation token: kept out of repr, so no log line shows it.
    query: str = field(repr=False)
    # Its addresses, looked up at the first read: a DataNode is read from thousands of times
    # in a crawl, each on a new connection. A read that fails there sends the crawl back to
    # the NameNode, whose answer is a new _DataNode, looked up afresh.
    addresses: list[http1.Address] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def from_location(cls, location: str) -> _DataNode | None:
        parts = urlsplit(location)
        if parts.scheme != "http" or not parts.hostname:
            return None
        kept = [
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key not in ("op", "offset", "length")
        ]
        return cls(parts.hostname, parts.port or 80, urlencode(kept))

    def read(self, hdfs_path: str, offset: int, length: int, timeout: float) -> bytes | None:
        """The bytes, or None when this DataNode did not serve them (for whatever reason).

        One bare HTTP/1.1 exchange (:mod:`connectors.http1`) on a connection of its own:
        the DataNode closes it after the answer anyway. http.client cost 2.5 times as much
        CPU per read, requests 7 times.
        """
        target = (
            f"/webhdfs/v1{quote(hdfs_path, safe='/')}?op=OPEN&{self.query}"
            f"&offset={offset}&length={length}"
        )
        try:
            addresses = self.addresses
            if addresses is None:
                addresses = http1.resolve(self.host, self.port)
                object.__setattr__(self, "addresses", addresses)  # frozen: set once, here
            connection = http1.Connection(self.host, self.port, timeout, addresses)
        except OSError:
            return None
        try:
            answer = connection.get(target, limit=length)
        except (OSError, http1.BadAnswer):
            return None
        finally:
            connection.close()
        return answer.body if answer.status == 200 else None


def _first_bytes(response: requests.Response, length: int) -> bytes:
    chunks = []
    got = 0
    for chunk in response.iter_content(chunk_size=256 * 1024):
        chunks.append(chunk)
        got += len(chunk)
        if got >= length:
            break
    return b"".join(chunks)[:length]


def _session(namenode: str) -> requests.Session:
    """A session that reads the environment's proxy settings once, here, not per call.

    With ``trust_env`` on, requests looks for ``~/.netrc``, re-reads the proxy variables and
    checks the CA bundle's path on disk on every request and redirect: about a quarter of the
    client's CPU per WebHDFS call in a crawl. The proxies the environment names for the
    (first) NameNode apply to the whole session. ``~/.netrc`` is not consulted (WebHDFS
    authenticates with ``user.name`` or SPNEGO, never a password), nor a CA bundle: WebHDFS
    URLs here are plain http:// (``parse_namenodes``).
    """
    session = requests.Session()
    found = session.merge_environment_settings(namenode, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(found["proxies"])
    return session


def _translate(exc: HdfsError, rel: str) -> VolumeError:
    name = getattr(exc, "exception", None)
    message = _clean(str(exc))
    where = repr(rel) if rel else "the volume root"
    if name == "FileNotFoundException":
        if "not a file" in message.lower():
            return NotAFile(f"{where} is a directory", path=rel)
        return EntryNotFound(f"{where} does not exist in the volume", path=rel)
    if name in ("AccessControlException", "SecurityException"):
        # "Permission denied: user=cairn, access=EXECUTE, inode=...": who was refused what is
        # the part that says which setting to look at.
        found = _DENIED_AS.search(message)
        who = f" ({found['who']}; the user is CAIRN_HDFS_USER)" if found else ""
        return AccessDenied(f"{where}: permission denied{who}", path=rel)
    if name is None and "Authentication failure" in message:
        return AccessDenied(
            f"{where}: WebHDFS refused the credentials (CAIRN_HDFS_AUTH, CAIRN_HDFS_USER)",
            path=rel,
        )
    if name is None and not isinstance(exc.args[0] if exc.args else None, str):
        # The error's body was no WebHDFS JSON (the client keeps it as bytes): an HTML or XML
        # page from another server on that port, or a proxy; its text is no help.
        return VolumeError(
            f"{where}: the server answered with an error page that is not WebHDFS's; is that "
            "the NameNode's HTTP port (9870 by default), with no proxy in between?",
            path=rel,
        )
    return VolumeError(f"{where}: {name or 'WebHDFS error'}: {message}", path=rel)


_DENIED_AS = re.compile(r"(?P<who>user=[^,\s]+, access=[A-Z_]+)")


def _clean(message: str) -> str:
    # HdfsError may carry a whole HTML error page; one line of it is enough for a report.
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first[:300]


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    # The exception text holds the full request URL with its query string; never pass it on.
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return "connection failed"


def _backoff(attempts: int) -> list[float]:
    from cairn.retry import backoff_delays

    return backoff_delays(attempts)


def _log_problem(path: str, reason: str) -> None:
    log.warning("walk: %s: %s", path or "<root>", reason)


_PATH_SAFE = "/:@!$&'()*+,;="


def _quote_path(path: str) -> str:
    return quote(path, safe=_PATH_SAFE)
