"""napari-nst: neural style transfer for napari image layers.

The public API is importable without torch, napari or Qt; each name is loaded on first use::

    from napari_nst import stylize, iterate, Settings
    result = stylize(content, style, steps=200, size=512, device="auto")
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# Threads that wait for work sleep instead of spinning (OpenMP's default spins for a while):
# beside another torch job on a 2-core machine, spinning threads of two processes took the cores
# from each other, and a default run took 4-6x its time alone; sleeping, 1.1-1.5x (BENCHMARKS.md,
# "Under load"). It must be set before torch is first imported; a value already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_LAZY = {
    "Settings": "napari_nst.settings",
    "iterate": "napari_nst.engine.run",
    "stylize": "napari_nst.engine.run",
    "run_steps": "napari_nst.engine.run",
    "StepResult": "napari_nst.engine.result",
    "available_devices": "napari_nst.engine.devices",
    "random_vgg19": "napari_nst.engine.vgg",
    "WeightsError": "napari_nst.engine.weights",
    "DeviceError": "napari_nst.engine.devices",
    "run_in_viewer": "napari_nst._worker",
    "predict_batch": "napari_nst.engine.run",
    "stylize_stack": "napari_nst.engine.stack",
    "iter_stack": "napari_nst.engine.stack",
    "sweep": "napari_nst.engine.explore",
    "iter_sweep": "napari_nst.engine.explore",
    "reconstruct": "napari_nst.engine.explore",
    "Sweep": "napari_nst.engine.explore",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_nst' has no attribute {name!r}")


def __dir__():
    return __all__
