"""State images: save and restore a whole machine to and from a versioned, checksummed file.

Public API::

    save_machine(machine, path)          -> SaveResult (path, image_bytes, seconds)
    restore_machine(machine, path, *, preserve_mac=None, mac_translation=None)
                                          -> RestoreResult
    request_save(machine, path)          save at the next slice boundary (any thread)
    read_image(path)                     -> Image (parsed and checked, for tools)

Modules: :mod:`.container` (header, manifest, blobs, checksums), :mod:`.pages` (RAM
encoding), :mod:`.fields` (State objects <-> named fields, upgrade chain),
:mod:`.snapshot` (which records a machine has), :mod:`.macpolicy` (MAC options),
:mod:`.live` (saving a running machine), :mod:`.plugin` (``pyv86 state``),
:mod:`.fuzz` (``python -m pyv86.state.fuzz``). The format is described in
``docs/state-images.md``.
"""
from __future__ import annotations

from pyv86.errors import StateError
from pyv86.state.container import FORMAT_MAJOR, FORMAT_MINOR, Image, read_image
from pyv86.state.live import request_save
from pyv86.state.snapshot import RestoreResult, SaveResult, restore_machine, save_machine

__all__ = ["FORMAT_MAJOR", "FORMAT_MINOR", "Image", "RestoreResult", "SaveResult", "StateError",
           "read_image", "request_save", "restore_machine", "save_machine"]
