"""The attnhub plugin contract: everything a backend author needs, in one module.

A backend is a subclass of :class:`Backend` registered under the entry-point group
``attnhub.backends``.  It declares what it can do as data (:class:`Capabilities`), says
whether it can run on this machine (:meth:`Backend.probe`), refuses problems it cannot run
with reasons (:meth:`Backend.not_supported_reasons`), and computes ``(O, LSE)`` in
:meth:`Backend.forward`.  It may implement :meth:`Backend.backward`; otherwise the core
recomputes the gradients blockwise from ``(q, k, v, O, LSE)``.

Tensor layouts seen by a backend (possibly strided views: BSHD, slices of a packed QKV
buffer; the core copies only a view whose head dim, the last, is not unit-stride, so
``t.stride(-1) == 1`` always holds for q, k, v, and for O and dO in the backward -- except
FP8 inputs, passed as given: ``attnhub.quantize_fp8`` stores V sequence-major)::

    dense   q: (B, Hq, Sq, D)   k: (B, Hk, Sk, D)   v: (B, Hk, Sk, Dv)
            O: (B, Hq, Sq, Dv)  LSE: (B, Hq, Sq) float32
    varlen  q: (total_q, Hq, D) k: (total_k, Hk, D) v: (total_k, Hk, Dv)
            O: (total_q, Hq, Dv) LSE: (Hq, total_q) float32

Semantics (owned by :mod:`attnhub.reference`): ``O = softmax(mask(softcap(scale * Q K^T))) V``,
causal masks are aligned bottom-right, a query row with no allowed key gets ``O = 0`` and
``LSE = -inf``.  Varlen buffers may be longer than their sequences (``cu_seqlens[-1] <
total``, as flash-attn allows); a backend need not touch the rows past the end: the core
sets their O to 0, LSE to -inf and their gradients to 0.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar, Optional, Sequence

import torch

__all__ = [
    "PLUGIN_API_VERSION",
    "Capabilities",
    "Problem",
    "Backend",
    "BackendInfo",
    "ContractViolation",
    "FP8_DTYPES",
    "result_violations",
    "INT32_OFFSETS",
    "int32_safe",
    "rows_past_int32",
    "grid_past_65535",
]

#: Version of this contract.  Backends declare ``requires_api`` as a packaging specifier
#: against it (e.g. ``">=1,<2"``).  Bump the minor for additions, the major for breaks.
# 1.1: Backend.cache_tag; 1.2: int32_safe / rows_past_int32, unit-stride head dims and
# zeroed varlen padding rows guaranteed by the core
PLUGIN_API_VERSION = "1.2"

#: Statuses a backend can have in :class:`BackendInfo`.
STATUSES = ("available", "unavailable", "broken", "incompatible", "disabled")

FP8_DTYPES = tuple(
    getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name)
)

FEATURES = ("causal", "gqa", "window", "softcap", "varlen", "backward", "fp8")


class ContractViolation(RuntimeError):
    """A backend returned something the contract does not allow (shape, dtype, device)."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared as data.

    The core checks every field itself (see :meth:`reasons`); a backend's own
    ``not_supported_reasons`` only adds checks that cannot be expressed here.

    ``backward=True`` means the backend implements :meth:`Backend.backward`; a backend with
    ``backward=False`` is still usable under autograd: the core recomputes the gradients from
    its O and LSE.
    """

    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
    min_compute_capability: Optional[tuple[int, int]] = None  # CUDA only
    max_compute_capability: Optional[tuple[int, int]] = None  # CUDA only, inclusive
    min_head_dim: int = 1
    max_head_dim: int = 256
    head_dim_multiple: int = 1
    head_dims: Optional[tuple[int, ...]] = None  # an explicit set, when not a range
    different_v_head_dim: bool = True  # Dv != D allowed
    causal: bool = True
    gqa: bool = True
    window: bool = False
    softcap: bool = False
    varlen: bool = False
    backward: bool = False
    fp8: bool = False
    #: Order of preference when nothing is measured (ATTNHUB_AUTOTUNE=0, torch.compile
    #: tracing, CUDA graph capture).  Higher wins; ``naive`` uses 0.
    priority: int = 10

    def features(self) -> tuple[str, ...]:
        return tuple(f for f in FEATURES if getattr(self, f))

    def head_dim_text(self) -> str:
        if self.head_dims is not None:
            return ",".join(str(d) for d in self.head_dims)
        text = f"{self.min_head_dim}..{self.max_head_dim}"
        if self.head_dim_multiple > 1:
            text += f" (multiple of {self.head_dim_multiple})"
        return text

    def _head_dim_reason(self, what: str, d: int) -> Optional[str]:
        if self.head_dims is not None:
            if d not in self.head_dims:
                return f"{what}={d} (supported: {self.head_dim_text()})"
            return None
        if not (self.min_head_dim <= d <= self.max_head_dim) or d % self.head_dim_multiple:
            return f"{what}={d} (supported: {self.head_dim_text()})"
        return None

    def reasons(self, problem: "Problem") -> list[str]:
        """Every way ``problem`` falls outside these capabilities (empty: supported)."""
        out: list[str] = []
        dev = problem.device
        if dev.type not in self.devices:
            out.append(f"device {dev.type!r} (supported: {', '.join(self.devices)})")
        elif dev.type == "cuda" and (self.min_compute_capability or self.max_compute_capability):
            cc = _cuda_capability(dev)
            if self.min_compute_capability and cc < tuple(self.min_compute_capability):
                lo = "sm%d%d" % tuple(self.min_compute_capability)
                out.append(f"compute capability sm{cc[0]}{cc[1]} (needs {lo} or newer)")
            if self.max_compute_capability and cc > tuple(self.max_compute_capability):
                hi = "sm%d%d" % tuple(self.max_compute_capability)
                out.append(f"compute capability sm{cc[0]}{cc[1]} (supported up to {hi})")
        if problem.is_fp8:
            if not self.fp8:
                out.append(f"fp8 inputs ({_dtype_name(problem.dtype)}) not supported")
        elif problem.dtype not in self.dtypes:
            names = ", ".join(_dtype_name(d) for d in self.dtypes)
            out.append(f"dtype {_dtype_name(problem.dtype)} (supported: {names})")
        for what, d in (("head_dim", problem.head_dim), ("head_dim_v", problem.head_dim_v)):
            reason = self._head_dim_reason(what, d)
            if reason:
                out.append(reason)
        if problem.head_dim_v != problem.head_dim and not self.different_v_head_dim:
            out.append(f"head_dim_v={problem.head_dim_v} != head_dim={problem.head_dim}")
        for feature in ("causal", "window", "softcap", "varlen"):
            if getattr(problem, "is_" + feature) and not getattr(self, feature):
                out.append(f"{feature} not supported")
        if problem.is_gqa and not self.gqa:
            out.append(f"GQA/MQA (heads_q={problem.heads_q}, heads_kv={problem.heads_kv}) not supported")
        return out


_CC_CACHE: dict[int, tuple[int, int]] = {}


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CC_CACHE:
        _CC_CACHE[index] = tuple(torch.cuda.get_device_capability(index))
    return _CC_CACHE[index]


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One attention call, resolved: every default filled in, every argument validated.

    ``window`` is ``None`` or ``(left, right)`` with ``-1`` meaning unbounded; ``softcap`` is
    ``None`` or a positive float; ``scale`` is always a float.  For varlen problems
    ``batch`` is the number of sequences, ``seqlen_q``/``seqlen_k`` are the totals
    (``total_q``/``total_k``) and ``cu_seqlens_*``/``max_seqlen_*`` are set.
    """

    batch: int
    heads_q: int
    heads_kv: int
    seqlen_q: int
    seqlen_k: int
    head_dim: int
    head_dim_v: int
    dtype: torch.dtype
    device: torch.device
    causal: bool = False
    scale: float = 1.0
    window: Optional[tuple[int, int]] = None
    softcap: Optional[float] = None
    cu_seqlens_q: Optional[torch.Tensor] = None
    cu_seqlens_k: Optional[torch.Tensor] = None
    max_seqlen_q: Optional[int] = None
    max_seqlen_k: Optional[int] = None
    requires_grad: bool = False
    # FP8 only: float32 (B, Hk) descale factors, ``None`` meaning 1.
    q_descale: Optional[torch.Tensor] = None
    k_descale: Optional[torch.Tensor] = None
    v_descale: Optional[torch.Tensor] = None

    # -- derived facts -------------------------------------------------------------------
    @property
    def is_varlen(self) -> bool:
        return self.cu_seqlens_q is not None

    @property
    def is_causal(self) -> bool:
        return self.causal

    @property
    def is_window(self) -> bool:
        return self.window is not None and self.window != (-1, -1)

    @property
    def is_softcap(self) -> bool:
        return self.softcap is not None

    @property
    def is_gqa(self) -> bool:
        return self.heads_q != self.heads_kv

    @property
    def is_fp8(self) -> bool:
        return self.dtype in FP8_DTYPES

    @property
    def group_size(self) -> int:
        """Query heads per K/V head (1 for MHA)."""
        return self.heads_q // self.heads_kv

    @property
    def out_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.is_fp8 else self.dtype

    @property
    def window_bounds(self) -> tuple[int, int]:
        """``(left, right)`` with -1 for unbounded, causal folded in (right = 0)."""
        left, right = self.window if self.window is not None else (-1, -1)
        if self.causal:
            right = 0 if right < 0 else min(right, 0)
        return left, right

    def features(self) -> tuple[str, ...]:
        names = []
        for feature in ("causal", "gqa", "window", "softcap", "varlen", "fp8"):
            if getattr(self, "is_" + feature):
                names.append(feature)
        return tuple(names)

    def flops(self, direction: str = "fwd") -> float:
        """Matmul FLOPs (4·B·Hq·Sq·Sk·D for the dense forward, halved when causal with Sq=Sk;
        backward = 2.5 × forward), the FlashAttention papers' accounting."""
        if self.is_varlen:
            lens_q = (self.cu_seqlens_q[1:] - self.cu_seqlens_q[:-1]).tolist()
            lens_k = (self.cu_seqlens_k[1:] - self.cu_seqlens_k[:-1]).tolist()
            pairs = sum(a * b for a, b in zip(lens_q, lens_k))
        else:
            pairs = self.batch * self.seqlen_q * self.seqlen_k
        f = 2.0 * pairs * self.heads_q * (self.head_dim + self.head_dim_v)
        if self.causal:
            f /= 2
        return f * (2.5 if direction == "bwd" else 1.0)

    def describe(self) -> str:
        parts = [
            f"B={self.batch}",
            f"Hq={self.heads_q}",
            f"Hk={self.heads_kv}",
            f"Sq={self.seqlen_q}",
            f"Sk={self.seqlen_k}",
            f"D={self.head_dim}" + (f"/Dv={self.head_dim_v}" if self.head_dim_v != self.head_dim else ""),
            _dtype_name(self.dtype),
            str(self.device),
        ]
        parts += list(self.features())
        if not math.isclose(self.scale, self.head_dim ** -0.5, rel_tol=1e-6):
            parts.append(f"scale={self.scale:g}")
        if self.requires_grad:
            parts.append("+grad")
        return " ".join(parts)


class Backend(abc.ABC):
    """Base class of every attnhub backend (first-party and third-party alike).

    Subclasses set the class attributes and implement :meth:`forward`; everything else has
    a working default.  Keep ``__init__`` cheap and argument-free: the registry instantiates
    the class once, and heavy imports (triton, pyopencl, cupy) belong in :meth:`probe` or
    the first :meth:`forward`, never at module import.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    requires_api: ClassVar[str] = ">=1,<2"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def probe(self) -> Optional[str]:
        """``None`` if this backend can run on this machine, else a reason saying why not and
        what to install or change."""
        return None

    def not_supported_reasons(self, problem: Problem) -> list[str]:
        """Reasons beyond the declared capabilities why ``problem`` cannot run here."""
        return []

    @abc.abstractmethod
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(O, LSE)``; layouts in this module's docstring."""

    def backward(self, do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 o: torch.Tensor, lse: torch.Tensor,
                 problem: Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(dq, dk, dv)`` shaped like ``(q, k, v)``.  Only called when
        ``capabilities.backward`` is true."""
        raise NotImplementedError(f"backend {self.name!r} has no backward")

    def extra_info(self) -> dict[str, Any]:
        """Free-form facts shown by ``attnhub list-backends --json`` (devices found, ...)."""
        return {}

    def cache_tag(self) -> str:
        """What, beyond ``name@version``, decides which kernels run (a switch read from the
        environment, an optional dependency found or not).  It is part of the dispatch
        cache's keys, so a correctness verdict or a timing earned by one configuration is
        never reused for another.  Empty by default; keep it short and cheap (plugin API
        1.1)."""
        return ""


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """What the registry knows about one backend."""

    name: str
    version: str
    origin: str  # the distribution that registered it, e.g. "attnhub" or "attnhub-torch-sdpa"
    status: str  # one of STATUSES
    reason: str  # why it is not available ("" when it is)
    capabilities: Optional[Capabilities]
    entry_point: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.status == "available"


def result_violations(problem: Problem, o: Any, lse: Any) -> list[str]:
    """How ``(o, lse)`` breaks the contract for ``problem`` (empty: it does not)."""
    if problem.is_varlen:
        o_shape = (problem.seqlen_q, problem.heads_q, problem.head_dim_v)
        lse_shape = (problem.heads_q, problem.seqlen_q)
    else:
        o_shape = (problem.batch, problem.heads_q, problem.seqlen_q, problem.head_dim_v)
        lse_shape = (problem.batch, problem.heads_q, problem.seqlen_q)
    out = []
    for what, t, shape, dtype in (("O", o, o_shape, problem.out_dtype),
                                  ("LSE", lse, lse_shape, torch.float32)):
        if not isinstance(t, torch.Tensor):
            out.append(f"{what} is {type(t).__name__}, expected a torch.Tensor")
            continue
        if tuple(t.shape) != shape:
            out.append(f"{what} has shape {tuple(t.shape)}, expected {shape}")
        if t.dtype != dtype:
            out.append(f"{what} has dtype {_dtype_name(t.dtype)}, expected {_dtype_name(dtype)}")
        if t.device != problem.device:
            out.append(f"{what} is on {t.device}, expected {problem.device}")
    return out


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0


def normalize_window(window: Optional[Sequence[int]]) -> Optional[tuple[int, int]]:
    """``None``/``(-1, -1)`` → ``None``; otherwise a validated ``(left, right)`` tuple."""
    if window is None:
        return None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2:
        raise ValueError(f"window={window!r}: expected None or (left, right) with ints >= -1 "
                         "(-1: unbounded), e.g. window=(256, 0)")
    left, right = window
    for side, value in (("left", left), ("right", right)):
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise ValueError(f"window={window!r}: {side}={value!r} must be an int >= -1 "
                             "(-1: unbounded)")
    if (left, right) == (-1, -1):
        return None
    return (int(left), int(right))


# -- helpers for kernels that index with int32 ---------------------------------------------
#: Kernels commonly index inside one (sequence, head) with int32 offsets (row x sequence
#: stride + column) from int64 (batch, head, sequence start) bases.
INT32_OFFSETS = 2 ** 31


def _span(t: torch.Tensor, rows: int) -> int:
    """Elements from the first to the last element of ``rows`` rows of one (sequence, head)
    of ``t`` ((B, H, S, D) or varlen (total, H, D))."""
    seq = t.stride(2 if t.dim() == 4 else 0)
    return (max(rows, 1) - 1) * seq + (t.shape[-1] - 1) * t.stride(-1) + 1


def int32_safe(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t``, or a head-major copy of it (sequence stride = head dim) when the offsets of its
    ``rows`` rows within one (sequence, head) would pass 2**31 elements.  BSHD and packed
    layouts get there at long sequences (Hq = 32, D = 128 BSHD from 512k rows), and int32
    offsets then wrap and read out of bounds.  :func:`rows_past_int32` says when even the copy
    would not fit (refuse those problems).  Outputs allocated "like q" follow the copy."""
    if _span(t, rows) < INT32_OFFSETS:
        return t
    if t.dim() == 4:
        return t.contiguous()
    return t.transpose(0, 1).contiguous().transpose(0, 1)


def rows_past_int32(problem: Problem) -> Optional[str]:
    """Why even head-major tensors of ``problem`` pass int32 offsets within one (sequence,
    head), as a reason for :meth:`Backend.not_supported_reasons`; None when they fit."""
    rows = (max(problem.max_seqlen_q or 0, problem.max_seqlen_k or 0) if problem.is_varlen
            else max(problem.seqlen_q, problem.seqlen_k))
    d = max(problem.head_dim, problem.head_dim_v)
    if rows * d >= INT32_OFFSETS:
        return (f"{rows} rows x head dim {d} pass 2**31 elements within one (sequence, head): "
                "the kernels index there with int32 offsets")
    return None


def grid_past_65535(problem: Problem) -> Optional[str]:
    """Why a kernel whose grid takes the batch and the query heads as its y and z dimensions
    (each at most 65535) cannot launch ``problem``, as a reason; None when it can."""
    if problem.batch > 65535 or problem.heads_q > 65535:
        return (f"batch={problem.batch}, heads_q={problem.heads_q}: the kernels' grids take "
                "each as one dimension, at most 65535 (split the batch)")
    return None
