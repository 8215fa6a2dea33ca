"""ADLS Gen2 volumes (``abfss://``, ``abfs://``, ``az://``), read through the Blob endpoint.

An ADLS Gen2 account serves the same data on two REST APIs: ``dfs`` (paths, directories) and
Blob (multi-protocol access). This connector uses the Blob API, with ``azure-storage-blob``:
it is what every emulator serves (Azurite has no ``dfs`` endpoint), so the code that runs in
production is the code the tests run against a real server, and it also reads plain Blob
storage accounts without a hierarchical namespace.

URLs: ``abfss://<filesystem>@<account>.dfs.core.windows.net/<path>`` (``abfs://`` alike; the
host's cloud suffix picks the Blob host, so sovereign clouds work unchanged), and
``az://<container>/<path>`` with the account from ``CAIRN_AZURE_ACCOUNT_NAME``.
``CAIRN_AZURE_ENDPOINT`` replaces the Blob endpoint (emulators, private endpoints).

Walk: paged listings of every blob under the root's prefix (``list_blobs`` with
``name_starts_with``, 5,000 blobs a request, not one request per folder), streamed page by page.
A listing's pages come one after another, so ``list_concurrency``
(``CAIRN_CRAWL_LIST_CONCURRENCY``) of them run at once: a delimiter listing of the root (and a
few levels down while its prefixes would keep at most half of them busy) cuts the blobs into
prefixes, each listed flat on a thread, handed out in name order
(``connectors.flat.listed_by_prefix``); 1 is one flat listing of the whole root. Folders are the
blobs' name prefixes, plus marker blobs with ``hdi_isfolder=true`` metadata (how ADLS Gen2 shows
a directory on the Blob API, and how empty folders exist at all); see ``connectors/flat.py`` for
the root's own marker and a blob named as a folder. Each file entry carries its ETag as
``Entry.tag``, so a recrawl notices a rewrite that kept size and timestamp.

Writes (``write_bytes``, and the feature store's blob store through
:meth:`AdlsVolume.write_blocks`): the bytes are staged as blocks of a block blob, then the block
list is committed in one request, so a reader sees the old blob or the new one, never a mix.

Credentials, in ``CAIRN_*`` settings only (never in the URL): a connection string, an account
key or a SAS token (at most one of them), else ``DefaultAzureCredential`` from the
``azure-identity`` extra. Error messages carry Azure's error code, never its response text.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from connectors import logredact
from connectors.base import ClosedOnExit, Entry, ProblemSink, normalize_relpath
from connectors.errors import (
    AccessDenied,
    EntryNotFound,
    NotAFile,
    VolumeError,
    VolumeUnreachable,
)
from connectors.flat import Level, Listed, flat_entries, listed_by_prefix
from connectors.ranged import RangedReads, quote_path

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobBlock, BlobPrefix, BlobProperties, ContainerClient
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"the abfss:// connector needs 'azure-storage-blob' ({exc}); "
        "install it with: pip install 'cairn-catalogue[adls]'"
    ) from exc

log = logging.getLogger("cairn.connectors")
logredact.install()

# The SDK logs every request and response at INFO; a crawl makes thousands.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

SCHEMES = ("abfss", "abfs", "az")
PAGE_SIZE = 5000  # the Blob service's largest page
_HOST = re.compile(r"^(?P<account>[a-z0-9]{3,24})\.(?:dfs|blob)\.(?P<suffix>[A-Za-z0-9.-]+)$")
_CONTAINER = re.compile(r"^(?:\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")


def _etag(value: object) -> str:
    # Last-Modified has whole seconds only: a rewrite of the same size within that second
    # shows in the ETag alone, which a recrawl's fingerprint takes in (as on S3).
    return str(value or "").strip('"')


def _is_folder_marker(props: BlobProperties) -> bool:
    metadata = props.metadata or {}
    return str(metadata.get("hdi_isfolder", "")).lower() == "true"


def _listed(props: BlobProperties, skip: int) -> Listed:
    name: str = props.name[skip:]
    # Some tools mark folders with a zero-length 'name/' blob.
    marker = name.endswith("/")
    return (
        name[:-1] if marker else name,
        int(props.size or 0),
        int(props.last_modified.timestamp() * 1_000_000) * 1000,
        marker or _is_folder_marker(props),
        _etag(props.etag),
    )


class AdlsVolume(RangedReads, ClosedOnExit):
    """A folder of an ADLS Gen2 filesystem (a Blob container); see the module docstring."""

    def __init__(
        self,
        container: ContainerClient,
        root: str,
        *,
        url: str,
        scheme: str,
        missing_root_ok: bool = False,
        list_concurrency: int = 1,
    ) -> None:
        self._container = container
        self.root = root  # '' or 'a/b', no slashes at the ends
        self._prefix = root + "/" if root else ""
        self.url = url
        self.scheme = scheme
        self.list_concurrency = max(1, list_concurrency)
        # Requests sent (listing pages counted as they arrive), for tests and benchmarks.
        # Listings run on several threads, and += is no atomic step.
        self.requests = 0
        self._counting = threading.Lock()
        self._check_root(missing_root_ok)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AdlsVolume:
        from cairn.settings import get_settings

        missing_root_ok = bool(options.pop("missing_root_ok", False))
        settings = get_settings()
        list_concurrency = int(options.pop("list_concurrency", settings.crawl_list_concurrency))
        if options:
            raise VolumeError(f"ADLS volumes take no options (got: {', '.join(sorted(options))})")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise VolumeError(f"not an ADLS URL: {scheme}://...")
        if parts.query or parts.fragment:
            # Not echoed: this is where a pasted SAS token would be.
            raise VolumeError(
                f"a {scheme}:// URL takes no query string; put a SAS token in CAIRN_AZURE_SAS_TOKEN"
            )
        authority = parts.netloc
        if scheme == "az":
            if "@" in authority or ":" in authority:
                raise VolumeError("az:// URLs are az://<container>/<path>")
            container_name, account, suffix = authority, settings.azure_account_name, None
        else:
            container_name, at, host = authority.rpartition("@")
            if not at or ":" in container_name:
                raise VolumeError(
                    f"{scheme}:// URLs are {scheme}://<filesystem>@<account>.dfs.core.windows.net"
                    "/<path>; credentials go in CAIRN_AZURE_* settings"
                )
            match = _HOST.match(host.lower())
            if match is None:
                raise VolumeError(
                    f"not an ADLS host: {host!r} (expected <account>.dfs.core.windows.net)"
                )
            account, suffix = match["account"], match["suffix"]
        if not _CONTAINER.match(container_name):
            raise VolumeError(f"not a valid filesystem (container) name: {container_name!r}")
        try:
            root = normalize_relpath(unquote(parts.path).lstrip("/"))
        except VolumeError as exc:
            raise VolumeError(f"bad path in the volume URL: {exc}") from None
        canonical = f"{scheme}://{authority.lower()}" + ("/" + quote_path(root) if root else "")
        client = _container_client(settings, container_name, account, suffix)
        return cls(
            client,
            root,
            url=canonical,
            scheme=scheme,
            missing_root_ok=missing_root_ok,
            list_concurrency=list_concurrency,
        )

    def __repr__(self) -> str:
        return f"AdlsVolume({self.url!r})"

    def close(self) -> None:
        self._container.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _blob(self, rel: str) -> str:
        return self._prefix + rel if rel else self.root

    def _count(self) -> None:
        with self._counting:
            self.requests += 1

    def _pages(self, prefix: str, *, limit: int | None = None) -> Iterator[list[BlobProperties]]:
        """Pages of the flat listing under ``prefix``; only the first when ``limit`` is given."""
        pages = self._container.list_blobs(
            name_starts_with=prefix or None,
            include=["metadata"],
            results_per_page=limit or PAGE_SIZE,
        ).by_page()
        for page in pages:
            self._count()
            yield list(page)
            if limit is not None:
                return

    def _list(self, prefix: str, *, limit: int | None = None) -> Iterator[BlobProperties]:
        for page in self._pages(prefix, limit=limit):
            yield from page

    def _level(self, rel: str) -> Generator[Level, None, None]:
        """Pages of the delimiter ('/') listing of the prefix ``rel`` (below the root): the
        blobs right in it and the prefixes one level down."""
        skip = len(self._prefix)
        pages: Any = self._container.walk_blobs(
            name_starts_with=(self._prefix + rel) or None,
            include=["metadata"],
            delimiter="/",
            results_per_page=PAGE_SIZE,
        ).by_page()
        for page in pages:
            self._count()
            keys: list[Listed] = []
            below: list[str] = []
            # The SDK puts a page's prefixes before its blobs: each list keeps name order.
            for item in page:
                if isinstance(item, BlobPrefix):
                    below.append(item.name[skip:])
                else:
                    keys.append(_listed(item, skip))
            yield keys, below, bool(pages.continuation_token)

    def _flat(self, rel: str) -> Iterator[list[Listed]]:
        """Pages of the flat listing of every blob below the prefix ``rel``."""
        skip = len(self._prefix)
        for page in self._pages(self._prefix + rel):
            yield [_listed(props, skip) for props in page]

    def _exists_below(self, rel: str) -> bool:
        try:
            return any(True for _ in self._list(self._blob(rel) + "/", limit=1))
        except AzureError as exc:
            raise _translate(exc, rel) from None

    def _check_root(self, missing_ok: bool) -> None:
        """EntryNotFound when the root holds nothing, unless ``missing_ok``: without a
        hierarchical namespace a folder exists only while a blob lies below it (see
        ``connectors.registry.FOLDERLESS_SCHEMES``)."""
        try:
            found = any(True for _ in self._list(self._prefix, limit=1))
        except AzureError as exc:
            if _code(exc) == "ContainerNotFound":
                raise EntryNotFound(
                    f"filesystem {self._container.container_name!r} does not exist", path=""
                ) from None
            raise _translate(exc, "") from None
        if found or not self.root:
            return
        # An empty folder exists only as a marker blob.
        try:
            props = self._container.get_blob_client(self.root).get_blob_properties()
        except ResourceNotFoundError:
            if missing_ok:
                return
            raise EntryNotFound(f"volume root {self.root!r} does not exist", path="") from None
        except AzureError as exc:
            raise _translate(exc, "") from None
        if not _is_folder_marker(props):
            raise VolumeError(f"volume root {self.root!r} is not a directory", path="")

    # -- for writers beside the read-only Volume protocol (featurestore_service.blobstore) --------

    @property
    def container(self) -> ContainerClient:
        """The container client, for calls the Volume protocol does not make (writes)."""
        return self._container

    def blob_name(self, rel: str) -> str:
        """The blob name of ``rel`` (already normal) below this volume's root."""
        return self._blob(rel)

    def translate(self, exc: AzureError, rel: str) -> VolumeError:
        """An SDK error as the VolumeError a read would raise (error code, never the text)."""
        return _translate(exc, rel)

    def write_blocks(self, rel: str, chunks: Iterable[bytes], *, overwrite: bool) -> bool:
        """Stores ``chunks`` as the block blob ``rel`` (already normal): each staged as a block,
        then one commit of the list. Without ``overwrite`` an existing blob is left alone and
        the answer is False. Blocks never committed are no blob: the service drops them."""
        blob = self._container.get_blob_client(self._blob(rel))
        upload = uuid.uuid4().hex
        blocks: list[BlobBlock] = []
        # No condition replaces whatever is there; IfMissing sends If-None-Match: *.
        condition = None if overwrite else MatchConditions.IfMissing
        try:
            for piece in chunks:
                # Block ids of one blob must all have the same length.
                block = base64.b64encode(f"{upload}-{len(blocks):08d}".encode()).decode()
                self._count()
                blob.stage_block(block, piece, length=len(piece))
                blocks.append(BlobBlock(block_id=block))
            self._count()
            blob.commit_block_list(blocks, match_condition=condition)
        except HttpResponseError as exc:
            # 409/412: the blob exists (a concurrent writer committed first, and with it
            # dropped this upload's uncommitted blocks; some services answer 400 then).
            status = exc.status_code
            if not overwrite and (status in (409, 412) or (status == 400 and self._props(rel))):
                return False
            raise _translate(exc, rel) from None
        except AzureError as exc:
            raise _translate(exc, rel) from None
        return True

    # -- the Volume protocol -------------------------------------------------------------------

    def walk(self, on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        try:
            yield from flat_entries(self._listed(), on_problem or _log_problem, "blob name")
        except AzureError as exc:
            # Listing is one stream for the whole volume: there is no folder to skip and go on.
            raise _translate(exc, "") from None

    def _listed(self) -> Iterator[Listed]:
        if self.list_concurrency == 1:
            for page in self._flat(""):
                yield from page
            return
        yield from listed_by_prefix(
            self._level, self._flat, self.list_concurrency, "cairn-adls-list"
        )

    def _props(self, rel: str) -> BlobProperties | None:
        """The blob's properties, or None when no blob has this name."""
        try:
            self._count()
            return self._container.get_blob_client(self._blob(rel)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _translate(exc, rel) from None

    def stat(self, path: str) -> Entry:
        rel = normalize_relpath(path)
        if not rel:
            return Entry("", 0, 0, True)
        props = self._props(rel)
        if props is None:
            if self._exists_below(rel):
                return Entry(rel, 0, 0, True)
            raise EntryNotFound(f"{rel!r} does not exist in the volume", path=rel)
        mtime_ns = int(props.last_modified.timestamp() * 1_000_000) * 1000
        if _is_folder_marker(props):
            return Entry(rel, 0, mtime_ns, True)
        return Entry(rel, int(props.size), mtime_ns, False, _etag(props.etag))

    def _fetch(self, rel: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            self._count()
            blob = self._container.get_blob_client(self._blob(rel))
            return blob.download_blob(offset=offset, length=length).readall()
        except ResourceNotFoundError:
            if self._exists_below(rel):
                raise NotAFile(f"{rel!r} is a directory", path=rel) from None
            raise EntryNotFound(f"{rel!r} does not exist in the volume", path=rel) from None
        except HttpResponseError as exc:
            if exc.status_code == 416:
                # A range starting at or past the end: the blob is empty (or shrank), and a
                # read of it holds no bytes, as on every other volume.
                return b""
            raise _translate(exc, rel) from None
        except AzureError as exc:
            raise _translate(exc, rel) from None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replaces the blob at ``path``: one staged block, committed in one request."""
        rel = normalize_relpath(path)
        if not rel:
            raise NotAFile("the volume root is a folder, not a file", path="")
        self.write_blocks(rel, [data] if data else [], overwrite=True)


# -- clients and errors --------------------------------------------------------------------------


def _container_client(
    settings: Any, container: str, account: str | None, suffix: str | None
) -> ContainerClient:
    secrets = {
        "CAIRN_AZURE_CONNECTION_STRING": settings.azure_connection_string,
        "CAIRN_AZURE_ACCOUNT_KEY": settings.azure_account_key,
        "CAIRN_AZURE_SAS_TOKEN": settings.azure_sas_token,
    }
    given = [name for name, value in secrets.items() if value is not None]
    if len(given) > 1:
        raise VolumeError(f"set only one of {', '.join(given)}")
    common: dict[str, Any] = {
        "connection_timeout": settings.http_timeout,
        "read_timeout": settings.http_timeout,
        "retry_total": max(0, min(settings.http_retries, 4) - 1),
        "transport": _transport(settings.crawl_list_concurrency + settings.crawl_read_concurrency),
    }
    conn = settings.azure_connection_string
    if conn is not None:
        try:
            client = ContainerClient.from_connection_string(
                conn.get_secret_value(), container, **common
            )
        except ValueError:
            # The SDK's message may quote the string; ours does not.
            raise VolumeError("CAIRN_AZURE_CONNECTION_STRING is malformed") from None
        if account and client.account_name and client.account_name != account:
            raise VolumeError(
                f"the URL names storage account {account!r} but "
                f"CAIRN_AZURE_CONNECTION_STRING is for {client.account_name!r}"
            )
        return client
    if not account:
        raise VolumeError("az:// URLs need the account name in CAIRN_AZURE_ACCOUNT_NAME")
    if settings.azure_endpoint:
        account_url = settings.azure_endpoint.replace("{account}", account).rstrip("/")
    else:
        account_url = f"https://{account}.blob.{suffix or 'core.windows.net'}"
    credential: Any
    if settings.azure_account_key is not None:
        credential = {"account_name": account, "account_key": settings.azure_account_key}
        credential["account_key"] = credential["account_key"].get_secret_value()
    elif settings.azure_sas_token is not None:
        from azure.core.credentials import AzureSasCredential

        credential = AzureSasCredential(settings.azure_sas_token.get_secret_value().lstrip("?"))
    else:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise VolumeError(
                "no Azure credentials: set CAIRN_AZURE_ACCOUNT_KEY, CAIRN_AZURE_SAS_TOKEN or "
                "CAIRN_AZURE_CONNECTION_STRING, or install 'cairn-catalogue[azure-identity]' to "
                "use DefaultAzureCredential (managed identity, az login, environment)"
            ) from None
        credential = DefaultAzureCredential()
    return ContainerClient(account_url, container, credential=credential, **common)


def _transport(connections: int) -> RequestsTransport:
    """The SDK's own transport, with a kept-alive connection per concurrent listing and per
    crawl reader thread: its default pool keeps 10, and logs a warning for each it drops."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    adapter_type: type[HTTPAdapter] = HTTPAdapter
    try:  # the adapter the SDK mounts itself: larger blocks when sending a body
        from azure.core.pipeline.transport._bigger_block_size_http_adapters import (
            BiggerBlockSizeHTTPAdapter,
        )

        adapter_type = BiggerBlockSizeHTTPAdapter
    except ImportError:  # pragma: no cover - a later SDK that moved it
        pass
    session = requests.Session()
    # Retries are the SDK pipeline's, as with the adapter it would mount.
    adapter = adapter_type(
        pool_maxsize=max(10, connections),
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True)


def _code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _translate(exc: AzureError, rel: str) -> VolumeError:
    where = repr(rel) if rel else "the volume"
    code = _code(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
        # Refused before any request went out: the SDK could not sign it with the key.
        return AccessDenied(
            f"{where}: requests could not be signed ({type(exc).__name__}); "
            "CAIRN_AZURE_ACCOUNT_KEY (or the AccountKey of CAIRN_AZURE_CONNECTION_STRING) "
            "is not a valid storage account key (base64, as the portal shows it)",
            path=rel,
        )
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return AccessDenied(
            f"{where}: the storage account refused access ({code or status}); check the "
            "CAIRN_AZURE_* credentials and their permissions",
            path=rel,
        )
    if isinstance(exc, ResourceNotFoundError):
        return EntryNotFound(f"{where} does not exist ({code or 'not found'})", path=rel)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return VolumeUnreachable(
            f"{where}: cannot reach the storage account ({type(exc).__name__}); "
            "check the URL or CAIRN_AZURE_ENDPOINT",
            path=rel,
        )
    if isinstance(exc, HttpResponseError):
        return VolumeError(f"{where}: storage error {status} {code or ''}".rstrip(), path=rel)
    return VolumeError(f"{where}: {type(exc).__name__}", path=rel)


def _log_problem(path: str, reason: str) -> None:
    log.warning("walk: %s: %s", path or "<root>", reason)
