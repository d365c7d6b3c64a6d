"""containerarchive beside restic and borg on the same data, in the same run.

    bash bench/run.sh            # full run (a few GB of data; writes bench/RESULTS.md)
    bash bench/run.sh --smoke    # tiny data, every code path, no timing claims (CI)
    bash bench/run.sh --sets oltp   # only the OLTP dump series

Data sets are generated deterministically (bench/gen.py): nightly dumps of an OLTP database
(rows updated scattered and moved, deleted and inserted; stored bytes per night are compared
with the compressed size of the rows that changed), real `pg_dump`s of a private PostgreSQL
cluster between days of pgbench traffic (bench/pg.py; skipped when PostgreSQL is not
installed), a pg_dump-like SQL series (v1, then
versions with clustered updates, a mid-file insert and appends), a tarball of system files and
a version with a few hundred files changed, and random data plus a copy with 1 MiB inserted.
Each phase (first ingest, incremental ingests, restore of the last version checked with cmp,
full verify) runs every tool on the same input after priming the page cache the same way.
Wall time, CPU seconds and peak RSS come from wait4(); repository sizes from the files.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen import oltp_night, random_blocks, sql_rows  # noqa: E402
from pg import PG, private_cluster  # noqa: E402

PASSWORD = "bench-passphrase"
MB = 1e6


@dataclass
class Run:
    seconds: float
    cpu: float
    rss: int


@dataclass
class Row:
    dataset: str
    phase: str
    tool: str
    input_bytes: int
    run: Run
    repo_bytes: int | None = None
    added_bytes: int | None = None
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    #: OLTP night → (bytes of the rows that changed that night, those bytes under zstd -3).
    changed: dict[int, tuple[int, int]] = field(default_factory=dict)


def measure(
    cmd: list[str],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
        )
        _, status, ru = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        for f in (fin, fout):
            if hasattr(f, "close"):
                f.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}: {err[-2000:]}")
    return Run(elapsed, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prime(path: Path) -> None:
    """Read `path` into the page cache, after writing every dirty page out: no tool pays for
    the write-back of what the one before it wrote."""
    os.sync()
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


class Tool:
    name = ""

    def __init__(self, repo: Path):
        self.repo = repo

    def init(self) -> None: ...
    def ingest(self, src: Path, name: str, version: int) -> Run: ...
    def restore(self, name: str, version: int, out: Path) -> Run: ...
    def verify(self) -> Run: ...


class ContainerArchive(Tool):
    name = "containerarchive"
    #: Extra `init` options (the defaults when empty).
    init_options: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return {
            "CONTAINERARCHIVE_REPOSITORY": str(self.repo),
            "CONTAINERARCHIVE_PASSWORD": PASSWORD,
        }

    def cli(self) -> list[str]:
        return [sys.executable, "-m", "containerarchive"]

    def init(self) -> None:
        measure([*self.cli(), "init", *self.init_options], env=self.env)

    def ingest(self, src: Path, name: str, version: int) -> Run:
        return measure(
            [*self.cli(), "ingest", "-", "--name", name, "--tag", f"v={version}"],
            stdin=src,
            env=self.env,
        )

    def restore(self, name: str, version: int, out: Path) -> Run:
        return measure(
            [*self.cli(), "restore", "latest", "--tag", f"v={version}"], stdout=out, env=self.env
        )

    def verify(self) -> Run:
        return measure([*self.cli(), "verify", "--level", "full"], env=self.env)


class Restic(Tool):
    name = "restic"
    env = {"RESTIC_PASSWORD": PASSWORD}

    def init(self) -> None:
        measure(["restic", "-r", str(self.repo), "init", "--repository-version", "2"], env=self.env)

    def ingest(self, src: Path, name: str, version: int) -> Run:
        return measure(
            [
                "restic",
                "-r",
                str(self.repo),
                "backup",
                "--stdin",
                "--stdin-filename",
                name,
                "--tag",
                f"v{version}",
                "--quiet",
            ],
            stdin=src,
            env=self.env,
        )

    def restore(self, name: str, version: int, out: Path) -> Run:
        return measure(
            ["restic", "-r", str(self.repo), "dump", "--tag", f"v{version}", "latest", name],
            stdout=out,
            env=self.env,
        )

    def verify(self) -> Run:
        return measure(["restic", "-r", str(self.repo), "check", "--read-data"], env=self.env)


class Borg(Tool):
    env = {
        "BORG_PASSPHRASE": PASSWORD,
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }

    def __init__(self, repo: Path, compression: str):
        super().__init__(repo)
        self.compression = compression
        self.name = f"borg {compression}"

    def init(self) -> None:
        measure(["borg", "init", "--encryption", "repokey-blake2", str(self.repo)], env=self.env)

    def ingest(self, src: Path, name: str, version: int) -> Run:
        return measure(
            [
                "borg",
                "create",
                "--compression",
                self.compression,
                "--stdin-name",
                name,
                f"{self.repo}::v{version}",
                "-",
            ],
            stdin=src,
            env=self.env,
        )

    def restore(self, name: str, version: int, out: Path) -> Run:
        return measure(
            ["borg", "extract", "--stdout", f"{self.repo}::v{version}", name],
            stdout=out,
            env=self.env,
        )

    def verify(self) -> Run:
        return measure(["borg", "check", "--verify-data", str(self.repo)], env=self.env)


class ContainerArchiveNoDelta(ContainerArchive):
    """As before delta encoding (issue 17), to show what it changes."""

    name = "ca --no-delta"
    init_options = ("--no-delta",)


def tools(work: Path, label: str) -> list[Tool]:
    return [
        ContainerArchive(work / f"ca-{label}"),
        ContainerArchiveNoDelta(work / f"ca-nodelta-{label}"),
        Restic(work / f"restic-{label}"),
        Borg(work / f"borg-zstd-{label}", "zstd,3"),
        Borg(work / f"borg-lz4-{label}", "lz4"),
    ]


# -- data sets -------------------------------------------------------------------------------


def write_blocks(path: Path, blocks) -> Path:
    with open(path, "wb") as f:
        for b in blocks:
            f.write(b)
    return path


def sql_series(work: Path, rows: int, versions: int) -> list[Path]:
    return [
        write_blocks(work / f"db-v{v}.sql", sql_rows(rows, v, seed=1))
        for v in range(1, versions + 1)
    ]


def oltp_series(res: Results, work: Path, rows: int, nights: int) -> list[Path]:
    """Nightly dumps of an OLTP database (bench/gen.py ``oltp``): rows updated scattered and
    moved, deleted and inserted each night. Records, per night, the size of what really
    changed: that night's updated and inserted rows alone, compressed with zstd -3."""
    files = []
    for n in range(1, nights + 1):
        files.append(write_blocks(work / f"oltp-n{n}.sql", oltp_night(rows, n)))
        if n > 1:
            changed = write_blocks(work / "oltp-changed.sql", oltp_night(rows, n, True))
            packed = subprocess.run(
                ["zstd", "-3", "-q", "-c", str(changed)], capture_output=True, check=True
            ).stdout
            res.changed[n] = (changed.stat().st_size, len(packed))
            changed.unlink()
    return files


def pg_series(work: Path, scale: int, nights: int) -> list[Path]:
    """Nightly `pg_dump`s of a real PostgreSQL database (bench/pg.py): pgbench's tables at
    `scale` plus an insert-only events table; each day runs pgbench transactions and appends
    events before the dump."""
    with private_cluster(scale) as c:
        return [c.night(n, work / f"pg-n{n}.sql") for n in range(1, nights + 1)]


def tar_series(work: Path, limit: int) -> list[Path]:
    """A tarball of system files, then one with a few hundred of them changed."""
    files = []
    total = 0
    for root in ("/usr/lib/python3", "/usr/share", "/usr/lib/x86_64-linux-gnu", "/usr/bin"):
        for dirpath, _, names in sorted(os.walk(root)):
            for n in sorted(names):
                p = Path(dirpath) / n
                if p.is_file() and not p.is_symlink():
                    size = p.stat().st_size
                    if total + size > limit:
                        break
                    files.append(p)
                    total += size
    rnd = random.Random(5)
    small = [i for i, p in enumerate(files) if p.stat().st_size < (1 << 20)]
    changed = set(rnd.sample(small, min(300, len(small) // 3)))
    out = []
    for v in (1, 2):
        path = work / f"volume-v{v}.tar"
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for i, p in enumerate(files):
                info = tarfile.TarInfo(str(p).lstrip("/"))
                info.mtime, info.mode = 1_700_000_000, 0o644
                if v == 2 and i in changed:
                    data = p.read_bytes() + f"\n# upgraded {i}\n".encode()
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    # Streamed, so that this process stays small (children inherit its RSS peak).
                    info.size = p.stat().st_size
                    with open(p, "rb") as f:
                        tar.addfile(info, f)
        out.append(path)
    return out


def random_series(work: Path, size: int) -> list[Path]:
    a = write_blocks(work / "random-v1.bin", random_blocks(size, 9))
    b = work / "random-v2.bin"
    cut = min(300 << 20, size // 3)
    with open(a, "rb") as fa, open(b, "wb") as fb:
        left = cut
        while left:
            block = fa.read(min(left, 8 << 20))
            fb.write(block)
            left -= len(block)
        fb.write(random.Random(10).randbytes(1 << 20))
        shutil.copyfileobj(fa, fb, 8 << 20)
    return [a, b]


# -- phases ----------------------------------------------------------------------------------


def run_series(res: Results, work: Path, label: str, versions: list[Path], item: str) -> None:
    ts = tools(work, label)
    for t in ts:
        shutil.rmtree(t.repo, ignore_errors=True)
        t.init()
    sizes = {t.name: du(t.repo) for t in ts}
    for v, src in enumerate(versions, 1):
        phase = "first ingest" if v == 1 else f"ingest v{v}"
        for t in ts:
            prime(src)
            r = t.ingest(src, item, v)
            after = du(t.repo)
            res.rows.append(
                Row(label, phase, t.name, src.stat().st_size, r, after, after - sizes[t.name])
            )
            sizes[t.name] = after
            print(f"  {label:6} {phase:13} {t.name:17} {r.seconds:7.2f} s", flush=True)
    last = versions[-1]
    out = work / "restored"
    for t in ts:
        os.sync()
        r = t.restore(item, len(versions), out)
        same = subprocess.run(["cmp", "-s", str(last), str(out)]).returncode == 0
        res.rows.append(
            Row(
                label,
                "restore",
                t.name,
                last.stat().st_size,
                r,
                note="" if same else "RESTORE DIFFERS",
            )
        )
        if not same:
            raise RuntimeError(f"{t.name} restored {label} wrongly")
        out.unlink()
    for t in ts:
        os.sync()
        r = t.verify()
        res.rows.append(Row(label, "full verify", t.name, du(t.repo), r))
    for t in ts:
        shutil.rmtree(t.repo, ignore_errors=True)


def scaling(res: Results, work: Path, sizes: list[int]) -> None:
    """Ingest streams piped from a generator (never stored) and record RSS and throughput."""
    t = ContainerArchive(work / "ca-scaling")
    lines = ["| stream | wall s | MB/s | CPU s/GB | peak RSS MiB |", "|---:|---:|---:|---:|---:|"]
    for size in sizes:
        shutil.rmtree(t.repo, ignore_errors=True)
        t.init()
        gen = subprocess.Popen(
            [sys.executable, str(HERE / "gen.py"), "sql-fast", "--size", str(size)],
            stdout=subprocess.PIPE,
        )
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*t.cli(), "ingest", "-", "--name", "stream"],
            stdin=gen.stdout,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **t.env},
        )
        assert gen.stdout is not None
        gen.stdout.close()
        _, status, ru = os.wait4(proc.pid, 0)
        gen.wait()
        secs = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("scaling ingest failed")
        cpu = ru.ru_utime + ru.ru_stime
        lines.append(
            f"| {size / 1e9:.2f} GB | {secs:.1f} | {size / MB / secs:.0f} | "
            f"{cpu / (size / 1e9):.2f} | {ru.ru_maxrss / 1024:.0f} |"
        )
        print(
            f"  scaling {size / 1e9:.2f} GB: {secs:.1f} s, RSS {ru.ru_maxrss / 1024:.0f} MiB",
            flush=True,
        )
    shutil.rmtree(t.repo, ignore_errors=True)
    res.extra += ["## Scaling: one stream piped from a generator (sql-fast)", "", *lines, ""]


def many_snapshots(res: Results, work: Path, count: int) -> None:
    """Open a repository with `count` snapshots and list them (manifests only)."""
    path = work / "ca-many"
    shutil.rmtree(path, ignore_errors=True)
    # In child processes, so that this process stays small (children inherit its RSS peak).
    make = (
        "import containerarchive as ca, sys\n"
        "with ca.Repository.init(sys.argv[1], sys.argv[2]) as repo:\n"
        "    for i in range(int(sys.argv[3])):\n"
        "        repo.ingest(f'snapshot {i}\\n'.encode(), name='config', tags={'n': str(i)})\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", make, str(path), PASSWORD, str(count)], check=True)
    made = time.perf_counter() - start
    env = {"CONTAINERARCHIVE_REPOSITORY": str(path), "CONTAINERARCHIVE_PASSWORD": PASSWORD}
    r = measure([sys.executable, "-m", "containerarchive", "snapshots", "--json"], env=env)
    timing = (
        "import containerarchive as ca, sys, time\n"
        "t = time.perf_counter()\n"
        "with ca.Repository.open(sys.argv[1], sys.argv[2]) as repo:\n"
        "    n = len(repo.list_snapshots())\n"
        "print(n, time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", timing, str(path), PASSWORD],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    listed, api = int(out[0]), float(out[1])
    assert listed == count
    res.extra += [
        f"## Opening a repository with {count} snapshots and listing them",
        "",
        f"- `containerarchive snapshots --json` (process start, key derivation, listing): "
        f"{r.seconds:.2f} s, peak RSS {r.rss / 2**20:.0f} MiB",
        f"- `Repository.open(...).list_snapshots()` in Python: {api:.2f} s",
        f"- (making the {count} snapshots took {made:.0f} s)",
        "",
    ]
    shutil.rmtree(path, ignore_errors=True)


def index_memory(res: Results, entries: int) -> None:
    """Resident bytes per chunk of the in-memory index (core/examples/index_memory.rs)."""
    out = subprocess.run(
        [
            "cargo",
            "run",
            "--release",
            "--quiet",
            "-p",
            "containerarchive-core",
            "--example",
            "index_memory",
            "--",
            str(entries),
        ],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    res.extra += ["## Index memory", "", f"- {out}", ""]


def report(res: Results, args, started: float) -> str:
    out = [
        "# Benchmark results",
        "",
        f"Generated by `bash bench/run.sh{' --smoke' if args.smoke else ''}` on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; "
        f"restic {tool_version(['restic', 'version'])}, "
        f"borg {tool_version(['borg', '--version'])}; "
        f"run took {(time.time() - started) / 60:.1f} min. All repositories encrypted; restic "
        "repository v2 with its default compression; borg repokey-blake2 with zstd,3 and lz4; "
        "containerarchive with its defaults (zstd 3). MB = 10^6 bytes. Ratio = restic's time / "
        "this tool's time (higher is faster).",
        "",
    ]
    if args.smoke:
        out += ["**Smoke run: tiny data, the numbers mean nothing.**", ""]
    for dataset in dict.fromkeys(r.dataset for r in res.rows):
        out += [
            f"## {dataset}",
            "",
            "| phase | tool | input MB | wall s | MB/s | CPU s/GB | peak RSS MiB | "
            "repo MB | added MB | vs restic |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        rows = [r for r in res.rows if r.dataset == dataset]
        for r in rows:
            base = next((x for x in rows if x.phase == r.phase and x.tool == "restic"), None)
            ratio = f"{base.run.seconds / r.run.seconds:.2f}×" if base else ""
            gb = max(r.input_bytes, 1) / 1e9
            out.append(
                f"| {r.phase} | {r.tool} | {r.input_bytes / MB:.1f} | {r.run.seconds:.2f} | "
                f"{r.input_bytes / MB / r.run.seconds:.0f} | {r.run.cpu / gb:.1f} | "
                f"{r.run.rss / 2**20:.0f} | "
                f"{'' if r.repo_bytes is None else f'{r.repo_bytes / MB:.1f}'} | "
                f"{'' if r.added_bytes is None else f'{r.added_bytes / MB:.1f}'} | {ratio} "
                f"{r.note}|"
            )
        out.append("")
        if dataset in ("oltp", "pg"):
            out += nightly_summary(res if dataset == "oltp" else Results(), rows)
    return "\n".join(out + res.extra)


def nightly_summary(res: Results, rows: list[Row]) -> list[str]:
    """Stored bytes per night against containerarchive without delta encoding, against
    restic and, when `res.changed` knows it, against what really changed."""
    out = [
        "Stored per night against containerarchive without delta encoding, against restic and "
        "(OLTP only) against what really changed: that night's updated and inserted rows "
        "alone, zstd -3:",
        "",
        "| night | changed rows MB | compressed MB | tool | added MB | × no-delta | × changed "
        "| restic ÷ tool |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    nights = sorted({int(r.phase[len("ingest v") :]) for r in rows if r.phase.startswith("ing")})
    for n in nights:
        raw, packed = res.changed.get(n, (0, 0))
        night = [r for r in rows if r.phase == f"ingest v{n}"]
        added_by = {r.tool: r.added_bytes or 0 for r in night}
        restic, plain = added_by.get("restic"), added_by.get(ContainerArchiveNoDelta.name)
        for r in night:
            added = added_by[r.tool]
            out.append(
                f"| {n} | {f'{raw / MB:.2f}' if raw else ''} | "
                f"{f'{packed / MB:.2f}' if packed else ''} | {r.tool} | {added / MB:.2f} | "
                f"{f'{added / plain:.2f}' if plain else ''} | "
                f"{f'{added / packed:.2f}' if packed else ''} | "
                f"{f'{restic / added:.1f}×' if restic and added else ''} |"
            )
    return out + [""]


def tool_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.split()[1]
    except (OSError, IndexError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny data: check the harness runs")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="results file (default bench/RESULTS.md; smoke: none)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1–20 GB scaling run")
    ap.add_argument(
        "--sets",
        default="oltp,pg,sql,tar,random,extra",
        help="comma-separated data sets to run (oltp, pg: real PostgreSQL dumps, sql, tar, "
        "random; extra: scaling, many snapshots, index memory); default all",
    )
    args = ap.parse_args()
    started = time.time()
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"ca-bench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    res = Results()
    try:
        sets = set(args.sets.split(","))
        if args.smoke:
            sql_rows_n, versions, tar_limit, rand = 20_000, 3, 4 << 20, 6 << 20
            oltp_rows, nights = 20_000, 3
            pg_scale, pg_nights = 1, 3
            scale = [32 << 20]
        else:
            sql_rows_n, versions, tar_limit, rand = 4_200_000, 5, 300 << 20, 1 << 30
            oltp_rows, nights = 1_500_000, 5
            pg_scale, pg_nights = 30, 5
            scale = (
                []
                if args.no_scaling
                else [1_000_000_000, 5_000_000_000, 10_000_000_000, 20_000_000_000]
            )
        makers = {
            "oltp": lambda: (oltp_series(res, work, oltp_rows, nights), "db.sql"),
            "pg": lambda: (pg_series(work, pg_scale, pg_nights), "db.sql"),
            "sql": lambda: (sql_series(work, sql_rows_n, versions), "db.sql"),
            "tar": lambda: (tar_series(work, tar_limit), "volume.tar"),
            "random": lambda: (random_series(work, rand), "random.bin"),
        }
        for label, make in makers.items():
            if label not in sets:
                continue
            if label == "pg" and PG is None:
                print("data set pg: skipped, PostgreSQL is not installed", flush=True)
                continue
            print(f"data set {label}: generating", flush=True)
            files, item = make()
            run_series(res, work, label, files, item)
            for f in files:
                f.unlink()
        if "extra" in sets:
            if scale:
                scaling(res, work, scale)
            many_snapshots(res, work, 20 if args.smoke else 10_000)
            index_memory(res, 100_000 if args.smoke else 10_000_000)
        text = report(res, args, started)
        out = args.out or (None if args.smoke else HERE / "RESULTS.md")
        if out:
            out.write_text(text + "\n")
            print(f"wrote {out}")
        else:
            print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
