"""Test helpers for pyv86 and for plugin authors.

The pytest fixtures live in :mod:`pyv86.testing.pytest_plugin`, which pytest loads
automatically (entry point ``pytest11``) in any environment where pyv86 is installed.
The plain classes they return (:class:`LoopbackNet`) live in :mod:`pyv86.testing.net`
so code outside pytest can use them too.
"""
