"""How a run computes: autocast dtype, memory format and compile mode, chosen from TrainConfig's
execution settings and what the device can do, and said in one line (`Execution.precision`).

amp `auto` picks bf16 autocast only where the device computes bf16 natively (a CUDA GPU with bf16;
a CPU with avx512_bf16 or AMX, or Arm's bf16): elsewhere bf16 is emulated and slower than float32.
memory_format `auto` is contiguous everywhere for now: on a CPU, channels_last with bf16 computes
wrong weight gradients for the dilated depthwise convolutions of gSTA and TAU (oneDNN, torch 2.13;
refused, see benchmarks/RESULTS.md), and on GPUs it is not measured yet (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from simvp_core.config import TrainConfig

COMPILE_MODES = {"eager": None, "default": "default", "graphs": "reduce-overhead"}  # torch.compile's modes
COMPILE_WORDS = {"default": "torch.compile", "graphs": "CUDA graphs (torch.compile reduce-overhead)"}


@dataclass(frozen=True)
class Execution:
    """What a run computes in. compile_mode: torch.compile's mode for the training step, None: eager."""

    amp_dtype: torch.dtype | None
    channels_last: bool
    compile_mode: str | None
    precision: str  # e.g. "bf16 autocast, channels_last (auto: CPU has native bf16: avx512_bf16)"

    def place(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model on `device`, in this execution's memory format."""
        model = model.to(device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether `device` computes bf16 natively, the evidence in words)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} has native bf16"
        major, minor = torch.cuda.get_device_capability(device)
        return False, f"{name} (compute capability {major}.{minor}) has no native bf16"
    return cpu_native_bf16()


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU has bf16 instructions oneDNN uses (x86: avx512_bf16 or AMX; Arm: bf16)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        checks = (("avx512_bf16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
        found = [name for name, check in checks if getattr(torch.cpu, check, lambda: False)()]
        if found:
            return True, f"CPU has native bf16: {' and '.join(found)}"
        return False, "CPU has no native bf16 (neither avx512_bf16 nor AMX)"
    if machine in ("aarch64", "arm64") and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return True, "CPU has native bf16: Arm bf16"
    return False, f"CPU ({machine}) has no native bf16"


def choose(cfg: TrainConfig, device: torch.device, native: tuple[bool, str] | None = None) -> Execution:
    """The execution of `cfg` on `device`; `native` (as native_bf16 returns it) is detected when
    not given. ValueError (one line) for what would compute wrongly or cannot run there."""
    if cfg.compile == "graphs" and device.type != "cuda":
        raise ValueError(f"compile 'graphs' captures CUDA graphs and this run is on {device.type}; use "
                         "--compile default (torch.compile without graphs) or eager")
    has_bf16, evidence = native if native is not None else native_bf16(device)
    bf16 = has_bf16 if cfg.amp == "auto" else cfg.amp == "bf16"
    channels_last = cfg.memory_format == "channels_last"
    if channels_last and bf16 and device.type == "cpu":
        raise ValueError("memory_format channels_last with bf16 on a CPU computes wrong weight gradients "
                         "for dilated depthwise convolutions (oneDNN); use --memory-format contiguous, "
                         "or --amp off for channels_last in fp32")
    why = (f"auto: {evidence}" if cfg.amp == "auto"
           else f"bf16 emulated: {evidence}" if bf16 and not has_bf16 else "")
    words = ["bf16 autocast" if bf16 else "fp32", "channels_last" if channels_last else "contiguous"]
    if cfg.compile != "eager":
        words.append(COMPILE_WORDS[cfg.compile])
    precision = ", ".join(words) + (f" ({why})" if why else "")
    return Execution(torch.bfloat16 if bf16 else None, channels_last, COMPILE_MODES[cfg.compile], precision)


__all__ = ["Execution", "choose", "native_bf16", "cpu_native_bf16"]
