"""The guest image: a Debian i386 kernel plus a busybox initramfs that pyv86 (and QEMU) boot.

``pyv86 guest build`` (:mod:`pyv86.guest.plugin`) fetches the packages with the host's apt
tools (:mod:`pyv86.guest.apt`), reads them in Python (:mod:`pyv86.guest.debpkg`), composes
the initramfs (:mod:`pyv86.guest.initramfs`, :mod:`pyv86.guest.scripts`) as a cpio newc
archive (:mod:`pyv86.guest.cpio`) and caches everything in :func:`pyv86.paths.guest_dir`.
:mod:`pyv86.guest.qemu` boots the same image under QEMU as the reference peer.
"""
from __future__ import annotations

from pyv86.guest.scripts import READY_MARKER

__all__ = ["READY_MARKER"]
