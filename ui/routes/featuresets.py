"""Feature-set pages: the list (with label filters), one set with its versions, the features
of a chosen version (values, or the first rows of a table), a diff between two versions, links
to the assets it depends on, and copy-ready snippets to fetch it.

Everything comes from the feature store's public API (DESIGN section 4): ``/featuresets``,
``/featuresets/{name}``, ``.../versions``, ``.../versions/{v}`` and ``.../diff``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cairn.wording import scalar
from ui.backend import ApiError, Reader, ServiceDown
from ui.render import curl_key, note_down, render
from ui.state import PAGE_SIZE, SearchState
from ui.visitor import ReaderDep

router = APIRouter(include_in_schema=False)

ROW_LIMIT = 20  # first rows of a table shown on its page
MAX_VERSIONS = 1000
MAX_VERSION = 2**63 - 1


def _items(body: Any) -> list[dict[str, Any]]:
    """The ``items`` of a list answer."""
    items = body.get("items") if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _version(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= MAX_VERSION else None


def unavailable(request: Request, exc: ServiceDown) -> HTMLResponse:
    note_down(request, exc)
    return render(
        request,
        "error.html",
        status_code=503,
        title="Feature store unavailable",
        message="The feature store did not answer, so this page cannot be shown.",
    )


def not_found(request: Request, name: str, exc: ApiError) -> HTMLResponse:
    status = 404 if exc.status == 404 else 400
    return render(
        request,
        "error.html",
        status_code=status,
        title="Feature set not found" if status == 404 else "Bad request",
        message=exc.detail,
        query=name,
    )


@router.get("/featuresets", response_class=HTMLResponse)
async def featureset_list(request: Request, api: ReaderDep) -> HTMLResponse:
    state, notices = SearchState.parse(request.query_params, base="/featuresets")
    query = {"q": state.q or None, "labels": state.label_map(), "limit": PAGE_SIZE}
    body: dict[str, Any] | None = None
    try:
        try:
            body = await api.featuresets(**query, cursor=state.cursor or None)
        except ApiError:
            if not state.cursor:
                raise
            notices.append("That page link has expired, so this is the first page again.")
            state.cursor, state.back, state.page = "", [], 1
            body = await api.featuresets(**query)
    except ServiceDown as exc:
        note_down(request, exc)
    except ApiError as exc:
        notices.append(f"The feature store could not run this search: {exc.detail}")
        body = {"items": [], "total": 0}
    items = _items(body)
    total = body.get("total") if isinstance(body, dict) else None
    if not isinstance(total, int):
        total = len(items)
    # Label facets from the sets on this page: what narrowing the list further can give.
    counts: Counter[str] = Counter()
    for item in items:
        labels = item.get("labels")
        if isinstance(labels, dict):
            for key, value in labels.items():
                counts[f"{key}:{scalar(value)}"] += 1
    facets = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:30]
    for label in state.labels:
        if label not in counts:
            facets.insert(0, (label, total))
    return render(
        request,
        "featuresets.html",
        status_code=503 if body is None else 200,
        state=state,
        notices=notices,
        available=body is not None,
        items=items,
        total=total,
        next_cursor=body.get("next_cursor") if isinstance(body, dict) else None,
        label_facets=facets,
        page_size=PAGE_SIZE,
    )


@router.get("/featuresets/{name}", response_class=HTMLResponse)
async def featureset_page(name: str, request: Request, api: ReaderDep) -> HTMLResponse:
    raw_version = request.query_params.get("v")
    wanted = _version(raw_version)
    notices: list[str] = []
    if raw_version and wanted is None:
        notices.append(f"“{raw_version}” is not a version number, so this is the latest version.")
    # A table's JSON carries a page of rows: ask for the first few only.
    versions_res: dict[str, Any] | BaseException
    chosen_res: dict[str, Any] | BaseException
    versions_res, chosen_res = await asyncio.gather(
        api.featureset_versions(name, MAX_VERSIONS),
        api.featureset(name, wanted, ROW_LIMIT),
        return_exceptions=True,
    )
    for res in (versions_res, chosen_res):
        if isinstance(res, ServiceDown):
            return unavailable(request, res)
    if isinstance(versions_res, ApiError):
        return not_found(request, name, versions_res)
    if isinstance(chosen_res, ApiError):
        if chosen_res.status != 404:
            return not_found(request, name, chosen_res)
        # No such version, or every version is deleted: show the newest there is.
        if wanted is not None:
            notices.append(f"Version {wanted} does not exist; this is the latest version.")
        else:
            notices.append("Every version of this set is deleted; this is the newest one.")
        newest = _newest(versions_res)
        if newest is None:
            return not_found(request, name, chosen_res)
        try:
            chosen_res = await api.featureset(name, newest, ROW_LIMIT)
        except ServiceDown as exc:
            return unavailable(request, exc)
        except ApiError as exc:
            return not_found(request, name, exc)
    if isinstance(chosen_res, BaseException):
        raise chosen_res
    if isinstance(versions_res, BaseException):
        raise versions_res
    fs: dict[str, Any] = chosen_res
    versions = _items(versions_res)
    version = int(fs.get("version") or 0)
    live = [int(v.get("version") or 0) for v in versions if not v.get("deleted")]
    latest = max(live, default=version)
    table: dict[str, Any] | None = fs["table"] if isinstance(fs.get("table"), dict) else None
    data: dict[str, Any] = fs["data"] if isinstance(fs.get("data"), dict) else {}
    base = api.featurestore.url
    quoted = quote(name, safe="")
    online, lookup, lookup_keys, lookup_error = await _online(request, api, name, fs)
    return render(
        request,
        "featureset.html",
        online=online,
        lookup=lookup,
        lookup_keys=lookup_keys,
        lookup_error=lookup_error,
        fs=fs,
        name=name,
        version=version,
        latest=latest,
        versions=versions,
        more_versions=max(0, int(versions_res.get("total") or 0) - len(versions)),
        features=[f for f in fs.get("features") or [] if isinstance(f, dict)],
        table=table,
        columns=[c for c in (table or {}).get("columns") or [] if isinstance(c, dict)],
        rows=[r for r in data.get("rows") or [] if isinstance(r, dict)],
        row_names=data.get("columns") or [],
        labels=list((fs.get("labels") or {}).items()),
        notices=notices,
        diff_from=_previous(versions, version),
        snippets=snippets(base, quoted, name, version, table is not None, curl_key(request)),
    )


async def _online(
    request: Request, api: Reader, name: str, fs: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, str], str | None]:
    """A feature table's online state and, when ``key.<entity>`` is asked, its online values."""
    if not fs.get("feature_table"):
        return None, [], {}, None
    try:
        online = await api.online_state(name)
    except ServiceDown:
        return None, [], {}, None
    keys = {
        k.removeprefix("key."): v for k, v in request.query_params.items() if k.startswith("key.")
    }
    if online is None or not keys:
        return online, [], keys, None
    try:
        answer = await api.online_lookup(name, keys)
    except (ApiError, ServiceDown) as exc:
        return online, [], keys, str(getattr(exc, "detail", None) or exc)
    entities = set(keys)
    rows = [
        {
            "name": feature,
            "value": result["values"][0],
            "status": result["statuses"][0],
            "ts": result["event_timestamps"][0],
        }
        for feature, result in zip(
            answer["metadata"]["feature_names"], answer["results"], strict=True
        )
        if feature not in entities
    ]
    return online, rows, keys, None


def _newest(versions_body: Any) -> int | None:
    numbers = [int(v.get("version") or 0) for v in _items(versions_body)]
    return max(numbers) if numbers else None


def _unknown_version(raw: str | None, numbers: list[int]) -> str | None:
    """What is wrong with a version asked for in a query string (None: nothing, or none
    asked for)."""
    if not raw:
        return None
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    listed = f"v{min(numbers)} to v{max(numbers)}" if numbers else "none"
    if _version(raw) is None:
        return f"“{shown}” is not a version number (its versions are {listed})"
    if int(raw) not in numbers:
        return f"there is no version {int(raw)} (its versions are {listed})"
    return None


def _previous(versions: list[dict[str, Any]], version: int) -> int | None:
    older = [int(v.get("version") or 0) for v in versions if int(v.get("version") or 0) < version]
    return max(older) if older else None


def snippets(
    base: str, quoted: str, name: str, version: int, tabular: bool, key: str = ""
) -> dict[str, str]:
    """Copy-ready lines; ``key`` is the curl option that sends a key, when reads need one (the
    Python clients send CAIRN_API_KEY by themselves)."""
    url = f"{base}/api/v1/featuresets/{quoted}"
    out = {
        "curl, latest": f"curl {key}'{url}'",
        f"curl, version {version}": f"curl {key}'{url}/versions/{version}'",
    }
    if tabular:
        out["curl, as Parquet"] = (
            f"curl {key}-H 'accept: application/vnd.apache.parquet' \\\n"
            f"     -o {name}-v{version}.parquet '{url}/versions/{version}'"
        )
        python = (
            "from cairn.client import FeatureStoreClient\n\n"
            f"with FeatureStoreClient({base!r}) as fs:\n"
            f"    table = fs.get_table({name!r}, version={version})  # a pyarrow Table\n"
            f"    latest = fs.get_dataframe({name!r})  # the latest version, as pandas\n"
        )
    else:
        python = (
            "from cairn.client import FeatureStoreClient\n\n"
            f"with FeatureStoreClient({base!r}) as fs:\n"
            f"    latest = fs.get({name!r})\n"
            f"    pinned = fs.get({name!r}, version={version})\n"
            "    values = {f.name: f.value for f in pinned.features}\n"
        )
    out["Python"] = python
    return out


@router.get("/featuresets/{name}/diff", response_class=HTMLResponse)
async def featureset_diff(name: str, request: Request, api: ReaderDep) -> HTMLResponse:
    try:
        versions_body = await api.featureset_versions(name, MAX_VERSIONS)
    except ServiceDown as exc:
        return unavailable(request, exc)
    except ApiError as exc:
        return not_found(request, name, exc)
    versions = _items(versions_body)
    numbers = [int(v.get("version") or 0) for v in versions]
    live = [int(v.get("version") or 0) for v in versions if not v.get("deleted")]
    notices: list[str] = []
    asked_new, asked_old = request.query_params.get("to"), request.query_params.get("from")
    new_problem = _unknown_version(asked_new, numbers)
    old_problem = _unknown_version(asked_old, numbers)
    new, old = _version(asked_new), _version(asked_old)
    both_asked = new in numbers and old in numbers
    if new not in numbers:
        # The latest is the newest live version, as the API serves it (a deleted one is not).
        new = max(live or numbers, default=None)
        if new_problem:
            notices.append(f"“to”: {new_problem}; the latest, v{new}, is shown instead.")
    if old not in numbers:
        old = _previous(versions, new or 0) or new
        if old_problem:
            instead = f"; v{old}, the one before v{new}, is shown instead" if old != new else ""
            notices.append(f"“from”: {old_problem}{instead}.")
    if old is None or new is None:
        return render(
            request,
            "error.html",
            status_code=404,
            title="Nothing to compare",
            message=f"The feature set “{name}” has no versions.",
        )
    diff = None
    if old == new and not both_asked:
        # A version compared with itself, not asked for, would only say that nothing changed.
        notices.append(f"“{name}” has no version before v{new} to compare it with.")
    else:
        try:
            diff = await api.featureset_diff(name, old, new)
        except ServiceDown as exc:
            return unavailable(request, exc)
        except ApiError as exc:
            return not_found(request, name, exc)
    by_number = {int(v.get("version") or 0): v for v in versions}
    return render(
        request,
        "featureset_diff.html",
        name=name,
        old=old,
        new=new,
        old_meta=by_number.get(old, {}),
        new_meta=by_number.get(new, {}),
        versions=versions,
        diff=diff,
        notices=notices,
    )
