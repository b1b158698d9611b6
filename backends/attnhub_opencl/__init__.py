"""``opencl``: FlashAttention-2 in OpenCL, for machines without CUDA (CPUs through PoCL,
Intel/AMD/mobile GPUs, NPUs with an OpenCL driver).

Takes torch CPU tensors and hands them to the OpenCL device without copies where the device
shares host memory (``CL_MEM_USE_HOST_PTR`` over each tensor's storage; strided views are
passed as strides).  Kernels (``forward.cl``, ``backward.cl``) are built once per device and
specialisation (head dims, dtype, tile sizes chosen from the device's limits) and cached.

Device: ``ATTNHUB_OPENCL_DEVICE`` = ``"P:D"`` (platform and device indices) or a name
substring; default the first GPU, else the first CPU.  ``attnhub list-backends --json``
shows the chosen device and its limits (:meth:`OpenCLBackend.extra_info`).

    q: (B, Hq, Sq, D)  k: (B, Hk, Sk, D)  v: (B, Hk, Sk, Dv) -> O (B, Hq, Sq, Dv), LSE (B, Hq, Sq)
    varlen: q (total_q, Hq, D) ... -> O (total_q, Hq, Dv), LSE (Hq, total_q)
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

import torch

import attnhub

__all__ = ["OpenCLBackend"]

_RUNTIMES: dict[str, Any] = {}
_RUNTIMES_LOCK = threading.Lock()


def _current_runtime():
    """The :class:`_runtime.Runtime` for the current ``ATTNHUB_OPENCL_DEVICE`` (cached)."""
    from . import _device

    spec = os.environ.get(_device.ENV_DEVICE, "").strip()
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.get(spec)
        if rt is None:
            try:
                from . import _runtime as runtime_module
            except ImportError as exc:  # pyopencl (or numpy) missing
                raise _device.DeviceNotFound(
                    f"pyopencl is not importable ({exc}): pip install attnhub[opencl]") from None
            rt = _RUNTIMES[spec] = runtime_module.Runtime(spec)
        return rt


class OpenCLBackend(attnhub.Backend):
    name = "opencl"
    version = "0.1.0"
    requires_api = ">=1,<2"
    capabilities = attnhub.Capabilities(
        devices=("cpu",),
        # float16 is read and written with vload_half/vstore_half (core OpenCL, no
        # cl_khr_fp16 needed) and computed in float32
        dtypes=(torch.float32, torch.float16),
        min_head_dim=1,
        max_head_dim=256,
        causal=True, gqa=True, window=True, softcap=True, varlen=True,
        backward=True, fp8=False,
        priority=10,
    )

    def probe(self) -> Optional[str]:
        from . import _device

        try:
            _current_runtime()
        except _device.DeviceNotFound as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a driver failing to create a context
            return f"OpenCL device unusable: {type(exc).__name__}: {exc}"
        return None

    def not_supported_reasons(self, problem: attnhub.Problem) -> list[str]:
        if problem.device.type != "cpu":
            return [f"tensors on {problem.device}: the opencl backend takes torch CPU tensors "
                    "(it hands them to the OpenCL device itself); call .cpu() first or use "
                    f"a backend for {problem.device.type}"]
        reason = self.probe()
        if reason:
            return [reason]
        rt = _current_runtime()
        out = []
        if rt.tiles(problem.head_dim, problem.head_dim_v) is None:
            out.append(f"head dims {problem.head_dim}/{problem.head_dim_v} need more local "
                       f"memory than {rt.label} has ({rt.info['local_mem_bytes']} bytes)")
        elt = torch.tensor([], dtype=problem.dtype).element_size()
        biggest = elt * max(problem.batch if not problem.is_varlen else 1, 1) * max(
            problem.heads_q * problem.seqlen_q * max(problem.head_dim, problem.head_dim_v),
            problem.heads_kv * problem.seqlen_k * max(problem.head_dim, problem.head_dim_v))
        if biggest > rt.info["max_mem_alloc_bytes"]:
            out.append(f"a {biggest / 2**30:.1f} GiB tensor exceeds {rt.label}'s largest "
                       f"buffer ({rt.info['max_mem_alloc_bytes'] / 2**30:.1f} GiB); split the "
                       "batch")
        return out

    def forward(self, q, k, v, problem):
        return _current_runtime().forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        return _current_runtime().backward(do, q, k, v, o, lse, problem)

    def extra_info(self) -> dict[str, Any]:
        from . import _device

        try:
            rt = _current_runtime()
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            return {"error": str(exc)}
        info = dict(rt.info)
        info["device"] = rt.label
        info["env"] = f"{_device.ENV_DEVICE}={os.environ.get(_device.ENV_DEVICE, '')!r}"
        tiles = rt.tiles(64, 64)
        if tiles is not None:
            info["tiles_d64"] = tiles.__dict__
        return info
