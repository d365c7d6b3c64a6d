"""Where the time goes: sampled CPU profiles (Linux `perf`) of containerarchive's CLI.

    python bench/profile.py [--work DIR] [--out bench/profiles] [--pg]

For each phase (first ingest of the SQL dump and of 1 GiB of random data, restore, full verify)
it records `perf record -e cpu-clock` of the whole process (every thread), then writes
`<phase>.txt`: wall and CPU time, the CPU seconds and utilisation of each thread (threads are
named: `python` is the calling thread that runs the pipeline's sequential part, `ca-worker-N`
the parallel hash/compress/encrypt/decode pool, `ca-read` the input reader, `ca-pack-write`
the background pack writer, `ca-write` the restore output writer) and the hottest functions,
overall and on the calling thread. Utilisation near 100 % on one thread while the others wait
means that thread bounds the phase. bench/PROFILE.md reads the latest profiles.

With `--pg` it profiles delta encoding on the real PostgreSQL series instead (bench/pg.py,
pgbench scale 30): nights 1–4 are ingested unprofiled into a repository with delta encoding
and one without, then night 5's ingest and restore are profiled in both
(`pg-delta-ingest5.txt`, `pg-nodelta-ingest5.txt`, `pg-delta-restore5.txt`, …).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FREQ = 997
PASSWORD = "benchmark-passphrase"


def run_gen(args: list[str], out: Path) -> None:
    with out.open("wb") as f:
        subprocess.run([sys.executable, str(HERE / "gen.py"), *args], stdout=f, check=True)


def perf_report(data: Path, sort: str, extra: list[str] | None = None) -> list[tuple[float, str]]:
    """(percent, key) rows of `perf report --sort sort`."""
    text = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", sort, *(extra or [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
        if m:
            rows.append((float(m.group(1)), re.sub(r"\s{2,}", "  ", m.group(2))))
    return rows


def profile(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    out_dir: Path,
    work: Path,
    stdin: Path | None = None,
    stdout: Path | None = None,
) -> None:
    data = work / f"{name}.perf"
    with contextlib.ExitStack() as stack:
        i = stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        o = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        proc = subprocess.Popen(
            [
                "perf",
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                str(FREQ),
                "-o",
                str(data),
                "--",
                *cmd,
            ],
            stdin=i,
            stdout=o,
            env={**os.environ, **env},
        )
        _, status, ru = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed")
    samples = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,time"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    comms, stamps = samples[0::2], [float(t.rstrip(":")) for t in samples[1::2]]
    # The profiled process's own span (perf's start-up and write-out excluded).
    wall = max(stamps) - min(stamps)
    per_thread: dict[str, int] = {}
    for comm in comms:
        key = re.sub(r"ca-worker-\d+", "ca-worker-*", comm)
        per_thread[key] = per_thread.get(key, 0) + 1
    lines = [
        f"# {name}",
        "",
        f"command: {' '.join(cmd[1:] if cmd[0] == sys.executable else cmd)}"
        + (f" < {stdin.name} ({stdin.stat().st_size / 1e6:.0f} MB)" if stdin else ""),
        f"wall {wall:.2f} s (first to last sample), CPU {len(comms) / FREQ:.2f} s sampled"
        f" ({len(comms) / FREQ / wall:.2f} cores busy on average; perf cpu-clock at {FREQ} Hz);"
        f" user {ru.ru_utime:.2f} s, system {ru.ru_stime:.2f} s (rusage, perf included)",
        "",
        "## CPU by thread (perf --sort comm)",
        "",
        "| thread | share of samples | CPU s | busy (of wall) |",
        "|---|---:|---:|---:|",
    ]
    for comm, n in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        secs = n / FREQ
        lines.append(
            f"| {comm} | {100 * n / len(comms):.1f} % | {secs:.2f} | {100 * secs / wall:.0f} % |"
        )
    lines += ["", "## Hottest functions, all threads (perf --sort dso,sym)", "", "```"]
    lines += [f"{pct:6.2f}%  {sym}" for pct, sym in perf_report(data, "dso,sym")[:25]]
    lines += ["```", "", "## Hottest functions on the calling thread (comm python)", "", "```"]
    main_comm = next((c for c in per_thread if c.startswith("python")), "python")
    lines += [
        f"{pct:6.2f}%  {sym}"
        for pct, sym in perf_report(data, "dso,sym", ["--comms", main_comm])[:15]
    ]
    lines += ["```", ""]
    (out_dir / f"{name}.txt").write_text("\n".join(lines))
    data.unlink()
    print(f"  {name}: wall {wall:.2f} s, CPU {len(comms) / FREQ:.2f} s", flush=True)


def profile_pg(work: Path, out_dir: Path) -> None:
    """Night 5 of the pg series, ingested and restored with and without delta encoding."""
    sys.path.insert(0, str(HERE))
    from pg import private_cluster

    nights = [work / f"pg-n{n}.sql" for n in range(1, 6)]
    if not all(n.exists() for n in nights):
        with private_cluster(30) as c:
            for n, path in enumerate(nights, 1):
                c.night(n, path)
    cli = [sys.executable, "-m", "containerarchive"]
    for mode, init in [("delta", []), ("nodelta", ["--no-delta"])]:
        repo = work / f"repo-pg-{mode}"
        shutil.rmtree(repo, ignore_errors=True)
        env = {"CONTAINERARCHIVE_REPOSITORY": str(repo), "CONTAINERARCHIVE_PASSWORD": PASSWORD}
        full = {**os.environ, **env}
        subprocess.run([*cli, "init", *init], env=full, check=True, stdout=subprocess.DEVNULL)
        for night in nights[:4]:
            with night.open("rb") as f:
                subprocess.run(
                    [*cli, "ingest", "-", "--name", "db.sql"],
                    stdin=f, env=full, check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
        subprocess.run(["cat", str(nights[4])], stdout=subprocess.DEVNULL, check=True)
        os.sync()
        ingest = [*cli, "ingest", "-", "--name", "db.sql"]
        profile(f"pg-{mode}-ingest5", ingest, env, out_dir, work, stdin=nights[4])
        os.sync()
        out = work / "restored"
        profile(f"pg-{mode}-restore5", [*cli, "restore", "latest"], env, out_dir, work, stdout=out)
        if not filecmp.cmp(out, nights[4], shallow=False):
            raise RuntimeError(f"pg {mode}: restored bytes differ")
        out.unlink()
        shutil.rmtree(repo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=HERE / "profiles", help="report directory")
    ap.add_argument(
        "--pg", action="store_true", help="profile delta encoding on the PostgreSQL series"
    )
    args = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf not found: apt-get install -y linux-perf")
    work = args.work or Path(tempfile.mkdtemp(prefix="ca-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pg:
        profile_pg(work, args.out)
        if args.work is None:
            shutil.rmtree(work)
        return
    print("generating data sets", flush=True)
    sql, rnd = work / "v1.sql", work / "random.bin"
    if not sql.exists():
        run_gen(["sql", "--version", "1"], sql)
    if not rnd.exists():
        run_gen(["random", "--size", "1G", "--seed", "1"], rnd)
    cli = [sys.executable, "-m", "containerarchive"]
    for label, src in [("sql", sql), ("random", rnd)]:
        repo = work / f"repo-{label}"
        shutil.rmtree(repo, ignore_errors=True)
        env = {"CONTAINERARCHIVE_REPOSITORY": str(repo), "CONTAINERARCHIVE_PASSWORD": PASSWORD}
        subprocess.run(
            [*cli, "init"], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL
        )
        # Prime the page cache the same way for every phase.
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)
        profile(
            f"{label}-first-ingest",
            [*cli, "ingest", "-", "--name", "data"],
            env,
            args.out,
            work,
            stdin=src,
        )
        out = work / "restored"
        profile(f"{label}-restore", [*cli, "restore", "latest"], env, args.out, work, stdout=out)
        if not filecmp.cmp(out, src, shallow=False):
            raise RuntimeError(f"{label}: restored bytes differ")
        out.unlink()
        profile(f"{label}-verify-full", [*cli, "verify", "--level", "full"], env, args.out, work)
        shutil.rmtree(repo)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
