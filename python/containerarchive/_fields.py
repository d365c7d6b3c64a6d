"""Result and event objects read as attributes or as mapping keys."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


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
        return dataclasses.asdict(self)  # type: ignore[call-overload,unused-ignore]
