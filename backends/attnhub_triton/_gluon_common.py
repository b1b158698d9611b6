"""What the Gluon kernels (``_gluon_fwd``, ``_gluon_bwd``) share on the host side: the Hopper
Gluon imports with the TMA copy names of Triton 3.6 and later, whether the kernels can run
here, the dtype map, and the 3-D TMA descriptors over the rows of a (B, H, S, D) tensor:
contiguous, or with the heads of a position adjacent (BSHD, packed QKV).

Imports without torch or a GPU (the kernels compile offline)."""

from __future__ import annotations

import functools

import triton
from triton.experimental.gluon import language as gl

try:  # Triton >= 3.5: the Hopper Gluon module
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    # Triton 3.6 spells the TMA copies async_copy_*; later releases async_load / async_store
    tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
    tma_store = tma.async_store if hasattr(tma, "async_load") else tma.async_copy_shared_to_global
    # a barrier over the calling partition's threads: Triton 3.6 thread_barrier, later barrier
    thread_barrier = gl.thread_barrier if hasattr(gl, "thread_barrier") else gl.barrier
    IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the installed Triton
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
    fence_async_shared = mbarrier = tma = warpgroup_mma = warpgroup_mma_wait = None
    TensorDescriptor = tma_load = tma_store = thread_barrier = None

LOG2E = 1.4426950408889634


def gluon_available():
    """(True, "") when the Gluon kernels can run here, else (False, why)."""
    if IMPORT_ERROR is not None:
        return False, f"triton {triton.__version__} lacks the Gluon Hopper module ({IMPORT_ERROR})"
    try:
        import torch
    except Exception as exc:
        return False, f"no torch ({exc})"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return _device_ok(torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _device_ok(index):
    """gluon_available's answer for one device (asked once: it runs on every call)."""
    import torch

    cap = torch.cuda.get_device_capability(index)
    if cap != (9, 0):
        return False, f"device is sm{cap[0]}{cap[1]}, this kernel is sm90 (Hopper) only"
    return True, ""


_GL_DTYPES = {}


def gl_dtype(torch_dtype, what):
    """Gluon's dtype for a 16-bit torch dtype; ValueError naming ``what`` otherwise."""
    import torch
    if not _GL_DTYPES:
        _GL_DTYPES.update({torch.bfloat16: gl.bfloat16, torch.float16: gl.float16})
    if torch_dtype not in _GL_DTYPES:
        raise ValueError(f"{what}: dtype {torch_dtype} (fp16/bf16 only)")
    return _GL_DTYPES[torch_dtype]


@functools.lru_cache(maxsize=None)
def smem_layout(rows, head_dim, gdt):
    """The NVMMA shared layout of a (1, rows, head_dim) TMA box (built once per shape)."""
    return gl.NVMMASharedLayout.get_default_for([1, rows, head_dim], gdt)


def desc3(t, rows, head_dim, gdt):
    """3-D TMA descriptor over the (B*H, S, D) view of a contiguous (B, H, S, D) tensor."""
    B, H, S, D = t.shape
    view = t.view(B * H, S, D)
    return TensorDescriptor(view, [B * H, S, D], [S * D, D, 1], [1, rows, head_dim],
                            smem_layout(rows, head_dim, gdt))


def row_mode(t):
    """How a 3-D TMA descriptor with a (1, rows, D) box can address the rows of every
    (batch, head) of a (B, H, S, D) tensor ``t`` (16-bit, 16-byte aligned), or None:

    * ``"bh"``: ``t`` is contiguous; the descriptor is over the (B*H, S, D) view and a head's
      rows start at [b*H + h, 0, 0];
    * ``"bs"``: the heads of one position are adjacent (head stride D, unit dim stride) and the
      batch and sequence strides are 16-byte multiples -- flash-attn's (B, S, H, D) layout,
      seen through ``.transpose(1, 2)``, and q, k or v sliced out of a packed (B, S, 3, H, D)
      tensor; the descriptor is over the (B, S, H*D) view with the sequence stride as its
      row stride, and a head's rows start at [b, 0, h*D].

    Either way rows past S are zero-filled on loads and dropped on stores per (batch, head)."""
    if t.dim() != 4 or t.element_size() != 2 or t.data_ptr() % 16:
        return None
    B, H, S, D = t.shape
    if t.is_contiguous():
        return "bh"
    sb, sh, ss, sd = t.stride()
    if sd == 1 and (sh == D or H == 1) and sb % 8 == 0 and ss % 8 == 0 and ss > 0 and sb > 0:
        return "bs"
    return None


def row_desc(t, rows, head_dim, gdt, mode):
    """The TMA descriptor ``row_mode``'s ``mode`` names, with a (1, rows, head_dim) box."""
    if mode == "bh":
        return desc3(t, rows, head_dim, gdt)
    B, H, S, D = t.shape
    sb, _, ss, _ = t.stride()
    return TensorDescriptor(t, [B, S, H * D], [sb, ss, 1], [1, rows, head_dim],
                            smem_layout(rows, head_dim, gdt))
