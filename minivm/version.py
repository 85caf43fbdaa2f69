"""The version of minivm (what checkpoint files and the assembly cache record)."""

__version__ = "0.3.0"
