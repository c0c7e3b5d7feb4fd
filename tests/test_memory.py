"""Arrays in files and freed memory handed back (``engine.memory``)."""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import pytest

from napari_nst.engine import memory
from napari_nst.engine.memory import FileArray, release_freed_memory


def _resident_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def test_a_file_array_keeps_what_is_written_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    array = FileArray((300, 200, 3))
    assert array.shape == (300, 200, 3) and array.dtype == np.float32 and array.ndim == 3
    assert os.fstat(array._file.fileno()).st_size == array.nbytes == 300 * 200 * 3 * 4
    assert not list(tmp_path.iterdir())  # unnamed: nothing to leave behind
    np.testing.assert_array_equal(array[:, :], 0)  # a new file reads as zeros

    expected = np.random.default_rng(0).random((300, 200, 3), dtype=np.float32)
    for r0 in range(0, 300, 128):  # blocks that do not line up with anything
        for c0 in range(0, 200, 70):
            array[r0 : r0 + 128, c0 : c0 + 70] = expected[r0 : r0 + 128, c0 : c0 + 70]
    np.testing.assert_array_equal(array[:, :], expected)
    block = array[10:20, 30:40]
    block[...] = -1  # a copy: the file is not changed through it
    np.testing.assert_array_equal(array[10:20, 30:40], expected[10:20, 30:40])

    mapped = array.memmap()  # outlives the array's own file object
    array.close()
    np.testing.assert_array_equal(mapped, expected)


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status") or memory._malloc_trim() is None,
    reason="needs Linux with glibc (malloc_trim)",
)
def test_freed_memory_goes_back_to_the_system():
    """Blocks below glibc's mmap threshold stay with the process after they are freed while a
    later block pins the top of the heap; ``release_freed_memory`` hands them back."""
    blocks = [np.ones(100_000 // 8) for _ in range(2000)]  # ~200 MB of 100 kB blocks
    pin = np.ones(100_000 // 8)
    del blocks
    held = _resident_bytes()
    release_freed_memory()
    released = held - _resident_bytes()
    assert pin.sum() == 12_500
    assert released > 100 << 20, f"{released / 2**20:.0f} MB released"


def test_a_full_disk_is_told_before_any_work(tmp_path, monkeypatch):
    """The file's space is taken when it is made: with no room (ENOSPC injected into
    posix_fallocate, as a full disk answers it) the error names the folder and what to do,
    where a memory map writing into a sparse file would have died of SIGBUS mid-render."""
    import errno

    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here: files are sparse")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(
        OSError,
        match=rf"no room for a 2\.00 GB temporary file in "
        rf"{re.escape(str(tmp_path))} .*TMPDIR",
    ):
        FileArray((1024, 1024, 512), np.float32)
