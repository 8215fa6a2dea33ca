"""Installs every test server into the cache before the suite starts.

``make test`` runs this first. On a fresh machine the builds and downloads (FerretDB, Compose
and SeaweedFS from the Go module proxy; Elasticsearch, Hadoop, Kafka and the Hive metastore from
Maven Central; Azurite from npm; dbt and PySpark with OpenLineage's integrations; Feast's SDK)
take minutes each on 2 cores; inside a fixture they would count against the first test's
timeout, and a slow machine would fail tests that have nothing wrong with them. Here they run
once, with no per-test timeout, saying what they do. With a warm cache this takes a second.

    python -m tests.servers.prepare            # everything
    python -m tests.servers.prepare ferretdb   # only the servers named
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.servers import (
    azurite,
    compose,
    dbt,
    elasticsearch,
    feast_sdk,
    ferretdb,
    kafka,
    metastore,
    minihdfs,
    seaweedfs,
    spark,
)
from tests.servers.processes import ServerSetupError

# name -> installer; each one is idempotent and guarded by its own cache lock.
INSTALLERS: dict[str, Callable[[], object]] = {
    "ferretdb": ferretdb.install,
    "elasticsearch": elasticsearch.install,
    "hadoop": minihdfs.build_launcher,
    "azurite": azurite.install,
    "compose": compose.install,
    "dbt": dbt.ensure_dbt,
    "feast": feast_sdk.ensure_feast,
    "spark": spark.ensure_spark,
    "kafka": kafka.install,
    "metastore": metastore.install,
    "seaweedfs": seaweedfs.install,
}


def _install(name: str) -> tuple[str, float, BaseException | None]:
    started = time.monotonic()
    try:
        INSTALLERS[name]()
    except (ServerSetupError, OSError) as exc:
        return name, time.monotonic() - started, exc
    return name, time.monotonic() - started, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.prepare",
        description="Install the servers the test suite runs against into ~/.cache/cairn/.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"servers to install (default: all of {', '.join(INSTALLERS)})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="installs run at once (default 2: downloads overlap builds)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(INSTALLERS))
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}; choose from {', '.join(INSTALLERS)}")
    names = args.names or list(INSTALLERS)
    print(f"preparing test servers: {', '.join(names)}", flush=True)
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, seconds, error in pool.map(_install, names):
            if error is None:
                print(f"  {name}: ready ({seconds:.1f} s)", flush=True)
            else:
                failed.append(name)
                print(f"  {name}: FAILED after {seconds:.1f} s: {error}", flush=True)
    if failed:
        # The suite still runs: the tests that need these servers fail with the same message,
        # and every other test gives its answer.
        print(f"could not install: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
