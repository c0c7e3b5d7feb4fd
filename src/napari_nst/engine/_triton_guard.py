"""Keep torch from loading triton into a process that already has the system's LLVM.

torch.optim imports torch._dynamo, which imports triton when installed (the CUDA wheels bring it).
triton's library carries its own LLVM; loading it after Mesa's OpenGL driver has mapped the system
libLLVM (napari under Xvfb or on a machine without a GPU driver) crashes the process with a
segmentation fault. Style transfer never compiles kernels, so in that situation triton is marked
unavailable (``import triton`` raises ImportError, and torch treats triton as absent) rather than
letting the import kill napari.
"""

from __future__ import annotations

import sys


def _system_llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:  # not Linux
        return False


def guard_triton_import() -> None:
    if "triton" not in sys.modules and _system_llvm_loaded():
        sys.modules["triton"] = None
