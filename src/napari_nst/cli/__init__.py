"""The ``napari-nst`` command.

    napari-nst stylize CONTENT STYLE [STYLE ...] -o OUT [--steps N] [--size PX] [--device D] ...

Options are generated from ``napari_nst.settings.Settings`` and its field metadata (choices,
which methods read an option), so the CLI offers exactly what the API and the widget do. Exit
status: 0 success, 2 bad arguments or input (found before any work, the output location
included), 1 failure during the run, 130 interrupted. Ctrl-C writes the image of the step the
run was at; a failure, the latest kept image. Either goes to OUT, or, where OUT cannot be
written, to a file in the system's temp folder that the last line names.

The modules (no import cycle among them; none imports this package):

* ``options``: the Settings options, and back from parsed arguments to Settings fields;
* ``parser``: the parser of every command;
* ``inputs``: reading the style argument (a blend, a style per label);
* ``output``: the output's range and bit depth, writing somewhere, a stack as TIFF;
* ``progress``: driving a run (progress bar, loss lines, Ctrl-C and failures);
* ``stylize``, ``stack``, ``sweep``, ``gui``: the commands;
* ``common``: the exit statuses and the error line.

``main`` (here) dispatches to the commands; ``python -m napari_nst.cli`` runs it.
"""

from __future__ import annotations

import sys

from .common import EXIT_INTERRUPTED, EXIT_USAGE, STARTUP_INTERRUPT
from .gui import gui_command
from .parser import build_parser
from .stylize import stylize_command
from .sweep import sweep_command


def main(argv=None) -> int:
    command = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        if command == "stylize":
            return stylize_command(args)
        if command == "gui":
            return gui_command(args)
        if command == "sweep":
            return sweep_command(args)
        parser.error(f"unknown command {command}")
    except KeyboardInterrupt:  # Ctrl-C while torch or napari loads: one line, not a traceback
        print(
            "napari-nst: " + (STARTUP_INTERRUPT if command == "stylize" else "interrupted"),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_USAGE


__all__ = ["main"]
