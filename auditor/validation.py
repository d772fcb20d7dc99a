"""Config dataclasses read back from files (a checkpoint's model config, an audit manifest's scoring): every field
checked against its type hint, so a damaged or foreign file is an InputError naming the file and the field."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

from auditor.errors import InputError


def allowed_types(hint: object) -> tuple[type, ...]:
    """The plain types a field's hint admits: `float | None` -> (float, NoneType)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in allowed_types(arg))
    return (hint,) if isinstance(hint, type) else (typing.get_origin(hint) or object,)


def _fits(value: object, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return float not in allowed or abs(value) < 1e300
    if isinstance(value, float):
        return float in allowed and math.isfinite(value)
    return isinstance(value, tuple(t for t in allowed if t not in (int, float, bool, type(None))))


def dataclass_from_json(cls: type, data: object, *, source: str | Path | None, field: str):
    """An instance of the dataclass `cls` from a JSON mapping of some or all of its fields; an InputError naming
    `source` and `field.key` for anything else (an unknown field, a wrong type, a value its own checks refuse)."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of {cls.__name__} fields", path=source, field=field)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in data.items():
        if not isinstance(key, str) or key not in known:
            raise InputError(f"unknown field {str(key)[:40]!r}", path=source, field=field)
        allowed = allowed_types(hints[key])
        if not _fits(value, allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            got = f"{value!r}" if isinstance(value, float) else type(value).__name__
            raise InputError(f"expected {'a finite ' if float in allowed else ''}{names}, got {got}", path=source,
                             field=f"{field}.{key}")
    try:
        return cls(**data)
    except InputError as e:
        raise InputError(e.message, path=source, field=f"{field}.{e.field}" if e.field else field) from None
    except (ValueError, TypeError) as e:
        raise InputError(" ".join(str(e).split())[:200], path=source, field=field) from None
