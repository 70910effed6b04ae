"""Facts about the machine that library code needs (no side effects)."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable, else physical RAM), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
