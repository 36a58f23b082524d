"""Shared check of the config dataclasses' ``from_dict``: a mapping whose keys are all fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def checked_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` as a new dict, after checking that it is a mapping whose keys are all fields of the dataclass
    ``cls``.

    Raises:
        TypeError: ``data`` is not a mapping. ValueError: unknown keys, as
            ``"unknown {what} [keys]; known: [fields]"``.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return dict(data)
