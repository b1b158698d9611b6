"""Finding the OpenCL device and choosing tile sizes from its limits.

Nothing here runs at import: :func:`find_device` imports pyopencl when called.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

__all__ = ["ENV_DEVICE", "DeviceNotFound", "Tiles", "find_device", "describe", "tiles_for"]

ENV_DEVICE = "ATTNHUB_OPENCL_DEVICE"

_INSTALL_PYOPENCL = "pip install attnhub[opencl]  (or: pip install pyopencl)"
_INSTALL_ICD = ("install an OpenCL driver (ICD), e.g. `apt-get install pocl-opencl-icd` for "
                "CPUs, or your GPU vendor's OpenCL runtime")


class DeviceNotFound(RuntimeError):
    """No usable OpenCL device; the message says why and what to install or set."""


def _import_pyopencl():
    try:
        import pyopencl as cl
    except ImportError as exc:
        raise DeviceNotFound(f"pyopencl is not installed ({exc}): {_INSTALL_PYOPENCL}") from None
    return cl


def _all_devices(cl) -> list[tuple[int, int, Any, Any]]:
    """Every (platform index, device index, platform, device) pyopencl can see."""
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # PLATFORM_NOT_FOUND_KHR when no ICD is registered
        raise DeviceNotFound(f"no OpenCL platform found ({exc}): {_INSTALL_ICD}") from None
    if not platforms:
        raise DeviceNotFound(f"no OpenCL platform found: {_INSTALL_ICD}")
    found = []
    for p_index, platform in enumerate(platforms):
        try:
            devices = platform.get_devices()
        except cl.Error:  # DEVICE_NOT_FOUND on a platform with no device
            devices = []
        found += [(p_index, d_index, platform, dev) for d_index, dev in enumerate(devices)]
    if not found:
        names = ", ".join(p.name for p in platforms)
        raise DeviceNotFound(f"OpenCL platform(s) {names} expose no device: {_INSTALL_ICD}")
    return found


def _label(p_index: int, d_index: int, platform, device) -> str:
    return f"{p_index}:{d_index} {device.name.strip()} ({platform.name.strip()})"


def find_device(spec: Optional[str] = None):
    """The device to use: ``spec`` (default ``$ATTNHUB_OPENCL_DEVICE``) is ``"P:D"`` platform
    and device indices or a case-insensitive substring of ``"platform device"`` names; without
    it, the first GPU, else the first CPU, else the first device.

    Returns ``(platform, device, label)``; raises :class:`DeviceNotFound` with the devices
    seen and what to do.
    """
    cl = _import_pyopencl()
    found = _all_devices(cl)
    spec = os.environ.get(ENV_DEVICE, "") if spec is None else spec
    spec = spec.strip()
    seen = "; ".join(_label(*entry) for entry in found)
    if spec:
        parts = spec.split(":")
        if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
            want = (int(parts[0]), int(parts[1]))
            match = [e for e in found if (e[0], e[1]) == want]
        else:
            needle = spec.lower()
            match = [e for e in found
                     if needle in f"{e[2].name} {e[3].name}".lower()]
        if not match:
            raise DeviceNotFound(f"{ENV_DEVICE}={spec!r} matches no OpenCL device (seen: "
                                 f"{seen}); use 'platform:device' indices or a name substring")
        entry = match[0]
    else:
        by_type = lambda t: [e for e in found if e[3].type & t]  # noqa: E731
        entry = (by_type(cl.device_type.GPU) or by_type(cl.device_type.CPU) or found)[0]
    return entry[2], entry[3], _label(*entry)


def describe(device) -> dict[str, Any]:
    """The device limits that tile sizes are chosen from (shown by ``extra_info``)."""
    import pyopencl as cl

    return {
        "name": device.name.strip(),
        "platform": device.platform.name.strip(),
        "version": device.version.strip(),
        "driver": device.driver_version.strip(),
        "type": cl.device_type.to_string(device.type),
        "compute_units": device.max_compute_units,
        "local_mem_bytes": device.local_mem_size,
        "max_work_group_size": device.max_work_group_size,
        "preferred_vector_width_float": device.preferred_vector_width_float,
        "max_mem_alloc_bytes": device.max_mem_alloc_size,
        "host_unified_memory": bool(device.host_unified_memory),
        "cl_khr_fp16": "cl_khr_fp16" in device.extensions,
    }


@dataclasses.dataclass(frozen=True)
class Tiles:
    """One kernel specialisation's tile sizes (the -D defines of common.cl)."""

    vw: int  # SIMD width: rows per vector
    mv: int  # row vectors per work-item
    nr: int  # keys per register block of the score GEMM
    nc: int  # head-dim columns per register block of the P·V GEMM
    bn: int  # keys (queries in dK/dV) per local-memory tile
    wg: int  # work-items per work-group

    @property
    def block(self) -> int:
        """Query rows (keys in dK/dV) per work-group."""
        return self.wg * self.mv * self.vw

    def local_bytes(self, d: int, dv: int) -> int:
        """Local memory of the largest kernel (dK/dV: Q and dO tiles plus two row vectors)."""
        return 4 * self.bn * (_round_up(d, self.nc) + _round_up(dv, self.nc) + 2)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _pow2_floor(x: int) -> int:
    return 1 << (max(1, x).bit_length() - 1)


# Private memory a CPU work-item may use (the stack of a PoCL worker thread; 252 KiB, the
# d=256 backward with 48 rows, ran fine on PoCL 3.1).
_CPU_PRIVATE_BYTES = 512 * 1024


def _cpu_private_bytes(rows: int, d: int, dv: int, bn: int) -> int:
    """The dK/dV kernel's per-work-item arrays: four head-dim x rows, three tile x rows."""
    return 4 * rows * (4 * max(d, dv) + 3 * bn)


def tiles_for(info: dict[str, Any], d: int, dv: int) -> Optional[Tiles]:
    """Tile sizes for head dims ``(d, dv)`` on a device described by :func:`describe`, or
    ``None`` when its local memory cannot hold even the smallest tile.

    CPUs (PoCL runs one work-item per core): one work-item per work-group holding
    ``MV x VW`` query rows in SIMD vectors (VW = the preferred float vector width), register
    blocks sized for the vector register file (32 registers with 16-wide vectors, AVX-512;
    16 otherwise), 96-key tiles (measured best of 24..144 on a Zen 4, NOTES.md).
    GPUs and accelerators: one row per work-item, 128 work-items per group (or the device
    maximum), K/V tiles of 64 keys halved until they fit the local memory.
    """
    local = int(info["local_mem_bytes"])
    if "CPU" in info["type"]:
        vw = min(16, _pow2_floor(int(info["preferred_vector_width_float"]) or 1))
        # accumulators + operands within the register file: 3 x 8 + 3 + 1 of 32 (AVX-512),
        # 2 x 6 + 2 + 1 of 16 (AVX2 and narrower)
        mv, nr, nc = (3, 8, 8) if vw >= 16 else (2, 6, 4)
        bn = 96 if nr == 8 else 48
        while mv > 1 and _cpu_private_bytes(vw * mv, d, dv, bn) > _CPU_PRIVATE_BYTES:
            mv -= 1
        while bn > nr and Tiles(vw, mv, nr, nc, bn, 1).local_bytes(d, dv) > local:
            bn -= nr
        while nr > 1 and Tiles(vw, mv, nr, nc, bn, 1).local_bytes(d, dv) > local:
            nr //= 2  # tiny local memory (some CPU runtimes report 16-32 KiB)
            bn = nr
        tiles = Tiles(vw, mv, nr, nc, bn, 1)
    else:
        wg = min(128, _pow2_floor(int(info["max_work_group_size"])))
        nc = 8
        bn = 64
        while bn > 4 and Tiles(1, 1, min(8, bn), nc, bn, wg).local_bytes(d, dv) > local - 1024:
            bn //= 2
        tiles = Tiles(1, 1, min(8, bn), nc, bn, wg)
    if tiles.local_bytes(d, dv) > local:
        return None
    return tiles
