"""Driving a ``stylize`` run: the progress bar and loss lines, intermediate files, and what Ctrl-C
or a failure writes (the image of the step the run was at, or the latest kept one)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, STARTUP_INTERRUPT, fail
from .output import intermediate_path, output_pixels, write_somewhere

#: The CLI keeps the latest image in memory every this many steps (an emitted iterate), for a run
#: that fails (Ctrl-C instead writes the snapshot of the step it stopped at). An emission costs
#: about half a step (one forward pass without gradients, the copy to the host), so every 10 steps
#: slows a run by about 5% (benchmarks/bench_emit_cost.py).
KEEP_EVERY = 10


def save_intervals(steps: int, save_every: int | None) -> tuple[int, int]:
    """(keep_every, report_every): the engine emits (and the CLI keeps) an image every
    ``keep_every`` steps; a loss line (and, when asked, an intermediate file) comes every
    ``report_every`` steps, a multiple of it. Without ``save_every`` the lines come about ten
    times a run; with it, ``keep_every`` is the divisor of ``save_every`` nearest to KEEP_EVERY
    (a prime 13 keeps one every 13 steps rather than slow every step down by half)."""
    if save_every is None:
        keep = min(KEEP_EVERY, max(1, steps // 10))
        return keep, keep * max(1, round(steps / 10 / keep))
    divisors = [d for d in range(1, save_every + 1) if save_every % d == 0]
    return min(divisors, key=lambda d: (abs(d - KEEP_EVERY), d)), save_every


def drive(
    args,
    steps,
    settings,
    content,
    bit_depth: int,
    keep_every: int,
    report_every: int,
    save_intermediate: bool,
) -> int:
    """Run ``steps`` with a progress bar and loss lines; write the result, or on Ctrl-C or a
    failure the latest kept image; return the exit status."""
    from tqdm import tqdm

    bar = tqdm(
        total=settings.total_steps(),
        unit="step",
        disable=args.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    run = _Progress(args, settings, content, bit_depth, bar, save_intermediate)
    try:
        for it in steps:
            run.follow(it, report_every)
    except KeyboardInterrupt:
        bar.close()
        return run.interrupted(keep_every)
    except Exception as exc:  # a failure during the run: weights, memory, device
        bar.close()
        return run.failed(exc)
    bar.close()
    return run.finished()


@dataclasses.dataclass
class _Progress:
    """What a run has shown and kept so far, and what its end writes and says."""

    args: Any
    settings: Any
    content: Any
    bit_depth: int
    bar: Any
    save_intermediate: bool
    latest: Any = None  # the latest emitted iterate: what a failure writes
    last: Any = None  # the latest iterate of any step: Ctrl-C writes its snapshot
    current: int = 0
    #: (H, W) -> [first, last] losses of the emitted iterates there
    losses_by_scale: dict = dataclasses.field(default_factory=dict)

    def follow(self, it, report_every: int) -> None:
        """One step: the bar; for an emitted iterate the losses, a loss line and an
        intermediate file where due."""
        self.current, self.last = it.step, it
        self.bar.update(it.step - self.bar.n)
        if not it.emitted:
            return
        self.latest = it
        if it.losses:
            self.losses_by_scale.setdefault(tuple(it.scale), [it.losses])[1:] = [it.losses]
        if it.step % report_every and not it.done:
            return
        if it.losses:
            self.bar.set_postfix_str(_format_losses(it.losses))
            if not self.args.quiet:
                self.bar.write(
                    f"step {it.step}/{it.total_steps} {it.scale[1]}x{it.scale[0]} px "
                    f"{_format_losses(it.losses)} ({it.elapsed:.1f} s)",
                    file=sys.stderr,
                )
        if self.save_intermediate and not it.done:
            self._write_intermediate(it)

    def _write_intermediate(self, it) -> None:
        from ..io import write_image

        path = intermediate_path(self.args.output, it.step)
        try:
            write_image(path, output_pixels(it.image, self.content), self.bit_depth)
        except Exception as exc:  # the run goes on; the final image is kept regardless
            self.bar.write(
                f"napari-nst: warning: cannot write {path} ({exc}); no more "
                "intermediate files are written",
                file=sys.stderr,
            )
            self.save_intermediate = False

    def _save(self, iterate) -> tuple[Path | None, str | None]:
        return write_somewhere(
            self.args.output, output_pixels(iterate.image, self.content), self.bit_depth
        )

    def _kept(self, iterate) -> str:
        """Where ``iterate`` went, for the last line."""
        path, problem = self._save(iterate)
        what = f"the image of step {iterate.step}"
        if problem is None:
            return f"wrote {what} to {path}"
        return f"{problem}; {what} is in {path}" if path else f"{problem}; {what} is lost"

    def interrupted(self, keep_every: int) -> int:
        """Ctrl-C: the image of the step the run was at (else the latest kept one), and a line."""
        latest = _at_latest_step(self.last, self.latest)
        steps = self.settings.steps
        if self.current == 0:
            print(f"napari-nst: {STARTUP_INTERRUPT}", file=sys.stderr)
        elif latest is None:
            print(
                f"napari-nst: interrupted at step {self.current}/{steps}, before the first "
                f"kept image (one every {keep_every} steps); nothing written",
                file=sys.stderr,
            )
        else:
            print(
                f"napari-nst: interrupted at step {self.current}/{steps}; {self._kept(latest)}",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED

    def failed(self, exc: Exception) -> int:
        """A failure during the run: bad input found late (exit 2), else the latest kept image
        written and exit 1."""
        from ..engine.weights import WeightsError

        message = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, ValueError) and self.current == 0:
            return fail(str(exc), EXIT_USAGE)  # a check that needs the network (image too small)
        if isinstance(exc, WeightsError):
            message = str(exc)
            if any(path in message for path in _user_weights_paths(self.settings)):
                return fail(message, EXIT_USAGE)  # a weights file the user named is bad input
        if self.latest is not None:  # nothing is lost: the latest image is kept
            message += f"; {self._kept(self.latest)}"
        return fail(message, EXIT_FAILED)

    def finished(self) -> int:
        """The result written, and a summary line."""
        latest = self.latest
        path, problem = self._save(latest)
        if problem is not None:
            return fail(
                f"{problem}; the result is in {path}" if path else f"{problem}; the result is lost",
                EXIT_FAILED,
            )
        if not self.args.quiet:
            summary = f"wrote {path} after {latest.step} step(s) in {latest.elapsed:.1f} s"
            print(summary + loss_summary(self.losses_by_scale), file=sys.stderr)
        return EXIT_OK


def loss_summary(losses_by_scale: dict) -> str:
    """ "; total loss A -> B" over the run, or per scale for coarse-to-fine: a finer scale's loss
    measures more detail, so it is not comparable with a coarser one's (it may start higher)."""
    spans = [
        (scale, pair[0]["total"], pair[-1]["total"])
        for scale, pair in losses_by_scale.items()
        if "total" in pair[0] and "total" in pair[-1]
    ]
    if not spans or (len(spans) == 1 and len(losses_by_scale[spans[0][0]]) == 1):
        return ""
    if len(spans) == 1:
        return f"; total loss {spans[0][1]:.4g} -> {spans[0][2]:.4g}"
    per_scale = ", ".join(f"{w}x{h} px {first:.4g} -> {last:.4g}" for (h, w), first, last in spans)
    return (
        f"; total loss per scale (each finer scale measures more detail, so losses compare "
        f"within a scale only): {per_scale}"
    )


def _at_latest_step(last, latest):
    """The iterate to write on Ctrl-C: the run's image at its latest step (its snapshot, taken
    now) when it is newer than the latest emitted one; the latter if the snapshot fails."""
    if last is None or last.emitted or last.snapshot is None:
        return latest
    try:
        return dataclasses.replace(last, image=last.snapshot())
    except Exception:  # the tensor mid-update or gone: fall back to what was kept
        return latest


def _format_losses(losses: dict) -> str:
    order = ["total"] + sorted(k for k in losses if k != "total")
    return " ".join(f"{k}={losses[k]:.4g}" for k in order if k in losses)


def _user_weights_paths(settings) -> list[str]:
    """Paths of weights the user named (options and $NAPARI_NST_WEIGHTS_DIR): a weights error
    about one of them is bad input (exit 2), not a failure of the run."""
    from ..engine.weights import WEIGHTS_DIR_ENV

    given = [
        settings.vgg_weights,
        settings.predictor_weights,
        settings.transformer_weights,
        settings.weights_dir,
        os.environ.get(WEIGHTS_DIR_ENV) or None,
    ]
    return [str(Path(p).expanduser()) for p in given if isinstance(p, (str, os.PathLike))]
