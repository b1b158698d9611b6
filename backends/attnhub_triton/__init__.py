"""``triton-fa2``: FlashAttention-2 in Triton, forward and backward, for CUDA GPUs sm80+.

All features run inside the kernels (``_kernels.py``; a lean forward for the common dense
case on sm90 in ``_kernel_lean.py``; launches in ``ops.py``): bottom-right
causal with Sq != Sk, sliding window ``(left, right)``, softcap, GQA/MQA by head index
arithmetic, varlen (``cu_seqlens``), any Sq/Sk, head dims up to 256 (non-powers of two
padded in registers, never in memory), Dv != D, BHSD/BSHD/packed strides, fully masked
rows -> O = 0, LSE = -inf.

Backward: two variants (``ATTNHUB_TRITON_BWD``, or ``variant=`` of
``ops.flash_backward``).  ``split`` (the default): dQ in one kernel, dK/dV in another,
deterministic.  ``atomic``: the FlashAttention-2 paper's single main kernel, dQ added with
float32 atomics -- fewer matmuls, but *not deterministic* (dQ can differ in the last bits
from run to run; refused under ``torch.use_deterministic_algorithms(True)``) and slower
than ``split`` on the H100 so far (see NOTES.md).

Devices: ``("cuda",)``.  When ``TRITON_INTERPRET=1`` is set *before this module is
imported*, the class also declares ``"cpu"``: the same kernels then run in Triton's
interpreter (slow; meant for CI on machines without a GPU).  bf16 is refused on the CPU
because the interpreter multiplies bf16 tiles as raw uint16 (triton <= 3.9).

Importing this module imports neither triton nor the kernels; that happens in
:meth:`TritonFA2Backend.probe` and on the first call.
"""

from __future__ import annotations

import os

import torch

import attnhub
from attnhub.contract import grid_past_65535, rows_past_int32

__all__ = ["TritonFA2Backend"]

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_MIN_TRITON = (3, 4)  # tl.make_tensor_descriptor and tl.range(warp_specialize=...)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class TritonFA2Backend(attnhub.Backend):
    name = "triton-fa2"
    version = attnhub.__version__
    requires_api = ">=1,<2"
    capabilities = attnhub.Capabilities(
        devices=("cuda", "cpu") if _INTERPRET else ("cuda",),
        dtypes=(torch.float16, torch.bfloat16, torch.float32),
        min_compute_capability=(8, 0),
        min_head_dim=16,
        max_head_dim=256,
        different_v_head_dim=True,
        causal=True, gqa=True, window=True, softcap=True, varlen=True,
        backward=True, fp8=False,
        priority=50,
    )

    def probe(self):
        try:
            import triton
        except ImportError:
            return "triton is not installed: pip install attnhub[triton]"
        if _version_tuple(triton.__version__) < _MIN_TRITON:
            need = ".".join(map(str, _MIN_TRITON))
            return f"triton {triton.__version__} is too old (needs >= {need}): pip install -U triton"
        if _INTERPRET:
            return None
        if not torch.cuda.is_available():
            return ("no CUDA device (torch.cuda.is_available() is False); set TRITON_INTERPRET=1 "
                    "before importing attnhub to run the kernels on the CPU (slow, for tests)")
        if torch.version.hip:
            return "ROCm/HIP GPUs are not supported by triton-fa2 (tested on NVIDIA only)"
        cc = torch.cuda.get_device_capability()
        if cc < (8, 0):
            name = torch.cuda.get_device_name()
            return f"{name} is sm{cc[0]}{cc[1]}; triton-fa2 needs sm80 (Ampere) or newer"
        return None

    def not_supported_reasons(self, problem):
        reasons = []
        if problem.device.type == "cpu" and problem.dtype == torch.bfloat16:
            reasons.append("bfloat16 on the CPU (Triton's interpreter computes bf16 dots as "
                           "uint16); use float16/float32 on the CPU or a CUDA GPU")
        for reason in (rows_past_int32(problem), grid_past_65535(problem)):
            if reason:
                reasons.append(reason)
        return reasons

    def forward(self, q, k, v, problem):
        from . import ops
        return ops.flash_forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        from . import ops
        return ops.flash_backward(do, q, k, v, o, lse, problem)

    def cache_tag(self):
        """The ATTNHUB_TRITON_* switches that are set and the sm90 forward's kernel: they
        choose the kernels and tiles behind one version (``ops.kernel_tag``,
        ``ops.forward_tag``)."""
        from . import ops
        return ",".join(t for t in (ops.kernel_tag(), ops.forward_tag()) if t)

    def extra_info(self):
        from . import ops

        def where(default, min_keys):  # "d64 causal from 2048 keys, ..." where on by default
            return ", ".join(sorted(
                f"d{d}{' causal' if c else ''}" + (f" from {n} keys" if n else "")
                for (d, c), on in default.items() if on
                for n in (ops.min_keys_for(min_keys, d, c),)))

        lean = where(ops.LEAN_DEFAULT, ops.LEAN_MIN_KEYS)
        lean_bwd = where(ops.LEAN_BWD_DEFAULT, {})
        pointer = sorted(f"d{d}{' causal' if c else ''}"
                         + (f" up to {span[1]} keys" if span[1] is not None else "")
                         for (d, c), span in ops.POINTER_FWD.items())
        gluon = where(ops.GLUON_DEFAULT, ops.GLUON_MIN_KEYS)
        gluon_mod, gluon_why = ops.gluon_module()
        gluon_bwd = where(ops.GLUON_BWD_DEFAULT, ops.GLUON_BWD_MIN_KEYS)
        bwd_mod, bwd_why = ops.gluon_bwd_module()
        return {"interpreter": _INTERPRET,
                "switches": ops.kernel_tag() or "none set",
                "Gluon forward (sm90, BHSD or BSHD) by default": (
                    gluon or "nowhere") if gluon_mod is not None
                else f"unavailable ({gluon_why})",
                "Gluon backward (sm90, contiguous BHSD) by default": (
                    gluon_bwd or "nowhere (ATTNHUB_TRITON_GLUON_BWD=1 turns it on)")
                if bwd_mod is not None else f"unavailable ({bwd_why})",
                "lean forward by default": lean or "nowhere",
                "pointer-load forward (over lean) by default": ", ".join(pointer) or "nowhere",
                "lean dK/dV by default": lean_bwd or "nowhere",
                "two-part dK/dV by default": ", ".join(
                    f"d{d}" for d, on in sorted(ops.DKDV_PARTS.items()) if on) or "nowhere"}
