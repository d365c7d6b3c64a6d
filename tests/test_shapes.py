"""The result dataclasses of ``containerarchive.types`` have exactly the fields of the JSON the
native module returns (issue 16: one source for each fact).

A real repository goes through every operation that returns a result; the JSON texts the
native module hands to Python are recorded on the way, and for each result type the set of
JSON keys (union over every object seen, nested objects followed) must equal the set of the
dataclass's fields, each read from the key of its name or where its ``source()`` says. A field
added on one side only fails here. The differences Python makes on purpose are listed below,
each with its reason.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import containerarchive as ca
from conftest import FAST_KDF, PASSPHRASE, random_bytes
from containerarchive import types
from containerarchive._fields import Fields, field_source

#: Fields Python sets itself: no JSON key carries them.
PYTHON_ONLY: dict[tuple[str, str], str] = {
    ("VerifyResult", "level"): "the level verify was asked for, re-attached by Python "
    "(the native report does not repeat it)",
}

#: JSON keys (as paths) the Python results leave out.
RUST_ONLY: dict[tuple[str, tuple[str, ...]], str] = {
    ("Item", ("chunk_lists",)): "the ids of the item's chunk-list blobs: a storage detail "
    "that only restore needs, and restore reads them on the native side",
    ("KeyInfo", ("kdf", "parallelism")): "Argon2id's lanes, which the Python API neither "
    "sets nor shows (its key calls take memory and passes only)",
}

#: The native methods whose JSON text is a result, and the result type it makes.
RESULT_OF: dict[str, type[Fields]] = {
    "commit": types.Snapshot,
    "get_snapshot": types.Snapshot,
    "scan_snapshots": types.SnapshotScan,
    "latest_snapshot": types.Snapshot,
    "verify": types.VerifyResult,
    "verify:error": types.VerifyError,
    "repair": types.RepairResult,
    "reindex": types.ReindexResult,
    "prune": types.PruneResult,
    "forget": types.PruneResult,
    "restore_plan": types.RestorePlan,
    "stats": types.RepoStats,
    "list_keys": types.KeyInfo,
}


class Recorder:
    """Stands in for a native object: calls go through, and every JSON text returned (or
    passed to verify's error callback) is kept under the method's name. Objects the calls
    return (an ingest) are recorded too."""

    def __init__(self, native: Any, texts: dict[str, list[str]]):
        self._native, self._texts = native, texts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._native, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "verify" and len(args) > 1 and args[1] is not None:
                on_error: Callable[[str], object] = args[1]

                def recorded(text: str) -> object:
                    self._texts["verify:error"].append(text)
                    return on_error(text)

                args = (args[0], recorded, *args[2:])
            out = attr(*args, **kwargs)
            if isinstance(out, str) and out.startswith(("[", "{")):
                self._texts[name].append(out)
            elif isinstance(out, list) and all(isinstance(t, str) for t in out):
                self._texts[name].extend(out)
            elif type(out).__name__.startswith("Native"):
                return Recorder(out, self._texts)
            return out

        return call


@pytest.fixture(scope="module")
def native_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """Every JSON text the native module returned over a repository's life, parsed, by
    method."""
    texts: dict[str, list[str]] = defaultdict(list)
    path = tmp_path_factory.mktemp("shapes") / "repo"
    repo = ca.Repository.init(path, PASSPHRASE, pack_size=1 << 20, **FAST_KDF)
    repo._native = Recorder(repo._native, texts)
    try:
        repo.add_key("a second passphrase", **FAST_KDF)
        a = repo.ingest(random_bytes(300_000, 1), name="a.bin", tags={"db": "shop"}, host="h1")
        repo.ingest_multi(
            [
                {"name": "b.sql", "source": b"INSERT INTO t VALUES (1);\n" * 200},
                {"name": "cmd.out", "command": [sys.executable, "-c", "print(1)"]},
            ],
            host="h1",
        )
        for seed in (2, 3):
            repo.ingest(random_bytes(200_000, seed), name="a.bin", host="h2")
        repo.list_snapshots()
        repo.get_snapshot("latest")
        repo.get_snapshot("latest", host="h1")
        # A file under a manifest's name that is not one: listed as unreadable.
        bogus = path / "snapshots" / f"{'0' * 64}.snapshot"
        bogus.write_bytes(b"CA-SNAP1 not a manifest")
        with pytest.warns(ca.UnreadableSnapshotWarning):
            repo.list_snapshots()
        bogus.unlink()
        repo.list_keys()
        repo.stats()
        repo.verify("quick")
        repo.restore_plan(a)
        repo.reindex()
        repo.prune(keep_last=1, dry_run=True)
        repo.prune(keep_last=1, group_by=None, dry_run=True)
        repo.forget(a, dry_run=True)
        repo.prune(keep_last=1, keep_tag="db=shop", group_by="host")
        repo.unlock()
        # Two packs of one parity group lost (a group holds up to 20 packs, so these few
        # share one): verify names them, the restore plan misses them, repair cannot rebuild
        # them from one parity shard.
        lost = sorted((path / "packs").rglob("*.pack"))[:2]
        for pack in lost:
            pack.unlink()
        repo.verify("standard", on_error=lambda e: None)
        for snap in repo.list_snapshots():
            repo.restore_plan(snap)
        # A snapshot whose manifest and copy are both damaged: repair names it lost.
        victim = repo.list_snapshots()[0].id
        for where in ("snapshots", "copies/snapshots"):
            f = path / where / f"{victim}.snapshot"
            f.write_bytes(f.read_bytes()[:20])
        repo.repair()
    finally:
        repo.close()
    return {name: [json.loads(t) for t in found] for name, found in texts.items()}


def _paths(obj: dict[str, Any], read: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The key paths of ``obj``, followed into an object as deep as a path in ``read`` is."""
    out: set[tuple[str, ...]] = set()
    for key, value in obj.items():
        deeper = {p[1:] for p in read if len(p) > 1 and p[0] == key}
        if deeper and isinstance(value, dict):
            out |= {(key, *p) for p in _paths(value, deeper)}
        else:
            out.add((key,))
    return out


def _shapes(cls: type[Fields], objects: list[dict[str, Any]], seen: dict[str, set[Any]]) -> None:
    """Collect into ``seen`` the key paths of ``objects`` (JSON of ``cls``) and of the nested
    results in them, by result type name."""
    fields = dataclasses.fields(cls)
    read = {field_source(f).path for f in fields}
    seen.setdefault(cls.__name__, set())
    for obj in objects:
        seen[cls.__name__] |= _paths(obj, read)
    for f in fields:
        src = field_source(f)
        if src.nested is None:
            continue
        inner: list[dict[str, Any]] = []
        for obj in objects:
            value: Any = obj
            for key in src.path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, list):
                inner += value
            elif value is not None:
                inner.append(value)
        _shapes(src.nested, inner, seen)


def _result_types() -> dict[str, type[Fields]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(types, inspect.isclass)
        if dataclasses.is_dataclass(cls) and issubclass(cls, Fields)
    }


@pytest.fixture(scope="module")
def seen(native_json: dict[str, list[Any]]) -> dict[str, set[Any]]:
    shapes: dict[str, set[Any]] = {}
    for method, cls in RESULT_OF.items():
        objects = native_json.get(method, [])
        if method == "list_keys":  # one text: the list of keys
            objects = [k for keys in objects for k in keys]
        assert objects, f"the repository's life never called {method}"
        _shapes(cls, objects, shapes)
    return shapes


@pytest.mark.parametrize("name", sorted(_result_types()))
def test_the_result_fields_are_the_json_keys_of_the_native_module(name, seen):
    cls = _result_types()[name]
    assert seen.get(name), f"no JSON of {name} was seen: add the operation that returns it"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    python_only = {f for (c, f), _ in PYTHON_ONLY.items() if c == name}
    rust_only = {p for (c, p), _ in RUST_ONLY.items() if c == name}
    assert python_only <= set(fields), "PYTHON_ONLY names a field that is gone"
    assert rust_only <= seen[name], "RUST_ONLY names a key the native module no longer has"
    read = {field_source(f).path: n for n, f in fields.items() if n not in python_only}
    from_python = sorted(n for p, n in read.items() if p not in seen[name])
    from_rust = sorted(".".join(p) for p in seen[name] - set(read) - rust_only)
    assert not from_python, f"{name}: fields with no JSON key from the native module: {from_python}"
    assert not from_rust, f"{name}: JSON keys from the native module with no field: {from_rust}"


def test_every_result_type_is_checked(seen):
    """A new result type in types.py must be made by an operation above (RESULT_OF)."""
    assert set(_result_types()) <= set(seen)


def test_unlock_reads_the_keys_of_the_native_report(native_json):
    """UnlockResult is a list, not a dataclass: it reads ``removed`` and ``kept``, each a
    list of (lock key, words) pairs."""
    (report,) = native_json["remove_locks"]
    assert set(report) == {"removed", "kept"}


def test_results_rebuilt_from_the_recorded_json_equal_what_the_api_returned(tmp_path: Path):
    """The generic construction reads the same JSON the API reads (a smoke test of it)."""
    texts: dict[str, list[str]] = defaultdict(list)
    with ca.Repository.init(tmp_path / "repo") as repo:
        repo._native = Recorder(repo._native, texts)
        snap = repo.ingest_multi(
            [
                {"name": "x", "source": b"x" * 1000},
                {"name": "y.out", "command": [sys.executable, "-c", "print(1)"]},
            ]
        )
        assert types.Snapshot._from_json(texts["commit"][0]) == snap
        assert snap.items[1].command[1:] == ["-c", "print(1)"] and snap.items[1].exit_status == 0
        result = repo.verify("quick")
        assert types.VerifyResult._from_json(texts["verify"][0], level="quick") == result
