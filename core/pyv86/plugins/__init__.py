"""The plugin kernel: hook specifications, the plugin manager and the built-in plugins."""
from pyv86.plugins.manager import PluginManager, create_plugin_manager

__all__ = ["PluginManager", "create_plugin_manager"]
