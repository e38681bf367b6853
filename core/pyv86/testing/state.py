"""A generic state round trip for any device: save, restore into a clean device, compare.

What it checks, in order:

1. ``type(device).state_cls`` is an attrs class with an integer ``VERSION``;
2. ``device.save()`` returns an instance of it whose fields hold only data a state image
   can store (ints, strings, bools, floats, None, bytes/bytearray, numpy arrays, lists,
   tuples and dicts of those, nested attrs instances of the same kind) -- never sockets,
   threads, callables or machines;
3. encoded as a state-image record and decoded again (:mod:`pyv86.state.fields`),
   then after ``device.reset()`` (or into ``into``, a second realized device of the same
   kind) ``restore(copy)`` followed by ``save()`` gives back equal fields;
4. the restored state does not share mutable buffers with the saved one.
"""
from __future__ import annotations

import copy
import json
from typing import Any

import attrs

_SCALARS = (int, str, bool, float, type(None), bytes)


def _is_ndarray(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def check_storable(value: Any, where: str) -> None:
    """Raise AssertionError if ``value`` cannot go into a state image."""
    if isinstance(value, _SCALARS) or isinstance(value, bytearray) or _is_ndarray(value):
        return
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            check_storable(getattr(value, field.name), f"{where}.{field.name}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_storable(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise AssertionError(f"{where}: dict key {key!r} is not a str or int")
            check_storable(item, f"{where}[{key!r}]")
        return
    raise AssertionError(
        f"{where}: {type(value).__qualname__} cannot be stored in a state image "
        "(keep runtime objects such as sockets, threads and callbacks out of State)")


def fields_of(state: Any) -> dict[str, Any]:
    """The state's fields as a dict of comparable values (numpy arrays become bytes)."""

    def plain(value: Any) -> Any:
        if _is_ndarray(value):
            return (str(value.dtype), value.shape, value.tobytes())
        if attrs.has(type(value)):
            return {f.name: plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
        if isinstance(value, bytearray):
            return bytes(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(state)


def _shared_buffers(a: Any, b: Any, where: str) -> list[str]:
    found = []
    if isinstance(a, bytearray) or _is_ndarray(a) or isinstance(a, (list, dict)):
        if a is b:
            found.append(where)
    if attrs.has(type(a)) and type(a) is type(b):
        for f in attrs.fields(type(a)):
            found += _shared_buffers(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    return found


def through_image_codec(saved: Any, state_cls: type, label: str) -> Any:
    """Encode ``saved`` as a state-image record (JSON fields plus blobs) and decode it again.

    Uses :mod:`pyv86.state.fields`, the code that writes and reads real images; falls back
    to a deep copy where that module is not available.
    """
    try:
        from pyv86.state.container import decode_blob
        from pyv86.state.fields import BlobSink, Decoder, fields_to_state, state_to_fields
    except ImportError:
        return copy.deepcopy(saved)
    from pyv86.errors import StateError

    sink = BlobSink()
    try:
        fields = json.loads(json.dumps(state_to_fields(saved, sink, label)))
        blobs = {blob.name: blob for blob in sink.blobs}
        decoder = Decoder(label, lambda name: decode_blob("<roundtrip>", blobs[name]))
        return fields_to_state(label, state_cls, state_cls.VERSION, fields, decoder)
    except (TypeError, ValueError, StateError) as exc:
        raise AssertionError(f"{label}: state does not survive the state-image encoding: {exc}") from None


def assert_state_roundtrip(device: Any, into: Any | None = None) -> Any:
    """Check that ``device``'s state survives save -> restore -> save; return the restored state."""
    cls = type(device)
    label = f"{cls.__name__} {getattr(cls, 'kind', '?')}/{getattr(device, 'id', '?')}"
    state_cls = cls.state_cls
    if not attrs.has(state_cls):
        raise AssertionError(f"{label}: state_cls {state_cls!r} is not an attrs class")
    version = getattr(state_cls, "VERSION", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise AssertionError(f"{label}: {state_cls.__name__}.VERSION must be an int >= 1, not {version!r}")
    saved = device.save()
    if not isinstance(saved, state_cls):
        raise AssertionError(f"{label}: save() returned {type(saved).__name__}, not {state_cls.__name__}")
    check_storable(saved, f"{label}: state")
    before = fields_of(saved)
    image = through_image_codec(saved, state_cls, label)

    target = into if into is not None else device
    if into is not None and type(into) is not cls:
        raise AssertionError(f"{label}: 'into' is a {type(into).__name__}, not a {cls.__name__}")
    target.reset()
    target.restore(image)
    restored = target.save()
    after = fields_of(restored)
    if before != after:
        diffs = [k for k in before if before.get(k) != after.get(k)] if isinstance(before, dict) else []
        raise AssertionError(f"{label}: state differs after restore in fields {diffs or '?'}:\n"
                             f"  saved:    {before!r:.800}\n  restored: {after!r:.800}")
    shared = _shared_buffers(saved, restored, "state")
    if shared:
        raise AssertionError(f"{label}: restored state shares mutable buffers with the saved one: {shared}")
    return restored
