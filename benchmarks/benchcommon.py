"""Helpers shared by the benchmark scripts: machine description, load average, memory readings, size arguments."""

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


def cpu_model() -> str:
    """The CPU's model name and the bf16 features that matter for speed (from /proc/cpuinfo on Linux)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name}, {os.cpu_count()} CPUs, {capability}, bf16 flags: {', '.join(bf16) or 'none'}"


class LoadRange:
    """The range of the 1-minute load average over the calls to :meth:`sample` (the machine may be shared)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def sample(self) -> None:
        if hasattr(os, "getloadavg"):
            self.values.append(os.getloadavg()[0])

    def __str__(self) -> str:
        return f"{min(self.values):.1f}-{max(self.values):.1f}" if self.values else "n/a"


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
