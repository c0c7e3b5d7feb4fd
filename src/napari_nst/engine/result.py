"""What the engine yields (numpy only, so consumers need no torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StepResult:
    """One step of a run.

    ``image`` is set on emitted steps (every ``emit_every`` steps and the last one) and None on
    the others: (H, W, 3), or (H, W, 4) with the content's alpha for RGBA content; float32 in
    [0, 1], or with ``output_range="content"`` in the content's intensity range and dtype.
    ``losses`` (weighted terms "content", "style", "tv" and "total") likewise. ``elapsed`` counts
    seconds since the run started; ``scale`` is the (H, W) being optimised, smaller than the
    working size during coarse-to-fine. ``info`` says what produced it (device, weights identity)
    for provenance records.
    """

    step: int
    total_steps: int
    image: np.ndarray | None
    losses: dict | None
    elapsed: float
    scale: tuple
    info: dict = field(default_factory=dict)
    #: Between emissions (optimize): the image being optimised, on demand, as an emitted
    #: ``image`` would be -- no forward pass, one host copy. A consumer that must not lose work
    #: (the CLI on Ctrl-C) calls it once; it shows the latest state of the run when called.
    snapshot: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)
    #: The share of the run's work done, 0..1: with coarse-to-fine a step at a coarse scale
    #: costs less than one at full size (work is steps x pixels), so a time-left estimate from
    #: ``step / total_steps`` would be far too short early in the run.
    progress: float | None = None

    @property
    def seconds_left(self) -> float | None:
        """The run's remaining time, estimated from its speed so far (None before any work)."""
        done = self.progress if self.progress is not None else self.step / max(1, self.total_steps)
        if done <= 0:
            return None
        return self.elapsed * (1 - done) / done

    @property
    def emitted(self) -> bool:
        return self.image is not None

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps and self.image is not None
