"""Device names ("auto", "cpu", "cuda", "cuda:N", "mps") to torch devices, with clear errors."""

from __future__ import annotations

import os
import re

import torch

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(ValueError):
    """An explicit device that this machine does not have, or a name that is not a device."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of the devices present here, best first, without "auto"."""
    names = []
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


DEVICE_ENV = "NAPARI_NST_DEVICE"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for ``name``; "auto" takes $NAPARI_NST_DEVICE if set, else the best of
    cuda, mps, cpu."""
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name).strip().lower()
    configured = os.environ.get(DEVICE_ENV, "auto")
    if name == "auto" and configured.strip().lower() != "auto":
        try:
            return resolve_device(configured)
        except DeviceError as exc:  # say where the name came from: not from the caller
            raise DeviceError(
                f"${DEVICE_ENV}={configured!r}: {exc} -- or unset {DEVICE_ENV}"
            ) from None
    if name == "auto":
        return torch.device(available_devices()[0])
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError(
                "device 'mps' (Apple GPU) is not available on this machine; "
                f"use one of: auto, {', '.join(available_devices())}"
            )
        return torch.device("mps")
    match = _CUDA.match(name)
    if match:
        index = int(match.group(1) or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            have = (
                f"{count} CUDA device(s)" if count else "no CUDA device (or torch is a CPU build)"
            )
            raise DeviceError(
                f"device {name!r} is not available: this machine has {have}; "
                f"use one of: auto, {', '.join(available_devices())}"
            )
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def _cpu_has_native_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [
        getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return any(check() for check in checks if check is not None)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype of the VGG passes for a ``precision`` setting on ``device``.

    "auto" is bfloat16 only where it was measured to keep the result (see BENCHMARKS.md): CPUs
    with native bf16 instructions. Elsewhere -- older CPUs emulate bf16 slowly; GPUs are not
    measured yet -- it is float32.
    """
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; use auto, float32 or bfloat16")
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_native_bf16() else torch.float32
