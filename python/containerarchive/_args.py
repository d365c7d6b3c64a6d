"""Argument coercion for the API: the checks and conversions each public method applies to
what it is given (times, durations, tags, hosts, passphrases, retention rules, the repository
location) before anything reaches the engine, and the values the API adds itself (now, who).

Owns the messages of :class:`InvalidArgumentError` for bad arguments. Must not open, read or
write a repository, and must not import :mod:`.repository`.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Union

from . import _aws
from .errors import InvalidArgumentError
from .types import Snapshot

StrPath = Union[str, "os.PathLike[str]"]
TimeLike = Union[datetime, date, str]
SnapshotRef = Union[str, Snapshot]


def _iso(value: TimeLike, what: str) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise InvalidArgumentError(f"{what}: {value!r} is not an ISO 8601 time") from e
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)  # midnight, local time
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{what} must be a datetime or an ISO 8601 string")
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time means local time
    return value.isoformat(timespec="microseconds")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (restic's ``--retry-lock``): ``"30s"``, ``"5m"`` (minutes),
    ``"1h30m"``, ``"250ms"``, ``"0"``. Raises :class:`InvalidArgumentError` otherwise."""
    t = text.strip()
    if t == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for m in _DURATION_PART.finditer(t):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise InvalidArgumentError(
            f"{text!r} is not a duration: use a number with a unit, e.g. 30s, 5m, 1h, 1h30m"
        )
    return timedelta(seconds=seconds)


def _seconds(value: timedelta | float | int | str | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{what}: {e}") from None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(f"{what} must be a non-negative timedelta, got {value!r}")
    return float(value)


def _stale_after_ms(value: timedelta | float | int | str | None) -> int | None:
    """The lock stale age: the argument, else ``CONTAINERARCHIVE_LOCK_STALE_AFTER``, else the
    engine's default (30 minutes)."""
    what = "lock_stale_after"
    if value is None:
        value = os.environ.get("CONTAINERARCHIVE_LOCK_STALE_AFTER") or None
        what = "CONTAINERARCHIVE_LOCK_STALE_AFTER"
    seconds = _seconds(value, what)
    if seconds is None:
        return None
    if seconds <= 0:
        raise InvalidArgumentError(f"{what} must be longer than 0")
    return max(1, int(seconds * 1000))


def _storage_options(
    where: Path | str, retry_storage: timedelta | float | str | None
) -> str | None:
    """The native storage options of ``where``: None for a directory."""
    if isinstance(where, Path):
        return None
    return _aws.settings(where, _aws.retry_seconds(_seconds(retry_storage, "retry_storage")))


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds")


def _who() -> str:
    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}"


def _ref(snapshot: SnapshotRef) -> str:
    return snapshot.id if isinstance(snapshot, Snapshot) else str(snapshot)


def _refs(ids: SnapshotRef | Iterable[SnapshotRef]) -> list[str]:
    """The snapshot ids or prefixes :meth:`Repository.forget` is given, as strings."""
    if isinstance(ids, (str, Snapshot)):
        refs: list[Any] = [ids]
    elif isinstance(ids, Iterable):
        refs = list(ids)
    else:
        raise InvalidArgumentError(f"forget takes snapshot ids, got {ids!r}")
    for r in refs:
        if not isinstance(r, (str, Snapshot)):
            raise InvalidArgumentError(
                f"forget takes snapshot ids (strings) or Snapshot objects, got {r!r}"
            )
    return [_ref(r) for r in refs]


def _passphrase(p: str | bytes | None) -> bytes | None:
    if p is None:
        return None
    return p.encode("utf-8") if isinstance(p, str) else bytes(p)


def _host(host: str | None) -> str | None:
    if host is not None and not isinstance(host, str):
        raise InvalidArgumentError(f"host must be a string, got {host!r}")
    return host


def _filter_text(tags: Mapping[str, str], host: str | None) -> str:
    parts = [f"with the tags {', '.join(f'{k}={v}' for k, v in tags.items())}"] if tags else []
    if host is not None:
        parts.append(f"made by host {host!r}")
    return " and ".join(parts)


_COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def _count(name: str, value: int | str | None) -> int:
    """A retention count: None/0 off, -1 (or "unlimited") every bucket."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 2**31:
        raise InvalidArgumentError(
            f"{name} must be a count from 0 to {2**31 - 1}, or -1 / 'unlimited' for all; "
            f"got {value!r}"
        )
    return value


def _span(name: str, value: str | timedelta | None) -> str:
    """A retention duration in restic's syntax (``30d``, ``1y6m``, ``2d12h``)."""
    if value is None:
        return ""
    if isinstance(value, timedelta):
        if value < timedelta(0) or value % timedelta(hours=1):
            raise InvalidArgumentError(f"{name} must be whole hours, not negative; got {value}")
        return f"{value.days}d{value.seconds // 3600}h"
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{name} must be a duration such as '30d' or '1y6m', got {value!r}"
        )
    return value


def _keep_tags(
    value: str | Mapping[str, str] | Iterable[str | Mapping[str, str]] | None,
) -> list[str]:
    """keep_tag entries as restic writes them: ``k=v`` or ``k=v,k2=v2`` (all must match)."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        entries: list[Any] = [value]
    elif isinstance(value, Iterable):
        entries = list(value)
    else:
        raise InvalidArgumentError(
            f"keep_tag takes 'k=v[,k=v…]' strings (or a list of them), got {value!r}"
        )
    out = []
    for e in entries:
        if isinstance(e, Mapping):
            e = ",".join(f"{k}={v}" for k, v in e.items())
        if not isinstance(e, str):
            raise InvalidArgumentError(f"keep_tag entries are 'k=v[,k=v…]' strings, got {e!r}")
        out.append(e)
    return out


def _group_by(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        fields: list[Any] = value.split(",")
    elif isinstance(value, Iterable):
        fields = list(value)
    else:
        raise InvalidArgumentError(f"group_by takes host, items and tags; got {value!r}")
    for f in fields:
        if not isinstance(f, str):
            raise InvalidArgumentError(f"group_by takes host, items and tags; got {f!r}")
    return [f.strip() for f in fields if f.strip()]


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgumentError("tags must be a mapping of str to str")
    out = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(f"tag {k!r}: keys and values must be str")
        out[k] = v
    return out


def _where(location: StrPath) -> Path | str:
    """A local path, or an ``s3://bucket/prefix`` URL kept as it is."""
    text = os.fspath(location)
    if not text:
        raise InvalidArgumentError("the repository location is empty")
    if text.startswith("s3://"):
        if not text[len("s3://") :].split("/", 1)[0]:
            raise InvalidArgumentError(
                f"repository location {text!r} names no bucket: write s3://bucket[/prefix]"
            )
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidArgumentError(
            f"unsupported repository location {text!r}: a directory or s3://bucket/prefix "
            f"(no {scheme}:// storage)"
        )
    return Path(text)
