"""Result and event objects read as attributes or as mapping keys, and built from the native
module's JSON by their field lists alone."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

_F = TypeVar("_F", bound="Fields")

#: The metadata key of :func:`source`.
_SOURCE = "containerarchive.source"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a field's value is in the native module's JSON, when not under its own name."""

    #: The keys leading to it: ``("kdf", "memory_kib")`` reads ``d["kdf"]["memory_kib"]``.
    path: tuple[str, ...]
    #: What turns the JSON value into the field's value.
    read: Callable[[Any], Any] | None
    #: The result type the value holds, alone or as a list (read with its own fields).
    nested: type[Fields] | None


def source(
    *path: str,
    read: Callable[[Any], Any] | None = None,
    nested: type[Fields] | None = None,
) -> dict[str, Source]:
    """Field metadata (``field(metadata=source(...))``) for a field that is not the JSON key
    of its name as is: at ``path`` (renamed, or inside an object), converted by ``read``, or a
    ``nested`` result type (a JSON object, or a list of them). Each rename or conversion is
    written here, next to the field, and nowhere else."""
    return {_SOURCE: Source(tuple(path), read, nested)}


def field_source(f: dataclasses.Field[Any]) -> Source:
    """Where ``f`` is read from: its :func:`source`, or the key of its name."""
    given = f.metadata.get(_SOURCE)
    if given is None:
        return Source((f.name,), None, None)
    return Source(given.path or (f.name,), given.read, given.nested)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _json_ready(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in pairs}


class Fields:
    """For dataclasses: ``obj.name`` and ``obj["name"]`` both work, ``keys()`` lists the
    fields and ``to_dict()`` gives a JSON-ready copy, so code written for dictionaries (or for
    the CLI's ``--json`` documents) reads these objects unchanged."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def __getitem__(self, name: str) -> Any:
        if name in self.__dataclass_fields__:
            return getattr(self, name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self.__dataclass_fields__

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary: the fields in order, nested results as dictionaries,
        datetimes in ISO 8601."""
        return dataclasses.asdict(self, dict_factory=_json_ready)  # type: ignore[call-overload,unused-ignore]

    @classmethod
    def _from_dict(cls: type[_F], d: Mapping[str, Any], **given: Any) -> _F:
        """The result the native module's JSON object ``d`` describes: each field from the
        key of its name, or as its :func:`source` says; a field with a default keeps it when its
        key is absent (JSON written before the field existed). ``given``: fields Python sets
        itself, not in the JSON."""
        values = dict(given)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type,unused-ignore]
            if f.name in given:
                continue
            src = field_source(f)
            value: Any = d
            try:
                for key in src.path:
                    value = value[key]
            except KeyError:
                if _has_default(f):
                    continue
                raise
            if src.nested is not None:
                nested = src.nested
                value = (
                    [nested._from_dict(v) for v in value]
                    if isinstance(value, list)
                    else nested._from_dict(value)
                )
            if src.read is not None:
                value = src.read(value)
            values[f.name] = value
        return cls(**values)

    @classmethod
    def _from_json(cls: type[_F], text: str, **given: Any) -> _F:
        """:meth:`_from_dict` of the JSON text ``text``."""
        return cls._from_dict(json.loads(text), **given)


def key_before(d: Mapping[str, Any], key: str, before: str) -> dict[str, Any]:
    """``d`` with ``key`` moved just before ``before``: where a document's key order, fixed
    when it was first printed, differs from the order of the fields it is made from."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == before:
            out[key] = d[key]
        if k != key:
            out[k] = v
    return out
