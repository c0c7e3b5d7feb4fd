"""What every command of ``napari-nst`` shares: the exit statuses and the one-line error."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STARTUP_INTERRUPT = "interrupted during start-up; nothing written"


def fail(message: str, code: int) -> int:
    print(f"napari-nst: error: {message}", file=sys.stderr)
    return code
