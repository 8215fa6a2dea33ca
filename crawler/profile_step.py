"""The crawl's profile step: a column profile and the declared checks of each changed asset's
data file, sent to the metric store (``CAIRN_CRAWL_PROFILES``).

Profiles live in the feature store's metric store, reached over HTTP, rather than in the
catalogue: one store keeps every profile with its sketches (drift compares distributions, not
summaries), on both backends, and the catalogue stays an index of metadata. Only assets this
crawl upserted are looked at (an unchanged manifest with unchanged data is never parsed), and
the metric store skips a file whose size and mtime it has seen: an unchanged file is not
profiled again. Problems are warnings: a file that cannot be profiled, or a metric store that
does not answer, never stops the crawl; failed checks are warnings with field
``checks.<name>``, or errors (exit code 2) with ``cairn crawl --fail-on-checks``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from cairn import __version__
from cairn.settings import Settings
from connectors.base import Entry, Volume
from crawler.problems import Problem
from featurestore_service.metrics.checks import Check, evaluate
from featurestore_service.metrics.profile import profile_csv, profile_parquet

log = logging.getLogger("cairn.crawler.profile")

PARQUET = (".parquet", ".parq")
CSV = (".csv", ".tsv")
CHECKS_FIELD = "checks"


def _relative(volume: Volume, location: Any) -> str | None:
    if not isinstance(location, str):
        return None
    root = volume.url_for("").rstrip("/") + "/"
    if not location.startswith(root):
        return None
    return location[len(root) :].strip("/")


def _data_entry(tree: Any, rel: str) -> Entry | None:
    base = rel.rpartition("/")[0]
    for f in tree.files_by_dir.get(base, ()):
        if f.path == rel:
            return f
    found: Entry | None = tree.first_data_file_below(rel)
    return found


def _checks(doc: dict[str, Any], report: Any) -> list[Check]:
    """The manifest's valid checks; each invalid one is a warning naming its field."""
    declared = (doc.get("extra") or {}).get("checks")
    if declared is None:
        return []
    path = doc.get("manifest_path", "")
    if not isinstance(declared, list):
        report.warnings.append(
            Problem(
                path=path, field=CHECKS_FIELD, reason="checks must be a list", severity="warning"
            )
        )
        return []
    valid = []
    for index, item in enumerate(declared):
        try:
            valid.append(Check.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (index, *first["loc"]))
            report.warnings.append(
                Problem(
                    path=path,
                    field=f"{CHECKS_FIELD}.{where}",
                    reason=f"check not evaluated: {first['msg']}",
                    severity="warning",
                )
            )
    return valid


def profile_assets(
    settings: Settings, volume: Volume, tree: Any, upserts: list[dict[str, Any]], report: Any
) -> None:
    headers = {"user-agent": f"cairn-crawler/{__version__}", "content-type": "application/json"}
    if settings.api_key is not None:
        headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    base = settings.featurestore_url.rstrip("/") + "/api/v1/metrics/assets/"
    with httpx.Client(headers=headers, timeout=settings.http_timeout) as client:
        for doc in upserts:
            if doc.get("deleted"):
                continue
            rel = _relative(volume, doc.get("location"))
            entry = _data_entry(tree, rel) if rel is not None else None
            if entry is None or not entry.path.lower().endswith(PARQUET + CSV):
                continue
            try:
                if not _profile_one(settings, volume, client, base, doc, entry, report):
                    return
            except Exception as exc:  # one odd file never stops the crawl
                report.warnings.append(
                    Problem(
                        path=entry.path,
                        reason=f"profile not computed: {type(exc).__name__}: {exc}"[:500],
                        severity="warning",
                    )
                )


def _profile_one(
    settings: Settings,
    volume: Volume,
    client: httpx.Client,
    base: str,
    doc: dict[str, Any],
    entry: Entry,
    report: Any,
) -> bool:
    """Profiles one file; False when the metric store cannot be reached (stop trying)."""
    url = base + quote(doc["id"], safe="")
    fingerprint = f"{entry.path}:{entry.size}:{entry.mtime_ns}"
    try:
        known = client.get(url + "/profile")
    except httpx.TransportError as exc:
        report.warnings.append(
            Problem(
                path=settings.featurestore_url,
                reason=f"profiles not sent: the metric store does not answer ({exc}); "
                "they are computed on the next crawl that changes the data",
                severity="warning",
            )
        )
        return False
    if (
        known.status_code == 200
        and known.json().get("source", {}).get("fingerprint") == fingerprint
    ):
        return True
    checks = _checks(doc, report)
    sample = settings.metrics_sample_rows
    with volume.open(entry.path) as f:
        if entry.path.lower().endswith(PARQUET):
            profile = profile_parquet(f, sample_rows=sample, seed=entry.size)
            results = []
        else:
            profile, table = profile_csv(f, sample_rows=sample)
            results = evaluate(checks, table) if checks else []
    if checks and entry.path.lower().endswith(PARQUET):
        with volume.open(entry.path) as f:
            results = evaluate(checks, f)
    body = {
        "fingerprint": fingerprint,
        "location": doc.get("location"),
        "profile": profile,
        "checks": results,
    }
    sent = client.put(url + "/profile", content=orjson.dumps(body))
    if sent.status_code not in (200, 201):
        report.warnings.append(
            Problem(
                path=entry.path,
                reason=f"profile refused by the metric store: HTTP {sent.status_code} "
                f"{sent.text[:300]}",
                severity="warning",
            )
        )
    strict = settings.crawl_fail_on_checks
    for result in results:
        if not result["passed"]:
            (report.errors if strict else report.warnings).append(
                Problem(
                    path=doc.get("manifest_path", entry.path),
                    field=f"{CHECKS_FIELD}.{result['name']}",
                    reason=f"check {result['name']} failed on {entry.path}: observed "
                    f"{result['observed']}; failing sample {result['failing']}",
                    severity="error" if strict else "warning",
                )
            )
    return True
