"""The crawl's pipeline: work handed out as soon as it is found, results taken back by path,
and pushes that run while the next batch is assembled.

A cold crawl spends its time in four places: the walk, parsing manifests, reading schemas and
the catalogue's ingest. Run one after the other, one core sat idle through most of it. Here:

- :class:`WorkPool` takes parse and schema jobs while the walk is still going and sends them
  in chunks to worker processes (threads on a remote volume, where the wait is the network);
  the caller asks for each result by path, in the order it needs them, so what it builds and
  pushes keeps its order (sorted manifest paths) whatever order the workers finish in. Queues
  are bounded by what was submitted: the walk finds at most that many paths.
- :class:`PushThread` sends batches to the catalogue from a thread (the wait is the
  catalogue's), at most ``depth`` batches ahead of it, and hands back each batch's answer to
  the crawl's own thread, which keeps every report and state change.

Small crawls never start a process: below ``parallel_threshold`` jobs, work runs in the
caller's own process when its result is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from connectors import Volume
from crawler.push import CataloguePusher

# A job is a path, or (path, hint) when it was submitted with a hint (see WorkPool.submit).
Job = str | tuple[str, Any]
ChunkFn = Callable[[list[Job]], list[Any]]  # runs in a worker process, on its own volume
OneFn = Callable[..., Any]  # (volume, path[, hint]): runs in this process or a thread


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    chunk_fn: ChunkFn
    one_fn: OneFn
    chunk: int  # paths per job sent to a worker process


class WorkPool:
    """Jobs by stage and path; a result is computed once, whoever asks first."""

    def __init__(
        self,
        volume: Volume,
        stages: Sequence[Stage],
        *,
        workers: int,
        remote_threads: int,
        parallel_threshold: int,
        initializer: Callable[[str], None],
        preload: Sequence[str],
        fork_imports: Sequence[str] = (),
    ) -> None:
        self.volume = volume
        self.stages = {s.name: s for s in stages}
        self._workers = workers
        self._remote_threads = remote_threads
        self._threshold = parallel_threshold
        self._initializer = initializer
        self._preload = list(preload)
        self._fork_imports = list(fork_imports)
        self._remote = not volume.url.startswith("file:")
        self._executor: Executor | None = None
        # stage -> paths not yet sent, with their hints, in order (a dict: ordered, and found
        # or dropped at once)
        self._buffered: dict[str, dict[str, Any]] = {s.name: {} for s in stages}
        # (stage, path) -> (future of its chunk, position in the chunk); None: run here
        self._jobs: dict[tuple[str, str], tuple[Future[list[Any]], int] | None] = {}
        self._done: dict[tuple[str, str], Any] = {}
        self._submitted = 0
        self._sent = {s.name: 0 for s in stages}  # chunks sent to the workers, by stage
        self.start_method: str | None = None  # how worker processes were started, once they were

    def __enter__(self) -> WorkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def parallel(self) -> bool:
        return self._executor is not None

    def submit(self, stage: str, path: str, hint: Any = None) -> None:
        """Queues a job; it goes to the workers once its chunk is full (or on ``flush``).
        A ``hint`` (picklable, not None) is passed on to the stage's functions with the path."""
        key = (stage, path)
        if key in self._jobs or key in self._done:
            return
        self._jobs[key] = None
        self._submitted += 1
        buffered = self._buffered[stage]
        buffered[path] = hint
        if self._executor is None and self._submitted >= self._start_at():
            self._start()
        if self._executor is not None and len(buffered) >= self._chunk(stage):
            self._send(stage)

    def flush(self, stage: str | None = None) -> None:
        """Sends every queued job (of one stage, or all) now: no more are coming soon."""
        if self._executor is None and self._submitted >= self._start_at():
            self._start()
        for name in [stage] if stage else list(self.stages):
            if self._executor is not None and self._buffered[name]:
                self._send(name)

    def put(self, stage: str, path: str, result: Any) -> None:
        """A job's result, computed elsewhere (a worker did it along with another job): asking
        for it then waits for nothing. Ignored when the job was already submitted or done."""
        key = (stage, path)
        if key not in self._jobs and key not in self._done:
            self._done[key] = result

    def done(self, stage: str, path: str) -> bool:
        """True when ``result`` would not wait for a worker (work run here does not count)."""
        key = (stage, path)
        if key in self._done:
            return True
        job = self._jobs.get(key)
        if job is None:
            return self._executor is None
        return job[0].done()

    def result(self, stage: str, path: str, *, forget: bool = False) -> Any:
        """The job's result (waiting for it); ``forget`` when no one will ask again, so that
        it is not held until the crawl ends."""
        key = (stage, path)
        if key in self._done:
            return self._done.pop(key) if forget else self._done[key]
        if key not in self._jobs:
            self.submit(stage, path)
        job = self._jobs[key]
        if job is None and self._executor is not None and path in self._buffered[stage]:
            self._send(stage)
            job = self._jobs[key]
        if job is None:
            # A small crawl: computed here, when first needed.
            hint = self._buffered[stage].pop(path)
            asked: Job = path if hint is None else (path, hint)
            (result,) = run_jobs(self.stages[stage].one_fn, self.volume, [asked])
        else:
            future, index = job
            result = future.result()[index]
        del self._jobs[key]
        if not forget:
            self._done[key] = result
        return result

    # -- pieces --

    def _start_at(self) -> int:
        if self._remote:
            return 2  # remote reads wait on the network: overlap them from the second on
        return self._threshold if self._workers > 1 else 1 << 62

    def _chunk(self, stage: str) -> int:
        """Paths in the stage's next chunk. The first chunk each worker takes is a quarter of
        the stage's, the second a half: a fresh worker's first chunk carries its one-off costs
        (pyarrow's import, cold caches), and the crawl waits for the first results in path
        order, which a full chunk held back for a tenth of a second."""
        if self._remote:
            return 1
        size, sent = self.stages[stage].chunk, self._sent[stage]
        if sent < 2 * self._workers:
            size //= 4 if sent < self._workers else 2
        return max(1, size)

    def _start(self) -> None:
        if self._remote:
            # The volume is shared: the remote connectors' clients are thread-safe.
            self._executor = ThreadPoolExecutor(self._remote_threads)
            return
        # With this thread alone nothing can hold a lock a child would copy, so the workers
        # are forked and start with what this process imported. Otherwise (a scheduler's
        # threads: --every, --config; a progress bar's) forking could copy a held lock, so
        # they come from a fork server, a clean process that imports the modules again (about
        # half a CPU-second a crawl), while the walk goes on.
        context: Any
        if threading.active_count() == 1:
            # What the workers run is imported here, once, just before they are forked, not
            # once in each of them; a crawl that starts no workers never imports it at all.
            for name in self._fork_imports:
                importlib.import_module(name)
            context = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("forkserver")
            # First: the fork server ignores SIGINT before the slow imports (see
            # crawler/sigint_ignored.py).
            context.set_forkserver_preload(["crawler.sigint_ignored", *self._preload])
        self.start_method = context.get_start_method()
        forked_from = os.getpid() if self.start_method == "fork" else 0
        self._executor = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self._initializer, self.volume.url, forked_from),
        )

    def _send(self, stage: str) -> None:
        """Sends the stage's queued jobs: to worker processes in chunks (the backlog queued
        before they started, hundreds of jobs, is shared out, not sent as one chunk)."""
        assert self._executor is not None
        buffered = self._buffered[stage]
        self._buffered[stage] = {}
        items = list(buffered.items())
        spec = self.stages[stage]
        start = 0
        while start < len(items):
            piece = items[start:] if self._remote else items[start : start + self._chunk(stage)]
            start += len(piece)
            self._sent[stage] += 1
            jobs: list[Job] = [path if hint is None else (path, hint) for path, hint in piece]
            future: Future[list[Any]]
            if self._remote:
                future = self._executor.submit(run_jobs, spec.one_fn, self.volume, jobs)
            else:
                future = self._executor.submit(spec.chunk_fn, jobs)
            for index, (path, _) in enumerate(piece):
                self._jobs[(stage, path)] = (future, index)


def _start_worker(initializer: Callable[[str], None], volume_url: str, forked_from: int) -> None:
    # Ctrl-C is the crawl's to handle, and its workers end with it (_die_with_parent); a
    # forked worker starts with the crawl's KeyboardInterrupt handler, which printed a
    # traceback (a fork server's workers ignore SIGINT already: crawler/sigint_ignored.py).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(forked_from)
    initializer(volume_url)


def _die_with_parent(forked_from: int) -> None:
    """Ends this worker when its parent ends, however it ends: a crawl killed with SIGKILL
    (or by the out-of-memory killer) left its workers waiting for jobs for ever. Linux only
    (prctl); elsewhere a worker ends with a crawl that shuts its pool down.

    ``forked_from``: the crawl's pid when the worker was forked from it, 0 when it came
    from a fork server. A forked worker asks the kernel to kill it when its parent ends, and
    sees whether the crawl ended before that request took effect (its parent-sentinel pipe
    cannot tell: workers forked later hold copies of the earlier ones' pipes). A fork
    server's worker has that server as its parent, which outlives the crawl for as long as
    its workers do (they hold its "alive" pipe): a thread waits on the sentinel pipe the crawl
    alone holds, and ends the worker when the crawl has ended."""
    if not forked_from:
        crawl = multiprocessing.parent_process()
        if crawl is not None:
            threading.Thread(
                target=exit_once_ended,
                args=(crawl.sentinel,),
                name="cairn-crawl-gone",
                daemon=True,
            ).start()
        return
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != forked_from:
        os._exit(1)


def exit_once_ended(sentinel: int) -> None:
    """Ends this process once the process behind ``sentinel`` (a ``multiprocessing``
    sentinel) has ended, however it ended; run on a daemon thread."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def run_jobs(one_fn: OneFn, volume: Volume, jobs: list[Job]) -> list[Any]:
    """``one_fn`` of each job on ``volume``: (volume, path), or (volume, path, hint)."""
    return [one_fn(volume, j) if type(j) is str else one_fn(volume, *j) for j in jobs]


class PushThread:
    """Sends batches from a thread; answers come back in order through ``answers()``."""

    def __init__(
        self, pusher: CataloguePusher, stamp: dict[str, Any] | None = None, depth: int = 2
    ) -> None:
        self._pusher = pusher
        # Fields every item is sent with unless it has its own (a crawl's crawled_at): added
        # to the copy sent, so the crawl keeps one dict per asset, not one more with them.
        self._stamp = stamp or {}
        self._todo: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=depth)
        self._answers: queue.SimpleQueue[tuple[list[dict[str, Any]], Any]] = queue.SimpleQueue()
        # CatalogueUnreachable after every retry; anything else is a bug, re-raised all the same
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="cairn-crawl-push", daemon=True)
        self._thread.start()

    def send(self, batch: list[dict[str, Any]]) -> None:
        """Queues a batch (waits while ``depth`` batches are queued); raises once a push
        failed, so the crawl stops building what cannot be sent."""
        if self.error is not None:
            raise self.error
        self._todo.put(batch)

    def full(self) -> bool:
        """True while ``send`` would wait."""
        return self._todo.full()

    def answers(self) -> list[tuple[list[dict[str, Any]], Any]]:
        """(batch, BulkResponse) for every batch answered since the last call, in order."""
        out = []
        while True:
            try:
                out.append(self._answers.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Waits for every queued batch; raises the push's failure, if one failed. After a
        failure the thread still takes (and drops) what is queued, so this never blocks."""
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            batch = self._todo.get()
            if batch is None:
                return
            if self.error is not None:
                continue  # drained, never sent: the crawl re-sends it next time
            wire = [_on_the_wire(d, self._stamp) for d in batch]
            try:
                result = self._pusher.bulk(wire)
            except Exception as exc:  # handed to the crawl's thread, raised there
                self.error = exc
                continue
            self._answers.put((batch, result))


def _on_the_wire(item: dict[str, Any], stamp: dict[str, Any]) -> dict[str, Any]:
    """What is sent of ``item``: without its state-only ``_hash``, with ``stamp``'s fields."""
    sent = item.copy()  # a copy in C, then one key out: a comprehension costs 3x as much
    sent.pop("_hash", None)
    for key, value in stamp.items():
        sent.setdefault(key, value)
    return sent
