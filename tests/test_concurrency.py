"""Several hosts, real processes, real signals: no committed snapshot ever misses data.

Hosts are CLI processes in their own UTS namespace (`unshare --uts` + `hostname`), so that a
same-host liveness check cannot hide what the clocks do; `faketime` skews one host's clock.
The stale age is shortened with CONTAINERARCHIVE_LOCK_STALE_AFTER where a lock must age (the
kernel sets file times, which faketime cannot move).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import random_bytes

MiB = 1 << 20
CLI = [sys.executable, "-m", "containerarchive"]
PASSWORD = "pw for the cli"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="namespaces (unshare) need root and util-linux",
)
needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="faketime is installed by the test command"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        CONTAINERARCHIVE_REPOSITORY=str(tmp_path / "repo"),
        CONTAINERARCHIVE_PASSWORD=PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    return e


def as_host(name: str, argv: list[str], skew: str | None = None) -> list[str]:
    """`argv` run on "host" `name` (own UTS namespace), its clock skewed by `skew`."""
    inner = shlex.join(argv)
    if skew is not None:
        # Only the wall clock: a host's skew does not move its monotonic clock (faketime
        # would, and then stretch the lock renewal timer by decades).
        inner = f"env FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f {shlex.quote(skew)} {inner}"
    return ["unshare", "--uts", "sh", "-c", f"hostname {shlex.quote(name)} && exec {inner}"]


def run(argv: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, **kw)


def every_snapshot_restores(repo_path: Path, expected: dict[str, bytes]) -> None:
    """Each snapshot (tagged data=<name>) restores to `expected[name]`; verify is clean."""
    with ca.Repository.open(repo_path, PASSWORD) as repo:
        for snap in repo.list_snapshots():
            got = repo.restore(snap.id).read()
            assert got == expected[snap.tags["data"]], f"snapshot {snap.id} restores other bytes"
        result = repo.verify("standard")
        assert result.ok, result.errors


def init(env: dict[str, str], tmp_path: Path) -> Path:
    repo_path = Path(env["CONTAINERARCHIVE_REPOSITORY"])
    ca.Repository.init(
        repo_path, PASSWORD, pack_size=MiB, kdf_memory_kib=1024, kdf_iterations=1
    ).close()
    return repo_path


def ingest_cli(env: dict[str, str], tmp_path: Path, name: str, data: bytes) -> str:
    src = tmp_path / f"{name}.bin"
    src.write_bytes(data)
    r = run(CLI + ["ingest", str(src), "--name", "d", "--tag", f"data={name}", "--json"], env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["id"]


@needs_root
@needs_faketime
@pytest.mark.parametrize("skew", ["-40m", "+1d", "-1d", "+40m"])
def test_a_host_with_a_skewed_clock_cannot_prune_under_a_live_ingest(
    env: dict[str, str], tmp_path: Path, skew: str
):
    # Locks go stale after 3 s without renewal: host A must keep renewing its lock, whatever
    # its clock says, for host B's prune to be refused 5 s into A's backup.
    env["CONTAINERARCHIVE_LOCK_STALE_AFTER"] = "3s"
    repo_path = init(env, tmp_path)
    expected = {"x": random_bytes(6 * MiB, 1), "y": random_bytes(6 * MiB, 2)}
    ingest_cli(env, tmp_path, "x", expected["x"])
    ingest_cli(env, tmp_path, "y", expected["y"])
    (tmp_path / "x.again").write_bytes(expected["x"])
    # Host A (clock skewed) backs x up again, mostly reusing night x's packs, slowly. (The
    # producer runs without faketime, whose preload cuts `sleep` short.)
    producer = f"env -u LD_PRELOAD sh -c 'cat {tmp_path / 'x.again'}; sleep 8'"
    a = subprocess.Popen(
        as_host(
            "host-a",
            CLI + ["ingest", "--exec", producer, "--name", "d", "--tag", "data=x"],
            skew=skew,
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(5)
        b = run(as_host("host-b", CLI + ["prune", "--keep-last", "1"]), env)
        assert b.returncode == 11, (b.returncode, b.stderr)
        assert "host-a" in b.stderr and "ingest" in b.stderr, b.stderr
        out, err = a.communicate(timeout=120)
    finally:
        a.kill()
    assert a.returncode == 0, err
    every_snapshot_restores(repo_path, expected)


def _wait_for_lock(repo_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((repo_path / "locks").glob("*.lock")):
            return
        time.sleep(0.05)
    raise AssertionError("no lock appeared")


@needs_root
def test_a_stopped_ingest_whose_lock_went_stale_commits_nothing_once_prune_took_its_data(
    env: dict[str, str], tmp_path: Path
):
    env["CONTAINERARCHIVE_LOCK_STALE_AFTER"] = "3s"
    repo_path = init(env, tmp_path)
    # 12 MiB: the first 8 MiB are chunked and deduplicated (against night x's packs) while the
    # producer is still running; the rest waits in the reader for the end of the stream.
    expected = {"x": random_bytes(12 * MiB, 1), "y": random_bytes(6 * MiB, 2)}
    ingest_cli(env, tmp_path, "x", expected["x"])
    ingest_cli(env, tmp_path, "y", expected["y"])
    (tmp_path / "x.again").write_bytes(expected["x"])
    marker = tmp_path / "read-all"
    producer = "sh -c " + shlex.quote(f"cat {tmp_path / 'x.again'}; touch {marker}; sleep 2")
    a = subprocess.Popen(
        as_host("host-a", CLI + ["ingest", "--exec", producer, "--name", "d", "--tag", "data=x"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the first blocks are deduplicated against night x
        # `unshare` (without --fork) and `sh -c 'exec …'` exec: a.pid is the CLI itself.
        target = a.pid
        os.kill(target, signal.SIGSTOP)
        time.sleep(5)  # longer than the stale age: its lock is stale by the storage's clock
        b = run(as_host("host-b", CLI + ["prune", "--keep-last", "1"]), env)
        assert b.returncode == 0, b.stderr
        os.kill(target, signal.SIGCONT)
        out, err = a.communicate(timeout=120)
    finally:
        a.kill()
    assert a.returncode == 13, (a.returncode, err)
    assert "nothing was committed" in err, err
    every_snapshot_restores(repo_path, expected)
    assert not list((repo_path / "locks").iterdir())


def test_a_long_lived_repository_sees_what_another_process_pruned(
    env: dict[str, str], tmp_path: Path
):
    repo_path = init(env, tmp_path)
    expected = {"x": random_bytes(5 * MiB, 1), "y": random_bytes(5 * MiB, 2)}
    with ca.Repository.open(repo_path, PASSWORD) as service:
        first = service.ingest(expected["x"], name="d", tags={"data": "x"})
        service.ingest(expected["y"], name="d", tags={"data": "y"})
        assert service.restore(first.id).read() == expected["x"]
        # A cron job in another process forgets night x and collects its packs.
        r = run(CLI + ["prune", "--keep-last", "1"], env)
        assert r.returncode == 0, r.stderr
        again = service.ingest(expected["x"], name="d", tags={"data": "x"})
        assert again.new_chunks > 0, "chunks of deleted packs must be stored again"
        assert service.restore(again.id).read() == expected["x"]
        latest = service.list_snapshots(tags={"data": "y"})[-1]
        assert service.restore(latest.id).read() == expected["y"]
    every_snapshot_restores(repo_path, expected)


def test_restore_to_a_slow_reader_completes_while_prune_rewrites_its_packs(
    env: dict[str, str], tmp_path: Path
):
    repo_path = init(env, tmp_path)
    x = random_bytes(16 * MiB, 1)
    # z: 24 MiB of its own (the restore reads ahead three 8 MiB batches), then every other
    # 512 KiB of x: forgetting x leaves each of x's packs about half garbage, so prune rewrites
    # them (their live blobs move to new packs) while the restore is still on z's own data.
    z = random_bytes(24 * MiB, 3) + b"".join(x[i : i + MiB // 2] for i in range(0, len(x), MiB))
    expected = {"x": x, "z": z}
    ingest_cli(env, tmp_path, "x", x)
    ingest_cli(env, tmp_path, "z", z)
    restore = subprocess.Popen(
        CLI + ["restore", "latest"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert restore.stdout is not None
    got = bytearray(restore.stdout.read(MiB))
    pruned = run(CLI + ["prune", "--keep-last", "1"], env)
    assert pruned.returncode == 0, pruned.stderr
    rewritten = re.search(r"\((\d+) rewritten", pruned.stdout)
    assert rewritten and int(rewritten.group(1)) > 0, pruned.stdout
    while True:
        block = restore.stdout.read(MiB)
        if not block:
            break
        got += block
        time.sleep(0.02)
    assert restore.wait(timeout=60) == 0, restore.stderr.read() if restore.stderr else ""
    assert bytes(got) == z
    every_snapshot_restores(repo_path, expected)


# -- signals ---------------------------------------------------------------------------------

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


def _sigint_as_at_a_terminal() -> None:
    """In the child: SIGINT handled by default, as for a program started at a terminal. A test
    run started in the background of a non-interactive shell inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler (the CLI installs its own handlers)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_and_wait(proc: subprocess.Popen[str], target: int, sig: int) -> float:
    os.kill(target, sig)
    sent = time.monotonic()
    proc.wait(timeout=30)
    return time.monotonic() - sent


def _silent_producer(tmp_path: Path) -> tuple[str, str]:
    tag = f"{os.getpid()}{time.monotonic_ns() % 100000}"
    return f"sh -c 'printf started; exec sleep 600.{tag}'", f"sleep 600.{tag}"


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


@pytest.mark.parametrize(("sig", "code"), SIGNALS)
def test_a_signal_stops_an_ingest_with_a_silent_producer_at_once(
    env: dict[str, str], tmp_path: Path, sig: int, code: int
):
    repo_path = init(env, tmp_path)
    producer, pattern = _silent_producer(tmp_path)
    proc = subprocess.Popen(
        CLI + ["ingest", "--exec", producer, "--name", "d"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_lock(repo_path)
    time.sleep(0.5)
    took = _interrupt_and_wait(proc, proc.pid, sig)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == code, (proc.returncode, err)
    assert took < 5, f"took {took:.1f} s"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0], err
    assert "nothing was committed" in lines[0]
    assert not list((repo_path / "locks").iterdir()), "the lock is released"
    assert not list((repo_path / "snapshots").glob("*.snapshot"))
    time.sleep(0.3)
    assert not _running(pattern), "the producer is terminated"


@pytest.mark.parametrize(("sig", "code"), SIGNALS)
def test_a_signal_stops_an_ingest_of_a_silent_stdin_pipe_at_once(
    env: dict[str, str], tmp_path: Path, sig: int, code: int
):
    repo_path = init(env, tmp_path)
    feeder = subprocess.Popen(
        ["sh", "-c", "printf started; exec sleep 600"], stdout=subprocess.PIPE
    )
    try:
        proc = subprocess.Popen(
            CLI + ["ingest", "-", "--name", "d"],
            env=env,
            stdin=feeder.stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_lock(repo_path)
        time.sleep(0.5)
        took = _interrupt_and_wait(proc, proc.pid, sig)
    finally:
        feeder.kill()
    assert proc.returncode == code, proc.stderr.read() if proc.stderr else ""
    assert took < 5, f"took {took:.1f} s"
    assert not list((repo_path / "locks").iterdir())


@needs_root
@pytest.mark.parametrize(("sig", "code"), SIGNALS)
def test_as_pid_1_of_a_container_a_signal_still_stops_the_ingest(
    env: dict[str, str], tmp_path: Path, sig: int, code: int
):
    repo_path = init(env, tmp_path)
    producer, pattern = _silent_producer(tmp_path)
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc"]
        + CLI
        + ["ingest", "--exec", producer, "--name", "d"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_lock(repo_path)
    time.sleep(0.5)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children, "unshare forked the CLI"
    pid1 = int(children[0])
    status = Path(f"/proc/{pid1}/status").read_text().splitlines()
    nspid = next(line for line in status if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1", f"the CLI is PID 1 of its namespace: {nspid}"
    took = _interrupt_and_wait(proc, pid1, sig)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == code, (proc.returncode, err)
    assert took < 5, f"took {took:.1f} s"
    assert not list((repo_path / "locks").iterdir())


def test_the_python_api_raises_keyboard_interrupt_with_a_silent_producer(tmp_path: Path):
    repo_path = tmp_path / "repo"
    ca.Repository.init(repo_path, PASSWORD, kdf_memory_kib=1024, kdf_iterations=1).close()
    code = (
        "import containerarchive as ca, sys\n"
        f"r = ca.Repository.open(sys.argv[1], {PASSWORD!r})\n"
        "try:\n"
        "    r.ingest_command(['sh', '-c', 'printf x; exec sleep 600'], name='d')\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt', flush=True)\n"
        "    sys.exit(7)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(repo_path)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    _wait_for_lock(repo_path)
    time.sleep(0.5)
    took = _interrupt_and_wait(proc, proc.pid, signal.SIGINT)
    assert proc.returncode == 7 and proc.stdout and "KeyboardInterrupt" in proc.stdout.read()
    assert took < 5
    assert not list((repo_path / "locks").iterdir())


# -- locks a person can reason about ---------------------------------------------------------


def _hold_lock(repo_path: Path, seconds: float, exclusive: bool = True) -> subprocess.Popen[str]:
    code = (
        "import containerarchive as ca, sys, time\n"
        f"r = ca.Repository.open(sys.argv[1], {PASSWORD!r})\n"
        f"with r.lock(exclusive={exclusive}, operation='prune'):\n"
        "    print('locked', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(repo_path)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_a_locked_error_says_who_holds_the_lock_when_it_goes_stale_and_what_to_do(
    env: dict[str, str], tmp_path: Path
):
    repo_path = init(env, tmp_path)
    holder = _hold_lock(repo_path, 30)
    try:
        r = run(CLI + ["ingest", "-", "--name", "d"], env, input="data")
        assert r.returncode == 11
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1
        for part in (f"pid {holder.pid}", "prune", "exclusive", "stale", "unlock --force"):
            assert part in line, line
        with ca.Repository.open(repo_path, PASSWORD) as repo:
            with pytest.raises(ca.LockedError) as e:
                repo.ingest(b"data")
            assert e.value.lock.startswith("locks/") and f"pid {holder.pid}" in e.value.holder
        u = run(CLI + ["unlock"], env)
        assert u.returncode == 0
        assert "removed 0 lock" in u.stdout and "left 1 lock" in u.stdout, u.stdout
        assert f"pid {holder.pid}" in u.stdout and "--force" in u.stdout, u.stdout
    finally:
        holder.kill()
        holder.wait()
    # Killed: its process is gone on this host, so unlock removes it and says why.
    u = run(CLI + ["unlock", "--json"], env)
    doc = json.loads(u.stdout)
    assert len(doc["removed"]) == 1 and "gone" in doc["reasons"][doc["removed"][0]], doc
    assert doc["kept"] == []


def test_retry_lock_waits_for_a_conflicting_lock_to_go_away(env: dict[str, str], tmp_path: Path):
    repo_path = init(env, tmp_path)
    holder = _hold_lock(repo_path, 2)
    r = run(CLI + ["--retry-lock", "1m", "ingest", "-", "--name", "d"], env, input="waited")
    holder.wait()
    assert r.returncode == 0, r.stderr
    assert "waiting up to 1m" in r.stderr
    holder = _hold_lock(repo_path, 2)
    with ca.Repository.open(repo_path, PASSWORD, retry_lock=timedelta(seconds=60)) as repo:
        snap = repo.ingest(b"waited too")
    holder.wait()
    assert len(ca.Repository.open(repo_path, PASSWORD).list_snapshots()) == 2
    assert snap.original_size == 10
    # A short wait still fails, with exit 11.
    holder = _hold_lock(repo_path, 30)
    try:
        r = run(CLI + ["--retry-lock", "1s", "prune", "--keep-last", "1"], env)
        assert r.returncode == 11, r.stderr
    finally:
        holder.kill()
    bad = run(CLI + ["--retry-lock", "5 minutes", "snapshots"], env)
    assert bad.returncode == 2 and "duration" in bad.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("0", 0),
        ("1.5h", 5400),
        ("2m3s", 123),
    ],
)
def test_durations_are_go_style(text: str, seconds: float):
    assert ca.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m", "1h 2m", "-1s", "5 minutes"])
def test_bad_durations_are_refused(text: str):
    with pytest.raises(ca.InvalidArgumentError, match="duration"):
        ca.parse_duration(text)


# -- format features -------------------------------------------------------------------------


def test_an_old_repository_is_upgraded_by_its_first_write_and_a_future_one_is_not_written(
    env: dict[str, str], tmp_path: Path
):
    repo_path = init(env, tmp_path)
    ingest_cli(env, tmp_path, "x", b"night one")
    config = json.loads((repo_path / "config.json").read_text())
    features = ["deletion-notices", "parity-dir"]
    # Delta encoding is chosen (on by default), so it is required to read as well as to write;
    # metadata copies are made from init on (repair adds them to older repositories).
    assert config["version"] == 2 and config["features"] == {
        "read": ["delta"],
        "write": [*features, "metadata-copies", "delta"],
    }
    # As written by an older containerarchive.
    old = {k: v for k, v in config.items() if k != "features"} | {"version": 1}
    (repo_path / "config.json").write_text(json.dumps(old))
    shutil.rmtree(repo_path / "copies")  # an older version made no copies
    r = run(CLI + ["snapshots", "--json"], env)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1
    assert json.loads((repo_path / "config.json").read_text())["version"] == 1
    ingest_cli(env, tmp_path, "y", b"night two")
    upgraded = json.loads((repo_path / "config.json").read_text())
    # The upgrade adds what every write follows, never a choice such as delta encoding, nor
    # metadata copies (repair adds those once every manifest has its copy).
    assert upgraded["version"] == 2 and upgraded["features"]["write"] == features
    # A repository a newer version made needs a feature this one does not know: no writes.
    upgraded["features"]["write"].append("delta-blobs")
    (repo_path / "config.json").write_text(json.dumps(upgraded))
    (repo_path / "copies" / "config").unlink(missing_ok=True)
    before = sorted(p.name for p in repo_path.rglob("*"))
    r = run(CLI + ["ingest", "-", "--name", "d"], env, input="x")
    assert r.returncode == 1 and "delta-blobs" in r.stderr, r.stderr
    r = run(CLI + ["prune", "--keep-last", "1"], env)
    assert r.returncode == 1 and "delta-blobs" in r.stderr, r.stderr
    assert sorted(p.name for p in repo_path.rglob("*")) == before
    r = run(CLI + ["restore", "latest"], env)
    assert r.returncode == 0 and r.stdout == "night two"


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """768 MiB of incompressible data: verify and repair take seconds over it."""
    repo_path = tmp_path_factory.mktemp("big") / "repo"
    with ca.Repository.init(
        repo_path, PASSWORD, pack_size=8 * MiB, kdf_memory_kib=1024, kdf_iterations=1
    ) as repo:
        for seed in range(8):
            repo.ingest(random_bytes(96 * MiB, seed), name="d")
    return repo_path


# (reindex reads only the small .idx files: over in milliseconds, nothing to interrupt here)
@pytest.mark.parametrize("operation", ["r.verify('full')", "r.repair()"])
def test_a_signal_stops_a_long_maintenance_operation_without_waiting_for_its_end(
    big_repo: Path, operation: str
):
    code = (
        "import containerarchive as ca, sys\n"
        f"r = ca.Repository.open(sys.argv[1], {PASSWORD!r})\n"
        "print('starting', flush=True)\n"
        "try:\n"
        f"    {operation}\n"
        "    print('finished', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(7)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(big_repo)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "starting"
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 7, proc.stdout.read()
    assert not list((big_repo / "locks").iterdir())
    with ca.Repository.open(big_repo, PASSWORD) as repo:
        assert repo.verify("quick").ok
