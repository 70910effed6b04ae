"""Helpers shared by the benchmark scripts: machine description, memory readings, size arguments."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys

import torch


def machine() -> str:
    """One line naming the OS, CPU, thread count, torch build and GPU (if any)."""
    cpu = platform.processor() or platform.machine()
    text = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    return text


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024  # bytes on macOS, KiB on Linux


def current_rss_bytes() -> int:
    """Current resident set size (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def parse_size(text: str) -> tuple[int, int]:
    """argparse type: 'WxH' -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return h, w
