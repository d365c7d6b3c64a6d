"""The browser page and JS module, driven in Debian's headless Chromium (never a downloaded one)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, random_bytes, sql_dump

ROOT = Path(__file__).resolve().parent.parent
WWW = ROOT / "wasm" / "www"
CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test command installs it
    if os.environ.get("CI"):
        raise
    pytest.skip(
        "playwright is not installed (the test command installs it)", allow_module_level=True
    )

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: the test command installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def site():
    if not (WWW / "pkg" / "engine_bg.wasm").exists():
        subprocess.run(["bash", str(ROOT / "wasm" / "build.sh")], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(WWW))
    handler.func.extensions_map = {  # type: ignore[attr-defined]
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(accept_downloads=True)
    # As in a browser without the File System Access API (Firefox, Safari): restores go to
    # the downloads as a Blob. The streaming path has its own tests below.
    context.add_init_script("delete window.showSaveFilePicker;")
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(site)
    expect(pg.locator("body")).to_have_attribute("data-ready", "true")
    yield pg
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Repositories made by the Python package: encrypted zstd multi-item, plain gzip, damaged."""
    base = tmp_path_factory.mktemp("browser")
    data = {
        "database.sql": sql_dump(40_000, seed=3),
        "config.tar": random_bytes(3 << 20, 4),
        "notes.txt": b"plain text, gzip-compressed\n" * 5000,
    }
    enc = base / "encrypted" / "repo"
    with ca.Repository.init(enc, PASSPHRASE, "zstd", pack_size=1 << 20, **FAST_KDF) as r:
        first = r.ingest(
            data["database.sql"],
            name="database.sql",
            type="database-dump",
            tags={"db": "shop"},
            time="2026-01-01T00:00:00+00:00",
        )
        multi = r.ingest_multi(
            [
                {"source": data["database.sql"], "name": "database.sql"},
                {"source": data["config.tar"], "name": "config.tar", "type": "tar"},
            ],
            tags={"db": "shop", "kind": "full"},
            time="2026-02-01T00:00:00+00:00",
        )
    plain = base / "plain" / "repo"
    with ca.Repository.init(plain, compression="gzip", **FAST_KDF) as r:
        gz = r.ingest(data["notes.txt"], name="notes.txt")
    damaged = base / "damaged" / "repo"
    shutil.copytree(enc, damaged)
    with ca.Repository.open(damaged, PASSPHRASE) as r:
        victim = r.restore_plan(multi.id, item="config.tar").packs[-1]
    (damaged / victim).unlink()
    return {
        "data": data,
        "enc": enc,
        "plain": plain,
        "damaged": damaged,
        "first": first,
        "multi": multi,
        "gz": gz,
        "victim": Path(victim).stem,
    }


def open_repo(page, path: Path, passphrase: str | None):
    page.set_input_files("#repo-files", str(path))
    page.fill("#passphrase", passphrase or "")
    page.click("#open")


def restore(page, tmp_path: Path, snapshot: str, item: str) -> bytes:
    with page.expect_download(timeout=120_000) as dl:
        page.click(f'button.restore[data-snapshot="{snapshot}"][data-item="{item}"]')
    download = dl.value
    assert download.suggested_filename == item.split("/")[-1]
    out = tmp_path / f"download-{hashlib.sha1(item.encode()).hexdigest()}"
    download.save_as(out)
    return out.read_bytes()


def test_open_list_verify_and_restore_an_encrypted_repository(page, repos, tmp_path):
    open_repo(page, repos["enc"], PASSPHRASE)
    rows = page.locator("#snapshots tbody tr")
    expect(rows).to_have_count(2)
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert sorted(ids) == sorted([repos["first"].id, repos["multi"].id])
    expect(page.locator("#error")).to_be_hidden()

    page.select_option("#verify-level", "full")
    page.click("#verify")
    expect(page.locator("#verify-result")).to_have_attribute("data-ok", "true", timeout=60_000)

    multi = repos["multi"].id
    assert restore(page, tmp_path, multi, "config.tar") == repos["data"]["config.tar"]
    assert restore(page, tmp_path, multi, "database.sql") == repos["data"]["database.sql"]


def test_a_wrong_passphrase_is_shown_as_an_error(page, repos):
    open_repo(page, repos["enc"], "not the passphrase")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("WrongPassphraseError")
    expect(page.locator("#snapshots-section")).to_be_hidden()


def test_an_unencrypted_gzip_repository_opens_without_a_passphrase(page, repos, tmp_path):
    open_repo(page, repos["plain"], None)
    expect(page.locator("#snapshots tbody tr")).to_have_count(1)
    assert restore(page, tmp_path, repos["gz"].id, "notes.txt") == repos["data"]["notes.txt"]


def test_a_missing_pack_fails_verify_naming_it_and_blocks_the_restore_that_needs_it(page, repos):
    open_repo(page, repos["damaged"], PASSPHRASE)
    expect(page.locator("#snapshots tbody tr")).to_have_count(2)
    page.select_option("#verify-level", "quick")
    page.click("#verify")
    result = page.locator("#verify-result")
    expect(result).to_have_attribute("data-ok", "false", timeout=60_000)
    expect(result).to_contain_text(repos["victim"])
    page.click(f'button.restore[data-snapshot="{repos["multi"].id}"][data-item="config.tar"]')
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#required-files li.missing")).to_contain_text(repos["victim"])


def test_the_js_module_api(page, repos):
    open_repo(page, repos["enc"], PASSPHRASE)
    expect(page.locator("#snapshots tbody tr")).to_have_count(2)
    expect(page.locator("#snapshots thead")).to_contain_text("Host")
    expect(page.locator("#snapshots tbody td.host").first).to_have_text(socket.gethostname())
    out = page.evaluate(
        """async ([pass]) => {
            const { default: init, Archive } = await import("./pkg/containerarchive_wasm.js");
            await init();
            const files = document.querySelector("#repo-files").files;
            const archive = await Archive.open(files, pass);
            const all = archive.snapshots();
            const full = archive.snapshots({ tags: { kind: "full" } });
            const early = archive.snapshots({ before: "2026-01-15T00:00:00Z" });
            const plan = await archive.requiredFiles(full[0].id, "config.tar");
            const reader = archive.restore(full[0].id, "config.tar").getReader();
            let size = 0;
            for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                size += value.length;
            }
            let wrong = null;
            try { await Archive.open(files, "wrong"); } catch (e) { wrong = e.name; }
            let missing = null;
            try { await archive.requiredFiles(full[0].id, "nope"); } catch (e) { missing = e.name; }
            const verify = await archive.verify("standard");
            archive.close();
            return { all: all.length, full: full.map(s => s.id), early: early.length,
                     keys: Object.keys(all[0]).sort(), planMissing: plan.missing.length,
                     planPacks: plan.files.filter(f => f.path.endsWith(".pack")).length,
                     totalBytes: plan.totalBytes, size, wrong, missing, ok: verify.ok,
                     packsChecked: verify.stats.packsChecked };
        }""",
        [PASSPHRASE],
    )
    assert out["all"] == 2 and out["early"] == 1
    assert out["full"] == [repos["multi"].id]
    assert out["keys"] == sorted(
        [
            "id",
            "version",
            "createdAt",
            "tags",
            "host",
            "originalSize",
            "storedSize",
            "chunkCount",
            "newChunks",
            "reusedChunks",
            "deltaChunks",
            "deltaOriginalSize",
            "deltaStoredSize",
            "items",
        ]
    )
    assert out["planMissing"] == 0 and out["planPacks"] >= 1 and out["totalBytes"] > 0
    assert out["size"] == len(repos["data"]["config.tar"])
    assert out["wrong"] == "WrongPassphraseError"
    assert out["missing"] == "ItemNotFoundError"
    assert out["ok"] is True and out["packsChecked"] > 0


@pytest.fixture(scope="module")
def delta_repo(tmp_path_factory):
    """Three nights of an OLTP dump, stored with delta encoding."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gen import oltp_night

    path = tmp_path_factory.mktemp("delta") / "repo"
    nights = [b"".join(oltp_night(40_000, n)) for n in (1, 2, 3)]
    with ca.Repository.init(path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF) as r:
        snaps = [r.ingest(data, name="db.sql") for data in nights]
        first_packs = set(r.restore_plan(snaps[0].id).packs)
    assert snaps[2].delta_chunks > 0
    return {"path": path, "nights": nights, "snaps": snaps, "first_packs": first_packs}


def test_the_page_restores_a_delta_night_byte_identical(page, delta_repo, tmp_path):
    open_repo(page, delta_repo["path"], PASSPHRASE)
    expect(page.locator("#snapshots tbody tr")).to_have_count(3)
    last = delta_repo["snaps"][2]
    assert restore(page, tmp_path, last.id, "db.sql") == delta_repo["nights"][2]
    out = page.evaluate(
        """async ([pass, id]) => {
            const { Archive } = await import("./pkg/containerarchive_wasm.js");
            const archive = await Archive.open(document.querySelector("#repo-files").files, pass);
            const plan = await archive.requiredFiles(id, "db.sql");
            const verify = await archive.verify("full");
            archive.close();
            return { files: plan.files.map((f) => f.path), complete: plan.complete,
                     ok: verify.ok, errors: verify.errors.map((e) => e.message) };
        }""",
        [PASSPHRASE, last.id],
    )
    assert out["complete"] is True and out["ok"] is True, out["errors"]
    # The night's bases are in night 1's packs: the plan names them.
    assert delta_repo["first_packs"] & set(out["files"])


#: Filters given to the JS API's `snapshots()` and to the Python API's `list_snapshots()`:
#: both are the engine's rule (issue 16: the filter lives only in core), so their answers agree.
FILTERS = [
    {},
    {"tags": {"db": "shop"}},
    {"tags": {"kind": "full"}},
    {"tags": {"db": "shop", "kind": "full"}},
    {"tags": {"kind": "nope"}},
    {"after": "2026-02-01T00:00:00Z"},
    {"after": "2026-02-01T00:00:00.000001Z"},
    {"before": "2026-01-01T00:00:00+00:00"},
    {"before": "2026-01-31T23:30:00-01:00"},
    {"after": "2026-01-01T00:00:00Z", "before": "2026-01-31T23:59:59.999999Z"},
    {"host": socket.gethostname()},
    {"host": "another-host"},
    {"tags": {"kind": "full"}, "host": socket.gethostname(), "before": "2026-03-01T00:00:00Z"},
]


def test_the_js_snapshot_filter_is_the_engines(page, repos):
    open_repo(page, repos["enc"], PASSPHRASE)
    expect(page.locator("#snapshots tbody tr")).to_have_count(2)
    out = page.evaluate(
        """async ([pass, filters]) => {
            const { Archive } = await import("./pkg/containerarchive_wasm.js");
            const files = document.querySelector("#repo-files").files;
            const archive = await Archive.open(files, pass);
            const ids = (list) => list.map((s) => s.id);
            const error = (f) => {
                try { archive.snapshots(f); return null; } catch (e) { return e.name; }
            };
            const out = {
                answers: filters.map((f) => ids(archive.snapshots(f))),
                dateObject: ids(archive.snapshots({ after: new Date(Date.UTC(2026, 0, 15)) })),
                dateOnly: ids(archive.snapshots({ before: "2026-01-15" })),
                copies: archive.snapshots()[0] !== archive.snapshots()[0],
                badTime: error({ after: "yesterday" }),
                badTag: error({ tags: { db: 1 } }),
            };
            archive.close();
            return out;
        }""",
        [PASSPHRASE, FILTERS],
    )
    with ca.Repository.open(repos["enc"], PASSPHRASE) as r:
        expected = [[s.id for s in r.list_snapshots(**f)] for f in FILTERS]
    assert out["answers"] == expected
    first, multi = repos["first"].id, repos["multi"].id
    assert expected[0] == [first, multi] and expected[6] == [] and expected[8] == [first, multi]
    assert out["dateObject"] == [multi] and out["dateOnly"] == [first]
    assert out["copies"] is True
    assert out["badTime"] == "InvalidArgumentError"
    assert out["badTag"] == "InvalidArgumentError"


# -- streaming to a file the user picks ------------------------------------------------------

# showSaveFilePicker answered by a file in the origin-private file system (the picker itself is
# a native dialog a headless browser cannot show). `mode` makes it cancel, or fail mid-way.
PICKER = """
window.__picked = null;
window.showSaveFilePicker = async ({ suggestedName }) => {
  const mode = window.__pickerMode || "ok";
  if (mode === "cancel") throw new DOMException("The user aborted a request.", "AbortError");
  const dir = await navigator.storage.getDirectory();
  const handle = await dir.getFileHandle(suggestedName, { create: true });
  window.__picked = suggestedName;
  if (mode === "full") {
    const real = await handle.createWritable();
    let written = 0;
    return { createWritable: async () => ({
      write: async (chunk) => {
        written += chunk.byteLength;
        if (written > 1 << 20) throw new DOMException("The disk is full.", "QuotaExceededError");
        return real.write(chunk);
      },
      close: () => real.close(),
      abort: () => real.abort(),
    }) };
  }
  return handle;
};
"""

SHA256_OF_PICKED = """async () => {
  const dir = await navigator.storage.getDirectory();
  const file = await (await dir.getFileHandle(window.__picked)).getFile();
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"));
  return [file.size, hex.join("")];
}"""


@pytest.fixture
def streaming_page(browser, site):
    context = browser.new_context()
    context.add_init_script(PICKER)
    pg = context.new_page()
    pg.goto(site)
    expect(pg.locator("body")).to_have_attribute("data-ready", "true")
    yield pg
    context.close()


def test_a_restore_streams_into_the_picked_file_and_says_so_only_when_written(
    streaming_page, repos
):
    page = streaming_page
    open_repo(page, repos["enc"], PASSPHRASE)
    multi = repos["multi"].id
    page.click(f'button.restore[data-snapshot="{multi}"][data-item="config.tar"]')
    message = page.locator("#restore-message")
    expect(message).to_contain_text("to the chosen file, every chunk verified", timeout=120_000)
    size, digest = page.evaluate(SHA256_OF_PICKED)
    data = repos["data"]["config.tar"]
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    expect(page.locator("#error")).to_be_hidden()


@pytest.mark.parametrize("mode", ["cancel", "full"])
def test_a_cancelled_or_failed_save_is_never_reported_as_restored(streaming_page, repos, mode):
    page = streaming_page
    open_repo(page, repos["enc"], PASSPHRASE)
    page.evaluate(f"window.__pickerMode = {mode!r}")
    page.click(f'button.restore[data-snapshot="{repos["multi"].id}"][data-item="config.tar"]')
    expect(page.locator("#error")).to_be_visible(timeout=120_000)
    expected = "AbortError" if mode == "cancel" else "QuotaExceededError"
    expect(page.locator("#error")).to_contain_text(expected)
    assert "restored" not in page.locator("#restore-message").inner_text()


# -- choosing the repository folder ----------------------------------------------------------


@pytest.fixture(scope="module")
def folders(repos, tmp_path_factory):
    """A folder holding two repositories, repositories in folders named like repository
    folders, and a folder holding none."""
    base = tmp_path_factory.mktemp("folders")
    shutil.copytree(repos["enc"], base / "two" / "shop")
    shutil.copytree(repos["plain"], base / "two" / "notes")
    shutil.copytree(repos["enc"], base / "snapshots" / "repo")
    shutil.copytree(repos["enc"], base / "named" / "packs")
    (base / "none" / "sub").mkdir(parents=True)
    (base / "none" / "sub" / "readme.txt").write_text("not a repository")
    return base


def test_a_folder_of_two_repositories_asks_which_one(page, repos, folders):
    open_repo(page, folders / "two", PASSPHRASE)
    expect(page.locator("#open-status")).to_contain_text("holds 2 repositories")
    chooser = page.locator("#repo-root")
    expect(chooser).to_be_visible()
    roots = chooser.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert roots == ["two/notes/", "two/shop/"]
    expect(page.locator("#error")).to_be_hidden()
    page.select_option("#repo-root", "two/shop/")
    page.click("#open")
    expect(page.locator("#snapshots tbody tr")).to_have_count(2)
    page.select_option("#repo-root", "two/notes/")
    page.fill("#passphrase", "")
    page.click("#open")
    expect(page.locator("#snapshots tbody tr")).to_have_count(1)


@pytest.mark.parametrize("where", ["snapshots", "named"])
def test_a_repository_in_a_folder_named_like_a_repository_folder_opens(
    page, repos, folders, where, tmp_path
):
    open_repo(page, folders / where, PASSPHRASE)
    expect(page.locator("#snapshots tbody tr")).to_have_count(2)
    expect(page.locator("#error")).to_be_hidden()
    multi = repos["multi"].id
    assert restore(page, tmp_path, multi, "config.tar") == repos["data"]["config.tar"]


def test_a_folder_without_a_repository_says_what_is_missing(page, folders):
    open_repo(page, folders / "none", PASSPHRASE)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("RepositoryNotFoundError")
    expect(error).to_contain_text("config.json")
