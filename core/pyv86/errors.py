"""Error types pyv86 raises at its edges.

Every error carries a one-line message of the form ``where: what; hint`` that the CLI
prints as is (exit status 2). A guest's mistakes never become exceptions: devices log
them and behave as hardware would.
"""
from __future__ import annotations


class Pyv86Error(Exception):
    """Base of every error pyv86 reports to a user."""


class ConfigError(Pyv86Error):
    """A machine file or option is wrong (file, table path, key and line where known)."""


class PluginError(Pyv86Error):
    """A plugin failed to import, registered something invalid or clashed with another."""


class StateError(Pyv86Error):
    """A state image is corrupt, truncated, foreign or from a newer pyv86."""


class GuestError(Pyv86Error):
    """The guest did something the machine cannot continue from (e.g. a triple fault with reset disabled)."""


class BootError(Pyv86Error):
    """A kernel, initrd or boot setting cannot be used (not a bzImage, too old a protocol...)."""
