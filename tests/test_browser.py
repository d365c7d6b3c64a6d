"""The browser page and JS module, driven in Debian's headless Chromium (never a downloaded one)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
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
            "items",
        ]
    )
    assert out["planMissing"] == 0 and out["planPacks"] >= 1 and out["totalBytes"] > 0
    assert out["size"] == len(repos["data"]["config.tar"])
    assert out["wrong"] == "WrongPassphraseError"
    assert out["missing"] == "ItemNotFoundError"
    assert out["ok"] is True and out["packsChecked"] > 0
