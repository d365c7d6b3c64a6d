"""The package inside services that fork: a process forked after the parent did parallel work
(ingest, restore) must work, not hang. Each case runs in its own interpreter with a timeout, so a
hang fails the test instead of the suite: plain os.fork with a repository opened in the parent,
multiprocessing's fork start method, billiard's pool (celery's prefork workers), gunicorn with
--preload, and an S3 repository whose client threads the child does not have."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import hashlib, os, sys
import containerarchive as ca
REPO = sys.argv[1]
def data(seed):
    return b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() * 64 for i in range(4000))
def roundtrip(repo, seed):
    snap = repo.ingest(data(seed), name=f"item-{seed}.bin")
    with repo.restore(snap.id, f"item-{seed}.bin") as f:
        assert f.read() == data(seed), "restore differs"
    return snap.id
"""


def run_script(body: str, *args: str, timeout: float = 120, env: dict | None = None) -> str:
    script = PRELUDE + textwrap.dedent(body)
    try:
        r = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung (no answer in {timeout} s): {e.stderr!r}")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_os_fork_after_parallel_work_child_uses_the_parents_repository(tmp_path):
    out = run_script(
        """
        with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as repo:
            roundtrip(repo, 1)                       # the parent's worker threads exist now
            pids = []
            for n in range(2):
                pid = os.fork()
                if pid == 0:
                    try:
                        roundtrip(repo, 10 + n)      # the same handle, in the child
                        with ca.Repository.open(REPO, "pw") as fresh:
                            roundtrip(fresh, 20 + n)
                        os._exit(0)
                    except BaseException as e:
                        print("child failed:", repr(e), file=sys.stderr)
                        os._exit(1)
                pids.append(pid)
            codes = [os.waitpid(p, 0)[1] for p in pids]
            assert codes == [0, 0], codes
            roundtrip(repo, 2)                       # and the parent still works
            print(len(repo.list_snapshots()))
        """,
        str(tmp_path / "repo"),
    )
    assert out.strip() == "6"


def test_a_child_leaving_the_parents_lock_block_does_not_release_it(tmp_path):
    out = run_script(
        """
        with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as repo:
            with repo.lock(exclusive=True):
                pid = os.fork()
                if pid == 0:
                    sys.exit(0)          # unwinds the `with` in the child
                os.waitpid(pid, 0)
                held = os.listdir(os.path.join(REPO, "locks"))
                assert len(held) == 1, held
                try:
                    with ca.Repository.open(REPO, "pw") as other:
                        other.ingest(b"x", name="x")
                    print("ingest got in")
                except ca.LockedError:
                    print("still locked")
            print(len(os.listdir(os.path.join(REPO, "locks"))))
        """,
        str(tmp_path / "repo"),
    )
    assert out.split() == ["still", "locked", "0"]


def test_multiprocessing_fork_pool_after_parallel_work(tmp_path):
    out = run_script(
        """
        import multiprocessing as mp
        def work(seed):
            with ca.Repository.open(REPO, "pw") as repo:
                return roundtrip(repo, seed)
        if __name__ == "__main__":
            with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as repo:
                roundtrip(repo, 1)
            with mp.get_context("fork").Pool(2) as pool:
                ids = pool.map(work, [2, 3, 4, 5])
            print(len(set(ids)))
        """,
        str(tmp_path / "repo"),
    )
    assert out.strip() == "4"


def test_billiard_prefork_pool_as_celery_uses(tmp_path):
    pytest.importorskip("billiard", reason="billiard (celery's pool) is a test dependency")
    out = run_script(
        """
        import billiard
        def work(seed):
            with ca.Repository.open(REPO, "pw") as repo:
                return roundtrip(repo, seed)
        if __name__ == "__main__":
            with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as repo:
                roundtrip(repo, 1)
            pool = billiard.Pool(2)
            ids = pool.map(work, [2, 3, 4])
            pool.close()
            pool.join()
            print(len(set(ids)))
        """,
        str(tmp_path / "repo"),
    )
    assert out.strip() == "3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_preload_workers_back_up_and_restore(tmp_path):
    pytest.importorskip("gunicorn", reason="gunicorn is a test dependency")
    app = tmp_path / "backupapp.py"
    app.write_text(
        PRELUDE.replace("REPO = sys.argv[1]", f"REPO = {str(tmp_path / 'repo')!r}")
        + textwrap.dedent(
            """
            # --preload: this runs once in the master, before the workers are forked.
            with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as r:
                roundtrip(r, 0)
            REPOSITORY = ca.Repository.open(REPO, "pw")

            def app(environ, start_response):
                seed = int(environ["PATH_INFO"].strip("/") or 1)
                sid = roundtrip(REPOSITORY, seed)
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [f"{os.getpid()} {sid}".encode()]
            """
        )
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
            "backupapp:app",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        answers = []
        for seed in range(1, 7):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{seed}", timeout=60) as r:
                        answers.append(r.read().decode())
                    break
                except OSError:
                    assert server.poll() is None, server.stderr.read().decode()[-2000:]
                    assert time.monotonic() < deadline, "gunicorn did not answer"
                    time.sleep(0.2)
        assert len({a.split()[1] for a in answers}) == 6
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_s3_repository_used_in_a_forked_child(tmp_path):
    s3server = pytest.importorskip("s3server")
    pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    with s3server.moto_server() as env:
        s3server.make_bucket(env, "forked")
        out = run_script(
            """
            with ca.Repository.init(REPO, "pw", kdf_memory_kib=1024, kdf_iterations=1) as repo:
                roundtrip(repo, 1)                   # the parent's S3 client threads run
                pid = os.fork()
                if pid == 0:
                    try:
                        roundtrip(repo, 2)
                        os._exit(0)
                    except BaseException as e:
                        print("child failed:", repr(e), file=sys.stderr)
                        os._exit(1)
                assert os.waitpid(pid, 0)[1] == 0
                roundtrip(repo, 3)
                print(len(repo.list_snapshots()))
            """,
            "s3://forked/repo",
            env={**os.environ, **env},
        )
    assert out.strip() == "3"
