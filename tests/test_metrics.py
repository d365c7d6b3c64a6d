"""Metrics for alerting (issue 20, part 4): `stats --prometheus FILE`, `repo.write_metrics`,
`verify --metrics FILE` and `prune --metrics FILE` write node_exporter's textfile format,
atomically, each to its own file, also when the command fails."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, random_bytes, sql_dump
from containerarchive.metrics import metric_families

CLI = [sys.executable, "-m", "containerarchive"]


def run(repo: Path, *args: str, password: str = PASSPHRASE) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CONTAINERARCHIVE_PASSWORD": password,
        "CONTAINERARCHIVE_REPOSITORY": str(repo),
    }
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def series(repo: Path, host: str, items: str) -> str:
    return f'host="{host}",items="{items}",repository="{repo}"'


@pytest.fixture
def two_series(repo_path: Path) -> Path:
    """db1 backs up db.sql three nights (the last unchanged), web1 a config bundle once."""
    with ca.Repository.init(repo_path, passphrase=PASSPHRASE, **FAST_KDF) as r:
        for night, data in enumerate([sql_dump(3000, 1), sql_dump(3000, 2), sql_dump(3000, 2)]):
            r.ingest(
                data,
                name="db.sql",
                host="db1",
                time=datetime(2026, 11, 20 + night, 3, tzinfo=timezone.utc),
            )
        r.ingest_multi(
            [
                {"source": b"a=1\n" * 100, "name": "etc/app.conf"},
                {"source": random_bytes(50_000, 3), "name": "certs.tar"},
            ],
            host="web1",
            time=datetime(2026, 11, 21, 4, tzinfo=timezone.utc),
        )
    return repo_path


def test_write_metrics_gives_each_series_its_newest_snapshot_and_the_totals(
    two_series: Path, tmp_path: Path
) -> None:
    out = tmp_path / "textfile" / "backup.prom"
    out.parent.mkdir()
    with ca.Repository.open(two_series, PASSPHRASE) as r:
        stats = r.write_metrics(out)
        snaps = r.list_snapshots()
    m = metric_families(out)
    db = series(two_series, "db1", "db.sql")
    web = series(two_series, "web1", "certs.tar,etc/app.conf")
    newest_db = max((s for s in snaps if s.host == "db1"), key=lambda s: s.created_at)
    web_snap = next(s for s in snaps if s.host == "web1")
    assert m[f"containerarchive_last_snapshot_timestamp_seconds{{{db}}}"] == pytest.approx(
        newest_db.created_at.timestamp()
    )
    assert m[f"containerarchive_last_snapshot_timestamp_seconds{{{web}}}"] == pytest.approx(
        web_snap.created_at.timestamp()
    )
    assert m[f"containerarchive_snapshots{{{db}}}"] == 3
    assert m[f"containerarchive_snapshots{{{web}}}"] == 1
    assert m[f"containerarchive_last_snapshot_original_bytes{{{db}}}"] == len(sql_dump(3000, 2))
    # The third night repeats the second: every chunk was stored already.
    assert m[f"containerarchive_last_snapshot_dedup_ratio{{{db}}}"] == 1.0
    assert m[f"containerarchive_last_snapshot_added_bytes{{{db}}}"] == newest_db.stored_size
    assert m[f"containerarchive_last_snapshot_dedup_ratio{{{web}}}"] < 1.0
    repo_label = f'{{repository="{two_series}"}}'
    assert m[f"containerarchive_repository_snapshots{repo_label}"] == 4 == stats.snapshots
    assert m[f"containerarchive_repository_pack_bytes{repo_label}"] == stats.pack_bytes
    assert m[f"containerarchive_repository_unreadable_snapshots{repo_label}"] == 0
    assert m[f"containerarchive_stats_timestamp_seconds{repo_label}"] > 0
    # Written through a temporary file renamed over the target: nothing else is left.
    assert sorted(p.name for p in out.parent.iterdir()) == ["backup.prom"]


def test_stats_prometheus_names_unreadable_snapshots_and_still_writes(
    two_series: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backup.prom"
    ok = run(two_series, "stats", "--prometheus", str(out))
    assert ok.returncode == 0, ok.stderr
    assert "snapshots" in ok.stdout
    first = out.read_text()
    # Every family has HELP and TYPE lines: the textfile collector accepts it as it is.
    families = list(text_string_to_metric_families(first))
    assert all(f.documentation and f.type == "gauge" for f in families)
    # A damaged manifest (and its copy): stats exits 1 naming it, the file counts it.
    victim = sorted(p for p in (two_series / "snapshots").glob("*") if p.is_file())[0]
    for path in [victim, *(two_series / "copies").rglob(victim.name)]:
        path.write_bytes(b"garbage")
    bad = run(two_series, "stats", "--prometheus", str(out))
    assert bad.returncode == 1
    assert victim.name[:8] in bad.stderr
    m = metric_families(out)
    assert m[f'containerarchive_repository_unreadable_snapshots{{repository="{two_series}"}}'] == 1
    assert m[f'containerarchive_repository_snapshots{{repository="{two_series}"}}'] == 3


def test_metrics_file_that_cannot_be_written_is_one_line_and_exit_6(
    two_series: Path, tmp_path: Path
) -> None:
    for target in [tmp_path, tmp_path / "no-such-dir" / "x.prom"]:
        p = run(two_series, "stats", "--prometheus", str(target))
        assert p.returncode == 6, p.stderr
        assert str(target) in p.stderr
        assert "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1


def test_verify_metrics_record_success_damage_and_failure_to_run(
    two_series: Path, tmp_path: Path
) -> None:
    out = tmp_path / "verify.prom"
    labels = f'level="standard",repository="{two_series}"'
    ok = run(two_series, "verify", "--metrics", str(out))
    assert ok.returncode == 0, ok.stderr
    m = metric_families(out)
    assert m[f"containerarchive_verify_success{{{labels}}}"] == 1
    assert m[f"containerarchive_verify_findings{{{labels}}}"] == 0
    assert m[f"containerarchive_verify_duration_seconds{{{labels}}}"] >= 0
    first_success = m[f"containerarchive_verify_last_success_timestamp_seconds{{{labels}}}"]
    assert first_success == m[f"containerarchive_verify_last_run_timestamp_seconds{{{labels}}}"]
    # Only verify's own metrics: it never erases what stats wrote elsewhere.
    assert all(k.startswith("containerarchive_verify_") for k in m)

    pack = sorted((two_series / "packs").rglob("*.pack"))[0]
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    bad = run(two_series, "verify", "--metrics", str(out))
    assert bad.returncode == 1
    m = metric_families(out)
    assert m[f"containerarchive_verify_success{{{labels}}}"] == 0
    assert m[f"containerarchive_verify_findings{{{labels}}}"] >= 1
    # The last success is carried over from the file the failed run replaced.
    assert m[f"containerarchive_verify_last_success_timestamp_seconds{{{labels}}}"] == first_success

    # A verify that cannot even open the repository still says it failed.
    wrong = run(two_series, "verify", "--metrics", str(out), password="not the passphrase")
    assert wrong.returncode == 12
    m = metric_families(out)
    assert m[f"containerarchive_verify_success{{{labels}}}"] == 0
    assert f"containerarchive_verify_findings{{{labels}}}" not in m
    assert m[f"containerarchive_verify_last_success_timestamp_seconds{{{labels}}}"] == first_success


def test_prune_metrics_count_what_was_removed_and_record_a_refused_prune(
    two_series: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prune.prom"
    label = f'{{repository="{two_series}"}}'
    p = run(two_series, "prune", "--keep-last", "1", "--metrics", str(out))
    assert p.returncode == 0, p.stderr
    m = metric_families(out)
    assert m[f"containerarchive_prune_success{label}"] == 1
    # db1 keeps its newest of three, web1 its only one.
    assert m[f"containerarchive_prune_removed_snapshots{label}"] == 2
    assert m[f"containerarchive_prune_kept_snapshots{label}"] == 2
    assert m[f"containerarchive_prune_dry_run{label}"] == 0
    assert m[f"containerarchive_prune_freed_bytes{label}"] >= 0
    last_ok = m[f"containerarchive_prune_last_success_timestamp_seconds{label}"]
    # No rule: a usage error, recorded as a failed prune.
    refused = run(two_series, "prune", "--metrics", str(out))
    assert refused.returncode == 2
    m = metric_families(out)
    assert m[f"containerarchive_prune_success{label}"] == 0
    assert m[f"containerarchive_prune_last_success_timestamp_seconds{label}"] == last_ok


def test_python_verify_and_prune_take_a_metrics_path(two_series: Path, tmp_path: Path) -> None:
    with ca.Repository.open(two_series, PASSPHRASE) as r:
        result = r.verify("quick", metrics=tmp_path / "v.prom")
        assert result.ok
        pruned = r.prune(keep_last=2, metrics=tmp_path / "p.prom", dry_run=True)
        with pytest.raises(ca.InvalidArgumentError):
            r.prune(keep_last=0, metrics=tmp_path / "p2.prom")
    v = metric_families(tmp_path / "v.prom")
    assert v[f'containerarchive_verify_success{{level="quick",repository="{two_series}"}}'] == 1
    p = metric_families(tmp_path / "p.prom")
    label = f'{{repository="{two_series}"}}'
    assert p[f"containerarchive_prune_dry_run{label}"] == 1
    assert p[f"containerarchive_prune_removed_snapshots{label}"] == pruned.removed_snapshots == 1
    p2 = metric_families(tmp_path / "p2.prom")
    assert p2[f"containerarchive_prune_success{label}"] == 0
    assert f"containerarchive_prune_last_success_timestamp_seconds{label}" not in p2
