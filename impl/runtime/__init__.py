"""The injected runtime: everything the broker touches outside itself goes through here.

Only the filesystem exists so far; the clock and the network come later.
"""

from impl.runtime.fs import FileSystem, MemoryFileSystem, RealFileSystem

__all__ = ["FileSystem", "MemoryFileSystem", "RealFileSystem"]
