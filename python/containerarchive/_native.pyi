from collections.abc import Callable
from pathlib import Path
from typing import final

# What the module exports; stubtest compares it with the module's own __all__, and the @final
# below with PyO3's classes, which cannot be subclassed.
__all__ = [
    "_after_fork_in_child",
    "_report_storage_waits",
    "NativeRepository",
    "NativeIngest",
    "NativeLock",
    "NativeReader",
    "__version__",
]

__version__: str

def _after_fork_in_child() -> None: ...
def _report_storage_waits(enabled: bool) -> None: ...

@final
class NativeRepository:
    @staticmethod
    def init(
        path: Path | str,
        passphrase: bytes | None,
        compression: str,
        level: int | None,
        kdf_memory_kib: int | None,
        kdf_iterations: int | None,
        created_at: str,
        comment: str,
        hostname: str,
        pack_size: int | None = None,
        stale_after_ms: int | None = None,
        storage_options: str | None = None,
        delta: bool | None = None,
    ) -> NativeRepository: ...
    @staticmethod
    def open(
        path: Path | str,
        passphrase: bytes | None,
        hostname: str,
        stale_after_ms: int | None = None,
        storage_options: str | None = None,
    ) -> NativeRepository: ...
    @property
    def stale_after_ms(self) -> int: ...
    def config_json(self) -> str: ...
    @property
    def delta(self) -> bool: ...
    def enable_delta(self) -> None: ...
    @property
    def location(self) -> str: ...
    def scan_snapshots(
        self,
        tags: dict[str, str],
        after: str | None = None,
        before: str | None = None,
        host: str | None = None,
    ) -> str: ...
    def latest_snapshot(self, tags: dict[str, str], host: str | None = None) -> str: ...
    def get_snapshot(self, id: str) -> str: ...
    def begin_ingest(self, pid: int, created_at: str, host: str | None = None) -> NativeIngest: ...
    def lock(self, exclusive: bool, operation: str, pid: int) -> NativeLock: ...
    def reader(self, snapshot_id: str, item: str) -> NativeReader: ...
    def verify(
        self,
        level: str,
        on_error: Callable[[str], object] | None = None,
        progress: Callable[[float, int], object] | None = None,
    ) -> str: ...
    def reindex(self, pid: int) -> str: ...
    def repair(self, pid: int) -> str: ...
    def prune(
        self,
        pid: int,
        tags: dict[str, str],
        dry_run: bool,
        counts: list[int],
        spans: list[str],
        keep_tags: list[str],
        group_by: list[str],
        now: str,
        host: str | None = None,
        progress: Callable[[int, int, str], object] | None = None,
    ) -> str: ...
    def forget(
        self,
        pid: int,
        ids: list[str],
        dry_run: bool,
        progress: Callable[[int, int, str], object] | None = None,
    ) -> str: ...
    def stats(self) -> str: ...
    def remove_locks(self, force: bool, pid: int) -> str: ...
    def list_keys(self) -> str: ...
    def add_key(
        self,
        passphrase: bytes,
        kdf_memory_kib: int | None = None,
        kdf_iterations: int | None = None,
        comment: str = ...,  # "" (the runtime signature shows it as ...)
    ) -> str: ...
    def change_passphrase(
        self,
        passphrase: bytes,
        kdf_memory_kib: int | None = None,
        kdf_iterations: int | None = None,
        comment: str = ...,  # "" (the runtime signature shows it as ...)
    ) -> str: ...
    def remove_key(self, id: str) -> None: ...
    def restore_plan(self, snapshot_id: str, item: str | None = None) -> str: ...
    def restore_to(
        self,
        snapshot_id: str,
        item: str,
        path: Path,
        progress: Callable[[int], object] | None = None,
    ) -> int: ...
    def restore_to_fd(
        self,
        snapshot_id: str,
        item: str,
        fd: int,
        progress: Callable[[int], object] | None = None,
    ) -> int: ...

@final
class NativeLock:
    @property
    def key(self) -> str | None: ...
    def release(self) -> None: ...

@final
class NativeIngest:
    def start_item(self, name: str, kind: str) -> None: ...
    def write(self, data: bytes) -> None: ...
    def write_file(self, path: Path, progress: Callable[[int], object] | None = None) -> int: ...
    def write_fd(self, fd: int, progress: Callable[[int], object] | None = None) -> int: ...
    def set_item_command(self, argv: list[str], exit_status: int) -> None: ...
    def finish_item(self) -> None: ...
    def commit(self, created_at: str, tags: dict[str, str]) -> str: ...
    def abort(self) -> None: ...

@final
class NativeReader:
    def read_batch(self) -> bytes | None: ...
