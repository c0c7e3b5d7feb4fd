"""Memory figures of this process for the benchmarks (Linux: /proc/self/status)."""

from __future__ import annotations


def proc_status(field: str) -> int:
    """A byte count from /proc/self/status: "VmRSS" (now) or "VmHWM" (peak so far)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)
