"""Deterministic test data: asset documents, and a volume of manifests beside data files.

The same seed gives the same names, tags and text, so query values chosen from the assets are
reproducible. Words are picked so that a benchmark knows how much of the catalogue a query
matches:

- a cadence word starts every description: ``daily`` 45 %, ``weekly`` 35 %, ``hourly`` 12 %,
  ``monthly`` 8 % (the broad text queries: both of the first two stay above 30 % even on the
  small samples of a quick run);
- each description ends with one of 1,000 made-up code words (about 0.1 % of assets each: the
  selective text queries); none is a prefix of any other word used, because the catalogue's
  text search treats the last query term as a prefix;
- names are ``<domain>_<entity>_<n>`` over 20 x 50 domain/entity pairs (about 0.1 % per
  ``<domain>_<entity>_`` prefix);
- 200 tags with a Zipf-like spread (the most common is on roughly a quarter of the assets).

Volume layout: three levels of folders, ``zNN/dNN/<asset name>/``, one manifest per leaf folder
(``MANIFEST.yaml``, or ``<name>.cairn.yaml`` for one in ten), one data file beside it (a tiny
CSV, or for one in ten a small Parquet file whose bytes are written once and copied), then
filler files (``_SUCCESS``, ``.part-NNNNN.crc``, what Spark and Hadoop write beside their data)
spread over the leaves to reach the file count. The fillers are listed and counted like any file
but name no data format, so each asset's format is its data file's and its schema is read from
it. (Until version 3 the fillers were ``part-NNNNN.json``: they made most assets JSON by vote,
and once a schema was read only from a file of the asset's format, none was read at all.)

Run alone: ``python -m benchmarks.gen_tree --files 5000 --manifests 500``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

# Bump when the output changes, so cached trees under benchmarks/.work/ are rebuilt.
GENERATOR_VERSION = 3


def _words(text: str) -> list[str]:
    return text.split()


DOMAINS = _words(
    "sales finance marketing customers products inventory logistics payments hr support "
    "web mobile ads risk fraud supply pricing billing growth ops"
)
ENTITIES = _words(
    "orders invoices refunds sessions clicks events users accounts stores items shipments "
    "returns tickets campaigns leads contracts transactions balances forecasts budgets "
    "employees payrolls devices pageviews searches carts reviews ratings coupons vouchers "
    "subscriptions churn cohorts segments suppliers warehouses routes vehicles claims alerts "
    "scores limits prices discounts taxes ledgers payouts disputes chargebacks signups"
)
TAG_BASES = DOMAINS + _words(
    "pii gdpr gold silver bronze raw curated certified deprecated experimental streaming "
    "batch reference kpi ml features reporting audit sensitive public internal partner "
    "archive sandbox realtime quality backfill snapshot scd2 core"
)
TAGS_IN_ORDER = [
    tag for base in TAG_BASES for tag in (base, f"{base}-eu", f"{base}-us", f"{base}-apac")
]
CADENCES = (("Daily", 45), ("Weekly", 35), ("Hourly", 12), ("Monthly", 8))
BROAD_WORDS = {"daily": 0.45, "weekly": 0.35, "hourly": 0.12, "monthly": 0.08}
MEASURES = _words("totals snapshots aggregates extracts counts records")
VERBS = _words("loaded derived exported replicated computed")
SOURCES = ("the erp", "postgres", "kafka", "the crm", "s3 landing", "salesforce", "the warehouse")
QUALIFIERS = (
    "Deduplicated on the business key",
    "Partitioned by date",
    "Late rows are patched the next day",
    "Contains personal data",
    "Amounts converted to EUR",
    "Backfilled since 2019",
)
COLUMNS = (
    ("id", "int64"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
    ("amount", "double"),
    ("currency", "string"),
    ("customer_id", "int64"),
    ("store_id", "int64"),
    ("country", "string"),
    ("status", "string"),
    ("quantity", "int64"),
    ("price", "double"),
    ("event_time", "timestamp"),
    ("user_id", "int64"),
    ("session_id", "string"),
    ("sku", "string"),
    ("category", "string"),
    ("channel", "string"),
    ("region", "string"),
    ("score", "double"),
    ("is_active", "bool"),
)
FIRST = _words("ana ben carla dev eva finn gina hugo ines jon kai lena milo nora omar pia")
LAST = _words("silva meyer rossi novak khan berg costa ito")
OWNERS = [f"{f}.{last}@example.com" for f, last in itertools.product(FIRST, LAST)][:40]
TYPES = (("dataset", 70), ("table", 20), ("featureset", 5), ("report", 5))
ZONES = ("raw", "silver", "gold")


def _vocabulary_tokens() -> set[str]:
    words: set[str] = set()
    texts = [
        *DOMAINS,
        *ENTITIES,
        *TAGS_IN_ORDER,
        *(c for c, _ in CADENCES),
        *MEASURES,
        *VERBS,
        *SOURCES,
        *QUALIFIERS,
        *(c for c, _ in COLUMNS),
        *OWNERS,
        *ZONES,
        "for the team from reference",
    ]
    for text in texts:
        for token in text.lower().replace("_", " ").replace("-", " ").split():
            words.add(token.strip("."))
    return words


def _code_words(count: int = 1000) -> list[str]:
    """Made-up six-letter words, none a prefix of a vocabulary word or of each other."""
    consonants, vowels = "bdfgkmnprstvz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]
    rng = random.Random(1234)
    vocab = _vocabulary_tokens()
    chosen: dict[str, None] = {}
    # 65^3 candidates against 1,000 wanted: the bound is never reached in practice.
    for _ in range(count * 50):
        if len(chosen) == count:
            break
        word = "".join(rng.choice(syllables) for _ in range(3))
        if any(v.startswith(word) for v in vocab):
            continue
        chosen.setdefault(word, None)
    return list(chosen)


CODE_WORDS = _code_words()


def _zipf_cumulative(n: int, s: float = 0.9) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n)))


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    return [p[0] for p in pairs], list(itertools.accumulate(p[1] for p in pairs))


def make_assets(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` asset documents as the catalogue API takes them (with a schema)."""
    rng = random.Random(seed)
    tags = TAGS_IN_ORDER[:]
    # Shuffled so that popularity does not follow the alphabet or the domain list.
    random.Random(seed + 1).shuffle(tags)
    tag_cum = _zipf_cumulative(len(tags))
    cadences, cadence_cum = _weighted(CADENCES)
    types, type_cum = _weighted(TYPES)
    names: list[str] = []
    assets: list[dict[str, Any]] = []
    for i in range(count):
        domain = DOMAINS[rng.randrange(len(DOMAINS))]
        entity = ENTITIES[rng.randrange(len(ENTITIES))]
        name = f"{domain}_{entity}_{i:06d}"
        cadence = rng.choices(cadences, cum_weights=cadence_cum)[0]
        description = (
            f"{cadence} {entity} {rng.choice(MEASURES)} for the {domain} team, "
            f"{rng.choice(VERBS)} from {rng.choice(SOURCES)}. {rng.choice(QUALIFIERS)}. "
            f"Reference {CODE_WORDS[rng.randrange(len(CODE_WORDS))]}."
        )
        picked = rng.choices(tags, cum_weights=tag_cum, k=rng.randint(2, 4))
        columns = rng.sample(COLUMNS, rng.randint(4, 8))
        deps_from = max(0, i - 2000)
        deps = (
            sorted({names[rng.randrange(deps_from, i)] for _ in range(rng.choice((0, 1, 1, 2, 3)))})
            if i
            else []
        )
        assets.append(
            {
                "name": name,
                "type": rng.choices(types, cum_weights=type_cum)[0],
                "description": description,
                "tags": list(dict.fromkeys(picked)),
                "labels": {
                    "zone": rng.choice(ZONES),
                    "domain": domain,
                    "tier": rng.randint(1, 3),
                    "pii": rng.random() < 0.2,
                    "cost_center": f"cc-{rng.randrange(100):03d}",
                },
                "owners": sorted({rng.choice(OWNERS) for _ in range(rng.randint(1, 2))}),
                "schema": [{"name": c, "type": t} for c, t in columns],
                "depends_on": deps,
            }
        )
        names.append(name)
    return assets


def manifest_yaml(asset: dict[str, Any], dash_alias: bool) -> str:
    """A hand-written-looking manifest of about 15 lines (no schema: the crawler reads it)."""
    labels = asset["labels"]
    lines = [
        f"name: {asset['name']}",
        f"type: {asset['type']}",
        # JSON strings are valid YAML double-quoted scalars.
        f"description: {json.dumps(asset['description'])}",
        f"tags: [{', '.join(asset['tags'])}]",
        "owners:",
        *(f"  - {o}" for o in asset["owners"]),
        "labels:",
        f"  zone: {labels['zone']}",
        f"  domain: {labels['domain']}",
        f"  tier: {labels['tier']}",
        f"  pii: {'true' if labels['pii'] else 'false'}",
        f"  cost_center: {labels['cost_center']}",
    ]
    key = "depends-on" if dash_alias else "depends_on"
    if asset["depends_on"]:
        lines += [f"{key}:", *(f"  - {d}" for d in asset["depends_on"])]
    else:
        lines.append(f"{key}: []")
    return "\n".join(lines) + "\n"


def _csv_for(asset: dict[str, Any]) -> bytes:
    samples = {
        "int64": ("1", "2"),
        "double": ("1.5", "2.25"),
        "string": ("a", "b"),
        "timestamp": ("2026-01-01T00:00:00", "2026-01-02T00:00:00"),
        "bool": ("true", "false"),
    }
    cols = asset["schema"]
    rows = [",".join(c["name"] for c in cols)]
    for r in range(2):
        rows.append(",".join(samples[c["type"]][r] for c in cols))
    return ("\n".join(rows) + "\n").encode()


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "amount": pa.array([1.5, 2.5, 3.5], pa.float64()),
            "country": pa.array(["PT", "DE", "JP"], pa.string()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def generate(root: Path, files: int, manifests: int, seed: int = 7) -> dict[str, int]:
    """Writes the volume under ``root`` (which must not exist); returns what it wrote."""
    if manifests < 1 or files < 2 * manifests:
        raise ValueError(
            f"need at least two files per manifest (a manifest and its data): "
            f"{files} files for {manifests} manifests"
        )
    assets = make_assets(manifests, seed)
    parquet = _parquet_bytes()
    fanout = max(1, math.ceil(manifests ** (1 / 3)))
    extra = files - 2 * manifests
    per_leaf, remainder = divmod(extra, manifests)
    written = {"files": 0, "manifests": 0, "parquet": 0, "csv": 0, "fillers": 0, "dirs": 0}
    for i, asset in enumerate(assets):
        leaf = root / f"z{i // (fanout * fanout):02d}" / f"d{(i // fanout) % fanout:02d}"
        leaf = leaf / asset["name"]
        leaf.mkdir(parents=True)
        written["dirs"] += 1
        manifest_name = f"{asset['name']}.cairn.yaml" if i % 10 == 9 else "MANIFEST.yaml"
        (leaf / manifest_name).write_text(manifest_yaml(asset, dash_alias=i % 5 == 4))
        if i % 10 == 3:
            (leaf / "part-00000.parquet").write_bytes(parquet)
            written["parquet"] += 1
        else:
            (leaf / "data.csv").write_bytes(_csv_for(asset))
            written["csv"] += 1
        fillers = per_leaf + (1 if i < remainder else 0)
        for k in range(fillers):
            if k == 0:
                (leaf / "_SUCCESS").write_bytes(b"")
            else:
                (leaf / f".part-{k:05d}.crc").write_bytes(b"crc\0%d" % k)
        written["fillers"] += fillers
        written["manifests"] += 1
        written["files"] += 2 + fillers
    return written


def ensure(work_dir: Path, files: int, manifests: int, seed: int = 7) -> Path:
    """The tree for these sizes under ``work_dir``, generated unless its stamp says it is there.

    The stamp lives beside the tree, not in it, so that it is not one more file to crawl.
    """
    root = work_dir / f"tree-{files}-{manifests}-s{seed}"
    stamp = work_dir / f"tree-{files}-{manifests}-s{seed}.json"
    if stamp.exists() and root.is_dir():
        try:
            if json.loads(stamp.read_text()).get("version") == GENERATOR_VERSION:
                return root
        except (OSError, ValueError):
            pass
    stamp.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written = generate(root, files, manifests, seed)
    written_s = time.perf_counter() - started
    stamp.write_text(
        json.dumps({"version": GENERATOR_VERSION, "seconds": round(written_s, 2), **written})
    )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, help="folder to create (default: a cached tree under .work)"
    )
    args = parser.parse_args(argv)
    if args.out:
        if args.out.exists():
            parser.error(f"{args.out} exists; give a new folder")
        print(generate(args.out, args.files, args.manifests, args.seed))
    else:
        from benchmarks.common import WORK_DIR

        print(ensure(WORK_DIR, args.files, args.manifests, args.seed))


if __name__ == "__main__":
    main()
