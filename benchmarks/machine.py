"""What a benchmark ran on (CPU, cores, torch, GPU) and the GPU's peak bf16 rate for FLOP fractions."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# (fragment of torch.cuda.get_device_name, dense bf16 TFLOP/s, where the number comes from);
# the first fragment found in the name wins, so "L40S" must come before "L4"
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("H200", 790.0, "bf16 matrix rate measured on the project's H200 (device notes); the spec sheet says 989"),
    ("H100", 989.0, "NVIDIA H100 SXM data sheet, dense bf16"),
    ("A100", 312.0, "NVIDIA A100 data sheet, dense bf16"),
    ("L40S", 362.0, "NVIDIA L40S data sheet, dense bf16"),
    ("L4", 121.0, "NVIDIA L4 data sheet, dense bf16"),
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> dict:
    """Date, CPU model, cores, Python and torch versions, the GPU when one is used, and the load
    average (other work on the machine slows every number down)."""
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": None,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def peak_bf16(gpu_name: str | None) -> tuple[float, str] | None:
    """(peak dense bf16 FLOP/s, source) for a known GPU name, else None."""
    for fragment, tflops, source in PEAK_BF16_TFLOPS:
        if gpu_name and fragment in gpu_name:
            return tflops * 1e12, source
    return None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_rate(work: Callable[[], int], device: torch.device, windows: int) -> float:
    """Median over `windows` timed calls of items per second; `work` returns how many items it did."""
    rates = []
    for _ in range(windows):
        synchronize(device)
        start = time.perf_counter()
        items = work()
        synchronize(device)
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)
