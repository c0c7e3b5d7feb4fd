"""The method seam: every style-transfer method is one ``Method`` subclass in its own package,
registered here by name (``Settings.method``) and loaded on first use.

run.py, stack.py and the front ends ask the registered method (``get``) what it does and what it
can do; nothing outside a method's own package compares its name. Adding a method means one new
package with a ``Method`` subclass and one entry in ``REGISTRY`` (and, in ``settings``, the
``methods=`` of the settings it reads: what a run reads, what a sweep's cells share and what a
result's name says all follow from that field metadata).

This module imports no torch: ``settings`` reads the names from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Entry:
    """A registered method, known without importing it (no torch): where its class is
    (``"module:Class"``), whether its result can start an optimisation (``Settings.init``), and
    the per-process caches its modules keep (``"module:attribute"``, dicts that
    ``engine.clear_caches`` empties)."""

    path: str
    starts_optimize: bool = True
    caches: tuple[str, ...] = ()


_HERE = "napari_nst.engine.methods"
#: {method name: its entry}, in the order the front ends list them. A new method is one package
#: and one line here: ``Settings.init``'s choices, the "methods" sweep preset and
#: ``clear_caches`` follow.
REGISTRY = {
    "optimize": Entry(
        f"{_HERE}.optimize:Optimize",
        starts_optimize=False,
        caches=(f"{_HERE}.optimize.gatys:_features_cache",),
    ),
    "predict": Entry(
        f"{_HERE}.predict:Predict", caches=(f"{_HERE}.predict.magenta_weights:_loaded_models",)
    ),
    "universal": Entry(
        f"{_HERE}.universal:Universal", caches=(f"{_HERE}.universal.networks:_loaded",)
    ),
}
NAMES = tuple(REGISTRY)
#: The methods whose result can be an optimisation's start image (``Settings.init``).
STARTS = tuple(name for name, entry in REGISTRY.items() if entry.starts_optimize)

_instances: dict = {}


def get(name: str) -> Method:
    """The registered method ``name`` (one instance per process)."""
    if name not in REGISTRY:
        raise ValueError(f"method={name!r} is not supported; choose one of {', '.join(NAMES)}")
    if name not in _instances:
        module, _, cls = REGISTRY[name].path.partition(":")
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]


class Method:
    """One style-transfer method: what it can do (class attributes) and four operations.

    A run prepares the style target once (``target``: CPU tensors, so that a stack's target
    travels to dask workers) and runs every content against it (``run``: iterates; ``plane``: one
    stack plane, raw, for the stack to link and finish). Contents arrive as ``PreparedImage``s at
    the result's size; results leave as ``output_image`` makes them.
    """

    name: ClassVar[str]
    #: Whether a run yields intermediate iterates (steps), or one result.
    iterates: ClassVar[bool] = False
    #: Whether a stack plane can start from the previous plane's moved result.
    warm_starts: ClassVar[bool] = False
    #: The default weight of a stack's temporal term (``iter_stack``'s ``temporal_weight``).
    temporal_weight: ClassVar[float] = 1.0
    #: The provenance line of the weights, when no run has said more (e.g. "Magenta TFLite").
    credit: ClassVar[str] = ""

    def style_size(self, settings) -> int | None:
        """The longer side the styles are prepared at (None: their own size)."""
        return None

    def in_file_above(self, settings) -> int | None:
        """Working images of more pixels than this are prepared in temporary files (the method
        reads them tile by tile); None: always in memory."""
        return None

    def regions_max_pixels(self, settings) -> int | None:
        """The most result pixels a run with ``regions`` takes (None: any size)."""
        return None

    def streams(self, height: int, width: int, settings) -> bool:
        """Whether a stack plane of this size goes through ``plane_streamed`` (read and written
        tile by tile, no temporal term)."""
        return False

    def target(self, styles: list, settings, device) -> Any:
        """What every content of a run is compared against, computed once from the prepared
        styles; on the CPU."""
        raise NotImplementedError

    def run(self, content, target, settings, device, *, initial=None) -> Iterator:
        """``StepResult``s for one prepared content (``initial``: a start image, where the
        method takes one)."""
        raise NotImplementedError

    def plane(self, content, target, settings, device, chain) -> tuple[Any, dict]:
        """One stack plane: (its raw ``motion.Carry`` at the size the method works at, its
        provenance). ``chain``: the plane's ``motion.Chain`` (the previous plane's carry and
        the temporal options)."""
        raise NotImplementedError

    def plane_streamed(self, plane, index: tuple, target, settings, device, writer) -> dict:
        """A stack plane too big for memory (``streams``), read lazily and written into
        ``writer[index]``; returns its provenance."""
        raise NotImplementedError(f"{self.name} does not stream planes")


__all__ = ["NAMES", "REGISTRY", "STARTS", "Entry", "Method", "get"]
