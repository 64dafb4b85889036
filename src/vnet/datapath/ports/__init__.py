"""Port devices: where a switch port's frames come from and go to."""

from .memory import MemoryDevice

__all__ = ["MemoryDevice"]
