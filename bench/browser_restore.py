"""Restore a large item in headless Chromium and report the browser's memory.

    python bench/browser_restore.py --size 1G                 # both ways, one after the other
    python bench/browser_restore.py --size 1G --mode stream   # into a picked file only

Makes an encrypted repository holding one item of pseudo-random data, serves the page
(wasm/www, built by wasm/build.sh) on 127.0.0.1, opens the repository in Debian's Chromium and
restores the item:

- ``stream``: as in a Chromium-based browser, into the file the save picker returns (answered
  here by a file of the origin-private file system, since a headless browser shows no dialog);
  the file is checked block by block (SHA-256 of every 8 MiB) against the source;
- ``blob``: as in a browser without the File System Access API, to a download (a Blob), whose
  SHA-256 is checked.

For each it reports the time and the peak memory: the page's JS heap, the renderer processes'
RSS (page and its Web Worker) and the browser process's RSS (which holds a Blob download).
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


BLOCK = 8 << 20

PICKER = """
window.showSaveFilePicker = async ({ suggestedName }) => {
  const dir = await navigator.storage.getDirectory();
  window.__picked = suggestedName;
  return dir.getFileHandle(suggestedName, { create: true });
};
"""

BLOCK_DIGESTS = """async (block) => {
  const dir = await navigator.storage.getDirectory();
  const file = await (await dir.getFileHandle(window.__picked)).getFile();
  const out = [];
  for (let at = 0; at < file.size; at += block) {
    const d = await crypto.subtle.digest("SHA-256", await file.slice(at, at + block).arrayBuffer());
    out.push([...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return [file.size, out];
}"""


class BlockReader:
    """A binary file object over generated blocks, hashing what it hands out (whole, and per
    8 MiB block)."""

    def __init__(self, blocks):
        self.blocks, self.buf, self.sha = blocks, b"", hashlib.sha256()
        self.block_shas: list[str] = []
        self._pending = b""

    def _blocks(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= BLOCK:
            self.block_shas.append(hashlib.sha256(self._pending[:BLOCK]).hexdigest())
            self._pending = self._pending[BLOCK:]

    def finish_blocks(self) -> list[str]:
        if self._pending:
            self.block_shas.append(hashlib.sha256(self._pending).hexdigest())
            self._pending = b""
        return self.block_shas

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            block = next(self.blocks, None)
            if block is None:
                break
            self.buf += block
        out, self.buf = self.buf[:n], self.buf[n:]
        self.sha.update(out)
        self._blocks(out)
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


def restore_once(
    playwright,
    url: str,
    repo_path: Path,
    snap_id: str,
    mode: str,
    tmp: Path,
    expected: tuple[str, list[str]],
) -> tuple[float, dict[str, int], bool]:
    """One restore in a fresh browser profile on disk (an off-the-record context would keep
    the origin-private file system in memory); (seconds, peak memory, byte-identical)."""
    context = playwright.chromium.launch_persistent_context(
        tmp / f"profile-{mode}",
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--enable-precise-memory-info"],
        accept_downloads=True,
    )
    context.add_init_script(PICKER if mode == "stream" else "delete window.showSaveFilePicker;")
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.set_input_files("#repo-files", str(repo_path))
    page.fill("#passphrase", "bench")
    page.click("#open")
    page.wait_for_selector("#snapshots tbody tr")
    peaks = {"renderer": 0, "browser": 0, "other": 0, "js_heap": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, v in chromium_rss().items():
                peaks[k] = max(peaks[k], v)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    button = f'button.restore[data-snapshot="{snap_id}"]'
    if mode == "stream":
        page.click(button)
        while "to the chosen file" not in page.inner_text("#restore-message"):
            if page.is_visible("#error"):
                raise SystemExit(page.inner_text("#error"))
            peaks["js_heap"] = max(
                peaks["js_heap"], page.evaluate("performance.memory.usedJSHeapSize")
            )
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        size, digests = page.evaluate(BLOCK_DIGESTS, BLOCK)
        ok = digests == expected[1]
    else:
        with page.expect_download(timeout=3_600_000) as dl:
            page.click(button)
        while not dl.is_done():
            peaks["js_heap"] = max(
                peaks["js_heap"], page.evaluate("performance.memory.usedJSHeapSize")
            )
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        out = tmp / "restored.img"
        dl.value.save_as(out)
        done.set()
        sampler.join()
        sha = hashlib.sha256()
        with open(out, "rb") as f:
            while block := f.read(1 << 20):
                sha.update(block)
        out.unlink()
        ok = sha.hexdigest() == expected[0]
    context.close()
    return elapsed, peaks, ok


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"))
    ap.add_argument("--mode", choices=["stream", "blob", "both"], default="both")
    args = ap.parse_args()
    if not (WWW / "pkg" / "engine_bg.wasm").exists():
        raise SystemExit("build the page first: bash wasm/build.sh")
    tmp = Path(tempfile.mkdtemp(prefix="ca-browser-"))
    failed = False
    try:
        repo_path = tmp / "repo"
        src = BlockReader(random_blocks(args.size, 7))
        with ca.Repository.init(repo_path, "bench", kdf_memory_kib=8192) as repo:
            snap = repo.ingest(src, name="volume.img")
        expected = (src.sha.hexdigest(), src.finish_blocks())
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(WWW))
        handler.func.extensions_map = {  # type: ignore[attr-defined]
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
            ".js": "text/javascript",
        }
        handler.func.log_message = lambda *a: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        modes = ["stream", "blob"] if args.mode == "both" else [args.mode]
        mib = 1 << 20
        with sync_playwright() as p:
            for mode in modes:
                elapsed, peaks, ok = restore_once(p, url, repo_path, snap.id, mode, tmp, expected)
                failed |= not ok
                print(
                    f"{mode}: restored {args.size / mib:.0f} MiB in {elapsed:.1f} s "
                    f"({args.size / 1e6 / elapsed:.0f} MB/s), byte-identical: {ok}; "
                    f"peak JS heap (page) {peaks['js_heap'] / mib:.1f} MiB, "
                    f"peak RSS: renderer (page + worker) {peaks['renderer'] / mib:.0f} MiB, "
                    f"browser process {peaks['browser'] / mib:.0f} MiB, "
                    f"other {peaks['other'] / mib:.0f} MiB"
                )
        server.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
