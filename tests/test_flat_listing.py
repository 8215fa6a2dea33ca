"""The S3 and ADLS walks' listing by prefix (connectors.flat.listed_by_prefix) against an
in-memory store that pages its flat and delimiter listings as S3 does: whatever the number of
listings at once, the keys come out as the one flat listing gives them. The same walks run on a
real SeaweedFS and Azurite in test_volume_contract.py and test_connectors_remote.py."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator

import pytest

from connectors import flat
from connectors.flat import Level, Listed, flat_entries, listed_by_prefix

ROOT = "lake/"


class Store:
    """Keys in name order (code points, as S3 orders UTF-8), listed in pages of ``page``."""

    def __init__(self, keys: list[str], page: int = 1000) -> None:
        self.keys = sorted(keys)
        self.page = page
        self.flat_asked: list[str] = []
        self.levels_asked: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.barrier: threading.Barrier | None = None
        self.fail: str | None = None

    def _listed(self, key: str) -> Listed:
        name = key[len(ROOT) :]
        marker = name.endswith("/")
        return (name[:-1] if marker else name, len(key), 1, marker, "e-" + key)

    def _request(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def flat(self, rel: str) -> Iterator[list[Listed]]:
        with self.lock:
            self.flat_asked.append(rel)
        if self.barrier is not None:
            self.barrier.wait(timeout=10)  # passes only when that many listings run at once
        if rel == self.fail:
            raise RuntimeError(f"cannot list {rel}")
        below = [key for key in self.keys if key.startswith(ROOT + rel)]
        for start in range(0, max(len(below), 1), self.page):
            self._request()
            page = [self._listed(key) for key in below[start : start + self.page]]
            self._done()
            yield page

    def level(self, rel: str) -> Generator[Level, None, None]:
        with self.lock:
            self.levels_asked.append(rel)
        items: list[str | Listed] = []
        for key in self.keys:
            if not key.startswith(ROOT + rel):
                continue
            rest = key[len(ROOT + rel) :]
            if "/" in rest:
                prefix = rel + rest[: rest.index("/") + 1]
                if not items or items[-1] != prefix:
                    items.append(prefix)
            else:
                items.append(self._listed(key))
        for start in range(0, max(len(items), 1), self.page):
            self._request()
            chunk = items[start : start + self.page]
            self._done()
            keys = [item for item in chunk if not isinstance(item, str)]
            # Folders first, then by folder name: "a/" before "a b/", as SeaweedFS answers.
            prefixes = sorted((item for item in chunk if isinstance(item, str)), key=_folder)
            yield keys, prefixes, start + self.page < len(items)

    def one_flat_listing(self) -> list[Listed]:
        return [self._listed(key) for key in self.keys if key.startswith(ROOT)]


def _folder(prefix: str) -> str:
    return prefix.rstrip("/")


ODD = [
    "lake/",  # the root's own marker
    "lake/a",  # a key named as a folder ("a/x" below)
    "lake/a b/x",  # sorts before "a/": ' ' < '/'
    "lake/a b",
    "lake/a.txt",
    "lake/a/",  # a folder marker
    "lake/a/x",
    "lake/a//y",  # unclean names, reported
    "lake/a/./z",
    "lake/a/b/",
    "lake/a/b/c",
    "lake/a0",  # after everything below "a/"
    "lake/m",
    "lake/m/",
    "lake/ü/x",
    "lake/\U0001f600/y",
    "lake/~",
    "lakeside/x",  # beside the root, not in it
    "other/y",
]


@pytest.mark.parametrize("page", [1, 2, 3, 1000])
@pytest.mark.parametrize("concurrency", [2, 3, 4, 16])
def test_units_listed_at_once_come_out_in_name_order(page: int, concurrency: int) -> None:
    store = Store(ODD, page)
    one = store.one_flat_listing()

    assert list(listed_by_prefix(store.level, store.flat, concurrency)) == one
    assert store.most_in_flight <= concurrency

    def entries(listed: list[Listed]) -> tuple[list[object], list[tuple[str, str]]]:
        problems: list[tuple[str, str]] = []
        walked = flat_entries(listed, lambda p, r: problems.append((p, r)), "object key")
        return [(e.path, e.is_dir, e.size) for e in walked], problems

    walked, problems = entries(list(listed_by_prefix(store.level, store.flat, concurrency)))
    assert (walked, problems) == entries(one)
    assert sorted(p for p, _ in problems) == ["a", "a b", "a/./z", "a//y", "m"]


def test_many_prefixes_many_levels() -> None:
    keys = [
        f"lake/p{i:03d}/{kind}/f{j}" for i in range(120) for kind in ("x", "y") for j in range(3)
    ]
    keys += [f"lake/p{i:03d}.json" for i in range(0, 120, 7)]
    keys += [f"lake/big/f{j:05d}" for j in range(500)]
    store = Store(keys, page=7)

    for concurrency in (2, 8, 16):
        assert list(listed_by_prefix(store.level, store.flat, concurrency)) == (
            store.one_flat_listing()
        )
        assert store.most_in_flight <= concurrency


def test_few_prefixes_are_cut_a_level_further_down() -> None:
    # One dataset folder at the root: its partitions are what is listed at once.
    keys = [f"lake/sales/year={y}/part-{j}.parquet" for y in range(2018, 2024) for j in range(4)]
    keys += ["lake/sales/_SUCCESS", "lake/README.md"]
    store = Store(keys, page=10)

    assert list(listed_by_prefix(store.level, store.flat, 4)) == store.one_flat_listing()
    assert sorted(store.flat_asked) == [f"sales/year={y}/" for y in range(2018, 2024)]


def test_a_prefix_of_more_than_a_page_is_listed_flat_and_looked_into_once() -> None:
    keys = [f"lake/big/f{j:03d}" for j in range(50)] + ["lake/small/a/x", "lake/small/b/y"]
    store = Store(keys, page=10)

    assert list(listed_by_prefix(store.level, store.flat, 8)) == store.one_flat_listing()
    assert store.levels_asked.count("big/") == 1
    assert "big/" in store.flat_asked and "small/" not in store.flat_asked


def test_the_listings_do_run_at_once() -> None:
    store = Store([f"lake/d{i:02d}/f" for i in range(20)])
    store.barrier = threading.Barrier(4)  # broken (an error) unless 4 listings wait together

    listed = list(listed_by_prefix(store.level, store.flat, 4))

    assert listed == store.one_flat_listing()


def test_a_listing_error_is_raised_where_that_prefix_comes() -> None:
    store = Store([f"lake/d{i}/f" for i in range(6)], page=1)
    store.fail = "d3/"
    seen: list[str] = []

    with pytest.raises(RuntimeError, match="cannot list d3/"):
        for listed in listed_by_prefix(store.level, store.flat, 4):
            seen.append(listed[0])

    assert seen == ["d0/f", "d1/f", "d2/f"]


def test_a_walk_left_early_stops_its_listings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flat, "AHEAD", 1)
    store = Store([f"lake/d{i}/f{j:03d}" for i in range(8) for j in range(100)], page=1)

    walk = listed_by_prefix(store.level, store.flat, 4, name="cairn-test-early")
    assert next(walk)[0] == "d0/f000"
    walk.close()

    # Each listing ahead waits on its full queue, and stops once the walk is closed.
    for thread in list(threading.enumerate()):
        if thread.name.startswith("cairn-test-early"):
            thread.join(timeout=10)
            assert not thread.is_alive()
    assert sum(1 for _ in store.flat_asked) <= 4 * flat.WINDOW


def test_a_level_listing_of_no_page_lists_nothing() -> None:
    # A client may hand back no page at all for an empty prefix (rather than an empty one).
    def level(rel: str) -> Generator[Level, None, None]:
        yield from ()

    def never(rel: str) -> Iterator[list[Listed]]:
        raise AssertionError(rel)

    assert list(listed_by_prefix(level, never, 4)) == []


def test_prefixes_enough_for_half_the_listings_are_not_cut_further() -> None:
    # Each prefix is a request of its own: 12 at 16 listings are listed as they are, 3 at 8
    # are looked into.
    store = Store([f"lake/z{i:02d}/d{j}/f" for i in range(12) for j in range(10)])
    assert list(listed_by_prefix(store.level, store.flat, 16)) == store.one_flat_listing()
    assert store.levels_asked == [""] and len(store.flat_asked) == 12

    store = Store([f"lake/z{i:02d}/d{j}/f" for i in range(3) for j in range(10)])
    assert list(listed_by_prefix(store.level, store.flat, 8)) == store.one_flat_listing()
    assert sorted(store.levels_asked) == ["", "z00/", "z01/", "z02/"]
    assert len(store.flat_asked) == 30
