"""Training/serving skew: a bounded sample of the feature rows actually served, profiled on
request and compared with the live version's profile (DESIGN 10).

Rows arrive from the online serving route (a fraction ``CAIRN_METRICS_SKEW_SAMPLE_RATE`` of
responses, ``chosen``; 0, the default, is off; an answer spanning several sets gives each set
its own columns) or are sent by a caller that serves elsewhere
(``POST /featuresets/{name}/skew/samples``). Each set keeps a reservoir of at most
``CAIRN_METRICS_SKEW_ROWS`` rows (Vitter's algorithm R: a uniform sample of everything seen),
at most ``MAX_SETS`` sets, and long strings are cut: memory is bounded
however long the service runs. The sample lives in memory; a restart starts a new window.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa

from cairn.jsonfloats import named_floats

MAX_SETS = 100
MAX_CHARS = 1000


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return value[:MAX_CHARS]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)[:MAX_CHARS]  # nested values: their text, bounded


class Reservoir:
    def __init__(self, size: int, rng: random.Random):
        self.size = size
        self.rows: list[dict[str, Any]] = []
        self.seen = 0
        self._rng = rng

    def add(self, row: dict[str, Any]) -> None:
        self.seen += 1
        clean = {str(k)[:MAX_CHARS]: _bounded(v) for k, v in row.items()}
        if len(self.rows) < self.size:
            self.rows.append(clean)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.rows[slot] = clean


class SkewSampler:
    def __init__(self, rate: float, rows: int, *, seed: int | None = None):
        self.rate = rate
        self.rows = rows
        self._rng = random.Random(seed)
        self._sets: OrderedDict[str, Reservoir] = OrderedDict()
        self._lock = threading.Lock()  # observe may run in worker threads

    def chosen(self) -> bool:
        """Whether to sample one served response: true with probability ``rate``. An answer
        that spans several sets is chosen once, and each set's rows go to its own sample."""
        return self.rate > 0 and self._rng.random() < self.rate

    def observe(self, name: str, rows: list[dict[str, Any]]) -> None:
        """One served response of one set: kept with probability ``rate``."""
        if self.chosen():
            self.record(name, rows)

    def record(self, name: str, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            reservoir = self._sets.get(name)
            if reservoir is None:
                if len(self._sets) >= MAX_SETS:
                    self._sets.popitem(last=False)  # the set sampled least recently goes
                reservoir = self._sets[name] = Reservoir(self.rows, self._rng)
            self._sets.move_to_end(name)
            for row in rows:
                reservoir.add(row)

    def sample(self, name: str, columns: list[str]) -> tuple[pa.Table, int] | None:
        """The sampled rows of ``name`` as a table of ``columns`` and how many were seen."""
        with self._lock:
            reservoir = self._sets.get(name)
            if reservoir is None or not reservoir.rows:
                return None
            rows = list(reservoir.rows)
            seen = reservoir.seen
        data = {c: [r.get(c) for r in rows] for c in columns if any(c in r for r in rows)}
        arrays = {}
        for column, values in data.items():
            try:
                arrays[column] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                floats = named_floats(values)  # a float column served with NaN by name
                arrays[column] = (
                    pa.array([None if v is None else str(v) for v in values])
                    if floats is None
                    else pa.array(floats, pa.float64())
                )
        return pa.table(arrays), seen
