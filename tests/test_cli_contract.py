"""The CLI's contract with an ops person: safe permissions, one line and a documented exit code
for every bad input, output files that behave like other Unix tools, and an exit-code table
that is the same in the code, in --help and in the README."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE
from containerarchive.cli import EXIT_TABLE

CLI = [sys.executable, "-m", "containerarchive"]
ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(ca.__file__).resolve().parent.parent


def env_for(repo: Path | str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERARCHIVE_PASSWORD": PASSPHRASE,
        "CONTAINERARCHIVE_REPOSITORY": str(repo),
        **extra,
    }


def cli(repo: Path | str, *args: str, stdin: bytes | None = b"", **extra: str):
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, env=env_for(repo, **extra), timeout=120
    )


def one_line(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode(errors="replace").strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    with ca.Repository.init(path, PASSPHRASE, **FAST_KDF) as r:
        r.ingest(b"one", name="a.sql")
        r.ingest_multi([{"source": b"first", "name": "x.sql"}, {"source": b"second", "name": "y"}])
    return path


def modes(path: Path) -> tuple[set[int], set[int]]:
    dirs, files = {stat.S_IMODE(path.stat().st_mode)}, set()
    for p in path.rglob("*"):
        (dirs if p.is_dir() else files).add(stat.S_IMODE(p.stat().st_mode))
    return dirs, files


# -- security defaults -------------------------------------------------------------------


def test_repository_files_are_private_whatever_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        given = tmp_path / "given"
        given.mkdir(mode=0o755)
        for path in (tmp_path / "new", given):
            p = subprocess.run([*CLI, "init", "-r", str(path)], env=env_for(path), timeout=60)
            assert p.returncode == 0
            p = cli(path, "ingest", "-", "--name", "db.sql", stdin=os.urandom(300_000))
            assert p.returncode == 0
            assert cli(path, "prune", "--keep-last", "1").returncode == 0
            assert modes(path) == ({0o700}, {0o600}), path
    finally:
        os.umask(old)


def test_init_never_mixes_a_repository_with_other_files(tmp_path: Path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for target, words in ((busy, "not empty"), (afile, "is a file")):
        p = subprocess.run(
            [*CLI, "init", "-r", str(target)], capture_output=True, env=env_for(target)
        )
        assert p.returncode == 6 and words in one_line(p)
    assert sorted(os.listdir(busy)) == ["notes.txt"] and afile.read_text() == "mine"
    p = cli(afile, "snapshots")
    assert p.returncode == 10 and "is a file" in one_line(p)
    repo = tmp_path / "repo"
    ca.Repository.init(repo, PASSPHRASE, **FAST_KDF).close()
    p = subprocess.run([*CLI, "init", "-r", str(repo)], capture_output=True, env=env_for(repo))
    assert p.returncode == 6 and "already exists" in one_line(p)


# -- bad inputs: one line, documented exit code ---------------------------------------------


def test_bad_password_files_exit_12(repo: Path, tmp_path: Path):
    cases = {
        "not-utf8": b"\xff\xfe\xfd",
        "binary": b"pass\x00word",
        "huge": b"x" * 100_000,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "adir").mkdir()
    env = {k: v for k, v in env_for(repo).items() if k != "CONTAINERARCHIVE_PASSWORD"}
    for name in [*cases, "adir", "missing"]:
        p = subprocess.run(
            [*CLI, "snapshots", "-p", str(tmp_path / name)], capture_output=True, env=env
        )
        err = one_line(p)
        assert p.returncode == 12, (name, err)
        assert err.count(str(tmp_path / name)) == 1, err
    p = subprocess.run(
        [*CLI, "key", "add", "--new-password-file", str(tmp_path / "missing")],
        capture_output=True,
        env=env_for(repo),
    )
    assert p.returncode == 12 and "new password file" in one_line(p)


def test_bad_sources_exit_6_and_write_nothing(repo: Path, tmp_path: Path):
    before = sorted(p.name for p in (repo / "snapshots").iterdir())
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for source, words in (
            (tmp_path, "is a directory"),
            (tmp_path / "nope.sql", "does not exist"),
            (sock_path, "is a socket"),
        ):
            p = cli(repo, "ingest", str(source))
            assert p.returncode == 6 and words in one_line(p), source
    finally:
        sock.close()
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == before
    # A bad file among good ones: checked before anything is written.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    files_before = sorted(str(p) for p in repo.rglob("*") if "locks" not in p.parts)
    p = cli(repo, "ingest", str(big), str(tmp_path / "missing.sql"))
    assert p.returncode == 6 and "missing.sql" in one_line(p)
    assert sorted(str(p) for p in repo.rglob("*") if "locks" not in p.parts) == files_before


def test_names_and_tags_that_are_not_utf8_are_usage_errors(repo: Path, tmp_path: Path):
    odd = tmp_path / os.fsdecode(b"dump-\xff.sql")
    odd.write_bytes(b"data")
    p = subprocess.run(
        [*CLI, "ingest", os.fsencode(odd)], capture_output=True, env=env_for(repo), timeout=60
    )
    assert p.returncode == 2 and "--name" in one_line(p)
    p = subprocess.run(
        [*CLI, "ingest", os.fsencode(odd), "--name", "dump.sql", b"--tag", b"k=\xff"],
        capture_output=True,
        env=env_for(repo),
        timeout=60,
    )
    assert p.returncode == 2 and "UTF-8" in one_line(p)
    p = subprocess.run(
        [*CLI, "ingest", os.fsencode(odd), "--name", "dump.sql"],
        capture_output=True,
        env=env_for(repo),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr


@pytest.fixture
def shared_tmp():
    """A temporary directory another user can reach (pytest's own is private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ca-users-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unreadable_files_as_another_user(shared_tmp: Path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    tmp_path = shared_tmp
    home = tmp_path / "nobody"
    home.mkdir()
    shutil.chown(home, "nobody", "nogroup")
    secret = tmp_path / "secret.sql"
    secret.write_bytes(b"root only")
    os.chmod(secret, 0o600)
    pw = tmp_path / "pw"
    pw.write_text(PASSPHRASE)
    os.chmod(pw, 0o600)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PACKAGE_DIR),
        "CONTAINERARCHIVE_REPOSITORY": str(home / "repo"),
        "HOME": str(home),
    }
    python = [*as_nobody, "/usr/bin/python3", "-m", "containerarchive"]
    ok = subprocess.run(
        [*python, "init"], capture_output=True, env={**env, "CONTAINERARCHIVE_PASSWORD": "x"}
    )
    if ok.returncode != 0 and b"No module named" in ok.stderr:
        pytest.skip("the system python cannot import the package built for this venv")
    assert ok.returncode == 0, ok.stderr
    p = subprocess.run(
        [*python, "ingest", str(secret)],
        capture_output=True,
        env={**env, "CONTAINERARCHIVE_PASSWORD": "x"},
    )
    assert p.returncode == 6 and "cannot be read" in one_line(p)
    p = subprocess.run([*python, "snapshots", "-p", str(pw)], capture_output=True, env=env)
    assert p.returncode == 12 and "cannot be read" in one_line(p)
    out = home / "out"
    out.mkdir()
    os.chmod(out, 0o555)
    subprocess.run(
        [*python, "ingest", "-", "--name", "n"],
        input=b"data",
        env={**env, "CONTAINERARCHIVE_PASSWORD": "x"},
        check=True,
        capture_output=True,
    )
    p = subprocess.run(
        [*python, "restore", "latest", "-o", str(out / "n")],
        capture_output=True,
        env={**env, "CONTAINERARCHIVE_PASSWORD": "x"},
    )
    err = one_line(p)
    assert p.returncode == 6 and "cannot be written" in err and "storage error" not in err


def test_usage_errors_with_json_print_one_json_document(repo: Path):
    for args in (["snapshots", "--json", "--bogus"], ["--json", "prune", "--keep-last", "x"]):
        p = cli(repo, *args)
        assert p.returncode == 2
        assert json.loads(p.stdout)["error"]["exit_code"] == 2
        one_line(p)
    p = cli(repo, "--version")
    assert p.returncode == 0 and p.stdout.decode().startswith(f"containerarchive {ca.__version__}")


# -- messages in the CLI's own words -------------------------------------------------------


def test_messages_name_flags_and_say_what_is_true(repo: Path, tmp_path: Path):
    p = cli(repo, "restore", "latest", "-o", str(tmp_path / "nodir" / "sub" / "out.dump"))
    err = one_line(p)
    assert p.returncode == 6 and "does not exist" in err
    assert "storage error" not in err and ".partial" not in err
    p = cli(repo, "prune")
    err = one_line(p)
    assert p.returncode == 2 and "--keep-last" in err and "keep_last" not in err
    p = cli(repo, "restore", "latest", "--tag", "db=nope", "-o", str(tmp_path / "o"))
    assert p.returncode == 3 and "db=nope" in one_line(p)
    p = cli(repo, "ingest", "-", "--time", "yesterday", stdin=b"x")
    assert p.returncode == 2 and "--time" in one_line(p)
    p = cli(repo, "key", "remove", "zzzz")
    assert p.returncode == 3 and "zzzz" in one_line(p)
    # An id with --tag is checked against the tag, not silently ignored.
    first = ca.Repository.open(repo, PASSPHRASE).list_snapshots()[0]
    p = cli(repo, "restore", first.id, "--tag", "db=nope", "-o", str(tmp_path / "o2"))
    assert p.returncode == 3 and not (tmp_path / "o2").exists()


def test_show_has_the_command_and_prune_lists_dates_and_items(repo: Path):
    p = cli(repo, "ingest", "--exec", "printf dumped", "--name", "d.sql")
    assert p.returncode == 0
    text = cli(repo, "show", "latest").stdout.decode()
    assert "printf dumped" in text and "exit status 0" in text
    text = cli(repo, "prune", "--keep-last", "1", "--group-by", "", "--dry-run").stdout.decode()
    rows = [line for line in text.splitlines() if line.startswith("    ")]
    assert rows and all(re.search(r"\d{4}-\d\d-\d\dT", r) for r in rows)
    assert any("a.sql" in r for r in rows) and any("x.sql,y" in r for r in rows)


def test_every_option_has_help():
    for command in ("init", "verify", "prune", "restore", "ingest", "snapshots"):
        out = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True).stdout
        options = re.findall(r"^  (-[-\w, ]+?)(?:\s{2,}(\S.*))?$", out, re.M)
        for flag, text in options:
            if text:
                continue
            # argparse puts long help on the next line; a flag with nothing after it has none.
            after = out.split(flag, 1)[1].splitlines()[1] if flag in out else ""
            assert after.startswith(" " * 10), f"{command} {flag} has no help text"


# -- output files --------------------------------------------------------------------------


def test_output_files_behave_like_other_unix_tools(repo: Path, tmp_path: Path):
    multi = ca.Repository.open(repo, PASSPHRASE).list_snapshots()[-1]
    tar_path = tmp_path / "x.tar"
    p = cli(repo, "restore", multi.id, "-o", str(tar_path))
    assert p.returncode == 0 and tar_path.is_file()
    with tarfile.open(tar_path) as t:
        assert sorted(t.getnames()) == ["x.sql", "y"]
        assert t.extractfile("y").read() == b"second"
    p = cli(repo, "restore", multi.id, "-o", str(tmp_path / "into") + "/")
    assert p.returncode == 0 and (tmp_path / "into" / "x.sql").read_bytes() == b"first"
    p = cli(repo, "restore", multi.id, "-o", str(tmp_path / "into") + "/")
    assert p.returncode == 6 and "--overwrite" in one_line(p)
    existing = tmp_path / "existing.sql"
    existing.write_bytes(b"keep me")
    p = cli(repo, "restore", multi.id, "--item", "x.sql", "-o", str(existing))
    assert p.returncode == 6 and existing.read_bytes() == b"keep me"
    p = cli(repo, "restore", multi.id, "--item", "x.sql", "-o", str(existing), "--overwrite")
    assert p.returncode == 0 and existing.read_bytes() == b"first"
    assert not [f for f in tmp_path.iterdir() if "partial" in f.name]
    with ca.Repository.open(repo, PASSPHRASE) as r:
        with pytest.raises(ca.UnusableFileError, match="overwrite=True"):
            r.restore_to(multi.id, existing, item="y")
        assert r.restore_to(multi.id, existing, item="y", overwrite=True) == existing
        assert existing.read_bytes() == b"second"
        r.restore_to(multi.id, tmp_path / "api.tar")
        assert tarfile.is_tarfile(tmp_path / "api.tar")


def test_restore_refuses_a_terminal_unless_asked(repo: Path):
    def on_a_tty(*args: str) -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [*CLI, "restore", "latest", "--item", "x.sql", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env_for(repo),
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=60)
        os.close(leader)
        assert proc.stderr is not None
        err = proc.stderr.read()
        return proc.returncode, out + err

    code, out = on_a_tty()
    assert code == 6 and b"terminal" in out and b"first" not in out
    code, out = on_a_tty("-o", "-")
    assert code == 0 and b"first" in out


# -- the exit-code table -------------------------------------------------------------------


def test_the_readme_table_is_the_codes_table():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([\d/]+)` \| (.+) \|$", readme, re.M)
    assert rows == [(code, what) for code, what in EXIT_TABLE]
    help_text = subprocess.run([*CLI, "--help"], capture_output=True, text=True).stdout
    for code, _ in EXIT_TABLE:
        assert code in help_text


def test_every_documented_exit_code_happens(repo: Path, tmp_path: Path):
    damaged = tmp_path / "damaged"
    shutil.copytree(repo, damaged)
    next((damaged / "packs" / "data").rglob("*.pack")).unlink()
    got: dict[str, int] = {}
    got["0"] = cli(repo, "snapshots").returncode
    got["1"] = cli(damaged, "verify").returncode
    got["2"] = cli(repo, "snapshots", "--bogus").returncode
    got["3"] = cli(repo, "show", "ffffffff").returncode
    got["4"] = cli(repo, "ingest", "--exec", "false").returncode
    got["5"] = cli(repo, "ingest", "-", stdin=b"").returncode
    got["6"] = cli(repo, "ingest", str(tmp_path / "missing")).returncode
    got["10"] = cli(tmp_path / "nothing-here", "snapshots").returncode
    with ca.Repository.open(repo, PASSPHRASE) as r, r.lock(exclusive=True):
        got["11"] = cli(repo, "ingest", "-", stdin=b"x").returncode
    got["12"] = cli(repo, "snapshots", CONTAINERARCHIVE_PASSWORD="wrong").returncode
    # 13 needs a prune deleting what an ingest reuses at the same moment:
    # tests/test_concurrency.py makes it happen with real processes.
    got["13"] = 13
    # 14 needs objects in an archive storage class: tests/test_object_store.py moves packs to
    # GLACIER in moto's S3 server and checks restore, prune and verify exit with it.
    got["14"] = 14
    proc = subprocess.Popen(
        [*CLI, "ingest", "--exec", "sleep 30", "--name", "slow"],
        env=env_for(repo),
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    got["129/130/143"] = proc.wait(timeout=30)
    pipe = subprocess.run(
        ["bash", "-c", f"{' '.join(CLI)} snapshots | true; exit ${{PIPESTATUS[0]}}"],
        env=env_for(repo),
        capture_output=True,
    )
    got["141"] = pipe.returncode
    for code, _ in EXIT_TABLE:
        allowed = {int(c) for c in code.split("/")}
        assert got[code] in allowed, (code, got[code])


# -- found by trying to break it -----------------------------------------------------------


def test_special_outputs_are_written_into_never_replaced(repo: Path, tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    p = cli(repo, "restore", "latest", "--item", "x.sql", "-o", str(fifo), "--overwrite")
    assert p.returncode == 0, p.stderr
    assert reader.communicate(timeout=30)[0] == b"first"
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    p = cli(repo, "restore", "latest", "-o", "/dev/null")
    assert p.returncode == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    p = subprocess.run(
        ["bash", "-c", f"{' '.join(CLI)} restore latest --item y -o >(cat > {tmp_path}/gz)"],
        env=env_for(repo),
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr
    time.sleep(0.5)
    assert (tmp_path / "gz").read_bytes() == b"second"
    # Through a symbolic link to a file: the file is replaced, the link stays.
    real = tmp_path / "real.sql"
    real.write_bytes(b"old")
    link = tmp_path / "link.sql"
    link.symlink_to(real)
    p = cli(repo, "restore", "latest", "--item", "y", "-o", str(link), "--overwrite")
    assert p.returncode == 0 and link.is_symlink() and real.read_bytes() == b"second"


def test_odd_output_and_repository_paths_exit_with_their_codes(repo: Path, tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    loop = tmp_path / "loop1"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    for args, code, words in (
        (["restore", "latest", "-o", ""], 2, "empty"),
        (["restore", "latest", "--item", "y", "-o", str(afile / "x")], 6, "not a directory"),
        (["-r", str(afile / "sub"), "snapshots"], 10, "is a file"),
        (["-r", str(afile / "sub"), "init"], 6, "is a file"),
        (["-r", str(loop), "snapshots"], 10, "symbolic link"),
        (["-r", str(loop), "init"], 6, "symbolic link"),
        (["-r", "s3://", "snapshots"], 2, "bucket"),
        (["ingest", str(afile) + "/"], 6, "not a directory"),
        (["ingest", ""], 2, "empty source"),
        (["prune", "--keep-within", ""], 2, "--keep-within"),
        (["prune", "--keep-within", "30x"], 2, "--keep-within"),
        (["prune", "--keep-tag", "foo"], 2, "--keep-tag"),
        (["ingest", "-", "--type", "\udcff"], 2, "UTF-8"),
    ):
        p = subprocess.run(
            [*CLI, *[os.fsencode(a) for a in args]],
            input=b"x",
            capture_output=True,
            env=env_for(repo),
            cwd=tmp_path,  # should `-o ''` ever mean ".", nothing lands in the checkout
            timeout=60,
        )
        err = one_line(p)
        assert p.returncode == code and words in err, (args, p.returncode, err)
        assert "invalid argument:" not in err and "while processing" not in err, err


def test_missing_or_empty_new_passphrases_exit_12(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERARCHIVE_")}
    p = subprocess.run(
        [*CLI, "init", "-r", str(tmp_path / "a")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
    )
    assert p.returncode == 12 and "--no-encryption" in one_line(p)
    p = subprocess.run(
        [*CLI, "init", "-r", str(tmp_path / "b")],
        capture_output=True,
        env={**env, "CONTAINERARCHIVE_PASSWORD": ""},
    )
    err = one_line(p)
    assert p.returncode == 12 and "empty" in err and "--no-encryption" in err


def test_a_closed_or_full_standard_output(repo: Path):
    for shell, code in (
        (f"{' '.join(CLI)} snapshots >&-", 0),
        (f"{' '.join(CLI)} restore latest --item y >&-", 6),
        (f"{' '.join(CLI)} restore latest --item y > /dev/full", 6),
        (f"echo data | {' '.join(CLI)} ingest - --name c >&-", 0),
        (f"{' '.join(CLI)} --json show nope > /dev/full", 3),
        (f"{' '.join(CLI)} --json snapshots --bogus > /dev/full", 2),
        (f"{' '.join(CLI)} --js snapshots --bogus", 2),
    ):
        p = subprocess.run(["bash", "-c", shell], capture_output=True, env=env_for(repo))
        assert p.returncode == code, (shell, p.returncode, p.stderr)
        err = p.stderr.decode()
        assert "Traceback" not in err and "bug" not in err and "storage error" not in err, err
        if "--js " in shell:
            assert json.loads(p.stdout)["error"]["exit_code"] == 2


def test_siblings_found_on_a_second_look(repo: Path, tmp_path: Path):
    # A FIFO where a directory restore puts an item: written into, never replaced.
    into = tmp_path / "into"
    into.mkdir()
    os.mkfifo(into / "a.sql")
    reader = subprocess.Popen(["cat", str(into / "a.sql")], stdout=subprocess.PIPE)
    first = ca.Repository.open(repo, PASSPHRASE).list_snapshots()[0]
    p = cli(repo, "restore", first.id, "-o", f"{into}/")
    assert p.returncode == 0, p.stderr
    assert reader.communicate(timeout=30)[0] == b"one"
    assert stat.S_ISFIFO((into / "a.sql").stat().st_mode)
    # Symbolic links that lead nowhere are refused as outputs and repository paths.
    (tmp_path / "la").symlink_to(tmp_path / "lb")
    (tmp_path / "lb").symlink_to(tmp_path / "la")
    (tmp_path / "dang").symlink_to(tmp_path / "nowhere")
    for args, code in (
        (["restore", first.id, "-o", str(tmp_path / "la")], 6),
        (["restore", first.id, "-o", str(tmp_path / "dang"), "--overwrite"], 6),
        (["-r", str(tmp_path / "la" / "r"), "snapshots"], 10),
        (["-r", str(tmp_path / "la" / "r"), "init"], 6),
        (["prune", "--keep-within", "0d"], 2),
        (["--j", "snapshots", "--bogus"], 2),
    ):
        p = cli(repo, *args)
        err = one_line(p)
        assert p.returncode == code, (args, p.returncode, err)
        if "prune" in args:
            assert "--keep-last" in err
        if "--j" in args:
            assert json.loads(p.stdout)["error"]["exit_code"] == 2
    assert (tmp_path / "la").is_symlink() and (tmp_path / "dang").is_symlink()
    assert not (tmp_path / "nowhere").exists()
    # A full standard output for ordinary results: one line, exit 6, in the CLI's words.
    p = subprocess.run(
        ["bash", "-c", f"{' '.join(CLI)} snapshots > /dev/full"],
        capture_output=True,
        env=env_for(repo),
    )
    assert p.returncode == 6 and "standard output cannot be written" in one_line(p)
