"""attnhub-torch-sdpa: torch's fused attention kernels as attnhub backends.

Four backends, registered under the entry-point group ``attnhub.backends``:

==================  ======================================================================
``torch-sdpa``      picks, per problem, the first torch kernel that accepts it: on CUDA
                    cuDNN, then FlashAttention-2, then memory-efficient (the fastest first,
                    as measured on an H100); on the CPU torch's CPU flash kernel
``torch-sdpa-flash``      FlashAttention-2 only (CUDA, sm80+)
``torch-sdpa-cudnn``      cuDNN only (CUDA, sm80+, cuDNN 9+)
``torch-sdpa-efficient``  memory-efficient (xformers cutlass) only (CUDA, sm50+)
==================  ======================================================================

They return O and the natural-log LSE, follow attnhub's bottom-right causal mask (see
:mod:`attnhub_torch_sdpa._driver`), and compute gradients with torch's own backward ops.
Not supported: sliding windows, softcap, varlen, fp8 (declared, so attnhub never sends them).

This package uses only attnhub's public plugin interface (``attnhub.Backend``,
``attnhub.Capabilities``, ``attnhub.Problem``, ``attnhub.PLUGIN_API_VERSION``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version
from typing import ClassVar

import torch

import attnhub

from . import _driver
from ._kernels import CPU_FLASH, CUDNN, EFFICIENT, FLASH, SubKernel

try:
    __version__ = _version("attnhub-torch-sdpa")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["TorchSDPABackend", "TorchSDPAFlashBackend", "TorchSDPACudnnBackend",
           "TorchSDPAEfficientBackend"]

_HALF = (torch.float16, torch.bfloat16)


class _TorchSDPABase(attnhub.Backend):
    """A backend made of one or more :class:`SubKernel`; the first that accepts a problem
    runs it (forward and backward alike)."""

    version = __version__
    requires_api = ">=1,<2"
    kernels: ClassVar[tuple[SubKernel, ...]] = ()

    def _order(self, problem) -> tuple[SubKernel, ...]:
        return tuple(k for k in self.kernels if k.device_type == problem.device.type)

    def _choose(self, problem) -> tuple[SubKernel | None, list[str]]:
        refusals = []
        for kernel in self._order(problem):
            reasons = kernel.reasons(problem)
            if not reasons:
                return kernel, []
            refusals.append(f"{kernel.name}: {'; '.join(reasons)}")
        if not refusals:
            devices = ", ".join(sorted({k.device_type for k in self.kernels}))
            refusals.append(f"device {problem.device.type!r} (supported: {devices})")
        return None, refusals

    def probe(self):
        missing = [f"{k.name}: {k.available()}" for k in self.kernels if k.available()]
        if len(missing) < len(self.kernels):
            return None
        if len(missing) == 1:
            return missing[0]
        return "no torch attention kernel can run here (" + "; ".join(missing) + ")"

    def not_supported_reasons(self, problem):
        return self._choose(problem)[1]

    def _kernel(self, problem) -> SubKernel:
        kernel, reasons = self._choose(problem)
        if kernel is None:
            raise ValueError(f"{self.name}: {problem.describe()} not supported: "
                             + "; ".join(reasons))
        return kernel

    def forward(self, q, k, v, problem):
        return _driver.forward(self._kernel(problem), q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        return _driver.backward(self._kernel(problem), do, q, k, v, o, lse, problem)

    def extra_info(self):
        return {
            "torch": torch.__version__,
            "plugin_api": attnhub.PLUGIN_API_VERSION,
            "kernels": {k.name: k.available() or "available" for k in self.kernels},
        }


class TorchSDPABackend(_TorchSDPABase):
    """``torch-sdpa``: the best torch kernel for each problem (CPU and CUDA)."""

    name = "torch-sdpa"
    # Fastest first.  On an H100 (NOTES.md) cuDNN is ~1.9x FlashAttention-2 on square
    # problems and still 1.3x where bottom-right causal costs it two calls (Sq < Sk).
    kernels = (CUDNN, FLASH, EFFICIENT, CPU_FLASH)
    capabilities = attnhub.Capabilities(
        devices=("cpu", "cuda"),
        dtypes=(torch.float16, torch.bfloat16, torch.float32),
        min_head_dim=1,
        max_head_dim=512,  # per kernel: see not_supported_reasons
        different_v_head_dim=True,  # cudnn and efficient only
        causal=True, gqa=True, window=False, softcap=False, varlen=False,
        backward=True, fp8=False,
        priority=20,
    )


class TorchSDPAFlashBackend(_TorchSDPABase):
    """``torch-sdpa-flash``: FlashAttention-2 as vendored in torch."""

    name = "torch-sdpa-flash"
    kernels = (FLASH,)
    capabilities = attnhub.Capabilities(
        devices=("cuda",), dtypes=_HALF, min_compute_capability=(8, 0),
        min_head_dim=8, max_head_dim=256, head_dim_multiple=8, different_v_head_dim=False,
        causal=True, gqa=True, backward=True, priority=10,
    )


class TorchSDPACudnnBackend(_TorchSDPABase):
    """``torch-sdpa-cudnn``: cuDNN's fused attention (head dims up to 128, or 256 on sm90
    with cuDNN >= 9.10)."""

    name = "torch-sdpa-cudnn"
    kernels = (CUDNN,)
    capabilities = attnhub.Capabilities(
        devices=("cuda",), dtypes=_HALF, min_compute_capability=(8, 0),
        min_head_dim=8, max_head_dim=256, head_dim_multiple=8, different_v_head_dim=True,
        causal=True, gqa=True, backward=True, priority=10,
    )


class TorchSDPAEfficientBackend(_TorchSDPABase):
    """``torch-sdpa-efficient``: the memory-efficient kernel (no GQA: it would need
    K/V repeated)."""

    name = "torch-sdpa-efficient"
    kernels = (EFFICIENT,)
    capabilities = attnhub.Capabilities(
        devices=("cuda",), dtypes=(torch.float16, torch.bfloat16, torch.float32),
        min_compute_capability=(5, 0),
        min_head_dim=4, max_head_dim=256, head_dim_multiple=4, different_v_head_dim=True,
        causal=True, gqa=False, backward=True, priority=10,
    )
