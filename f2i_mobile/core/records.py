"""Typed records from JSON: one reader for every dataclass the project stores (model configs,
manifests), so a malformed file is one line naming the field, never a KeyError.

Hand-written because the records are plain dataclasses: pydantic or dacite would add a dependency
(and a second way to declare a record) for thirty lines of type walking.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from f2i_mobile.core.errors import F2IError


def from_dict(cls: type, data: Any, where: str) -> Any:
    """`cls(**data)` with nested dataclasses, tuples, lists and dicts built from their type
    hints; unknown or missing fields are one-line errors naming `where`."""
    if not isinstance(data, dict):
        raise F2IError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise F2IError(f"{where}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(name for name, f in fields.items() if name not in data
                     and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise F2IError(f"{where}: missing field(s) {', '.join(missing)}")
    kwargs = {name: _value(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise F2IError(f"{where}: {exc}") from None


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:
        _expect(value, (list, tuple), where)
        item = args[0] if args else Any
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        _expect(value, (list, tuple), where)
        return [_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and args:
        _expect(value, (dict,), where)
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def _expect(value: Any, kinds: tuple[type, ...], where: str) -> None:
    if not isinstance(value, kinds):
        raise F2IError(f"{where}: expected {' or '.join(k.__name__ for k in kinds)}, got "
                       f"{type(value).__name__}")
