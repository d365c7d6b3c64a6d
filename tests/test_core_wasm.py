"""The core engine builds for the browser: wasm32 without any C code or OS access."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(
    r"std::(fs|net|process|thread|env)\b|SystemTime|Instant::now|getrandom|thread_rng|OsRng"
)


def test_core_sources_use_no_os_facility():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "core" / "src").rglob("*.rs"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line) and not line.strip().startswith("//")
    ]
    assert offenders == []


def _wasm_target_installed() -> bool:
    if shutil.which("rustup") is None:
        return False
    out = subprocess.run(
        ["rustup", "target", "list", "--installed"], capture_output=True, text=True
    )
    return "wasm32-unknown-unknown" in out.stdout


def test_core_builds_for_wasm32():
    if not _wasm_target_installed():
        if os.environ.get("CI"):
            pytest.fail("wasm32-unknown-unknown is not installed in CI")
        pytest.skip("rustup target wasm32-unknown-unknown is not installed")
    proc = subprocess.run(
        ["cargo", "build", "-p", "containerarchive-core", "--target", "wasm32-unknown-unknown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
