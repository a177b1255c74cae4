"""Declarative schemas for the JSON files nnfc reads: each node checks one value and names the
field (``rows[3].latency_ms``) of the first problem. Used by :func:`nnfc.jsonfile.read_json`.

>>> Obj({"format": Const("nnfc-bench"), "rows": List(Num(gt=0))}).check({"format": "x"})
Traceback (most recent call last):
...
nnfc.schema.SchemaError: format: must be 'nnfc-bench', got 'x'
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence


class SchemaError(ValueError):
    """A value that does not fit its schema; ``field`` is the dotted path to it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else str(key)


class Schema:
    """One node: :meth:`check` raises :class:`SchemaError` or returns None."""

    what = "a value"

    def check(self, value: Any, field: str = "") -> None:
        raise NotImplementedError

    def fail(self, field: str, value: Any, detail: str = "") -> None:
        raise SchemaError(field, detail or f"must be {self.what}, got {_short(value)}")


class Any_(Schema):
    """Anything (the content is checked where it is used)."""

    def check(self, value: Any, field: str = "") -> None:
        return None


class Bool(Schema):
    what = "true or false"

    def check(self, value, field=""):
        if not isinstance(value, bool):
            self.fail(field, value)


class Str(Schema):
    what = "a string"

    def __init__(self, choices: Sequence[str] | None = None, nonempty: bool = False,
                 max_len: int = 1 << 16):
        self.choices, self.nonempty, self.max_len = choices, nonempty, max_len

    def check(self, value, field=""):
        if not isinstance(value, str):
            self.fail(field, value)
        if self.nonempty and not value:
            self.fail(field, value, "must not be empty")
        if len(value) > self.max_len:
            self.fail(field, value, f"is longer than {self.max_len} characters")
        if self.choices is not None and value not in self.choices:
            self.fail(field, value, f"must be one of {', '.join(map(repr, self.choices))}, "
                                    f"got {_short(value)}")


class Const(Schema):
    def __init__(self, value: Any):
        self.value = value

    def check(self, value, field=""):
        # type too: ``true == 1`` in Python, but a format version of true is not version 1
        if type(value) is not type(self.value) or value != self.value:
            self.fail(field, value, f"must be {self.value!r}, got {_short(value)}")


class Num(Schema):
    """A finite JSON number (not a boolean) within optional bounds; ``integer`` for ints."""

    def __init__(self, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, integer: bool = False):
        self.ge, self.gt, self.le, self.integer = ge, gt, le, integer
        self.what = "an integer" if integer else "a number"

    def check(self, value, field=""):
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.fail(field, value)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field, value, f"must be finite, got {value}")
        if self.gt is not None and not value > self.gt:
            self.fail(field, value, f"must be > {self.gt:g}, got {_short(value)}")
        if self.ge is not None and not value >= self.ge:
            self.fail(field, value, f"must be >= {self.ge:g}, got {_short(value)}")
        if self.le is not None and not value <= self.le:
            self.fail(field, value, f"must be <= {self.le:g}, got {_short(value)}")


def Int(**bounds) -> Num:  # noqa: N802 - reads like the other node types
    return Num(integer=True, **bounds)


class Null(Schema):
    what = "null"

    def check(self, value, field=""):
        if value is not None:
            self.fail(field, value)


class OneOf(Schema):
    """The first alternative that fits; the error of the last one otherwise."""

    def __init__(self, *options: Schema):
        self.options = options
        self.what = " or ".join(o.what for o in options)

    def check(self, value, field=""):
        for option in self.options:
            try:
                option.check(value, field)
                return
            except SchemaError as exc:
                last = exc
        if len(self.options) == 2 and isinstance(self.options[0], Null):
            raise last
        self.fail(field, value)


def Optional_(schema: Schema) -> OneOf:  # noqa: N802
    """``schema`` or null."""
    return OneOf(Null(), schema)


class List(Schema):
    what = "a list"

    def __init__(self, item: Schema, min_len: int = 0, max_len: int | None = None):
        self.item, self.min_len, self.max_len = item, min_len, max_len

    def check(self, value, field=""):
        if not isinstance(value, list):
            self.fail(field, value)
        if len(value) < self.min_len:
            self.fail(field, value, f"needs at least {self.min_len} item(s), got {len(value)}")
        if self.max_len is not None and len(value) > self.max_len:
            self.fail(field, value, f"has {len(value)} items, at most {self.max_len} allowed")
        for i, item in enumerate(value):
            self.item.check(item, _join(field, i))


class Map(Schema):
    """An object of any keys (strings) mapping to ``value``."""

    what = "an object"

    def __init__(self, value: Schema, min_len: int = 0):
        self.value, self.min_len = value, min_len

    def check(self, value, field=""):
        if not isinstance(value, dict):
            self.fail(field, value)
        if len(value) < self.min_len:
            self.fail(field, value, f"needs at least {self.min_len} entr(ies)")
        for key, item in value.items():
            self.value.check(item, _join(field, key))


class Obj(Schema):
    """An object with ``required`` and ``optional`` keys; other keys are allowed (files carry
    extra metadata) unless ``closed``."""

    what = "an object"

    def __init__(self, required: Mapping[str, Schema] | None = None,
                 optional: Mapping[str, Schema] | None = None, closed: bool = False):
        self.required, self.optional = dict(required or {}), dict(optional or {})
        self.closed = closed

    def check(self, value, field=""):
        if not isinstance(value, dict):
            self.fail(field, value)
        for key, schema in self.required.items():
            if key not in value:
                raise SchemaError(_join(field, key), "is missing")
            schema.check(value[key], _join(field, key))
        for key, schema in self.optional.items():
            if key in value:
                schema.check(value[key], _join(field, key))
        if self.closed:
            extra = sorted(set(value) - set(self.required) - set(self.optional))
            if extra:
                raise SchemaError(_join(field, extra[0]), "is not a known field")
