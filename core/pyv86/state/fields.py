"""State objects <-> named record fields, and the per-record upgrade chain.

A record's ``fields`` is a JSON object keyed by field name (never by position). Values
are JSON scalars, lists and objects, plus tagged objects for what JSON lacks:

``{"$hex": "0a0b", "type": "bytes"|"bytearray"}``
    small byte strings, inline
``{"$blob": NAME, "type": "bytes"|"bytearray"}``
    byte strings of more than :data:`INLINE_MAX` bytes, stored as a blob beside the manifest
``{"$ndarray": NAME, "dtype": "<u4", "shape": [8]}``
    numpy arrays (always a blob)
``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}``
    tuples, and dicts whose keys are not plain strings

Versions: a State class says ``VERSION: ClassVar[int]``. To add a field, bump VERSION and
give the field a default and ``metadata={"since": N}``; an older record gets the default.
For anything a default cannot express, define ``upgrade_1_to_2(fields) -> fields`` (a
staticmethod on the State class, or on the CPU object for the CPU record). To remove a
field, list it in ``RETIRED: ClassVar[frozenset[str]]`` so old images still load.
"""
from __future__ import annotations

import enum
from typing import Any, Callable

import attrs
import numpy as np

from pyv86.errors import StateError
from pyv86.state.container import Blob, encode_blob

INLINE_MAX = 256


class BlobSink:
    """Collects the blobs the records of one image refer to, with unique names."""

    def __init__(self, level: int = 1) -> None:
        self.blobs: list[Blob] = []
        self.level = level
        self._names: set[str] = set()

    def add(self, name: str, data: bytes | bytearray | memoryview) -> str:
        base, n = name, 1
        while name in self._names:
            n += 1
            name = f"{base}~{n}"
        self._names.add(name)
        self.blobs.append(encode_blob(name, data, level=self.level))
        return name

    def add_blob(self, blob: Blob) -> str:
        if blob.name in self._names:
            raise ValueError(f"blob {blob.name!r} added twice")
        self._names.add(blob.name)
        self.blobs.append(blob)
        return blob.name


def encode_value(value: Any, sink: BlobSink, name: str) -> Any:
    """A JSON-able form of ``value``; large buffers go to ``sink`` as blobs named ``name``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return encode_value(value.value, sink, name)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"$float": repr(value)}
        return value
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return {"$ndarray": sink.add(name, arr.tobytes()), "dtype": arr.dtype.str,
                "shape": list(arr.shape)}
    if isinstance(value, np.generic):
        return encode_value(value.item(), sink, name)
    if isinstance(value, (bytes, bytearray, memoryview)):
        typ = "bytearray" if isinstance(value, bytearray) else "bytes"
        raw = bytes(value)
        if len(raw) <= INLINE_MAX:
            return {"$hex": raw.hex(), "type": typ}
        return {"$blob": sink.add(name, raw), "type": typ}
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(v, sink, f"{name}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode_value(v, sink, f"{name}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode_value(v, sink, f"{name}.{k}") for k, v in value.items()}
        return {"$dict": [[encode_value(k, sink, f"{name}.key{i}"), encode_value(v, sink, f"{name}.{i}")]
                          for i, (k, v) in enumerate(value.items())]}
    if attrs.has(type(value)):
        return {f.name: encode_value(getattr(value, f.name), sink, f"{name}.{f.name}")
                for f in attrs.fields(type(value))}
    raise TypeError(f"{name}: cannot store a {type(value).__name__} in a state image")


class Decoder:
    """Turns encoded values back into Python values, fetching blobs from an image."""

    def __init__(self, where: str, get_blob: Callable[[str], bytes]) -> None:
        self.where = where
        self.get_blob = get_blob

    def error(self, name: str, what: str) -> StateError:
        return StateError(f"{self.where}: field {name}: {what}")

    def value(self, enc: Any, name: str, template: Any = attrs.NOTHING) -> Any:
        if isinstance(enc, dict):
            if "$hex" in enc:
                try:
                    raw = bytes.fromhex(enc["$hex"])
                except (TypeError, ValueError):
                    raise self.error(name, "bad hex bytes") from None
                return self._bytes(raw, enc, name)
            if "$blob" in enc:
                if not isinstance(enc["$blob"], str):
                    raise self.error(name, "bad blob reference")
                return self._bytes(self.get_blob(enc["$blob"]), enc, name)
            if "$ndarray" in enc:
                return self._ndarray(enc, name)
            if "$tuple" in enc:
                items = enc["$tuple"]
                if not isinstance(items, list):
                    raise self.error(name, "bad tuple")
                tmpl = template if isinstance(template, tuple) and len(template) == len(items) else None
                return tuple(self.value(v, f"{name}.{i}", tmpl[i] if tmpl else attrs.NOTHING)
                             for i, v in enumerate(items))
            if "$dict" in enc:
                pairs = enc["$dict"]
                if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                    raise self.error(name, "bad dict")
                try:
                    return {self.value(k, f"{name}.key"): self.value(v, f"{name}.{i}")
                            for i, (k, v) in enumerate(pairs)}
                except TypeError:
                    raise self.error(name, "unhashable dict key") from None
            if "$float" in enc:
                try:
                    return float(enc["$float"])
                except (TypeError, ValueError):
                    raise self.error(name, "bad float") from None
            if template is not attrs.NOTHING and attrs.has(type(template)):
                return self.attrs_instance(type(template), enc, name)
            return {k: self.value(v, f"{name}.{k}") for k, v in enc.items()}
        if isinstance(enc, list):
            tmpl = template if isinstance(template, list) and len(template) == len(enc) else None
            return [self.value(v, f"{name}.{i}", tmpl[i] if tmpl else attrs.NOTHING)
                    for i, v in enumerate(enc)]
        if template is not attrs.NOTHING and isinstance(template, enum.Enum):
            try:
                return type(template)(enc)
            except (ValueError, TypeError):
                raise self.error(name, f"{enc!r} is not a valid {type(template).__name__}") from None
        if isinstance(template, int) and not isinstance(template, bool) and not (
                isinstance(enc, int) and not isinstance(enc, bool)):
            raise self.error(name, f"expected an integer, got {enc!r}"[:200])
        if isinstance(template, bool) and not isinstance(enc, bool):
            raise self.error(name, f"expected true or false, got {enc!r}"[:200])
        if isinstance(template, float) and isinstance(enc, int) and not isinstance(enc, bool):
            return float(enc)
        return enc

    def _bytes(self, raw: bytes, enc: dict, name: str) -> bytes | bytearray:
        typ = enc.get("type", "bytes")
        if typ == "bytearray":
            return bytearray(raw)
        if typ == "bytes":
            return raw
        raise self.error(name, f"unknown byte-string type {typ!r}")

    def _ndarray(self, enc: dict, name: str) -> np.ndarray:
        try:
            dtype = np.dtype(enc["dtype"])
            shape = tuple(int(s) for s in enc["shape"])
        except (KeyError, TypeError, ValueError):
            raise self.error(name, "bad array description") from None
        if dtype.hasobject or dtype.kind not in "biufc" or any(s < 0 for s in shape):
            raise self.error(name, f"array type {enc.get('dtype')!r} is not allowed")
        if not isinstance(enc["$ndarray"], str):
            raise self.error(name, "bad blob reference")
        raw = self.get_blob(enc["$ndarray"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != len(raw):
            raise self.error(name, f"array {enc['dtype']}{list(shape)} needs {count * dtype.itemsize} "
                                   f"bytes, blob has {len(raw)}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def attrs_instance(self, cls: type, fields: dict[str, Any], name: str) -> Any:
        """Build ``cls`` from fields (missing ones keep their defaults)."""
        template = cls()
        known = attrs.fields_dict(cls)
        for key, enc in fields.items():
            if key not in known:
                raise self.error(f"{name}.{key}", f"unknown field of {cls.__name__}")
            setattr(template, key, self.value(enc, f"{name}.{key}", getattr(template, key)))
        return template


def state_to_fields(state: Any, sink: BlobSink, prefix: str) -> dict[str, Any]:
    """The fields of an attrs State (or a plain dict of values) as an encoded dict."""
    if attrs.has(type(state)):
        return {f.name: encode_value(getattr(state, f.name), sink, f"{prefix}.{f.name}")
                for f in attrs.fields(type(state))}
    if isinstance(state, dict):
        return {str(k): encode_value(v, sink, f"{prefix}.{k}") for k, v in state.items()}
    raise TypeError(f"{prefix}: save() returned a {type(state).__name__}, not an attrs State or a dict")


def upgrade_fields(where: str, owner: Any, saved_version: int, current: int,
                   fields: dict[str, Any]) -> dict[str, Any]:
    """Run ``owner.upgrade_N_to_N+1(fields)`` from the saved version up to ``current``.

    A missing step is fine (the new fields' ``since`` defaults fill in); a record newer
    than ``current`` is refused.
    """
    if saved_version > current:
        raise StateError(f"{where}: version {saved_version} is newer than this pyv86 supports "
                         f"({current}); upgrade pyv86 or the plugin that provides it")
    for v in range(saved_version, current):
        step = getattr(owner, f"upgrade_{v}_to_{v + 1}", None)
        if step is not None:
            try:
                fields = step(dict(fields))
            except StateError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's upgrade step failed
                raise StateError(f"{where}: upgrade from version {v} to {v + 1} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
            if not isinstance(fields, dict):
                raise StateError(f"{where}: upgrade_{v}_to_{v + 1} did not return a dict of fields")
    return fields


def fields_to_state(where: str, state_cls: type, version: int, fields: dict[str, Any],
                    decoder: Decoder) -> Any:
    """Build a ``state_cls`` instance from a record (upgrading, dropping RETIRED fields)."""
    current = getattr(state_cls, "VERSION", 1)
    fields = upgrade_fields(where, state_cls, version, current, fields)
    retired = set(getattr(state_cls, "RETIRED", ()))
    known = attrs.fields_dict(state_cls)
    try:
        state = state_cls()
    except Exception as exc:  # noqa: BLE001
        raise StateError(f"{where}: cannot create {state_cls.__name__}(): {exc}") from None
    for key in fields:
        if key not in known and key not in retired:
            raise StateError(f"{where}: field {key!r} is unknown to {state_cls.__name__} "
                             f"version {current} (image from a different pyv86 or plugin?)")
    for name, field in known.items():
        if name in fields:
            default = getattr(state, name)
            value = decoder.value(fields[name], name, default)
            problem = _incompatible(default, value)
            if problem:
                raise StateError(f"{where}: field {name}: {problem}")
            if isinstance(default, bytearray) and not isinstance(value, bytearray):
                value = bytearray(value)
            elif isinstance(default, bytes) and not isinstance(value, bytes):
                value = bytes(value)
            elif isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            elif isinstance(default, list) and isinstance(value, tuple):
                value = list(value)
            if field.validator is not None:
                try:
                    field.validator(state, field, value)
                except (TypeError, ValueError) as exc:
                    raise StateError(f"{where}: field {name}: {exc}") from None
            setattr(state, name, value)
        else:
            since = field.metadata.get("since")
            if since is None or since <= version:
                raise StateError(f"{where}: field {name!r} is missing (a version-{version} record "
                                 f"should have it)")
    return state


def _family(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, np.integer)):
        return "integer"
    if isinstance(value, (float, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "byte string"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _incompatible(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` (kind, or length of a fixed-size buffer)."""
    if default is None or value is None:
        return None
    want, got = _family(default), _family(value)
    if want != got and not (want == "number" and got == "integer"):
        return f"expected a {want}, got a {got}"
    if isinstance(default, np.ndarray):
        if default.size and (value.shape != default.shape or value.dtype != default.dtype):
            return (f"expected an array {default.dtype.str}{list(default.shape)}, "
                    f"got {value.dtype.str}{list(value.shape)}")
    elif isinstance(default, (bytearray, list)) and len(default) and len(value) != len(default):
        return f"expected {len(default)} items, got {len(value)}"
    return None
