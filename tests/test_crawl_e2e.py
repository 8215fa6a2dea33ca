"""End to end: `cairn crawl` as a subprocess against a real catalogue process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, ProcessServer, cairn_env, run_cairn


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_volume(root: Path) -> None:
    write(
        root / "raw/sales/MANIFEST.yaml",
        "name: sales_raw\ntype: dataset\ntags: [sales, raw]\nowners: [ana@example.com]\n",
    )
    pq.write_table(
        pa.table({"store_id": pa.array([1, 2], pa.int64()), "amount": [1.5, 2.5]}),
        root / "raw/sales/part-0000.parquet",
    )
    write(
        root / "gold/daily/MANIFEST.yaml",
        "name: sales_daily\ntype: dataset\ndescription: Daily sales per store.\n"
        "tags: [sales, gold]\ndepends-on: [sales_raw]\n",
    )
    write(root / "gold/daily/daily.csv", "day,store_id,amount\n2026-01-01,1,10.5\n2026-01-02,2,\n")
    write(
        root / "ref/stores.cairn.yaml",
        "name: stores\ntype: table\ntags: [reference]\n---\nname: regions\ntype: table\n",
    )


def search(base: str, **params: object) -> dict:
    response = httpx.get(base + "/api/v1/assets", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def crawl(
    volume: Path | str,
    server: ProcessServer,
    *extra: str,
    settings: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """``cairn crawl VOLUME --json`` against ``server``; ``settings`` adds environment
    variables (a remote volume's credentials)."""
    env = cairn_env(Path(server.env["CAIRN_DATA_DIR"]), **(settings or {}))
    result = run_cairn("crawl", str(volume), "--catalogue", server.url, "--json", *extra, env=env)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def crawl_text(volume: Path, server: ProcessServer, code: int) -> str:
    """``cairn crawl VOLUME`` against ``server``: its text report; it exits with ``code``."""
    env = cairn_env(Path(server.env["CAIRN_DATA_DIR"]))
    done = run_cairn("crawl", str(volume), "--catalogue", server.url, env=env)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def crawled_at(asset: dict) -> datetime:
    return datetime.fromisoformat(asset["crawled_at"])


def test_crawl_change_delete_and_zero_write_recrawl(
    tmp_path: Path, catalogue_process_on_backend: ProcessServer
) -> None:
    catalogue_process = catalogue_process_on_backend
    volume = tmp_path / "lake"
    make_volume(volume)
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert report["manifests_found"] == 3 and report["created"] == 4 and report["errors"] == []

    base = catalogue_process.url
    daily = httpx.get(base + "/api/v1/assets/by-name/sales_daily").json()
    assert daily["depends_on"] == ["sales_raw"]  # Mastro alias accepted
    assert [c["name"] for c in daily["schema"]] == ["day", "store_id", "amount"]  # from the CSV
    assert daily["format"] == "csv" and daily["size_bytes"] > 0
    # Stamped with the crawl's start as it is sent (the crawl state keeps no such field).
    assert crawled_at(daily) == datetime.fromisoformat(report["started_at"])
    assert (
        daily["location"].startswith("file://")
        and daily["manifest_path"] == "gold/daily/MANIFEST.yaml"
    )
    raw = httpx.get(base + "/api/v1/assets/by-name/sales_raw").json()
    assert {c["name"]: c["type"] for c in raw["schema"]} == {
        "store_id": "int64",
        "amount": "double",
    }
    assert {i["name"] for i in search(base, q="sales")["items"]} == {"sales_raw", "sales_daily"}
    assert [i["name"] for i in search(base, tag="reference")["items"]] == ["stores"]

    # Unchanged volume: zero writes.
    code, again = crawl(volume, catalogue_process)
    assert code == 0
    assert again["created"] == again["updated"] == again["deleted"] == 0
    assert again["unchanged"] == 4 and again["manifests_parsed"] == 0

    # Change one manifest, delete another, add a document.
    write(
        volume / "gold/daily/MANIFEST.yaml",
        "name: sales_daily\ntype: dataset\ndescription: Daily sales per store, now with refunds.\n"
        "tags: [sales, gold, refunds]\ndepends-on: [sales_raw]\n",
    )
    shutil.rmtree(volume / "raw/sales")
    write(volume / "ref/stores.cairn.yaml", "name: stores\ntype: table\ntags: [reference]\n")
    code, changed = crawl(volume, catalogue_process)
    assert code == 0, changed
    assert changed["updated"] == 1 and changed["deleted"] == 2 and changed["unchanged"] == 1
    assert [i["name"] for i in search(base, q="refunds")["items"]] == ["sales_daily"]
    gone = httpx.get(base + "/api/v1/assets/by-name/sales_raw").json()
    assert gone["deleted"] is True  # soft delete: still there, marked
    now = datetime.fromisoformat(changed["started_at"])
    assert crawled_at(gone) == now
    assert crawled_at(httpx.get(base + "/api/v1/assets/by-name/sales_daily").json()) == now
    # Unchanged: not sent again, so it keeps the first crawl's stamp.
    stores = httpx.get(base + "/api/v1/assets/by-name/stores").json()
    assert crawled_at(stores) == datetime.fromisoformat(report["started_at"])
    assert "sales_raw" not in {i["name"] for i in search(base, q="sales")["items"]}

    code, last = crawl(volume, catalogue_process)
    assert last["created"] == last["updated"] == last["deleted"] == 0


def test_a_volume_emptied_whole_deletes_nothing_unless_allowed(
    tmp_path: Path, catalogue_process
) -> None:
    # An unmounted mount point is an empty folder: taking it at its word deleted every asset.
    volume = tmp_path / "mnt"
    make_volume(volume)
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 4, report
    for child in list(volume.iterdir()):
        shutil.rmtree(child)
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))
    refused = run_cairn("crawl", str(volume), "--catalogue", catalogue_process.url, env=env)
    assert refused.returncode == 1
    assert "holds no file, but its last crawl found 3 manifests: is it mounted?" in refused.stderr
    assert "--allow-empty" in refused.stderr and "Traceback" not in refused.stderr
    base = catalogue_process.url
    assert httpx.get(base + "/api/v1/assets/by-name/stores").json()["deleted"] is False
    code, emptied = crawl(volume, catalogue_process, "--allow-empty")
    assert code == 0 and emptied["deleted"] == 4, emptied
    assert httpx.get(base + "/api/v1/assets/by-name/stores").json()["deleted"] is True


def test_patterns_that_match_no_manifest_delete_nothing_unless_allowed(
    tmp_path: Path, catalogue_process
) -> None:
    # A --pattern that differs from the last crawl's finds files but no manifest: taken at its
    # word, it soft-deleted every asset of the volume.
    volume = tmp_path / "lake"
    make_volume(volume)
    assert crawl(volume, catalogue_process)[0] == 0
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))
    refused = run_cairn(
        "crawl",
        str(volume),
        "--catalogue",
        catalogue_process.url,
        "--pattern",
        "*.meta.yaml",
        env=env,
    )
    assert refused.returncode == 1, refused.stderr
    assert "none matches the manifest patterns (*.meta.yaml)" in refused.stderr
    assert "last crawl found 3 manifests" in refused.stderr
    assert "--allow-empty" in refused.stderr and "Traceback" not in refused.stderr
    base = catalogue_process.url
    assert httpx.get(base + "/api/v1/assets/by-name/stores").json()["deleted"] is False
    code, emptied = crawl(volume, catalogue_process, "--pattern", "*.meta.yaml", "--allow-empty")
    assert code == 0 and emptied["deleted"] == 4, emptied


def test_warnings_are_said_again_while_their_manifest_stays_unchanged(
    tmp_path: Path, catalogue_process
) -> None:
    """An unchanged manifest is not parsed again, so its warnings (an unknown field, a data
    file whose schema cannot be read) were reported by its first crawl only: a crawl on a
    schedule then said "none changed" while they stood. They are said on every crawl until
    the manifest or its data changes."""
    volume = tmp_path / "lake"
    write(volume / "odd/MANIFEST.yaml", "name: odd\ntype: dataset\ncolour: blue\n")
    write(volume / "broken/MANIFEST.yaml", "name: broken_data\ntype: dataset\n")
    (volume / "broken/part-0.parquet").write_bytes(b"PAR1 not really parquet")
    write(volume / "fine/MANIFEST.yaml", "name: fine\ntype: dataset\n")

    def said(report: dict) -> list[tuple[str, str]]:
        return sorted((w["path"], w["reason"].split(" ")[0]) for w in report["warnings"])

    code, first = crawl(volume, catalogue_process)
    assert code == 0 and first["created"] == 3, first
    expected = [("broken/part-0.parquet", "schema"), ("odd/MANIFEST.yaml", "unknown")]
    assert said(first) == expected, first["warnings"]
    code, again = crawl(volume, catalogue_process)
    assert code == 0 and again["manifests_parsed"] == 0 and again["unchanged"] == 3, again
    assert said(again) == expected and again["warnings"] == first["warnings"], again
    # Fixed: said no more.
    write(volume / "odd/MANIFEST.yaml", "name: odd\ntype: dataset\n")
    (volume / "broken/part-0.parquet").unlink()
    code, fixed = crawl(volume, catalogue_process)
    assert code == 0 and fixed["warnings"] == [], fixed
    assert crawl(volume, catalogue_process)[1]["warnings"] == []


def test_bad_manifests_are_reported_and_crawl_goes_on(tmp_path: Path, catalogue_process) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    write(volume / "broken/MANIFEST.yaml", "name: broken\ntype: dataset\ntags: [a, b\n")
    write(volume / "wrongtype/MANIFEST.yaml", "name: wrong\ntype: spaceship\n")
    (volume / "dir_named/MANIFEST.yaml").mkdir(parents=True)
    os.mkfifo(volume / "fifo.cairn.yaml")
    (volume / "loop").mkdir()
    os.symlink(volume / "loop", volume / "loop" / "again")
    code, report = crawl(volume, catalogue_process)
    assert code == 2
    assert report["created"] == 4
    errors = {e["path"]: e for e in report["errors"]}
    assert errors["broken/MANIFEST.yaml"]["line"] is not None
    assert errors["wrongtype/MANIFEST.yaml"]["line"] == 2
    assert "spaceship" in errors["wrongtype/MANIFEST.yaml"]["reason"]
    warned = {w["path"] for w in report["warnings"]}
    assert "dir_named/MANIFEST.yaml" in warned
    assert "fifo.cairn.yaml" in warned
    assert any(p.startswith("loop/again") for p in warned)
    # Errors are reported again until fixed (the broken file is re-read each crawl).
    code, again = crawl(volume, catalogue_process)
    assert code == 2 and {e["path"] for e in again["errors"]} == set(errors)


def test_a_nul_escape_in_a_string_is_that_manifests_error(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    write(volume / "nul/MANIFEST.yaml", 'name: nul\ntype: dataset\nlocation: "x\\0y"\n')
    write(volume / "key/MANIFEST.yaml", 'name: key\ntype: dataset\nlabels: {"a\\0": b}\n')
    code, report = crawl(volume, catalogue_process)
    assert code == 2, report
    assert report["created"] == 4  # the good manifests landed
    errors = {e["path"]: e for e in report["errors"]}
    assert set(errors) == {"nul/MANIFEST.yaml", "key/MANIFEST.yaml"}
    assert (errors["nul/MANIFEST.yaml"]["line"], errors["nul/MANIFEST.yaml"]["field"]) == (
        3,
        "location",
    )
    assert "NUL character" in errors["nul/MANIFEST.yaml"]["reason"]
    assert errors["key/MANIFEST.yaml"]["line"] == 3


def test_user_text_is_never_read_as_markup(tmp_path: Path, catalogue_process) -> None:
    volume = tmp_path / "lake"
    write(volume / "[bold]colour/MANIFEST.yaml", "name: colour\ntype: spaceship\n")
    write(volume / "a[/]b/MANIFEST.yaml", 'name: "x[/]"\ntype: "[red]x[/red]"\n')
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))
    text = run_cairn("crawl", str(volume), "--catalogue", catalogue_process.url, env=env)
    assert text.returncode == 2, text.stderr
    assert "[bold]colour/MANIFEST.yaml:2:" in text.stdout
    assert "a[/]b/MANIFEST.yaml:2:" in text.stdout and "'[red]x[/red]'" in text.stdout
    code, report = crawl(volume, catalogue_process)
    assert code == 2
    assert {e["path"] for e in report["errors"]} == {
        "[bold]colour/MANIFEST.yaml",
        "a[/]b/MANIFEST.yaml",
    }
    # With --config, the volumes after one with such paths are still crawled.
    other = tmp_path / "other"
    write(other / "MANIFEST.yaml", "name: after_markup\ntype: dataset\n")
    config = tmp_path / "crawl.yaml"
    config.write_text(f"volumes:\n  - root: {volume}\n  - root: {other}\n")
    both = run_cairn(
        "crawl", "--config", str(config), "--catalogue", catalogue_process.url, env=env
    )
    assert both.returncode == 2, both.stderr
    assert "a[/]b/MANIFEST.yaml" in both.stdout and "created 1" in both.stdout


def test_a_json_crawl_neither_imports_rich_nor_changes_its_output(
    tmp_path: Path, catalogue_process
) -> None:
    # Rich is made when first printed with: --json writes its one line without it (14 ms
    # of CPU of every such crawl's start-up). The text report still goes through Rich.
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: a\ntype: dataset\n")
    probe = (
        "import sys\nfrom cairn.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('rich' if 'rich.console' in sys.modules else 'plain', code, file=sys.stderr)"
    )
    env = cairn_env(tmp_path / "data")
    crawl = [sys.executable, "-c", probe, "crawl", str(volume)]
    for args, shown in ((["--json"], "plain 0"), ([], "rich 0")):
        result = subprocess.run(
            [*crawl, "--catalogue", catalogue_process.url, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert result.stderr.strip().endswith(shown), result.stderr
        if args:
            assert json.loads(result.stdout)["manifests_found"] == 1
        else:
            assert result.stdout.startswith(f"Crawled {volume.as_uri()}"), result.stdout


def test_a_missing_extra_is_named_in_full(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['hdfs'] = None; from cairn.cli import app; app(sys.argv[1:])"
    result = subprocess.run(
        [sys.executable, "-c", hide, "crawl", "hdfs://127.0.0.1:9/x"],
        env=cairn_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    # The distribution's name may change; the extra in brackets must survive the formatter.
    assert re.search(r"pip install '[\w-]+\[hdfs\]'", result.stderr), result.stderr


def test_a_parquet_footer_over_the_cap_leaves_the_asset_without_schema(
    tmp_path: Path, catalogue_process
) -> None:
    from crawler.enrich import MAX_PARQUET_FOOTER_BYTES

    volume = tmp_path / "lake"
    write(volume / "huge/MANIFEST.yaml", "name: huge_footer\ntype: dataset\n")
    size = MAX_PARQUET_FOOTER_BYTES + 16 * 1024 * 1024  # sparse: no disk, no memory
    with (volume / "huge/part-0.parquet").open("wb") as f:
        f.write(b"PAR1")
        f.seek(size - 8)
        f.write((size - 12).to_bytes(4, "little") + b"PAR1")
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 1, report
    (warning,) = report["warnings"]
    assert warning["path"] == "huge/part-0.parquet" and "footer claims" in warning["reason"]
    asset = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/huge_footer").json()
    assert asset.get("schema") in (None, []) and asset["format"] == "parquet"


def test_the_schema_comes_from_a_file_of_the_assets_format(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    # An old Parquet export beside the CSV data the manifest declares.
    write(volume / "declared/MANIFEST.yaml", "name: declared_csv\ntype: dataset\nformat: csv\n")
    write(volume / "declared/data.csv", "id,name\n1,a\n")
    pq.write_table(pa.table({"pq": [1]}), volume / "declared/old_export.parquet")
    # No format declared: four CSV files outvote one Parquet file.
    write(volume / "voted/MANIFEST.yaml", "name: voted_csv\ntype: dataset\n")
    for i in range(4):
        write(volume / f"voted/part-{i}.csv", "id,name\n1,a\n")
    pq.write_table(pa.table({"pq": [1]}), volume / "voted/extra.parquet")
    # A Delta table's data files are Parquet.
    write(volume / "delta/MANIFEST.yaml", "name: delta_t\ntype: table\nformat: delta\n")
    write(volume / "delta/notes.csv", "note\nx\n")
    pq.write_table(pa.table({"pq": [1]}), volume / "delta/part-0.parquet")
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 3, report
    for name, fmt, columns in [
        ("declared_csv", "csv", ["id", "name"]),
        ("voted_csv", "csv", ["id", "name"]),
        ("delta_t", "delta", ["pq"]),
    ]:
        asset = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/{name}").json()
        assert asset["format"] == fmt, asset
        assert [c["name"] for c in asset["schema"]] == columns, asset


def test_a_location_outside_the_volume_is_ignored_as_the_warning_says(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    write(volume / "plain/MANIFEST.yaml", "name: plain\ntype: dataset\n")
    write(volume / "plain/data.csv", "id,name\n1,a\n")
    write(volume / "escape/MANIFEST.yaml", "name: escape\ntype: dataset\nlocation: ../../etc\n")
    write(volume / "escape/data.csv", "id,name\n1,a\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 2, report
    (warning,) = report["warnings"]
    assert warning["path"] == "escape/MANIFEST.yaml" and warning["field"] == "location"
    assert "points outside the volume; it was ignored" in warning["reason"]
    # Ignored: the asset is what it is without a location, the manifest's folder.
    base = catalogue_process.url + "/api/v1/assets/by-name/"
    plain, escape = (httpx.get(base + name).json() for name in ("plain", "escape"))
    assert escape["location"] == plain["location"].replace("/plain", "/escape")
    assert escape["location"].startswith("file://") and escape["location"].endswith("/escape")
    for field in ("size_bytes", "format", "schema"):
        assert escape[field] == plain[field], field


def test_a_schema_lost_to_an_io_error_is_kept_and_read_again(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    write(volume / "t/MANIFEST.yaml", "name: flaky\ntype: dataset\n")
    write(volume / "t/data.csv", "id,name\n1,a\n")
    url = catalogue_process.url + "/api/v1/assets/by-name/flaky"

    def columns() -> list[str] | None:
        schema = httpx.get(url).json()["schema"]
        return None if schema is None else [c["name"] for c in schema]

    code, report = crawl(volume, catalogue_process)
    assert code == 0 and columns() == ["id", "name"], report
    # Rewritten, then unreadable for one crawl: the walk still lists it, its read fails.
    write(volume / "t/data.csv", "id,name,extra\n1,a,b\n")
    (volume / "t/data.csv").chmod(0)
    # root reads mode-000 files regardless: drop the capabilities that let it.
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))
    args = ["-m", "cairn", "crawl", str(volume), "--catalogue", catalogue_process.url, "--json"]
    result = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    (warning,) = report["warnings"]
    assert warning["path"] == "t/data.csv" and "permission denied" in warning["reason"]
    # The schema last read stands rather than being wiped by an error that says nothing of
    # the data.
    assert columns() == ["id", "name"]
    # Readable again: the next crawl reads it, though nothing changed on the volume since.
    (volume / "t/data.csv").chmod(0o644)
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["updated"] == 1 and report["warnings"] == [], report
    assert columns() == ["id", "name", "extra"]
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["updated"] == 0 and report["unchanged"] == 1, report


def test_a_symlink_back_into_the_volume_is_not_walked_twice(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    for name in ("one", "two"):
        write(volume / f"data/{name}/MANIFEST.yaml", f"name: linked_{name}\ntype: dataset\n")
    # "aaa" sorts first: walked twice, the real manifests came out as the conflicts.
    shutil.copytree(volume / "data", volume / "aaa")
    code, first = crawl(volume, catalogue_process)
    assert code == 2 and first["created"] == 2  # a real copy: those are real conflicts
    shutil.rmtree(volume / "aaa")
    os.symlink("data", volume / "aaa")
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert report["errors"] == []
    assert [(w["path"], w["reason"].split(" (")[0]) for w in report["warnings"]] == [
        ("aaa", "symlink to a folder inside the volume")
    ]
    # The copies' assets are gone (the link hides nothing), so the real manifests take the names.
    assert report["deleted"] == 2 and report["created"] == 2
    for name in ("one", "two"):
        asset = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/linked_{name}").json()
        assert asset["manifest_path"] == f"data/{name}/MANIFEST.yaml" and not asset["deleted"]
    code, again = crawl(volume, catalogue_process)
    assert code == 0 and again["created"] == again["updated"] == again["deleted"] == 0


def test_a_csv_wider_than_the_schema_limit_keeps_its_first_columns(
    tmp_path: Path, catalogue_process
) -> None:
    from cairn.models import MAX_COLUMNS

    volume = tmp_path / "lake"
    write(volume / "wide/MANIFEST.yaml", "name: wide\ntype: dataset\n")
    columns = MAX_COLUMNS + 5
    write(volume / "wide/data.csv", ",".join(f"c{i}" for i in range(columns)) + "\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 1, report
    (warning,) = report["warnings"]
    assert warning["path"] == "wide/data.csv"
    assert f"{columns} columns; the schema keeps the first {MAX_COLUMNS}" in warning["reason"]
    asset = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/wide").json()
    assert len(asset["schema"]) == MAX_COLUMNS and asset["schema"][-1]["name"] == "c9999"


def test_text_report_says_what_was_read_and_logs_nothing_twice(
    tmp_path: Path, catalogue_process
) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))

    def text_crawl() -> subprocess.CompletedProcess:
        done = run_cairn("crawl", str(volume), "--catalogue", catalogue_process.url, env=env)
        assert done.returncode == 0, done.stderr
        # The report is the output; an INFO line saying it again cuts into the progress bar.
        assert "crawled" not in done.stderr.lower(), done.stderr
        return done

    assert ": 5 files, 3 manifests, 4 assets" in text_crawl().stdout
    assert ": 5 files, 3 manifests (none changed), 4 assets" in text_crawl().stdout
    write(volume / "ref/stores.cairn.yaml", "name: stores\ntype: table\n")
    assert "3 manifests (1 new or changed), 3 assets" in text_crawl().stdout


def test_manifest_errors_are_counted_and_an_unchanged_broken_manifest_is_not_changed(
    tmp_path: Path, catalogue_process
) -> None:
    """The summary said "failed 0" above the manifest errors it listed, and a manifest that
    still had errors counted as new or changed on every crawl. Its errors are still reported
    by every crawl (exit 2) until it is fixed."""
    volume = tmp_path / "lake"
    write(volume / "good/MANIFEST.yaml", "name: good\ntype: dataset\n")
    write(volume / "bad/MANIFEST.yaml", "name: bad\ntype: spaceship\ntags: [a, 3]\n")
    first = crawl_text(volume, catalogue_process, 2)
    assert ": 2 files, 2 manifests, 1 asset\n" in first, first  # not "1 assets"
    assert "failed 0, manifest errors 2" in first and first.count("error: bad/") == 2, first
    again = crawl_text(volume, catalogue_process, 2)
    assert "2 manifests (none changed), 1 asset\n" in again, again
    assert "failed 0, manifest errors 2" in again and again.count("error: bad/") == 2, again
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and (report["manifests_parsed"], report["manifests_rechecked"]) == (1, 1)
    assert (report["failed"], report["manifest_errors"], len(report["errors"])) == (0, 2, 2)

    write(volume / "bad/MANIFEST.yaml", "name: bad\ntype: spaceship\n")  # still broken
    edited = crawl_text(volume, catalogue_process, 2)
    assert "2 manifests (1 new or changed)" in edited and "manifest errors 1" in edited, edited
    write(volume / "bad/MANIFEST.yaml", "name: bad\ntype: dataset\n")
    fixed = crawl_text(volume, catalogue_process, 0)
    assert "2 manifests (1 new or changed), 2 assets" in fixed, fixed
    assert "failed 0\n" in fixed and "manifest errors" not in fixed, fixed
    assert "2 manifests (none changed)" in crawl_text(volume, catalogue_process, 0)


def test_name_conflict_names_both_paths(tmp_path: Path, catalogue_process) -> None:
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    write(volume / "b/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and report["created"] == 1
    (error,) = report["errors"]
    assert error["path"] == "b/MANIFEST.yaml" and "a/MANIFEST.yaml" in error["reason"]


def test_a_refused_manifest_is_sent_again_but_not_counted_changed(
    tmp_path: Path, catalogue_process_on_backend: ProcessServer
) -> None:
    """A manifest whose asset the catalogue refused was counted "new or changed" by every
    crawl after it, unchanged. It is still sent again each crawl (the refusal is said until
    it goes away), and lands once the other asset lets go of the name."""
    catalogue_process = catalogue_process_on_backend
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    write(volume / "b/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    assert "failed 1" in crawl_text(volume, catalogue_process, 2)
    again = crawl_text(volume, catalogue_process, 2)
    assert "2 manifests (none changed), 2 assets" in again, again
    assert "failed 1" in again and "error: b/MANIFEST.yaml:1:1: name: name 'twin'" in again, again
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and (report["manifests_parsed"], report["manifests_rechecked"]) == (1, 1)

    # An update refused: the catalogue keeps b's earlier asset, and so does the crawl state.
    write(volume / "b/MANIFEST.yaml", "name: solo\ntype: dataset\n")
    assert "created 1" in crawl_text(volume, catalogue_process, 0)
    write(volume / "b/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    assert "(1 new or changed)" in crawl_text(volume, catalogue_process, 2)
    assert "(none changed)" in crawl_text(volume, catalogue_process, 2)

    write(volume / "a/MANIFEST.yaml", "name: other\ntype: dataset\n")
    freed = crawl_text(volume, catalogue_process, 0)
    assert "(1 new or changed)" in freed and "updated 2, " in freed, freed
    assert "2 manifests (none changed)" in crawl_text(volume, catalogue_process, 0)
    names = {a["name"]: a["manifest_path"] for a in search(catalogue_process.url)["items"]}
    assert names == {"other": "a/MANIFEST.yaml", "twin": "b/MANIFEST.yaml"}


def test_location_and_name_conflicts_name_the_line_of_their_field(
    tmp_path: Path, catalogue_process
) -> None:
    """What the crawl finds after the parse is said at the field's line, whichever reader
    parsed the file: the line reader (one plain document) or libyaml (a flow mapping,
    several documents), not at the document's first line or its '---'."""
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: esc\ntype: dataset\n# out\nlocation: ../../etc\n")
    write(
        volume / "f/MANIFEST.yaml",
        "name: esc2\ntype: dataset\nlabels: {k: v}\nlocation:\n  ../../etc\n",
    )
    write(volume / "b/MANIFEST.yaml", "name: twin\ntype: dataset\n")
    write(volume / "c/MANIFEST.yaml", "type: dataset\n# the name\nname: twin\n")
    write(
        volume / "m/MANIFEST.yaml",
        "name: one\ntype: dataset\n---\ndescription: x\nname: twin\ntype: dataset\n",
    )
    write(volume / "i1/MANIFEST.yaml", "name: mine\ntype: dataset\nid: same\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 2, report
    said = {(p["path"], p["line"], p["field"]) for p in report["warnings"] + report["errors"]}
    assert said == {
        ("a/MANIFEST.yaml", 4, "location"),
        ("f/MANIFEST.yaml", 5, "location"),
        ("c/MANIFEST.yaml", 3, "name"),
        ("m/MANIFEST.yaml", 5, "name"),
    }, report
    # Said again from the crawl state while the manifests stay unchanged; an id another
    # manifest's asset has is said at the id's line.
    write(volume / "i2/MANIFEST.yaml", "name: yours\ntype: dataset\n\nid: same\n")
    code, report = crawl(volume, catalogue_process)
    said = {(p["path"], p["line"]) for p in report["warnings"]}
    assert said == {("a/MANIFEST.yaml", 4), ("f/MANIFEST.yaml", 5)}, report
    assert ("i2/MANIFEST.yaml", 4, "id") in {
        (p["path"], p["line"], p["field"]) for p in report["errors"]
    }, report


def test_one_id_declared_twice_in_a_crawl_is_said_at_the_second_id_line(
    tmp_path: Path, catalogue_process
) -> None:
    """Two new manifests (or two documents of one) declaring one id went to the catalogue in
    one request, which refused the second as "appears twice in this request (items 0 and
    1)": said at the document's first line, naming neither file. The crawl keeps the first,
    says the second at its id's line and names the first; the catalogue says it from then
    on (the id is the first manifest's asset's)."""
    volume = tmp_path / "lake"
    write(volume / "c/MANIFEST.yaml", "name: cee\ntype: dataset\nid: shared\n")
    write(volume / "d/MANIFEST.yaml", "name: dee\ntype: dataset\n# mine\nid: shared\n")
    both = "name: one\ntype: dataset\nid: pair\n---\nname: two\nid: pair\ntype: dataset\n"
    write(volume / "e/MANIFEST.yaml", both)
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and report["created"] == 2 and report["failed"] == 0, report
    errors = {(p["path"], p["line"], p["field"]): p["reason"] for p in report["errors"]}
    assert set(errors) == {("d/MANIFEST.yaml", 4, "id"), ("e/MANIFEST.yaml", 6, "id")}, errors
    assert "declared by c/MANIFEST.yaml (line 3) too" in errors["d/MANIFEST.yaml", 4, "id"]
    assert "by an earlier document (line 3) too" in errors["e/MANIFEST.yaml", 6, "id"]
    names = {a["name"]: a["id"] for a in search(catalogue_process.url)["items"]}
    assert names == {"cee": "shared", "one": "pair"}, names

    code, report = crawl(volume, catalogue_process)
    assert code == 2 and report["manifests_parsed"] == report["manifests_rechecked"] == 2
    errors = {(p["path"], p["line"], p["field"]): p["reason"] for p in report["errors"]}
    assert set(errors) == {("d/MANIFEST.yaml", 4, "id"), ("e/MANIFEST.yaml", 6, "id")}, errors
    assert (
        "already belongs to asset 'cee' from c/MANIFEST.yaml" in errors["d/MANIFEST.yaml", 4, "id"]
    )


def test_moving_a_manifest_is_not_a_conflict(
    tmp_path: Path, catalogue_process_on_backend: ProcessServer
) -> None:
    catalogue_process = catalogue_process_on_backend
    volume = tmp_path / "lake"
    write(volume / "old/MANIFEST.yaml", "name: mover\ntype: dataset\n")
    assert crawl(volume, catalogue_process)[0] == 0
    (volume / "new").mkdir()
    (volume / "old/MANIFEST.yaml").rename(volume / "new/MANIFEST.yaml")
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert report["created"] == 1 and report["deleted"] == 1
    moved = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/mover").json()
    assert moved["manifest_path"] == "new/MANIFEST.yaml" and moved["deleted"] is False


def by_name(server: ProcessServer, name: str) -> dict | None:
    response = httpx.get(f"{server.url}/api/v1/assets/by-name/{name}", timeout=10)
    assert response.status_code in (200, 404), response.text
    return response.json() if response.status_code == 200 else None


def docs(*names: str) -> str:
    return "---\n".join(f"name: {n}\ntype: dataset\n" for n in names)


def test_names_moving_between_ids_of_one_crawl_are_not_conflicts(
    tmp_path: Path, catalogue_process_on_backend: ProcessServer
) -> None:
    """Ids follow a document's position (DESIGN.md section 3): removing the first document
    of a file moves every later name to the id before it, reordering swaps them, and two
    manifests may swap names. Each is one crawl's work, with no conflict; a name kept by an
    asset whose manifest also changed is still one."""
    catalogue_process = catalogue_process_on_backend
    volume = tmp_path / "lake"
    write(volume / "multi/MANIFEST.yaml", docs("first", "second", "third"))
    write(volume / "p/MANIFEST.yaml", docs("left"))
    write(volume / "q/MANIFEST.yaml", docs("right"))
    assert crawl(volume, catalogue_process)[0] == 0
    ids = {n: by_name(catalogue_process, n)["id"] for n in ("first", "second", "third")}

    write(volume / "multi/MANIFEST.yaml", docs("second", "third"))  # the first one removed
    write(volume / "p/MANIFEST.yaml", docs("right"))  # p and q swap names
    write(volume / "q/MANIFEST.yaml", docs("left"))
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["errors"] == [], report
    assert (report["updated"], report["deleted"], report["failed"]) == (4, 1, 0), report
    assert by_name(catalogue_process, "first") is None
    assert by_name(catalogue_process, "second")["id"] == ids["first"]
    assert by_name(catalogue_process, "third")["id"] == ids["second"]
    assert by_name(catalogue_process, "right")["manifest_path"] == "p/MANIFEST.yaml"
    assert by_name(catalogue_process, "left")["manifest_path"] == "q/MANIFEST.yaml"
    gone = httpx.get(f"{catalogue_process.url}/api/v1/assets/{ids['third']}", timeout=10)
    assert gone.json()["deleted"] is True

    write(volume / "multi/MANIFEST.yaml", docs("third", "second"))  # reordered
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and (report["updated"], report["deleted"]) == (2, 0), report
    assert by_name(catalogue_process, "third")["id"] == ids["first"]
    again = crawl(volume, catalogue_process)[1]
    assert again["unchanged"] == 4 and again["updated"] == again["deleted"] == 0, again

    # q takes p's name while p keeps it (with a new description): still a conflict, and p's
    # asset is neither released nor renamed.
    write(volume / "p/MANIFEST.yaml", "name: right\ntype: dataset\ndescription: kept\n")
    write(volume / "q/MANIFEST.yaml", docs("right"))
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and report["failed"] == 1, report
    (error,) = report["errors"]
    assert error["path"] == "q/MANIFEST.yaml" and "p/MANIFEST.yaml" in error["reason"]
    assert "rename the asset in q/MANIFEST.yaml" in error["reason"], error
    kept = by_name(catalogue_process, "right")
    assert kept["manifest_path"] == "p/MANIFEST.yaml" and kept["description"] == "kept"


def test_a_long_file_losing_its_first_document_settles_in_one_crawl(
    tmp_path: Path, catalogue_process
) -> None:
    """Every name moves to the id before it, across several bulk requests."""
    volume = tmp_path / "lake"
    names = [f"doc_{i:04d}" for i in range(2500)]
    write(volume / "long/MANIFEST.yaml", docs(*names))
    assert crawl(volume, catalogue_process)[0] == 0
    write(volume / "long/MANIFEST.yaml", docs(*names[1:]))
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["errors"] == [], report
    assert (report["updated"], report["deleted"]) == (2499, 1), report
    assert by_name(catalogue_process, names[0]) is None
    assert search(catalogue_process.url, q="doc_", limit=1)["total"] == 2499


def test_crawl_exit_1_when_catalogue_is_unreachable(tmp_path: Path) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(tmp_path / "data", CAIRN_HTTP_RETRIES="2")
    result = run_cairn("crawl", str(volume), "--catalogue", "http://127.0.0.1:9", env=env)
    assert result.returncode == 1
    assert "cannot reach the catalogue" in result.stderr
    missing = run_cairn("crawl", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_crawl_state_is_kept_per_catalogue(tmp_path: Path) -> None:
    """A catalogue that lacks the assets (new, wiped, another one) gets them all."""
    volume = tmp_path / "lake"
    make_volume(volume)
    crawler_env = cairn_env(tmp_path / "crawler", CAIRN_HTTP_RETRIES="2")

    def crawl_into(url: str) -> tuple[int, dict]:
        done = run_cairn("crawl", str(volume), "--catalogue", url, "--json", env=crawler_env)
        return done.returncode, json.loads(done.stdout)

    a = ProcessServer("catalogue", cairn_env(tmp_path / "a"), tmp_path / "a.log").start()
    b = ProcessServer("catalogue", cairn_env(tmp_path / "b"), tmp_path / "b.log").start()
    try:
        code, into_a = crawl_into(a.url)
        assert code == 0 and into_a["created"] == 4, into_a
        code, into_b = crawl_into(b.url)
        assert code == 0 and into_b["created"] == 4, into_b
        assert search(b.url)["total"] == 4
        code, again = crawl_into(a.url)
        assert code == 0 and again["created"] == again["updated"] == again["deleted"] == 0
        assert again["unchanged"] == 4 and again["manifests_parsed"] == 0
        # A wiped catalogue (same URL, new store) is a new instance: it gets everything again.
        b.stop()
        shutil.rmtree(tmp_path / "b")
        b.start()
        code, wiped = crawl_into(b.url)
        assert code == 0 and wiped["created"] == 4, wiped
    finally:
        a.stop()
        b.stop()
    # Nothing changed on the volume, but a catalogue that does not answer is a failed crawl.
    code, stopped = crawl_into(a.url)
    assert code == 1 and "cannot reach the catalogue" in stopped["error"]


def test_crawl_waits_for_a_restarting_catalogue(tmp_path: Path) -> None:
    """Started while the catalogue is down, the crawl retries and lands everything."""
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(tmp_path / "data")
    server = ProcessServer("catalogue", env, tmp_path / "cat.log")
    crawler = subprocess.Popen(
        [sys.executable, "-m", "cairn", "crawl", str(volume), "--catalogue", server.url, "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    server.start()
    try:
        out, err = crawler.communicate(timeout=90)
        assert crawler.returncode == 0, err
        assert json.loads(out)["created"] == 4
        assert search(server.url)["total"] == 4
    finally:
        server.stop()


def test_crawl_with_api_key(tmp_path: Path) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(tmp_path / "data", CAIRN_API_KEYS="crawler-secret-123")
    server = ProcessServer("catalogue", env, tmp_path / "cat.log").start()
    try:
        denied = run_cairn("crawl", str(volume), "--catalogue", server.url, env=env)
        assert denied.returncode == 1 and "CAIRN_API_KEY" in denied.stderr
        allowed = run_cairn(
            "crawl",
            str(volume),
            "--catalogue",
            server.url,
            env={**env, "CAIRN_API_KEY": "crawler-secret-123", "CAIRN_LOG_LEVEL": "debug"},
        )
        assert allowed.returncode == 0, allowed.stderr
        for text in (denied.stdout, denied.stderr, allowed.stdout, allowed.stderr, server.logs()):
            assert "crawler-secret-123" not in text
    finally:
        server.stop()


def test_extra_types_widen_the_mastro_set_for_the_api_and_the_crawler(tmp_path: Path) -> None:
    # README (configuration): CAIRN_EXTRA_TYPES allows asset types besides Mastro's. The
    # catalogue checks writes against it and the crawler checks manifests, so both read it.
    volume = tmp_path / "lake"
    write(volume / "exp/MANIFEST.yaml", "name: ab_test_42\ntype: experiment\n")
    plain = cairn_env(tmp_path / "data")
    env = {**plain, "CAIRN_EXTRA_TYPES": "experiment, dashboard"}
    server = ProcessServer("catalogue", env, tmp_path / "cat.log").start()
    try:
        api = server.url + "/api/v1/assets/"
        for kind in ("experiment", "dashboard"):
            made = httpx.put(api + kind, json={"name": kind, "type": kind}, timeout=10)
            assert made.status_code == 201, made.text
        refused = httpx.put(api + "x", json={"name": "x", "type": "spaceship"}, timeout=10)
        assert refused.status_code == 422 and "CAIRN_EXTRA_TYPES" in refused.text
        # A search takes the same types, and names them when it refuses one.
        search = server.url + "/api/v1/assets"
        found = httpx.get(search, params={"type": "dashboard"}, timeout=10)
        assert [item["name"] for item in found.json()["items"]] == ["dashboard"], found.text
        unknown = httpx.get(search, params={"type": "spaceship"}, timeout=10)
        assert unknown.status_code == 422, unknown.text
        assert "dashboard, database, dataset" in unknown.json()["detail"], unknown.text

        # A crawler without the setting reports the manifest (exit 2) and sends nothing.
        code, report = crawl(volume, server, settings={"CAIRN_EXTRA_TYPES": ""})
        assert code == 2 and "experiment" in json.dumps(report["errors"]), report
        assert httpx.get(api + "by-name/ab_test_42", timeout=10).status_code == 404
        code, report = crawl(volume, server, settings={"CAIRN_EXTRA_TYPES": "experiment"})
        assert code == 0 and report["created"] == 1, report
        assert httpx.get(api + "by-name/ab_test_42", timeout=10).json()["type"] == "experiment"
    finally:
        server.stop()


def test_large_crawl_parses_in_worker_processes(tmp_path: Path, catalogue_process) -> None:
    """Past PARALLEL_THRESHOLD manifests the crawler parses and reads schemas in a pool."""
    from crawler.crawl import PARALLEL_THRESHOLD

    volume = tmp_path / "lake"
    count = PARALLEL_THRESHOLD + 50
    for i in range(count):
        write(volume / f"d{i // 100}/a{i}/MANIFEST.yaml", f"name: asset_{i}\ntype: dataset\n")
        if i % 10 == 3:
            # Parquet footers are read in the workers too, where pyarrow runs without numpy.
            table = pa.table(
                {"key": pa.array([i], pa.int32()), "at": pa.array([None], pa.date32())}
            )
            pq.write_table(table, volume / f"d{i // 100}/a{i}/part-0.parquet")
        else:
            write(volume / f"d{i // 100}/a{i}/data.csv", "id,score\n1,0.5\n")
    write(volume / "bad/MANIFEST.yaml", "name: [unclosed\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 2 and report["created"] == count
    assert [e["path"] for e in report["errors"]] == ["bad/MANIFEST.yaml"]
    sample = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/asset_417").json()
    assert [c["name"] for c in sample["schema"]] == ["id", "score"]
    assert crawled_at(sample) == datetime.fromisoformat(report["started_at"])
    from_parquet = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/asset_413").json()
    assert [(c["name"], c["type"]) for c in from_parquet["schema"]] == [
        ("key", "int32"),
        ("at", "date32"),
    ]
    assert from_parquet["format"] == "parquet"
    assert search(catalogue_process.url, limit=1)["total"] == count


def _described_schema(columns: int) -> str:
    return "schema:\n" + "".join(
        f"  - {{name: column_{n:05d}, type: int64, description: the measure number {n}}}\n"
        for n in range(columns)
    )


def test_a_batch_over_the_catalogues_body_limit_is_split(tmp_path: Path) -> None:
    """Wide tables: a batch of assets over the catalogue's body limit (16 MiB by default; 150
    CSVs of 3,000+ columns) was refused with a 413 that failed the whole crawl, every time.
    Batches are split until the catalogue takes them; an asset too big alone is that
    manifest's error, and the others land."""
    volume = tmp_path / "lake"
    for n in range(12):
        write(
            volume / f"t{n:02d}/MANIFEST.yaml",
            f"name: wide{n}\ntype: table\n" + _described_schema(100),
        )
    write(volume / "huge/MANIFEST.yaml", "name: huge\ntype: table\n" + _described_schema(1500))
    server = ProcessServer(
        "catalogue",
        cairn_env(tmp_path / "data", CAIRN_MAX_BODY_BYTES="60000"),
        tmp_path / "catalogue.log",
    ).start()
    try:
        # The crawler's own limit (the default, 16 MiB) is above the catalogue's: the 413s say.
        code, report = crawl(volume, server)
        assert code == 2 and report["created"] == 12 and report["failed"] == 1, report
        (error,) = report["errors"]
        assert error["path"] == "huge/MANIFEST.yaml" and error["line"] == 1, error
        assert "CAIRN_MAX_BODY_BYTES" in error["reason"] and "schema" in error["reason"], error
        names = {a["name"] for a in search(server.url, limit=100)["items"]}
        assert names == {f"wide{n}" for n in range(12)}
        # The refused asset is tried (and reported) again; the rest is unchanged.
        write(volume / "t00/MANIFEST.yaml", "name: wide0\ntype: table\ndescription: new\n")
        code, report = crawl(volume, server, settings={"CAIRN_MAX_BODY_BYTES": "60000"})
        assert code == 2 and report["updated"] == 1 and report["failed"] == 1, report
        assert [e["path"] for e in report["errors"]] == ["huge/MANIFEST.yaml"], report
    finally:
        server.stop()


def test_file_names_that_are_not_utf8_are_reported_and_the_crawl_goes_on(
    tmp_path: Path, catalogue_process
) -> None:
    """A folder named in Latin-1 (b'caf\\xe9') ended the whole crawl in a UnicodeEncodeError,
    and such a name in any problem (a broken symlink) crashed `--json`'s report."""
    volume = tmp_path / "lake"
    write(volume / "ok/MANIFEST.yaml", "name: ok\ntype: dataset\n")
    raw = os.fsencode(volume)
    os.makedirs(raw + b"/caf\xe9")
    with open(raw + b"/caf\xe9/MANIFEST.yaml", "w") as f:
        f.write("name: latin1\ntype: dataset\n")
    with open(raw + b"/ok/d\xfe.csv", "w") as f:  # a data file: read, and named in a warning
        f.write("a,b\n1,2\n")
    os.symlink(b"/nowhere", raw + b"/ok/gone\xff")
    for extra in (["--json"], []):
        env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]))
        result = run_cairn(
            "crawl", str(volume), "--catalogue", catalogue_process.url, *extra, env=env
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        out = result.stdout
        if extra:
            report = json.loads(out)
            found = {p["path"]: p["reason"] for p in report["errors"] + report["warnings"]}
            out = "\n".join(f"{path}: {reason}" for path, reason in found.items())
        assert "caf\\xe9/MANIFEST.yaml: the file's path is not valid UTF-8" in out, out
        assert "ok/gone\\xff: dangling symlink" in out, out
    (asset,) = search(catalogue_process.url)["items"]
    assert asset["name"] == "ok" and [c["name"] for c in asset["schema"]] == ["a", "b"]


def test_a_catalogue_that_wants_a_key_says_whether_one_was_sent(tmp_path: Path) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(tmp_path / "data", CAIRN_API_KEYS="crawler-secret-123")
    server = ProcessServer("catalogue", env, tmp_path / "cat.log").start()
    try:
        env.pop("CAIRN_API_KEYS")
        for key, says in ((None, "no key was sent"), ("wrong", "CAIRN_API_KEY was refused")):
            run_env = env if key is None else {**env, "CAIRN_API_KEY": key}
            denied = run_cairn("crawl", str(volume), "--catalogue", server.url, env=run_env)
            assert denied.returncode == 1, denied.stdout + denied.stderr
            (line,) = [line for line in denied.stderr.splitlines() if line.strip()]
            assert says in line and "CAIRN_API_KEYS" in line and "HTTP 401" in line, line
    finally:
        server.stop()


def test_a_crawl_state_it_cannot_use_is_one_line(tmp_path: Path, catalogue_process) -> None:
    """A data dir the crawler cannot write, a damaged state file, or a second crawl of the
    same volume into the same catalogue while one runs: one line saying what to do (exit 1),
    not a traceback, and not two crawls interleaving their pushes and state saves."""
    from crawler.push import CataloguePusher
    from crawler.state import CrawlState

    volume = tmp_path / "lake"
    make_volume(volume)

    def crawled(data: Path) -> subprocess.CompletedProcess:
        env = cairn_env(data)
        return run_cairn("crawl", str(volume), "--catalogue", catalogue_process.url, env=env)

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "crawl-state").write_text("a file where the state folder goes")
    damaged = tmp_path / "damaged"
    done = crawled(damaged)
    assert done.returncode == 0, done.stdout + done.stderr
    (state_file,) = (damaged / "crawl-state").glob("*.db")
    state_file.write_bytes(b"not a database" * 300)
    for path in state_file.parent.glob("*.db-*"):
        path.unlink()
    busy = tmp_path / "busy"
    with CataloguePusher(catalogue_process.url) as pusher:
        instance = pusher.instance_id()
    held = CrawlState(busy / "crawl-state", volume.resolve().as_uri(), instance)
    try:
        cases = {"crawl-state": blocked, "remove it": damaged, "another crawl": busy}
        for says, data in cases.items():
            result = crawled(data)
            assert result.returncode == 1, (says, result.stdout + result.stderr)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and says in lines[0], (says, result.stderr)
    finally:
        held.close()
    assert crawled(busy).returncode == 0  # once the other crawl ended


def _living(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process that has not ended; None once it has (a zombie
    has ended: only its exit status waits to be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (fields[0], int(fields[1]))


def _descendants(pid: int) -> set[int]:
    """Every living process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        found = _living(int(proc.name)) if proc.name.isdigit() else None
        if found is not None:
            children.setdefault(found[1], []).append(int(proc.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.parametrize("how", ["fork", "forkserver"])
def test_a_crawl_killed_mid_way_leaves_no_process_and_the_next_crawl_lands_all(
    tmp_path: Path, catalogue_process, how: str
) -> None:
    """kill -9 of a crawl left its parsing processes running for ever (they wait on a queue
    no one writes to), each holding what the crawl had opened; with a fork server (a
    crawl.yaml's scheduled volumes run in threads) the server and the resource tracker too.
    They now end with it, and the next crawl lands every asset once."""
    from tests.servers.processes import patient

    volume = tmp_path / "lake"
    for n in range(3000):
        write(volume / f"g{n // 100:02d}/m{n:04d}/MANIFEST.yaml", f"name: m{n}\ntype: dataset\n")
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]), CAIRN_CRAWL_WORKERS="2")
    args = [str(volume), "--catalogue", catalogue_process.url]
    if how == "forkserver":
        config = tmp_path / "crawl.yaml"
        config.write_text(
            f"volumes:\n  - root: {volume}\n    schedule: 1h\n"
            f"    catalogue-endpoint: {catalogue_process.url}\n"
        )
        args = ["--config", str(config)]
    crawl_proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", "crawl", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def workers_up() -> set[int]:
        below = _descendants(crawl_proc.pid)
        if how == "forkserver":  # the workers are the fork server's children
            below = below if any(_parent(p) != crawl_proc.pid for p in below) else set()
        return below

    try:
        deadline = time.monotonic() + patient(60)
        while not (started := workers_up()):
            assert crawl_proc.poll() is None, "the crawl ended before its workers were seen"
            assert time.monotonic() < deadline, "no parsing process started"
            time.sleep(0.005)
        crawl_proc.kill()
        crawl_proc.wait()
        deadline = time.monotonic() + patient(30)
        while left := [p for p in started if _living(p)]:
            if time.monotonic() > deadline:
                for pid in left:
                    os.kill(pid, 9)
                raise AssertionError(f"processes outlived the crawl: {left}")
            time.sleep(0.05)
    finally:
        if crawl_proc.poll() is None:
            crawl_proc.kill()
            crawl_proc.wait()
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert report["created"] + report["unchanged"] == 3000 and report["errors"] == [], report
    assert search(catalogue_process.url, limit=1)["total"] == 3000


def test_ctrl_c_ends_a_crawl_at_once_and_the_next_crawl_lands_all(
    tmp_path: Path, catalogue_process
) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while workers parse and
    batches land: the KeyboardInterrupt it raised could stop the crawl's thread holding a
    future's lock, and the pool's shutdown then waited for ever (one Ctrl-C of 33 hung).
    Now the crawl says it was interrupted and ends with 130, its workers with it, and the next
    crawl lands every asset."""
    from tests.servers.processes import patient

    volume = tmp_path / "lake"
    for n in range(3000):
        write(volume / f"g{n // 100:02d}/m{n:04d}/MANIFEST.yaml", f"name: m{n}\ntype: dataset\n")
    env = cairn_env(
        Path(catalogue_process.env["CAIRN_DATA_DIR"]),
        CAIRN_CRAWL_WORKERS="2",
        CAIRN_CRAWL_BATCH_SIZE="50",
    )

    at = ["--catalogue", catalogue_process.url]

    def landed() -> int:
        return search(catalogue_process.url, limit=1)["total"]

    for moment, reached, mode in (
        ("workers up", lambda proc: _descendants(proc.pid), []),
        ("batches landing", lambda _proc: landed() > 0, []),
        # A scheduled crawl runs in the main thread too, and ends the same way.
        ("workers up, --every", lambda proc: _descendants(proc.pid), ["--every", "1h"]),
    ):
        crawl_proc = subprocess.Popen(
            [sys.executable, "-m", "cairn", "crawl", str(volume), *at, *mode],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's job
        )
        try:
            deadline = time.monotonic() + patient(60)
            while not (started := reached(crawl_proc)):
                assert crawl_proc.poll() is None, f"the crawl ended before {moment}"
                assert time.monotonic() < deadline, f"never {moment}"
                time.sleep(0.005)
            below = _descendants(crawl_proc.pid)
            os.killpg(crawl_proc.pid, signal.SIGINT)
            _, stderr = crawl_proc.communicate(timeout=patient(30))
        finally:
            if crawl_proc.poll() is None:
                os.killpg(crawl_proc.pid, signal.SIGKILL)
                crawl_proc.wait()
        assert crawl_proc.returncode == 130, (moment, crawl_proc.returncode, stderr)
        assert "crawl interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr, stderr
        deadline = time.monotonic() + patient(30)
        while left := [p for p in below if _living(p)]:
            assert time.monotonic() < deadline, f"processes outlived the crawl: {left}"
            time.sleep(0.05)
        assert started
    assert landed() < 3000  # interrupted mid-way, not after the end
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert report["created"] + report["unchanged"] == 3000 and report["errors"] == [], report
    assert landed() == 3000


def _parent(pid: int) -> int | None:
    found = _living(pid)
    return found[1] if found else None


def test_a_catalogue_url_that_is_not_the_base_url_says_so(
    tmp_path: Path, catalogue_process
) -> None:
    """`--catalogue http://host:8001/api/v1` (the API's prefix, as the docs show it) or another
    service's URL answered "HTTP 404: No route GET /api/v1/api/v1/instance"."""
    volume = tmp_path / "lake"
    make_volume(volume)
    env = cairn_env(tmp_path / "data")
    for url, says in (
        (catalogue_process.url + "/api/v1", "without /api/v1"),
        (catalogue_process.url + "/elsewhere", "base URL"),
    ):
        result = run_cairn("crawl", str(volume), "--catalogue", url, env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and says in lines[0] and "CAIRN_CATALOGUE_URL" in lines[0], lines


def kill_crawl_once(
    url: str, catalogue_url: str, env: dict[str, str], landed: Callable[[], object]
) -> None:
    """Runs ``cairn crawl url`` and kills it with SIGKILL as soon as ``landed()`` is truthy
    (the catalogue took some of its batches), before it can save its state."""
    crawl_proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", "crawl", url, "--catalogue", catalogue_url],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not landed():
            assert crawl_proc.poll() is None, "the crawl ended before it was killed"
            assert time.monotonic() < deadline, "the crawl never pushed what was awaited"
            time.sleep(0.01)
        crawl_proc.kill()
        crawl_proc.wait()
    finally:
        if crawl_proc.poll() is None:
            crawl_proc.kill()
            crawl_proc.wait()


def test_a_crawl_killed_before_saving_its_state_loses_no_delete_and_no_undelete(
    tmp_path: Path, catalogue_process
) -> None:
    """kill -9 of a crawl after the catalogue took some of its batches, before it saved its
    state: a manifest it created and that vanished since is deleted by the next crawl, and one
    whose deletion it pushed and that came back unchanged (moved away and back: same size and
    time) is live again. The next crawl took both as unchanged, as the state never knew."""
    volume = tmp_path / "lake"
    write(volume / "kept/MANIFEST.yaml", "name: kept\ntype: dataset\n")
    write(volume / "away/MANIFEST.yaml", "name: away\ntype: dataset\n")
    code, report = crawl(volume, catalogue_process)
    assert code == 0 and report["created"] == 2, report

    aside = tmp_path / "aside"
    (volume / "away").rename(aside)
    write(volume / "fresh/MANIFEST.yaml", "name: fresh\ntype: dataset\n")
    for n in range(3000):  # pushed one a request after those two: time to kill the crawl
        write(volume / f"later/m{n:04d}/MANIFEST.yaml", f"name: later_{n}\ntype: dataset\n")
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]), CAIRN_CRAWL_BATCH_SIZE="1")

    def live(name: str) -> bool:
        found = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/{name}", timeout=10)
        return found.status_code == 200 and not found.json()["deleted"]

    kill_crawl_once(str(volume), catalogue_process.url, env, lambda: live("fresh"))
    assert not live("away")  # its deletion landed
    assert not live("later_2999")  # killed mid-way

    aside.rename(volume / "away")
    shutil.rmtree(volume / "fresh")
    code, report = crawl(volume, catalogue_process)
    assert code == 0, report
    assert live("away")
    assert not live("fresh")
    assert search(catalogue_process.url, limit=1)["total"] == 3002
