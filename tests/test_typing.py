"""The package's types: py.typed, stubs for the native module, checked by mypy --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "ops_backup.py"


def _mypy(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_the_native_stub_matches_the_compiled_module(tmp_path):
    """``_native.pyi`` is written by hand: stubtest imports the compiled module next to it and
    fails on any name, parameter, default or class property the two disagree on."""
    pytest.importorskip("mypy")
    import containerarchive

    # The stub and the module the tests import, not another installed copy.
    python_dir = str(Path(containerarchive.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [python_dir, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "containerarchive._native"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # its cache goes there, and no configuration file is read
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_package_ships_its_type_information():
    import containerarchive

    pkg = Path(containerarchive.__file__).parent
    assert (pkg / "py.typed").exists() and (pkg / "_native.pyi").exists()


def test_the_example_script_and_the_package_pass_mypy_strict():
    proc = _mypy(EXAMPLE, ROOT / "python" / "containerarchive")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_catches_misuse_of_the_api(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import containerarchive as ca\n"
        "repo = ca.Repository.open('/nowhere')\n"
        "size: str = repo.stats().unique_chunks\n"
        "repo.on('ingest:complete', lambda e: e.percentage)\n"
        "repo.ingest(b'x', name=3)\n"
    )
    out = _mypy(bad).stdout
    assert 'variable has type "str"' in out
    assert 'No overload variant of "on"' in out  # IngestComplete has no percentage
    assert 'incompatible type "int"; expected "str"' in out


def test_the_example_script_runs(tmp_path):
    import containerarchive as ca

    ca.Repository.init(tmp_path / "repo", passphrase="pw", kdf_memory_kib=1024).close()
    (tmp_path / "pw").write_text("pw\n")

    def backup(*dump_command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(EXAMPLE), str(tmp_path / "repo"), str(tmp_path / "pw")]
            + list(dump_command),
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = backup(sys.executable, "-c", "print('INSERT INTO t VALUES (1);' * 1000)")
    assert proc.returncode == 0, proc.stderr
    assert "verify ok" in proc.stdout and "pruned 0" in proc.stdout
    # The dump fails (a database that does not exist): one line, exit 1, nothing committed.
    proc = backup(sys.executable, "-c", "import sys; sys.exit('pg_dump: database nope missing')")
    assert proc.returncode == 1
    assert proc.stderr.startswith("backup failed: command") and "Traceback" not in proc.stderr
    assert "database nope missing" in proc.stderr
    assert len(ca.Repository.open(tmp_path / "repo", "pw").list_snapshots()) == 1
