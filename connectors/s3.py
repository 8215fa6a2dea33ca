"""S3 volumes (``s3://bucket/prefix``) on AWS and S3-compatible stores, through boto3.

Walk: paged ListObjectsV2 listings (1,000 keys a request, never one request per folder) of
every key under the root's prefix, streamed page by page. A listing's pages come one after
another (each asks for the one after the previous page), so ``list_concurrency``
(``CAIRN_CRAWL_LIST_CONCURRENCY``) of them run at once: a delimiter listing of the root (and a
few levels down while its prefixes would keep at most half of them busy) cuts the keys into
prefixes, each listed flat on a thread, handed out in name order
(``connectors.flat.listed_by_prefix``); 1 is one flat listing of the whole root. Folders
are the keys' name prefixes, each yielded once before its first child, plus zero-length
``name/`` keys some tools write to make empty folders exist; a key that is also a folder's name
gives way to the folder (``connectors/flat.py``). Each file entry carries its ETag
as ``Entry.tag``, so a recrawl notices a rewrite that kept size and timestamp.

Reads are ranged GETs (``connectors/ranged.py``): a Parquet schema costs one or two requests,
whatever the file's size.

Credentials come from boto3's standard chain, never from the URL or a ``CAIRN_*`` setting:
environment (``AWS_ACCESS_KEY_ID``...), shared config and credentials files
(``AWS_PROFILE``), SSO, web identity (``AWS_WEB_IDENTITY_TOKEN_FILE``, as on EKS), the ECS
task role and the EC2 instance profile. ``CAIRN_S3_ENDPOINT`` points at an S3-compatible
store, ``CAIRN_S3_ADDRESSING_STYLE`` picks path-style or virtual-hosted requests and
``CAIRN_S3_REGION`` the signing region. Error messages carry S3's error code, never the
response body or a credential.

Why boto3, measured against obstore 0.12 on the local SeaweedFS (2 cores, load average
17-28 from other work, so wall times are noisy; CPU times are the client's own):

    listing 10,000 keys      boto3 1.44: 9.1 s wall, 0.99 s CPU   obstore: 2.2 s wall, 0.04 s CPU
    listing 5,000 keys       boto3: 2.5-4.1 s wall, 0.47 s CPU    obstore: 0.9 s wall, 0.02 s CPU
    ranged GET, 64 KB        boto3: 5.7-9.8 ms, 1.9 ms CPU        obstore: 1.1-4.1 ms, 0.3 ms CPU
    installed / import       boto3+botocore+s3transfer ~35 MB, 0.35 s CPU, 50 MB RSS;
                             obstore 16 MB, 0.02 s CPU, 19 MB RSS

obstore is faster and lighter, so this is a trade made on purpose: the issue asks for the
standard credential chain, and obstore (Rust's object_store) has no shared config/credentials
files (``AWS_PROFILE``), SSO or ``credential_process``; its way to get them is a boto3
credential provider, i.e. boto3 as well. boto3 also gives request-count hooks and per-error
codes used below. The cost that matters is the listing's client CPU, ~0.1 ms per key (about
10 s of one core per 1M keys), which an unchanged recrawl pays in full: benchmarks/bench_s3.py
reports it beside a plain boto3 listing. Only an ``s3://`` volume imports boto3.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any, cast
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
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
        SSLError,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"the s3:// connector needs 'boto3' ({exc}); "
        "install it with: pip install 'cairn-catalogue[s3]'"
    ) from exc

log = logging.getLogger("cairn.connectors")
logredact.install()
# botocore logs signed headers and credential lookups at DEBUG: keep them out of debug logs.
for _name in ("botocore", "boto3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.INFO)

SCHEME = "s3"
PAGE_SIZE = 1000  # the most ListObjectsV2 returns per request
# Bucket names as S3 allows them today (3-63 characters, lower case, digits, '.', '-').
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING = {"NoSuchKey", "NotFound", "404"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


def _mtime_ns(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000) * 1000


def _etag(value: object) -> str:
    return str(value or "").strip('"')


def _listed(obj: dict[str, Any], skip: int) -> Listed:
    name: str = obj["Key"][skip:]
    marker = name.endswith("/")  # a zero-length 'name/' key some tools write for a folder
    return (
        name[:-1] if marker else name,
        int(obj["Size"]),
        _mtime_ns(obj["LastModified"]),
        marker,
        _etag(obj.get("ETag")),
    )


class S3Volume(RangedReads, ClosedOnExit):
    """A prefix of an S3 bucket; see the module docstring."""

    scheme = SCHEME

    def __init__(
        self,
        client: Any,
        bucket: str,
        root: str,
        *,
        url: str,
        missing_root_ok: bool = False,
        list_concurrency: int = 1,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.root = root  # '' or 'a/b', no slashes at the ends
        self._prefix = root + "/" if root else ""
        self.url = url
        self.list_concurrency = max(1, list_concurrency)
        # HTTP requests sent, retries included: for tests and benchmarks. Listings run on
        # several threads, and += is no atomic step.
        self.requests = 0
        self._counting = threading.Lock()
        client.meta.events.register("before-send.s3", self._count)
        self._check_root(missing_root_ok)

    def _count(self, **_: object) -> None:
        with self._counting:
            self.requests += 1

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Volume:
        from cairn.settings import get_settings

        missing_root_ok = bool(options.pop("missing_root_ok", False))
        settings = get_settings()
        list_concurrency = int(options.pop("list_concurrency", settings.crawl_list_concurrency))
        if options:
            raise VolumeError(f"S3 volumes take no options (got: {', '.join(sorted(options))})")
        parts = urlsplit(url)
        if parts.scheme.lower() != SCHEME:
            raise VolumeError(f"not an S3 URL: {parts.scheme}://...")
        if parts.query or parts.fragment:
            # Not echoed: a pasted presigned URL carries its signature there.
            raise VolumeError("an s3:// URL takes no query string; it is s3://<bucket>/<prefix>")
        bucket = parts.netloc
        if "@" in bucket or ":" in bucket:
            raise VolumeError(
                "s3:// URLs are s3://<bucket>/<prefix>; credentials come from the AWS chain "
                "(environment, profile, role), the endpoint from CAIRN_S3_ENDPOINT"
            )
        if not _BUCKET.match(bucket):
            raise VolumeError(f"not a valid S3 bucket name: {bucket!r}")
        try:
            root = normalize_relpath(unquote(parts.path).lstrip("/"))
        except VolumeError as exc:
            raise VolumeError(f"bad path in the volume URL: {exc}") from None
        canonical = f"s3://{bucket}" + ("/" + quote_path(root) if root else "")
        return cls(
            make_client(settings),
            bucket,
            root,
            url=canonical,
            missing_root_ok=missing_root_ok,
            list_concurrency=list_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Volume({self.url!r})"

    def close(self) -> None:
        self._client.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _key(self, rel: str) -> str:
        return self._prefix + rel if rel else self.root

    def _pages(self, prefix: str, *, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of ListObjectsV2 under ``prefix``; only the first when ``limit`` is given."""
        token: str | None = None
        size = limit or PAGE_SIZE
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": size}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._client.list_objects_v2(**kwargs)
            yield page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if limit is not None or not page.get("IsTruncated") or not token:
                return

    def _level(self, rel: str) -> Generator[Level, None, None]:
        """Pages of the delimiter ('/') listing of the prefix ``rel`` (below the root): the
        keys right in it and the prefixes one level down."""
        token: str | None = None
        skip = len(self._prefix)
        while True:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": self._prefix + rel,
                "Delimiter": "/",
                "MaxKeys": PAGE_SIZE,
            }
            if token:
                kwargs["ContinuationToken"] = token
            page = self._client.list_objects_v2(**kwargs)
            token = page.get("NextContinuationToken")
            more = bool(page.get("IsTruncated") and token)
            keys = [_listed(obj, skip) for obj in page.get("Contents", [])]
            below = [str(common["Prefix"])[skip:] for common in page.get("CommonPrefixes", [])]
            yield keys, below, more
            if not more:
                return

    def _flat(self, rel: str) -> Iterator[list[Listed]]:
        """Pages of the flat listing of every key below the prefix ``rel``."""
        skip = len(self._prefix)
        for page in self._pages(self._prefix + rel):
            yield [_listed(obj, skip) for obj in page]

    def _first_key(self, prefix: str) -> str | None:
        for page in self._pages(prefix, limit=1):
            return str(page[0]["Key"]) if page else None
        return None

    def _exists_below(self, rel: str) -> bool:
        try:
            return self._first_key(self._key(rel) + "/") is not None
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, rel) from None

    def _check_root(self, missing_ok: bool) -> None:
        """EntryNotFound when the root holds nothing, unless ``missing_ok``: a folder exists
        only while a key lies below it, so an emptied folder is a missing one (see
        ``connectors.registry.FOLDERLESS_SCHEMES``)."""
        try:
            found = self._first_key(self._prefix)
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise EntryNotFound(f"bucket {self.bucket!r} does not exist", path="") from None
            if code.isdigit() and code != "403":
                # S3 names every error of a listing in its XML body; a bare status is some
                # other server's answer (it read as "the volume does not exist (404)").
                raise VolumeError(
                    f"the endpoint answered a bucket listing with HTTP {code} and no S3 error: "
                    "is CAIRN_S3_ENDPOINT an S3 endpoint?",
                    path="",
                ) from None
            raise _translate(exc, "") from None
        except BotoCoreError as exc:
            raise _translate(exc, "") from None
        if found is not None or not self.root:
            return
        if self._head(self.root) is not None:
            raise VolumeError(f"volume root {self.root!r} is not a directory", path="")
        if not missing_ok:
            raise EntryNotFound(f"volume root {self.root!r} does not exist", path="")

    def _head(self, key: str, rel: str = "") -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise _translate(exc, rel) from None
        except BotoCoreError as exc:
            raise _translate(exc, rel) from None

    # -- the Volume protocol -------------------------------------------------------------------

    def walk(self, on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        try:
            yield from flat_entries(self._listed(), on_problem or _log_problem, "object key")
        except (ClientError, BotoCoreError) as exc:
            # Listing is one stream for the whole volume: there is no folder to skip and go on.
            raise _translate(exc, "") from None

    def _listed(self) -> Iterator[Listed]:
        if self.list_concurrency == 1:
            for page in self._flat(""):
                yield from page
            return
        yield from listed_by_prefix(self._level, self._flat, self.list_concurrency, "cairn-s3-list")

    def stat(self, path: str) -> Entry:
        rel = normalize_relpath(path)
        if not rel:
            return Entry("", 0, 0, True)
        head = self._head(self._key(rel), rel)
        if head is None:
            if self._exists_below(rel):
                return Entry(rel, 0, 0, True)
            raise EntryNotFound(f"{rel!r} does not exist in the volume", path=rel)
        return Entry(
            rel,
            int(head["ContentLength"]),
            _mtime_ns(head["LastModified"]),
            False,
            _etag(head.get("ETag")),
        )

    def _fetch(self, rel: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self._client.get_object(
                Bucket=self.bucket,
                Key=self._key(rel),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
            with answer["Body"] as body:
                return cast(bytes, body.read())
        except ClientError as exc:
            if _code(exc) in _MISSING:
                if self._exists_below(rel):
                    raise NotAFile(f"{rel!r} is a directory", path=rel) from None
                raise EntryNotFound(f"{rel!r} does not exist in the volume", path=rel) from None
            if _code(exc) == "InvalidRange":
                return b""
            raise _translate(exc, rel) from None
        except BotoCoreError as exc:
            raise _translate(exc, rel) from None

    # -- writing (cairn snapshot) --------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Stores ``data`` as the object at ``path`` with one PutObject: S3 makes it visible
        whole or not at all, never half-written."""
        rel = normalize_relpath(path)
        if not rel:
            raise NotAFile("the volume root is a folder, not a file", path="")
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, rel) from None


# -- clients and errors --------------------------------------------------------------------------


def make_client(settings: Any) -> Any:
    """A boto3 S3 client from the standard credential chain and the ``CAIRN_S3_*`` settings."""
    style = settings.s3_addressing_style
    config = Config(
        # A kept-alive connection per concurrent listing and per crawl reader thread.
        max_pool_connections=settings.crawl_list_concurrency + settings.crawl_read_concurrency,
        connect_timeout=settings.http_timeout,
        read_timeout=settings.http_timeout,
        retries={"mode": "standard", "max_attempts": max(1, min(settings.http_retries, 10))},
        s3={"addressing_style": style},
        user_agent_extra="cairn",
    )
    session = boto3.session.Session()
    region = settings.s3_region or session.region_name or "us-east-1"
    try:
        return session.client(
            "s3", endpoint_url=settings.s3_endpoint or None, region_name=region, config=config
        )
    except ValueError as exc:
        raise VolumeError(f"CAIRN_S3_ENDPOINT or CAIRN_S3_REGION is not valid ({exc})") from None


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _translate(exc: Exception, rel: str) -> VolumeError:
    where = repr(rel) if rel else "the volume"
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(
            f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with a role)",
            path=rel,
        )
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in _DENIED:
            return AccessDenied(
                f"{where}: S3 refused access ({code}); check the AWS credentials and their "
                "permissions",
                path=rel,
            )
        if code in _MISSING or code == "NoSuchBucket":
            return EntryNotFound(f"{where} does not exist ({code})", path=rel)
        return VolumeError(f"{where}: S3 error {code}", path=rel)
    if isinstance(exc, SSLError):
        # An https:// endpoint that serves plain HTTP (or the reverse), or a certificate
        # this machine does not trust.
        return VolumeError(
            f"{where}: TLS with the S3 endpoint failed (SSLError); check that "
            "CAIRN_S3_ENDPOINT's scheme (http:// or https://) is the one it serves, and that "
            "its certificate is trusted (AWS_CA_BUNDLE)",
            path=rel,
        )
    if isinstance(exc, ReadTimeoutError):
        return VolumeError(
            f"{where}: the S3 endpoint did not answer within CAIRN_HTTP_TIMEOUT (ReadTimeoutError)",
            path=rel,
        )
    if isinstance(exc, EndpointConnectionError) or "Connect" in type(exc).__name__:
        return VolumeUnreachable(
            f"{where}: cannot reach the S3 endpoint ({type(exc).__name__}); check "
            "CAIRN_S3_ENDPOINT (and CAIRN_S3_ADDRESSING_STYLE=path, which most S3-compatible "
            "stores need: virtual-hosted requests go to <bucket>.<endpoint host>) or the network",
            path=rel,
        )
    return VolumeError(f"{where}: {type(exc).__name__}", path=rel)


def _log_problem(path: str, reason: str) -> None:
    log.warning("walk: %s: %s", path or "<root>", reason)
