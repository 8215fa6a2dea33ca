"""What every benchmark shares: machine facts, timing, RESULTS.md sections and servers.

Servers run as child processes on 127.0.0.1 with their own data folder under
``benchmarks/.work/``; every wait below has a deadline so a broken server fails the run
instead of hanging it.

The catalogue runs on either backend: ``sqlite`` (embedded, a fresh data folder) or ``mongo``
(MongoDB + Elasticsearch). For ``mongo`` the tests' servers are used (``tests/servers/``:
FerretDB 1.24 on SQLite as the MongoDB-wire server, Elasticsearch 8.19 single node), started
once per benchmark run by :class:`MongoServers`; each catalogue gets a database and an index
of its own.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import httpx

from tests.servers.processes import free_port, start_together

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
WORK_DIR = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "RESULTS.md"
PYTHON = sys.executable

FULL_FILES, FULL_MANIFESTS, FULL_ASSETS = 100_000, 10_000, 100_000
QUICK_FILES, QUICK_MANIFESTS, QUICK_ASSETS = 5_000, 500, 5_000

# Catalogue backends, in the order a run measures them.
BACKENDS = ("sqlite", "mongo")
BACKEND_TITLES = {"sqlite": "sqlite (embedded)", "mongo": "mongo + es"}

# RESULTS.md keeps its sections in this order whichever script wrote last.
SECTION_ORDER = (
    "crawl",
    "ingest",
    "search",
    "writes",
    "lineage",
    "featureset",
    "ui",
    "footprint",
)

T = TypeVar("T")


# --- machine ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    ram_gib: float
    cpu: str
    kernel: str
    python: str

    def describe(self) -> str:
        return (
            f"{self.cores} cores ({self.cpu}), {self.ram_gib:.1f} GiB RAM (MemTotal), "
            f"Linux {self.kernel}, Python {self.python}"
        )


def _meminfo_kb(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def machine() -> Machine:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return Machine(
        cores=os.cpu_count() or 1,
        ram_gib=_meminfo_kb("MemTotal") / 1024 / 1024,
        cpu=cpu,
        kernel=platform.release(),
        python=platform.python_version(),
    )


def host_speed(rounds: int = 5) -> float:
    """CPU seconds of a fixed workload (Python dict and string work, then SQLite inserts into
    an in-memory table: what the services' hot paths are made of), best of ``rounds``.

    On this kind of shared machine the same code measured hours apart moved by up to a fifth
    (2.07 against 2.43 s for one cold crawl); a section carries this figure, taken when it is
    written, as context for such comparisons. It is a rough probe, taken after the run, not a
    correction: it moved 130-145 ms while the crawl moved, and did not follow it closely."""
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        words = {str(i): i * 7 for i in range(100_000)}
        text = " ".join(k for k, v in words.items() if v % 3)
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", words.items())
        conn.close()
        best = min(best, time.process_time() - start)
        del words, text
    return best


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# --- timing and statistics ----------------------------------------------------------------------


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p50 is the median."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def median_by(runs: Sequence[T], key: Callable[[T], float]) -> T:
    """The run whose ``key`` is the median (the upper one of an even count): a run's other
    figures are then reported from that same run."""
    return sorted(runs, key=key)[len(runs) // 2]


# --- processes ----------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields are counted after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def system_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return busy / _CLK_TCK


def own_cpu_seconds() -> float:
    """This process's CPU time plus that of the children it has waited for (wrk, bare)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """CPU the rest of the machine used while a benchmark ran: the machine's busy time minus
    this process (and its waited-for children) and the servers it names at the end."""

    def __init__(self) -> None:
        self.busy = system_busy_seconds()
        self.own = own_cpu_seconds()
        self.start = time.perf_counter()

    def cores(self, servers_cpu_s: float) -> float:
        """Average cores used by other processes since this object was made."""
        busy = system_busy_seconds() - self.busy
        own = own_cpu_seconds() - self.own
        wall = time.perf_counter() - self.start
        return max(0.0, busy - own - servers_cpu_s) / wall if wall else 0.0


def process_memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of one process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(rest.split()[0])
    return out


def bench_env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment minus its CAIRN_* settings, so a developer's shell cannot
    point a benchmark at a real catalogue or data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    # An installed Cairn runs from compiled bytecode; with this set (as on CI machines), every
    # timed start-up would compile the project's modules again (about 30 ms of a crawl's).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if data_dir is not None:
        env["CAIRN_DATA_DIR"] = str(data_dir)
    env["CAIRN_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def compile_project() -> None:
    """Compiles the project's packages to bytecode, as installing Cairn does, so that timed
    start-ups run what an installed Cairn runs (see ``bench_env``)."""
    packages = ["cairn", "catalogue_service", "featurestore_service", "crawler", "connectors", "ui"]
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", *(str(ROOT / p) for p in packages)],
        check=True,
        timeout=300,
    )


def fresh_dir(path: Path) -> Path:
    if not path.resolve().is_relative_to(WORK_DIR.resolve()):
        raise ValueError(
            f"refusing to wipe {path}: benchmarks only remove what is under {WORK_DIR}"
        )
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Started(abc.ABC):
    """``with X(...) as x``: ``start()`` on entry, ``stop()`` on the way out."""

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Server(Started):
    """One HTTP server as a child process on 127.0.0.1, ready once ``ready_path`` answers 200."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str],
        ready_path: str = "/readyz",
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.env = env
        self.ready_path = ready_path
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = WORK_DIR / "logs" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self, timeout: float = 60) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def memory_kb(self) -> dict[str, int]:
        return process_memory_kb(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


class MongoServers(Started):
    """FerretDB (MongoDB wire protocol) and Elasticsearch for the ``mongo`` backend.

    Started once per benchmark run (both at once, each spends its start-up waiting), stopped
    by :meth:`stop`; data under ``benchmarks/.work/servers/`` (Elasticsearch's own data folder
    is where the user it runs as can write, and is removed on stop). Uses the tests' server
    scripts, which install the servers into ``~/.cache/cairn`` on first use.
    """

    def __init__(self) -> None:
        from tests.servers import elasticsearch, ferretdb

        base = fresh_dir(WORK_DIR / "servers")
        (base / "ferretdb").mkdir()
        (base / "elasticsearch").mkdir()
        self.mongo = ferretdb.FerretDB(base / "ferretdb")
        self.es = elasticsearch.Elasticsearch(base / "elasticsearch")
        self.mongo_version = f"FerretDB {ferretdb.VERSION.lstrip('v')} (SQLite handler)"
        self.es_version = f"Elasticsearch {elasticsearch.VERSION} (single node, integ-test-zip)"
        self.es_heap = elasticsearch.HEAP
        self.start_seconds = 0.0
        self.es_pid = 0

    @property
    def mongo_pid(self) -> int:
        assert self.mongo.proc is not None, "FerretDB not started"
        return self.mongo.proc.pid

    @property
    def mongo_data_dir(self) -> Path:
        return self.mongo.base_dir / "data"

    def start(self) -> Self:
        started = time.perf_counter()
        try:
            start_together(self.mongo, self.es)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        # The server JVM is a grandchild (setpriv, then Elasticsearch's launcher): ask it.
        nodes = httpx.get(f"{self.es.url}/_nodes/_local/process", timeout=10).json()["nodes"]
        self.es_pid = int(next(iter(nodes.values()))["process"]["id"])
        return self

    def stop(self) -> None:
        self.mongo.stop()
        self.es.close()

    def catalogue_env(self, name: str) -> dict[str, str]:
        """CAIRN_* settings of a catalogue with a fresh database and index of its own."""
        tag = f"{re.sub(r'[^a-z0-9]', '_', name.lower())}_{uuid.uuid4().hex[:8]}"
        return {
            "CAIRN_BACKEND": "mongo",
            "CAIRN_MONGO_URL": self.mongo.url,
            "CAIRN_MONGO_DB": f"bench_{tag}",
            "CAIRN_ES_URL": self.es.url,
            "CAIRN_ES_INDEX": f"bench-{tag.replace('_', '-')}",
        }

    def cpu_seconds(self) -> dict[str, float]:
        return {
            "FerretDB": process_cpu_seconds(self.mongo_pid),
            "Elasticsearch": process_cpu_seconds(self.es_pid),
        }

    def memory_kb(self) -> dict[str, dict[str, int]]:
        return {
            "FerretDB": process_memory_kb(self.mongo_pid),
            "Elasticsearch": process_memory_kb(self.es_pid),
        }

    def describe(self) -> str:
        return (
            f"{self.mongo_version} as the MongoDB-wire server (**not a real MongoDB**); "
            f"{self.es_version}, {self.es_heap} heap"
        )


class CatalogueProcess(Server):
    """``python -m cairn serve catalogue`` on a free port with a fresh data folder of its own.

    With ``servers`` it runs the ``mongo`` backend on them, with a fresh database and index;
    ``entry`` replaces ``-m cairn`` (the arguments after it are the CLI's).
    """

    def __init__(
        self,
        name: str,
        servers: MongoServers | None = None,
        entry: Sequence[str] = ("-m", "cairn"),
        **extra_env: str,
    ) -> None:
        self.backend = "sqlite" if servers is None else "mongo"
        self.data_dir = fresh_dir(WORK_DIR / "data" / name)
        port = free_port()
        argv = [PYTHON, *entry, "serve", "catalogue", "--port", str(port)]
        env = bench_env(self.data_dir, **extra_env)
        self.mongo_env = servers.catalogue_env(name) if servers is not None else {}
        env.update(self.mongo_env)
        super().__init__(f"catalogue-{name}", argv, port, env)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "catalogue.db"


class BackendServers:
    """The servers behind each backend of one benchmark run: none for ``sqlite``; for
    ``mongo`` one :class:`MongoServers`, started when first asked for (after the sqlite
    figures, so idle JVM and Go servers do not share the cores with them), stopped on exit."""

    def __init__(self) -> None:
        self.mongo: MongoServers | None = None

    def for_backend(self, backend: str) -> MongoServers | None:
        if backend == "sqlite":
            return None
        if backend != "mongo":
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if self.mongo is None:
            self.mongo = MongoServers().start()
        return self.mongo

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.mongo is not None:
            self.mongo.stop()


# --- sizes and command lines --------------------------------------------------------------------


@dataclass(slots=True)
class Sizes:
    files: int
    manifests: int
    assets: int
    quick: bool
    # Catalogue backends to measure (ingest and search); the others use the embedded one.
    backends: tuple[str, ...] = ("sqlite",)


def add_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, help=f"files in the volume (default {FULL_FILES:,})")
    parser.add_argument(
        "--manifests", type=int, help=f"manifests in the volume (default {FULL_MANIFESTS:,})"
    )
    parser.add_argument(
        "--assets", type=int, help=f"assets for ingest and search (default {FULL_ASSETS:,})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke-run sizes ({QUICK_FILES:,} files, {QUICK_MANIFESTS:,} manifests, "
        f"{QUICK_ASSETS:,} assets) and shorter loops; explicit sizes still win",
    )


def add_backend_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=[*BACKENDS, "both"],
        default="both",
        help="catalogue backend(s) to measure, side by side in one run (default both); "
        "mongo starts FerretDB and Elasticsearch for the run",
    )


def sizes_from(args: argparse.Namespace) -> Sizes:
    q = bool(args.quick)
    backend = getattr(args, "backend", "sqlite")
    return Sizes(
        files=args.files or (QUICK_FILES if q else FULL_FILES),
        manifests=args.manifests or (QUICK_MANIFESTS if q else FULL_MANIFESTS),
        assets=args.assets or (QUICK_ASSETS if q else FULL_ASSETS),
        quick=q,
        backends=BACKENDS if backend == "both" else (backend,),
    )


def parse_sizes(
    doc: str, module: str, argv: Sequence[str] | None, backends: bool = False
) -> tuple[Sizes, str]:
    """Every benchmark's command line: the size options (and ``--backend`` when the benchmark
    runs on both catalogue backends), and the command to record."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_size_args(parser)
    if backends:
        add_backend_arg(parser)
    args = parser.parse_args(argv)
    return sizes_from(args), command_line(module, argv)


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m", module, *args])


# --- RESULTS.md ---------------------------------------------------------------------------------

_SECTION = re.compile(
    r"<!-- section:(?P<key>[\w-]+) -->\n(?P<body>.*?)<!-- /section:(?P=key) -->\n", re.S
)

_HEADER = """# Benchmark results

Each section is rewritten by the script that owns it (see `benchmarks/README.md`); figures in
different sections may come from different runs, so each one names its command, machine and date.
Targets are DESIGN.md section 7's.
"""


@dataclass(slots=True)
class Section:
    key: str
    title: str
    command: str
    sizes: Sizes
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def render(self) -> str:
        m = machine()
        head = [
            f"## {self.title}",
            "",
            f"- Command: `{self.command}`",
            f"- Machine: {m.describe()}",
            f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Load average at write time: {load_average()}",
            f"- Host speed at write time: {host_speed() * 1000:.0f} ms CPU for "
            "`benchmarks.common.host_speed`'s fixed workload (lower is faster; context for "
            "comparing runs, not a correction)",
        ]
        if self.sizes.quick:
            head.append(
                "- **Quick smoke run** (small sizes, short loops): these figures only show that "
                "the benchmark works; they are not comparable with the targets."
            )
        return "\n".join([*head, "", *self.lines]).rstrip() + "\n\n"


def write_section(section: Section) -> None:
    """Replaces this section of RESULTS.md and keeps every other section as it was."""
    existing = RESULTS.read_text() if RESULTS.exists() else ""
    sections = {m["key"]: m["body"] for m in _SECTION.finditer(existing)}
    sections[section.key] = section.render()
    order = [k for k in SECTION_ORDER if k in sections]
    order += sorted(k for k in sections if k not in SECTION_ORDER)
    parts = [_HEADER]
    for key in order:
        parts.append(f"<!-- section:{key} -->\n{sections[key]}<!-- /section:{key} -->\n")
    RESULTS.write_text("\n".join(parts).rstrip() + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- the volume ---------------------------------------------------------------------------------


def ensure_tree(files: int, manifests: int, seed: int = 7) -> Path:
    """The generated volume for these sizes, built once and reused while its stamp is there."""
    from benchmarks import gen_tree

    return gen_tree.ensure(WORK_DIR, files, manifests, seed)


class Budget:
    """Bounds a loop in count and in time: ``while budget.more(): ...``."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.end = time.monotonic() + seconds
        self.done = 0

    def more(self) -> bool:
        if self.done >= self.count or time.monotonic() > self.end:
            return False
        self.done += 1
        return True
