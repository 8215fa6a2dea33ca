"""Where a cold crawl's wall time goes: what the catalogue waits for, and when.

Runs ``cairn crawl <tree> --catalogue URL --json`` into a fresh catalogue (as bench_crawl's
crawl-e2e does, page cache warmed by a ``find`` first), both processes started through this
module so each writes timestamped marks to one file: the crawler's start, the end of its
imports, its walk, each bulk push and its HTTP request (and the crawler's process CPU at each
mark); the catalogue's parse of each bulk body and its ``Catalogue.bulk`` call. Prints the
marks as a timeline, then for each push the time the catalogue sat idle before it (waiting for
the crawler to fill the batch, or for the request to arrive), how long the request took to
reach the catalogue (encoded, sent, received), its parse there, the bulk call, the answer's way
back and its reading in the crawler; summed before and after the walk's end.

On this machine it shows two phases: during the walk the crawler's own process is the bottleneck
(about a core, walking and assembling) and the catalogue waits between batches; after the walk
the catalogue is the bottleneck (one process, one GIL) while the other core is partly idle.

Run: ``python -m benchmarks.probe_crawl_timeline [--files N] [--manifests M] [--runs R]``.
The marks wrap functions of the crawler and the catalogue by name: a probe, not a benchmark.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# benchmarks.common (httpx, the servers' helpers) is imported by the probe only: the crawler
# and the catalogue run this module too, and must start as `cairn` does.
if TYPE_CHECKING:
    from pathlib import Path

ROLE_ENV = "BENCH_TIMELINE_ROLE"
LOG_ENV = "BENCH_TIMELINE_LOG"
ENTRY = ("-m", "benchmarks.probe_crawl_timeline")


# --- inside the crawler and the catalogue ------------------------------------------------------


def _mark(what: str) -> None:
    # Appended line by line (one write each): both processes share the file.
    with open(os.environ[LOG_ENV], "a") as log:
        log.write(f"{time.time():.6f} {time.process_time():.4f} {os.getpid()} {what}\n")


def _marked(owner: Any, name: str, label: str, size: Callable[..., int] | None = None) -> None:
    """Marks the start and end of ``owner.name`` (a function or a coroutine function)."""
    inner = getattr(owner, name)

    def start(args: tuple[Any, ...]) -> None:
        _mark(f"{label} start {size(*args) if size else ''}".rstrip())

    if inspect.iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            start(args)
            try:
                return await inner(*args, **kwargs)
            finally:
                _mark(f"{label} end")

        setattr(owner, name, wrapped_async)
        return

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        start(args)
        try:
            return inner(*args, **kwargs)
        finally:
            _mark(f"{label} end")

    setattr(owner, name, wrapped)


def _run_cli() -> None:
    from cairn.cli import app

    sys.argv = ["cairn", *sys.argv[1:]]
    app()


def _as_crawler() -> None:
    _mark("crawler started")
    import crawler.crawl as crawl
    import crawler.push as push

    _mark("crawler imported")
    _marked(crawl, "walk_tree", "walk")
    _marked(push.CataloguePusher, "bulk", "push", lambda _self, items: len(items))
    # The request itself, without encoding the batch before it and reading the answer after.
    _marked(push.CataloguePusher, "_call", "call")
    try:
        _run_cli()
    finally:
        _mark("crawler exits")


def _as_catalogue() -> None:
    import catalogue_service.service as service

    _marked(service.Catalogue, "bulk", "bulk", lambda _self, items: len(items))
    # The bulk route parses the body it received before it calls Catalogue.bulk.
    import catalogue_service.api.routes.assets as routes

    _marked(routes, "parse_json", "parse")
    _run_cli()


# --- the probe ---------------------------------------------------------------------------------


def _crawl_once(root: Path, log: Path) -> float:
    from benchmarks.common import PYTHON, ROOT, CatalogueProcess, bench_env

    log.write_text("")
    # The keywords are ROLE_ENV and LOG_ENV: the catalogue's extra environment.
    with CatalogueProcess(
        "timeline", None, ENTRY, BENCH_TIMELINE_ROLE="catalogue", BENCH_TIMELINE_LOG=str(log)
    ) as catalogue:
        env = bench_env(catalogue.data_dir)
        env.update({ROLE_ENV: "crawler", LOG_ENV: str(log)})
        started = time.time()
        done = subprocess.run(
            [PYTHON, *ENTRY, "crawl", str(root), "--catalogue", catalogue.url, "--json"],
            capture_output=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )
        if done.returncode != 0:
            raise SystemExit(f"the crawl exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
    with log.open("a") as out:
        out.write(f"{started:.6f} 0 0 launched\n")
    return started


def _batches(marks: list[tuple[float, float, int, str]]) -> list[dict[str, Any]]:
    """Each push's marks, from its start in the crawler to its answer read there: the pushes
    go one at a time, so every mark between a push's start and end is that push's."""
    batches: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for at, _, _, what in marks:
        if what.startswith("push start"):
            current = {"size": int(what.split()[2]), "push start": at}
            batches.append(current)
        elif current is not None:
            key = " ".join(what.split()[:2])
            current.setdefault(key, at)
            if key == "push end":
                current = None
    return batches


def _report(log: Path, started: float) -> None:
    marks = []
    for line in log.read_text().splitlines():
        stamp, used, process, text = line.split(" ", 3)
        marks.append((float(stamp) - started, float(used), int(process), text))
    marks.sort()
    crawler_pid = next(pid for _, _, pid, what in marks if what == "crawler started")
    print("   time  process CPU  mark")
    for at, cpu, pid, what in marks:
        if what.startswith(("push", "bulk", "call", "parse")):
            continue
        who = "crawler" if pid == crawler_pid else "catalogue" if pid else "probe"
        print(f"{at:7.3f} s  {cpu:7.3f} s  {who}: {what}")
    walk_end = next(at for at, _, _, what in marks if what == "walk end")
    batches = _batches(marks)
    print(
        f"\n{'batch':>6} {'sent at':>8} {'catalogue idle before':>22} {'to catalogue':>13}"
        f" {'parse':>7} {'in bulk':>8} {'answer back':>12} {'answer read':>12}"
    )
    idle = {"walk": 0.0, "after": 0.0}
    busy = {"walk": 0.0, "after": 0.0}
    steps = {"walk": [0.0] * 4, "after": [0.0] * 4}
    last_end: float | None = None
    for b in batches:
        phase = "walk" if b["bulk start"] < walk_end else "after"
        waited = b["bulk start"] - last_end if last_end is not None else 0.0
        idle[phase] += waited
        busy[phase] += b["bulk end"] - b["bulk start"]
        # Request encoded and sent, body received; parsed; answer encoded, sent and received;
        # answer read into the crawler's model.
        parts = [
            b["parse start"] - b["push start"],
            b["parse end"] - b["parse start"],
            b["call end"] - b["bulk end"],
            b["push end"] - b["call end"],
        ]
        steps[phase] = [a + p for a, p in zip(steps[phase], parts, strict=True)]
        to, parse, back, read = (x * 1e3 for x in parts)
        print(
            f"{b['size']:6d} {b['push start']:7.3f}s {waited * 1e3:19.1f} ms {to:10.1f} ms"
            f" {parse:4.1f} ms {(b['bulk end'] - b['bulk start']) * 1e3:5.1f} ms"
            f" {back:9.1f} ms {read:9.1f} ms"
        )
        last_end = b["bulk end"]
    first = batches[0]["bulk start"]
    print(
        f"\nfirst push reached the catalogue at {first:.3f} s; walk ended at {walk_end:.3f} s.\n"
        f"catalogue in bulk calls: {busy['walk']:.3f} s before the walk's end, "
        f"{busy['after']:.3f} s after; idle between them: {idle['walk']:.3f} s before, "
        f"{idle['after']:.3f} s after."
    )
    for phase, label in (("walk", "before the walk's end"), ("after", "after it")):
        to, parse, back, read = steps[phase]
        print(
            f"pushes {label}: to the catalogue {to:.3f} s, parsed there {parse:.3f} s, answers "
            f"back {back:.3f} s, read {read:.3f} s"
        )
    walk = [(at, cpu) for at, cpu, pid, what in marks if pid == crawler_pid and "walk" in what]
    (t0, c0), (t1, c1) = walk[0], walk[-1]
    print(
        f"crawler process during the walk: {c1 - c0:.3f} s CPU in {t1 - t0:.3f} s "
        f"({(c1 - c0) / (t1 - t0):.2f} cores, its threads together)"
    )


def main() -> None:
    role = os.environ.get(ROLE_ENV)
    if role == "crawler":
        return _as_crawler()
    if role == "catalogue":
        return _as_catalogue()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    from benchmarks.common import WORK_DIR, compile_project, ensure_tree

    root = ensure_tree(args.files, args.manifests)
    compile_project()
    log = WORK_DIR / "timeline.log"
    for run in range(args.runs):
        # The page cache warm, as bench_crawl's crawls find it after its walks.
        subprocess.run(["find", str(root), "-type", "f"], stdout=subprocess.DEVNULL, check=True)
        started = _crawl_once(root, log)
        print(f"--- cold crawl {run + 1} of {args.runs}")
        _report(log, started)


if __name__ == "__main__":
    main()
