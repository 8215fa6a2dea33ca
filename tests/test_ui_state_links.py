"""The search page's links (``SearchState.url``) are built by hand for speed: each must be
exactly what ``urlencode`` of the changed state gives, and parse back to that state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from ui.state import SHORT_VALUE, SearchState, _short_encoded

_TEXT = st.text(max_size=SHORT_VALUE + 8)
_CURSOR = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8)
_STATES = st.builds(
    SearchState,
    q=_TEXT,
    tags=st.lists(_TEXT, max_size=3),
    type=_TEXT,
    labels=st.lists(_TEXT, max_size=2),
    owner=_TEXT,
    deleted=st.booleans(),
    cursor=st.one_of(st.just(""), _CURSOR),
    back=st.lists(_CURSOR, max_size=3),
    page=st.integers(1, 10**9),
    base=st.sampled_from(["/", "/search"]),
    drift=st.sampled_from(["", "drifted", "stable"]),
)
_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "q": _TEXT,
        "tags": st.lists(_TEXT, max_size=3),
        "type": _TEXT,
        "owner": _TEXT,
        "cursor": st.one_of(st.just(""), _CURSOR),
        "back": st.lists(_CURSOR, max_size=2),
        "page": st.integers(1, 99),
        "deleted": st.booleans(),
        "drift": st.sampled_from(["", "drifted"]),
    },
)


def _by_urlencode(state: SearchState, **changes: Any) -> str:
    """The link as the page built it before: the changed state, every value urlencoded."""
    state = replace(state, **changes)
    pairs: list[tuple[str, str]] = []
    if state.q:
        pairs.append(("q", state.q))
    pairs += [("tag", t) for t in state.tags]
    if state.type:
        pairs.append(("type", state.type))
    pairs += [("label", lab) for lab in state.labels]
    if state.owner:
        pairs.append(("owner", state.owner))
    if state.drift:
        pairs.append(("drift", state.drift))
    if state.deleted:
        pairs.append(("deleted", "1"))
    if state.cursor:
        pairs.append(("cursor", state.cursor))
        pairs.append(("page", str(state.page)))
        if state.back:
            pairs.append(("back", ".".join(state.back)))
    return f"{state.base}?{urlencode(pairs)}" if pairs else state.base


@settings(max_examples=400, deadline=None)
@given(_STATES, _CHANGES)
def test_links_are_what_urlencode_gives(state: SearchState, changes: dict[str, Any]) -> None:
    assert state.url(**changes) == _by_urlencode(state, **changes)


def test_a_link_parses_back_to_its_state() -> None:
    state = SearchState(
        q="sales & co+ü", tags=["a b", "x/y"], type="table", labels=["env:prod"], owner="o"
    )
    link = state.with_tag("z=1")
    path, _, query = link.partition("?")
    parsed, notices = SearchState.parse(QueryParams(query), base=path)
    assert notices == []
    assert (parsed.q, parsed.tags, parsed.labels) == (state.q, ["a b", "x/y", "z=1"], state.labels)


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="tagz"):
        SearchState().url(tagz=["a"])


def test_long_values_are_not_kept() -> None:
    # A UI sent many distinct long searches or cursors must not grow its table of encodings.
    _short_encoded.cache_clear()
    long_q = "x" * (SHORT_VALUE + 1)
    SearchState(q=long_q, cursor="c" * 4000, back=["b" * 4000] * 20, page=7).url()
    assert _short_encoded.cache_info().currsize == 1  # the page number alone
    SearchState(tags=["gold"]).url()
    assert _short_encoded.cache_info().currsize == 2


def test_tags_are_one_filter_whatever_their_case() -> None:
    """The catalogue matches tags in lower case: ``tag=Sales`` is the facet ``sales``'s
    filter, shown as on, and a result's ``Sales`` chip toggles it off rather than adding it."""
    state, _ = SearchState.parse(QueryParams("tag=Sales&tag=sales&tag=GOLD"), base="/")
    assert state.tags == ["sales", "gold"]
    assert state.with_tag("SALES") == state.without_tag("sales") == "/?tag=gold"
    assert state.with_tag("Raw") == "/?tag=sales&tag=gold&tag=raw"
