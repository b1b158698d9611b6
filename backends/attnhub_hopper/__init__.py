"""``hopper-fa3``: FlashAttention forward for Hopper (sm90).

Two forward kernels.  ``fa3_fwd.cu`` (CUDA C++, NVRTC through CuPy): FlashAttention-3's
producer/consumer warp specialisation (a TMA producer warpgroup, two wgmma consumer
warpgroups, ``setmaxnreg``) with intra-warpgroup softmax/GEMM overlap, for dense fp16/bf16
problems at head dim 64/128/192/256 and those up to a quarter below them (TMA's zero fill:
``cuda_fwd.kernel_head_dim``) without window or softcap (``cuda_fwd.py``).  Everything
else runs the Triton kernel (``kernels.py``):
TMA tensor descriptors, two consumer warpgroups per 128-row tile, software-pipelined
QKᵀ / softmax, causal/window block skipping, and an FP8 (e4m3) path on QGMMA with
FlashAttention-3's descales (see ``kernels.py`` for the kernel, ``NOTES.md`` for what was
tried and measured).  Backward by recomputation from (O, LSE) through the ``triton-fa2``
kernels when installed, except for dense d64/d128/d256 without window/softcap: those run
the warp-specialised CUDA backward (``fa3_bwd.cu``, ``cuda_bwd.py``; ``ATTNHUB_HOPPER_CUDA_BWD=0``
turns it off).

    q8, k8, v8, qd, kd, vd = attnhub.quantize_fp8(q, k, v)
    o = attnhub.attention(q8, k8, v8, q_descale=qd, k_descale=kd, v_descale=vd)  # bf16
"""

from __future__ import annotations

import torch

import attnhub
from attnhub import reference
from attnhub.contract import grid_past_65535, rows_past_int32

__all__ = ["HopperFA3Backend"]

_HEAD_DIMS = (64, 96, 128, 160, 192, 224, 256)


class HopperFA3Backend(attnhub.Backend):
    name = "hopper-fa3"
    version = attnhub.__version__
    requires_api = ">=1,<2"
    capabilities = attnhub.Capabilities(
        devices=("cuda",),
        dtypes=(torch.float16, torch.bfloat16),
        min_compute_capability=(9, 0),
        max_compute_capability=(9, 0),
        head_dims=_HEAD_DIMS,
        different_v_head_dim=True,
        causal=True, gqa=True, window=True, softcap=True, varlen=True,
        backward=True, fp8=True,
        priority=30,
    )

    def probe(self):
        if not torch.cuda.is_available():
            return "no CUDA device"
        cc = torch.cuda.get_device_capability()
        if tuple(cc) != (9, 0):
            name = torch.cuda.get_device_name()
            return f"needs an sm90 GPU (Hopper); found {name} (sm{cc[0]}{cc[1]})"
        try:
            import triton  # noqa: F401
            from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401
        except ImportError as exc:
            return (f"needs triton >= 3.4 with tensor descriptors ({exc}); "
                    "pip install 'triton>=3.4'")
        return None

    def not_supported_reasons(self, problem):
        out = []
        if problem.is_fp8:
            if problem.dtype != torch.float8_e4m3fn:
                out.append(f"fp8 dtype {problem.dtype} (supported: float8_e4m3fn)")
            if problem.is_varlen:
                out.append("fp8 with varlen (FP8 needs dense (B, H, S, D) inputs)")
        # the Triton kernels' in-sequence int32 offsets and (m, head, batch) grid
        for reason in (rows_past_int32(problem), grid_past_65535(problem)):
            if reason:
                out.append(reason)
        return out

    def forward(self, q, k, v, problem):
        from . import cuda_fwd

        if cuda_fwd.unsupported_reason(q, k, v, problem) is None:
            return cuda_fwd.forward(q, k, v, problem)
        from . import ops

        return ops.forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        from . import cuda_bwd

        if cuda_bwd.unsupported_reason(q, k, v, problem) is None:
            return cuda_bwd.backward(do, q, k, v, o, lse, problem)
        try:
            from attnhub_triton.ops import flash_backward
        except ImportError:  # triton-fa2 not installed: the reference recomputation
            return reference.backward(do, q, k, v, o, lse, problem)
        return flash_backward(do, q, k, v, o, lse, problem)

    def cache_tag(self):
        """Which forward and backward run (CUDA or Triton): ATTNHUB_HOPPER_CUDA,
        ATTNHUB_HOPPER_CUDA_BWD, ATTNHUB_HOPPER_BWD_TILE and CuPy's presence change the
        kernels behind one version; on triton-fa2's backward, so do its switches
        (``[bwd=atomic]`` etc. when set)."""
        from . import cuda_bwd, cuda_fwd

        cuda = cuda_fwd.installed_reason() is None
        tag = (f"fwd-{'cuda' if cuda else 'triton'}"
               f"+bwd-{'cuda' if cuda and cuda_bwd.enabled() else 'triton'}")
        variant = cuda_bwd.tile_override()
        if tag.endswith("cuda") and variant:
            tag += f"[{variant}]"
        if tag.endswith("triton"):
            try:
                from attnhub_triton.ops import kernel_tag
            except ImportError:  # the reference recomputation: no switches
                return tag
            switches = kernel_tag()
            if switches:
                tag += f"[{switches}]"
        return tag

    def extra_info(self):
        from . import cuda_bwd, cuda_fwd

        cuda = cuda_fwd.installed_reason()
        if not cuda_bwd.enabled():
            backward = ("triton-fa2's kernels (the CUDA backward, fa3_bwd.cu, is off: "
                        "ATTNHUB_HOPPER_CUDA_BWD=0 or the CUDA forward is off)")
        elif cuda is not None:
            backward = f"triton-fa2's kernels (CUDA backward unavailable: {cuda})"
        else:
            backward = ("warp-specialised CUDA (fa3_bwd.cu) for dense d64/128/256 without "
                        "window/softcap, triton-fa2's otherwise")
            if cuda_bwd.PADDED_UNVERIFIED and not cuda_fwd.unverified_allowed():
                backward += ("; head dims up to a quarter below d128/256 "
                             f"(cuda_bwd.kernel_head_dim): {cuda_bwd.PADDED_UNVERIFIED}")
        waits = {d: cuda_fwd._unverified_reason(d) for d in cuda_fwd.HEAD_DIMS}
        dims = "/".join(str(d) for d, why in waits.items() if not why)
        held = [f"d{d}: {why}" for d, why in waits.items() if why]
        if cuda_fwd.PADDED_UNVERIFIED and not cuda_fwd.unverified_allowed():
            held.append("head dims up to a quarter below a kernel's (cuda_fwd.kernel_head_dim): "
                        + cuda_fwd.PADDED_UNVERIFIED)
        return {"head_dims": list(_HEAD_DIMS), "fp8": "float8_e4m3fn, descales (B, Hk)",
                "forward": (f"warp-specialised CUDA (fa3_fwd.cu) for dense d{dims} "
                            "without window/softcap, Triton otherwise"
                            + "".join(f"; {h}" for h in held)) if cuda is None
                else f"Triton (CUDA forward off: {cuda})",
                "backward": backward}
