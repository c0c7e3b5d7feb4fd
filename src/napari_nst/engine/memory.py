"""Keeping large intermediate arrays out of the process's memory: arrays in files read and
written a block at a time (``FileArray``), and freed memory handed back (``release_freed_memory``).

What renders through files (``predict.predict_streamed``) uses to stay within a few times its
input, at any size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import tempfile

import numpy as np


class FileArray:
    """An array in an unnamed temporary file (in ``TMPDIR``; C order, no header), read and
    written a block at a time through short-lived memory maps: ``a[key]`` is a new in-memory
    array, ``a[key] = value`` writes.

    A mapping kept open (``np.memmap``) would count every page it touched as this process's
    memory until it is closed; here only the block in use does, and the page cache holds the
    rest while memory is free and gives it back when it is not. Its disk space is taken at
    once, and given back when the array is closed or collected, or the process ends, however
    it ends. Beware a temporary folder in memory (tmpfs): point ``TMPDIR`` at a disk.
    """

    def __init__(self, shape: tuple, dtype=np.float32):
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._file = tempfile.TemporaryFile()
        _allocate(self._file, self.nbytes, tempfile.gettempdir())

    def _map(self, mode: str) -> np.memmap:
        return np.memmap(self._file, self.dtype, mode, shape=self.shape)

    def __getitem__(self, key) -> np.ndarray:
        return np.array(self._map("r")[key])  # a copy: the map is gone when this returns

    def __setitem__(self, key, value) -> None:
        mapped = self._map("r+")
        mapped[key] = value
        del mapped  # no msync: the pages go to the page cache, where later maps find them

    def memmap(self) -> np.memmap:
        """The whole array as a writable ``np.memmap``, which keeps the file alive until the
        map is gone: what to hand out as a result too big for memory (its pages count as
        memory only once read, and the system can evict them)."""
        return self._map("r+")

    def close(self) -> None:
        """Give the file's disk space back now (maps from ``memmap`` keep theirs); the array
        is unusable afterwards."""
        self._file.close()


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _allocate(file, nbytes: int, folder: str) -> None:
    """Give ``file`` ``nbytes`` of disk now: a full disk is an error here, with what to do,
    rather than a SIGBUS when a memory map writes into a hole the disk has no room for."""
    try:
        if not hasattr(os, "posix_fallocate"):  # macOS, Windows
            raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
        os.posix_fallocate(file.fileno(), 0, nbytes)
    except OSError as error:
        if error.errno in _DISK_FULL:
            raise OSError(
                error.errno,
                f"no room for a {nbytes / 2**30:.2f} GB temporary file "
                f"in {folder} ({os.strerror(error.errno)}); free space there, or "
                "point TMPDIR at a folder on a disk with room",
            ) from error
        file.truncate(nbytes)  # not supported here: a sparse file


@functools.cache
def _malloc_trim():
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def release_freed_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc's ``malloc_trim``; a no-op
    elsewhere).

    glibc keeps blocks below its (self-raising, up to 32 MB) mmap threshold after they are
    freed, and the many tile-sized buffers of a tiled render leave them fragmented: after its
    passes the process held ~300 MB it no longer used, still counted while the result filled.
    dask.distributed trims its workers the same way.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


__all__ = ["FileArray", "release_freed_memory"]
