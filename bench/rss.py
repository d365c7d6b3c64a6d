"""Peak memory of ingesting (and restoring) a large stream that is never stored on disk.

    python bench/rss.py --size 2G [--kind sql|random] [--repo DIR]

Pipes `bench/gen.py` into `containerarchive ingest -`, then restores the snapshot to
/dev/null, and reports wall time, throughput and peak RSS of the containerarchive process
(from wait4, so the generator is not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen import parse_size  # noqa: E402

CLI = [sys.executable, "-m", "containerarchive"]


def measure(cmd: list[str], env: dict[str, str], stdin=None, stdout=None) -> tuple[float, int]:
    """Run cmd; return (seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=parse_size, default=parse_size("2G"))
    ap.add_argument("--kind", choices=["sql", "random"], default="sql")
    ap.add_argument("--repo", help="repository directory (default: a temporary one)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ca-rss-")
    repo = args.repo or os.path.join(tmp, "repo")
    env = {
        **os.environ,
        "CONTAINERARCHIVE_REPOSITORY": repo,
        "CONTAINERARCHIVE_PASSWORD": "bench",
    }
    try:
        subprocess.run([*CLI, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        gen = subprocess.Popen(
            [sys.executable, str(HERE / "gen.py"), args.kind, "--size", str(args.size)],
            stdout=subprocess.PIPE,
        )
        secs, rss = measure([*CLI, "ingest", "-", "--name", "stream"], env, stdin=gen.stdout)
        assert gen.stdout is not None
        gen.stdout.close()
        gen.wait()
        mb = args.size / 1e6
        print(
            f"ingest  {args.kind} {mb:8.0f} MB  {secs:7.1f} s  {mb / secs:7.1f} MB/s"
            f"  peak RSS {rss / 2**20:6.1f} MiB  (the generator often limits the rate)"
        )
        with open(os.devnull, "wb") as null:
            secs, rss = measure([*CLI, "restore", "latest"], env, stdout=null)
        print(
            f"restore {args.kind} {mb:8.0f} MB  {secs:7.1f} s  {mb / secs:7.1f} MB/s"
            f"  peak RSS {rss / 2**20:6.1f} MiB"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
