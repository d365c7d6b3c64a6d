"""Restore a large item in headless Chromium and report the browser's memory.

    python bench/browser_restore.py --size 1G

Makes an encrypted repository holding one item of pseudo-random data, serves the page
(wasm/www, built by wasm/build.sh) on 127.0.0.1, opens the repository in Debian's Chromium,
restores the item to a download, checks its SHA-256, and reports the time and the peak
memory: the page's JS heap, the renderer processes' RSS (page and its Web Worker) and the
browser process's RSS (which holds the downloaded blob).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen import parse_size, random_blocks  # noqa: E402

import containerarchive as ca  # noqa: E402

WWW = HERE.parent / "wasm" / "www"


class BlockReader:
    """A binary file object over generated blocks, hashing what it hands out."""

    def __init__(self, blocks):
        self.blocks, self.buf, self.sha = blocks, b"", hashlib.sha256()

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            block = next(self.blocks, None)
            if block is None:
                break
            self.buf += block
        out, self.buf = self.buf[:n], self.buf[n:]
        self.sha.update(out)
        return out


def chromium_rss() -> dict[str, int]:
    """Resident bytes of Chromium's processes, by kind (renderer, browser, other)."""
    out = {"renderer": 0, "browser": 0, "other": 0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            # Chromium rewrites its children's argv into one space-separated string.
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
            if not cmd or b"chromium" not in cmd[0]:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss = next(
            (
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            ),
            0,
        )
        kind = next((a.split(b"=", 1)[1].decode() for a in cmd if a.startswith(b"--type=")), None)
        out["browser" if kind is None else "renderer" if kind == "renderer" else "other"] += rss
    return out


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"))
    args = ap.parse_args()
    if not (WWW / "pkg" / "engine_bg.wasm").exists():
        raise SystemExit("build the page first: bash wasm/build.sh")
    tmp = Path(tempfile.mkdtemp(prefix="ca-browser-"))
    try:
        repo_path = tmp / "repo"
        src = BlockReader(random_blocks(args.size, 7))
        with ca.Repository.init(repo_path, "bench", kdf_memory_kib=8192) as repo:
            snap = repo.ingest(src, name="volume.img")
        expected = src.sha.hexdigest()
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(WWW))
        handler.func.extensions_map = {  # type: ignore[attr-defined]
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
            ".js": "text/javascript",
        }
        handler.func.log_message = lambda *a: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        peaks = {"renderer": 0, "browser": 0, "other": 0, "js_heap": 0}
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--enable-precise-memory-info"],
            )
            page = browser.new_context(accept_downloads=True).new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("body[data-ready=true]")
            page.set_input_files("#repo-files", str(repo_path))
            page.fill("#passphrase", "bench")
            page.click("#open")
            page.wait_for_selector("#snapshots tbody tr")
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    for k, v in chromium_rss().items():
                        peaks[k] = max(peaks[k], v)
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            with page.expect_download(timeout=3_600_000) as dl:
                page.click(f'button.restore[data-snapshot="{snap.id}"]')
            while not done.is_set():
                heap = page.evaluate("performance.memory.usedJSHeapSize")
                peaks["js_heap"] = max(peaks["js_heap"], heap)
                if dl.is_done():
                    break
                time.sleep(0.5)
            download = dl.value
            elapsed = time.perf_counter() - start
            out = tmp / "restored.img"
            download.save_as(out)
            done.set()
            sampler.join()
            sha = hashlib.sha256()
            with open(out, "rb") as f:
                while block := f.read(1 << 20):
                    sha.update(block)
            browser.close()
        server.shutdown()
        ok = sha.hexdigest() == expected
        mib = 1 << 20
        print(
            f"restored {args.size / mib:.0f} MiB in {elapsed:.1f} s "
            f"({args.size / 1e6 / elapsed:.0f} MB/s), byte-identical: {ok}"
        )
        print(
            f"peak JS heap (page) {peaks['js_heap'] / mib:.1f} MiB; "
            f"peak RSS: renderer (page + worker) {peaks['renderer'] / mib:.0f} MiB, "
            f"browser process {peaks['browser'] / mib:.0f} MiB, "
            f"other {peaks['other'] / mib:.0f} MiB"
        )
        if not ok:
            raise SystemExit(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
