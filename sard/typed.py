"""Dataclasses from JSON objects, checked: unknown keys and wrongly typed values are a
SardInputError naming the source and the field (the training config and the model folder's config)."""
from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass

from sard.io import SardInputError


def typed_value(value, hint, where: str):
    """value as the field's type asks (JSON lists become tuples), or SardInputError naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return typed_value(value, next(a for a in args if a is not type(None)), where)
    if origin is tuple or origin is list:
        if isinstance(value, (list, tuple)) and (origin is list or args[-1:] == (Ellipsis,) or len(value) == len(args)):
            item = lambda i: args[0] if origin is list or args[-1:] == (Ellipsis,) else args[i]  # noqa: E731
            typed = [typed_value(v, item(i), f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(typed) if origin is tuple else typed
        shape = "a list" if origin is list or args[-1:] == (Ellipsis,) else f"a list of {len(args)}"
        raise SardInputError(f"{where}: expected {shape} of {args[0].__name__}, got {value!r}")
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[hint](value)
    if not ok:
        raise SardInputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


def from_dict(cls, d, source: str, prefix: str = ""):
    """A config dataclass from a (possibly partial) dict; unknown keys and wrong types name the source."""
    if not isinstance(d, dict):
        raise SardInputError(f"{source}: '{prefix.rstrip('.')}' expected an object of {cls.__name__} fields, got {d!r}")
    retired = getattr(cls, "RETIRED", {})
    d = {k: v for k, v in d.items() if not (k in retired and v == retired[k])}   # old files: a no-op value
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    bad = sorted(set(d) - known)
    if bad:
        raise SardInputError(f"{source}: unknown key(s) {bad}{f' in {prefix[:-1]!r}' if prefix else ''}; "
                             f"expected some of {sorted(known)}")
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        kwargs[key] = from_dict(hint, value, source, f"{prefix}{key}.") if is_dataclass(hint) else \
            typed_value(value, hint, f"{source}: '{prefix}{key}'")
    obj = cls(**kwargs)
    problems = obj.problems() if hasattr(obj, "problems") else []
    if problems:
        raise SardInputError(f"{source}: {prefix}{problems[0]}")
    return obj
