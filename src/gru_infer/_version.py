"""The version, in a module of its own: the CLI and show_config read it
without importing the package back."""

__version__ = "0.2.0"
