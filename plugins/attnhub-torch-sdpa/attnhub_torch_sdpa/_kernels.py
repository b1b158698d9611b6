"""torch's fused attention kernels, called through the aten ops that return the logsumexp.

Each :class:`SubKernel` computes *plain* attention on dense BHSD tensors (possibly strided
views): no mask, or causal with torch's top-left alignment.  attnhub's causal mask is aligned
bottom-right; the two agree only when ``Sq == Sk``.  :mod:`attnhub_torch_sdpa._driver` turns
every bottom-right problem into calls that are either unmasked or square, except for
FlashAttention-2, whose ``is_causal`` already means bottom-right (see ``native_bottom_right``).

Conventions of the ops, as read from torch 2.11/2.13 (``_meta_registrations.py`` and the CUDA
sources) and checked numerically by the conformance kit:

=============  ==================================  ==========================================
sub-kernel     aten op                             logsumexp returned
=============  ==================================  ==========================================
cpu-flash      _scaled_dot_product_flash_          (B, H, Sq) float32, natural log, a view
               attention_for_cpu                   of a (B, Sq, H) buffer
flash          _scaled_dot_product_flash_          (B, H, Sq) float32, natural log; +inf for
               attention  (FlashAttention-2)       a row that sees no key
cudnn          _scaled_dot_product_cudnn_          (B, H, Sq, 1) float32, natural log
               attention
efficient      _scaled_dot_product_efficient_      (B, H, ceil(Sq / 32) * 32) float32, natural
               attention  (xformers cutlass)       log; padded, so sliced to Sq
=============  ==================================  ==========================================

None of the ops materialises a repeated K/V: GQA is native in cpu-flash, flash and cudnn; the
efficient op has none, so that sub-kernel refuses GQA instead of repeating K/V.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

_HALF = (torch.float16, torch.bfloat16)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@functools.lru_cache(maxsize=None)
def _capability(index: int) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(index))


def _cc(device: torch.device) -> tuple[int, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _capability(index)


def _no_rng(device: torch.device) -> torch.Tensor:
    """Placeholder philox seed/offset: read by the backward ops only when dropout > 0."""
    return torch.zeros(2, dtype=torch.int64, device=device)


def key_lengths(problem) -> tuple[int, ...]:
    """Key lengths of the calls :mod:`._driver` makes for ``problem`` without native
    bottom-right causal: ``(Sk - Sq, Sq)`` for causal with Sq < Sk, else ``(Sk,)``."""
    Sq, Sk = problem.seqlen_q, problem.seqlen_k
    if problem.causal and Sq < Sk:
        return (Sk - Sq, Sq)
    return (Sk,)


class SubKernel:
    """One torch kernel: what it accepts (``reasons``) and how to call it."""

    name: str = ""
    device_type: str = "cuda"
    dtypes: tuple[torch.dtype, ...] = _HALF
    min_cc: Optional[tuple[int, int]] = (8, 0)
    #: ``is_causal`` with Sq != Sk means bottom-right (FlashAttention-2 >= 2.1 semantics).
    native_bottom_right: bool = False
    gqa: bool = True
    same_v_head_dim: bool = True

    def head_dim_reasons(self, d: int, dv: int, dtype: torch.dtype,
                         device: torch.device) -> list[str]:
        raise NotImplementedError

    def available(self) -> Optional[str]:
        """``None`` if torch on this machine has this kernel, else why not."""
        if self.device_type == "cuda" and not torch.cuda.is_available():
            return "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
        return None

    def reasons(self, problem) -> list[str]:
        """Why this kernel cannot run ``problem`` (empty: it can).  Varlen, window, softcap
        and fp8 are refused by the backend's declared capabilities before we get here."""
        out: list[str] = []
        dev = problem.device
        if dev.type != self.device_type:
            return [f"device {dev.type!r} (supported: {self.device_type})"]
        missing = self.available()
        if missing:
            return [missing]
        if self.min_cc is not None:
            cc = _cc(dev)
            if cc < self.min_cc:
                out.append(f"compute capability sm{cc[0]}{cc[1]} (needs sm{self.min_cc[0]}"
                           f"{self.min_cc[1]} or newer)")
        if problem.dtype not in self.dtypes:
            names = ", ".join(_dtype_name(d) for d in self.dtypes)
            out.append(f"dtype {_dtype_name(problem.dtype)} (supported: {names})")
        if problem.dtype == torch.bfloat16 and self.device_type == "cuda" and not out:
            if _cc(dev) < (8, 0):
                out.append("bfloat16 needs sm80 or newer")
        if self.same_v_head_dim and problem.head_dim_v != problem.head_dim:
            out.append(f"head_dim_v={problem.head_dim_v} != head_dim={problem.head_dim}")
        out += self.head_dim_reasons(problem.head_dim, problem.head_dim_v, problem.dtype, dev)
        if problem.causal and not problem.scale > 0:
            # torch applies the mask as -inf before the scale: -inf * 0 and -inf * (-c) give
            # NaN rows (seen with the CPU flash kernel, torch 2.13; the CUDA kernels scale the
            # same way)
            out.append(f"scale={problem.scale} with a causal mask (torch's fused kernels "
                       "return NaN when the mask's -inf is multiplied by a scale <= 0)")
        if problem.is_gqa and not self.gqa:
            out.append(f"GQA/MQA (heads_q={problem.heads_q}, heads_kv={problem.heads_kv}): "
                       "the kernel has no native GQA and K/V would have to be repeated")
        return out

    def forward(self, q, k, v, causal: bool, scale: float):
        """Plain attention (top-left causal).  Returns O (B, H, Sq, Dv) and the natural-log
        LSE (B, H, Sq) float32."""
        raise NotImplementedError

    def backward(self, do, q, k, v, o, lse, causal: bool, scale: float):
        """``(dq, dk, dv)`` from the forward's O and LSE (which may be the merged O/LSE of a
        larger problem: the ops recompute P = exp(S - LSE), so partial key ranges work)."""
        raise NotImplementedError


class CpuFlash(SubKernel):
    """``_scaled_dot_product_flash_attention_for_cpu``: torch's CPU flash kernel."""

    name = "cpu-flash"
    device_type = "cpu"
    dtypes = (torch.float16, torch.bfloat16, torch.float32)
    min_cc = None
    max_head_dim = 512  # checked up to here; the kernel has no hard limit

    def head_dim_reasons(self, d, dv, dtype, device):
        if not 1 <= d <= self.max_head_dim:
            return [f"head_dim={d} (supported: 1..{self.max_head_dim})"]
        return []

    def forward(self, q, k, v, causal, scale):
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=None, scale=scale)
        return o, lse

    def backward(self, do, q, k, v, o, lse, causal, scale):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            do, q, k, v, o, lse, 0.0, causal, attn_mask=None, scale=scale)


class Flash(SubKernel):
    """``_scaled_dot_product_flash_attention``: FlashAttention-2 vendored in torch."""

    name = "flash"
    native_bottom_right = True

    def available(self):
        reason = super().available()
        if reason:
            return reason
        if not torch.backends.cuda.is_flash_attention_available():
            return "this torch build has no flash attention (is_flash_attention_available())"
        return None

    def head_dim_reasons(self, d, dv, dtype, device):
        if d % 8 or not 8 <= d <= 256:
            return [f"head_dim={d} (supported: 8..256, multiple of 8)"]
        return []

    def forward(self, q, k, v, causal, scale):
        return self._forward_op(q, k, v, causal, scale)

    def backward(self, do, q, k, v, o, lse, causal, scale):
        # FlashAttention-2 marks a row with no allowed key by LSE = +inf (so P = 0 in its
        # backward); the contract's -inf (set by the driver) would give exp(+inf).  Undo it.
        lse = lse.masked_fill(lse == float("-inf"), float("inf")).contiguous()
        return self._backward_op(do, q, k, v, o, lse, causal, scale)

    # The raw ops (tests replace these to exercise the conventions on the CPU).
    def _forward_op(self, q, k, v, causal, scale):
        out = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, causal, False, scale=scale)
        return out[0], out[1]

    def _backward_op(self, do, q, k, v, o, lse, causal, scale):
        rng = _no_rng(q.device)
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
            do, q, k, v, o, lse, None, None, q.shape[2], k.shape[2], 0.0, causal, rng, rng,
            scale=scale)
        return dq, dk, dv


class Cudnn(SubKernel):
    """``_scaled_dot_product_cudnn_attention``: cuDNN's fused attention (cuDNN >= 9)."""

    name = "cudnn"
    same_v_head_dim = False

    def available(self):
        reason = super().available()
        if reason:
            return reason
        if not torch.backends.cudnn.is_available():
            return "this torch build has no cuDNN"
        if (torch.backends.cudnn.version() or 0) < 90000:
            return f"cuDNN {torch.backends.cudnn.version()} (needs 9.0 or newer)"
        return None

    def _max_head_dim(self, device) -> int:
        # torch's own gate (sdp_utils.cpp, check_cudnn_tensor_shapes): 256 on sm90 with
        # cuDNN >= 9.10, else 128.
        if (torch.backends.cudnn.version() or 0) >= 91000 and _cc(device) == (9, 0):
            return 256
        return 128

    def head_dim_reasons(self, d, dv, dtype, device):
        hi = self._max_head_dim(device)
        out = []
        for what, x in (("head_dim", d), ("head_dim_v", dv)):
            if x % 8 or not 8 <= x <= hi:
                out.append(f"{what}={x} (supported: 8..{hi}, multiple of 8)")
        return out

    def reasons(self, problem):
        out = super().reasons(problem)
        if not out and min(key_lengths(problem)) == 1:
            # causal Sq < Sk runs as two calls, over keys[:Sk-Sq] and keys[Sk-Sq:]
            out.append(f"a call over a single key (Sq={problem.seqlen_q}, "
                       f"Sk={problem.seqlen_k}{', causal' if problem.causal else ''}): "
                       "cuDNN needs at least 2 keys")
        return out

    def forward(self, q, k, v, causal, scale):
        out = torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, k, v, None, True, 0.0, causal, False, scale=scale)
        o, lse = out[0], out[1]
        return o, lse.reshape(lse.shape[0], lse.shape[1], lse.shape[2])

    def backward(self, do, q, k, v, o, lse, causal, scale):
        # torch caches cuDNN's backward graph by q/k/v layout only (MHA.cpp), with the
        # strides of O, dO and the stats of the first call baked in: the driver passes dO
        # laid out like O (O is laid out like q), the stats go contiguous as made.
        rng = _no_rng(q.device)
        stats = lse.contiguous().unsqueeze(-1)  # the op's (B, H, Sq, 1) layout
        dq, dk, dv = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            do, q, k, v, o, stats, rng, rng, None, None, None, q.shape[2], k.shape[2], 0.0,
            causal, scale=scale)
        return dq, dk, dv


class Efficient(SubKernel):
    """``_scaled_dot_product_efficient_attention``: the xformers cutlass kernel in torch."""

    name = "efficient"
    dtypes = (torch.float16, torch.bfloat16, torch.float32)
    min_cc = (5, 0)
    gqa = False
    same_v_head_dim = False
    max_head_dim = 256  # checked up to here

    def available(self):
        reason = super().available()
        if reason:
            return reason
        if not torch.backends.cuda.is_flash_attention_available():
            # torch builds both fused kernels together (USE_FLASH_ATTENTION/USE_MEM_EFF).
            return "this torch build has no fused attention kernels"
        return None

    def head_dim_reasons(self, d, dv, dtype, device):
        # torch's gate (sdp_utils.cpp, minimum_gemm_alignment): 8 elements for 16-bit
        # inputs on tensor cores, 4 for float32.
        align = 8 if dtype in _HALF else 4
        out = []
        for what, x in (("head_dim", d), ("head_dim_v", dv)):
            if x % align or not align <= x <= self.max_head_dim:
                out.append(f"{what}={x} (supported for {_dtype_name(dtype)}: "
                           f"{align}..{self.max_head_dim}, multiple of {align})")
        return out

    def reasons(self, problem):
        out = super().reasons(problem)
        if not out and problem.requires_grad and problem.causal \
                and problem.seqlen_q > problem.seqlen_k:
            # Measured on the H100 (torch 2.11): on the row-sliced path for Sq > Sk the op's
            # backward returns wrong dK (conformance check backward-fully-masked-rows,
            # error 4.9 vs bound 0.054).  Refuse rather than answer wrongly.
            out.append(f"causal with Sq={problem.seqlen_q} > Sk={problem.seqlen_k} under "
                       "autograd: the efficient kernel's backward is wrong on this path")
        return out

    def forward(self, q, k, v, causal, scale):
        o, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, 0.0, causal, scale=scale)
        return o, lse[:, :, : q.shape[2]]

    def backward(self, do, q, k, v, o, lse, causal, scale):
        B, H, Sq = lse.shape
        # The op writes O as (B, S, H, D) in memory and its backward reads O and dO that way;
        # a BHSD-contiguous O (as attnhub's compiled path hands back) gave dQ/dK errors of
        # ~1.0 on the H100 (2026-11-23) while dV stayed right (rowsum(dO*O) misread).
        o, do = _bshd_contiguous(o), _bshd_contiguous(do)
        # The op's own layout: rows padded to a multiple of 32 (padding never read as a row).
        padded = lse.new_full((B, H, -(-Sq // 32) * 32), float("inf"))
        padded[:, :, :Sq] = lse
        rng = _no_rng(q.device)
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            do, q, k, v, None, o, padded, rng, rng, 0.0, [True, True, True, False], causal,
            scale=scale)
        return dq, dk, dv


def _bshd_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` (B, H, S, D) whose memory is (B, S, H, D)-contiguous; a copy only if needed."""
    if t.transpose(1, 2).is_contiguous():
        return t
    return t.transpose(1, 2).contiguous().transpose(1, 2)


CPU_FLASH = CpuFlash()
FLASH = Flash()
CUDNN = Cudnn()
EFFICIENT = Efficient()
