"""The machine capability probe behind ``attnhub probe``: what this machine has.

Cheap and side-effect free until called; optional packages are looked up by metadata, and
only imported (pyopencl, to list platforms) when present.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import torch

__all__ = ["probe"]

_OPTIONAL = ("triton", "pyopencl", "cupy", "cupy-cuda12x", "cupy-cuda13x", "numpy")


def _version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        cc = (p.major, p.minor)
        out.append({
            "index": i, "name": p.name, "compute_capability": f"{cc[0]}.{cc[1]}",
            "sm_count": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "tma": cc >= (9, 0), "fp8": cc >= (8, 9), "wgmma": cc == (9, 0),
        })
    return out


def _opencl() -> dict[str, Any]:
    if _version("pyopencl") is None:
        return {"error": "pyopencl not installed (pip install 'attnhub[opencl]')"}
    try:
        import pyopencl as cl

        platforms = []
        for p in cl.get_platforms():
            devs = []
            for d in p.get_devices():
                devs.append({"name": d.name.strip(), "type": cl.device_type.to_string(d.type),
                             "local_mem_kib": d.local_mem_size // 1024,
                             "max_work_group_size": d.max_work_group_size,
                             "fp16": "cl_khr_fp16" in d.extensions})
            platforms.append({"name": p.name.strip(), "version": p.version.strip(),
                              "devices": devs})
        return {"platforms": platforms}
    except Exception as exc:  # noqa: BLE001 - e.g. no ICD loader / no platform
        return {"error": f"{type(exc).__name__}: {exc} (Debian: apt-get install pocl-opencl-icd)"}


def probe() -> dict[str, Any]:
    """What this machine offers attention backends: devices, GPUs, packages, OpenCL."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        devices.append("xpu")
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "torch_devices": devices,
        "cuda_devices": _cuda(),
        "packages": {name: _version(name) for name in _OPTIONAL},
        "opencl": _opencl(),
    }
