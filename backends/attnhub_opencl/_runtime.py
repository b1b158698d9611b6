"""The OpenCL side of the backend: context, program cache, zero-copy buffers, launches.

Imported lazily (it imports pyopencl at module import).
"""

from __future__ import annotations

import ctypes
import math
import pathlib
import threading
import warnings
from typing import Optional

import numpy as np
import pyopencl as cl
import torch

from attnhub.contract import Problem

from . import _device

__all__ = ["BuildError", "Runtime"]

_HERE = pathlib.Path(__file__).resolve().parent
_LOG2E = 1.4426950408889634
_PREP_WG = 64  # work-items per group of the Δ pre-pass


class BuildError(RuntimeError):
    """An OpenCL program failed to build; the message holds the options and the build log."""


def _source(name: str) -> str:
    return (_HERE / "common.cl").read_text() + "\n" + (_HERE / name).read_text()


class _Buffers:
    """Zero-copy ``cl.Buffer`` views of torch CPU tensors' storages, one per storage.

    ``USE_HOST_PTR`` over the whole storage, so strided views (BSHD transposes, slices of a
    packed QKV buffer) are passed as ``(buffer, element offset, strides)`` and never copied.
    On devices that share host memory (PoCL, integrated GPUs) the kernel reads and writes the
    tensors in place; elsewhere the driver copies, and :meth:`sync` maps outputs back.
    """

    def __init__(self, rt: "Runtime"):
        self._rt = rt
        self._by_ptr: dict[int, cl.Buffer] = {}
        self._outputs: list[cl.Buffer] = []
        self.keep: tuple = ()  # host tensors that must outlive the launch

    def __call__(self, t: Optional[torch.Tensor], output: bool = False):
        if t is None:
            return None
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0:  # empty tensors: a placeholder the kernel never reads
            nbytes, ptr = 4, None
        buf = self._by_ptr.get(ptr) if ptr is not None else None
        if buf is None:
            mf = cl.mem_flags
            if ptr is None:
                buf = cl.Buffer(self._rt.ctx, mf.READ_WRITE, 4)
            else:
                host = (ctypes.c_char * nbytes).from_address(ptr)
                buf = cl.Buffer(self._rt.ctx, mf.READ_WRITE | mf.USE_HOST_PTR, hostbuf=host)
                self._by_ptr[ptr] = buf
        if output:
            self._outputs.append(buf)
        return buf

    def sync(self):
        """Wait for the queue and map every output so the host sees the results."""
        for buf in self._outputs:
            array, _ = cl.enqueue_map_buffer(self._rt.queue, buf, cl.map_flags.READ, 0,
                                             (buf.size,), np.uint8, is_blocking=True)
            array.base.release(self._rt.queue)
        self._rt.queue.finish()


def _strides(t: torch.Tensor, varlen: bool) -> list:
    """(offset, batch, head, seq) element strides of a BHSD view or a varlen (total, H, D)."""
    if varlen:
        return [np.int64(t.storage_offset()), np.int64(0), np.int64(t.stride(1)),
                np.int64(t.stride(0))]
    return [np.int64(t.storage_offset()), np.int64(t.stride(0)), np.int64(t.stride(1)),
            np.int64(t.stride(2))]


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    """Kernels need stride 1 along the head dim; other views are copied (rare: only a
    transposed head dim produces them)."""
    return t if t.stride(-1) == 1 or t.shape[-1] <= 1 else t.contiguous()


def _like_layout(q: torch.Tensor, shape_bhsd: tuple, dtype, varlen: bool) -> torch.Tensor:
    """A new tensor shaped like ``q``'s logical shape, laid out like q (BSHD storage when q is
    a transposed BSHD view, so the caller's ``transpose(1, 2)`` gives a contiguous result)."""
    if varlen or q.dim() != 4 or q.stride(1) >= q.stride(2):
        return torch.empty(shape_bhsd, dtype=dtype)
    b, h, s, d = shape_bhsd
    return torch.empty(b, s, h, d, dtype=dtype).transpose(1, 2)


class Runtime:
    """One OpenCL device: its context, queue, limits and compiled programs."""

    def __init__(self, spec: Optional[str] = None):
        self.platform, self.device, self.label = _device.find_device(spec)
        self.info = _device.describe(self.device)
        self.ctx = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.ctx)
        self._programs: dict[tuple, dict[str, cl.Kernel]] = {}
        self._lock = threading.RLock()
        #: (kernel name, cl.Event) of the last call; with a profiling queue
        #: (``enable_profiling``) their ``profile`` times give the kernel-only time
        self.last_events: list[tuple[str, cl.Event]] = []
        self._typed: set[int] = set()

    def enable_profiling(self) -> None:
        """Use a profiling command queue (benchmarks read :attr:`last_events`)."""
        with self._lock:
            self.queue = cl.CommandQueue(
                self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)

    def kernel_seconds(self) -> float:
        """Device time of the last call's kernels (needs :meth:`enable_profiling`)."""
        return sum(ev.profile.end - ev.profile.start for _, ev in self.last_events) * 1e-9

    # -- programs --------------------------------------------------------------------------
    def tiles(self, d: int, dv: int) -> Optional[_device.Tiles]:
        return _device.tiles_for(self.info, d, dv)

    def build(self, source_name: str, defines: dict[str, int]) -> dict[str, cl.Kernel]:
        """Build ``common.cl + source_name`` with ``-D`` defines once; cached by defines."""
        key = (source_name, tuple(sorted(defines.items())))
        with self._lock:
            kernels = self._programs.get(key)
            if kernels is None:
                options = [f"-D{name}={value}" for name, value in sorted(defines.items())]
                options += ["-cl-std=CL1.2"]
                program = cl.Program(self.ctx, _source(source_name))
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # pyopencl's "non-empty build log"
                        program.build(options=options)
                except cl.Error as exc:
                    try:
                        log = program.get_build_info(self.device, cl.program_build_info.LOG)
                    except cl.Error:
                        log = ""
                    raise BuildError(
                        f"OpenCL build of {source_name} failed on {self.label} with options "
                        f"{' '.join(options)}:\n{(log or str(exc)).strip()}\n"
                        "This is a bug in attnhub's opencl backend or the OpenCL driver; "
                        "report it with this log, or pick another backend "
                        "(attnhub.attention(..., backend='naive')).") from None
                kernels = {k.function_name: k for k in program.all_kernels()}
                self._programs[key] = kernels
            return kernels

    def _set_args(self, kernel: cl.Kernel, args: list) -> None:
        """``kernel.set_args`` with the scalar types declared once per kernel: pyopencl then
        packs Python numbers directly (4 us a call instead of ~7 us per numpy scalar)."""
        scalar = [not (a is None or isinstance(a, cl.MemoryObjectHolder)) for a in args]
        if id(kernel) not in self._typed:  # kernels live as long as the Runtime
            kernel.set_scalar_arg_dtypes([type(a) if s else None for a, s in zip(args, scalar)])
            self._typed.add(id(kernel))
        kernel.set_args(*[a.item() if s else a for a, s in zip(args, scalar)])

    def _defines(self, problem: Problem) -> tuple[dict[str, int], _device.Tiles]:
        d, dv = problem.head_dim, problem.head_dim_v
        t = self.tiles(d, dv)
        if t is None:
            raise RuntimeError(f"head dims {d}/{dv} need more local memory than "
                               f"{self.label} has ({self.info['local_mem_bytes']} bytes)")
        defines = dict(D=d, DV=dv, DP=_device._round_up(d, t.nc), DVP=_device._round_up(dv, t.nc),
                       VW=t.vw, MV=t.mv, NR=t.nr, NC=t.nc, BN=t.bn, WG=t.wg,
                       HALF=int(problem.dtype == torch.float16))
        return defines, t

    # -- shared launch pieces ---------------------------------------------------------------
    @staticmethod
    def _scores(problem: Problem) -> tuple[np.float32, np.float32, np.int32, np.int32]:
        """(qk_mul, cap, left, right): scores enter the kernels in base 2."""
        if problem.softcap:
            qk_mul, cap = problem.scale / problem.softcap, problem.softcap * _LOG2E
        else:
            qk_mul, cap = problem.scale * _LOG2E, 0.0
        left, right = problem.window_bounds
        return np.float32(qk_mul), np.float32(cap), np.int32(left), np.int32(right)

    @staticmethod
    def _grid(problem: Problem, rows_per_group: int, wg: int, heads: int, seqlen: int):
        n_seq = problem.batch
        return (math.ceil(seqlen / rows_per_group) * wg, heads, n_seq), (wg, 1, 1)

    def _seqs(self, problem: Problem, bufs: _Buffers):
        """(cu_q, cu_k, varlen flag, Sq, Sk) kernel arguments, Sq/Sk the grid's lengths."""
        if problem.is_varlen:
            cu_q = problem.cu_seqlens_q.to(torch.int32).contiguous()
            cu_k = problem.cu_seqlens_k.to(torch.int32).contiguous()
            bufs.keep = (cu_q, cu_k)
            return (bufs(cu_q), bufs(cu_k), np.int32(1), int(problem.max_seqlen_q),
                    int(problem.max_seqlen_k))
        return None, None, np.int32(0), problem.seqlen_q, problem.seqlen_k

    # -- forward ----------------------------------------------------------------------------
    def forward(self, q, k, v, problem: Problem):
        varlen = problem.is_varlen
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        if varlen:
            o = torch.empty(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype)
            lse = torch.empty(problem.heads_q, problem.seqlen_q, dtype=torch.float32)
            l_strides = [np.int64(0), np.int64(lse.stride(0))]
        else:
            o = _like_layout(q, (problem.batch, problem.heads_q, problem.seqlen_q,
                                 problem.head_dim_v), q.dtype, False)
            lse = torch.empty(problem.batch, problem.heads_q, problem.seqlen_q,
                              dtype=torch.float32)
            l_strides = [np.int64(lse.stride(0)), np.int64(lse.stride(1))]
        if o.numel() == 0:
            lse.fill_(-math.inf)
            return o, lse
        defines, t = self._defines(problem)
        with self._lock:
            kern = self.build("forward.cl", dict(defines, GPU_UNROLL=1))["attn_fwd"]
            bufs = _Buffers(self)
            cu_q, cu_k, is_var, sq, sk = self._seqs(problem, bufs)
            args = [bufs(q), *_strides(q, varlen), bufs(k), *_strides(k, varlen),
                    bufs(v), *_strides(v, varlen), bufs(o, output=True), *_strides(o, varlen),
                    bufs(lse, output=True), *l_strides, cu_q, cu_k, is_var,
                    np.int32(problem.seqlen_q if not varlen else 0),
                    np.int32(problem.seqlen_k if not varlen else 0),
                    np.int32(problem.group_size), *self._scores(problem)]
            self._set_args(kern, args)
            gsize, lsize = self._grid(problem, t.block, t.wg, problem.heads_q, sq)
            ev = cl.enqueue_nd_range_kernel(self.queue, kern, gsize, lsize)
            bufs.sync()
            self.last_events = [("attn_fwd", ev)]
        return o, lse

    # -- backward ---------------------------------------------------------------------------
    def backward(self, do, q, k, v, o, lse, problem: Problem):
        varlen = problem.is_varlen
        q, k, v, o, do = (_unit_last(x) for x in (q, k, v, o, do))
        lse = lse.float().contiguous()
        dq = torch.zeros_like(q, memory_format=torch.contiguous_format)
        dk = torch.zeros_like(k, memory_format=torch.contiguous_format)
        dv = torch.zeros_like(v, memory_format=torch.contiguous_format)
        if q.numel() == 0 or k.numel() == 0:
            return dq, dk, dv
        if varlen:
            l_strides = [np.int64(0), np.int64(lse.stride(0))]
        else:
            l_strides = [np.int64(lse.stride(0)), np.int64(lse.stride(1))]
        delta, lse2 = torch.empty_like(lse), torch.empty_like(lse)
        defines, t = self._defines(problem)

        def out_strides(x):  # (batch, head, seq) of a fresh gradient tensor
            return _strides(x, varlen)[1:]

        with self._lock:
            kernels = self.build("backward.cl", dict(defines, GPU_UNROLL=0))
            bufs = _Buffers(self)
            cu_q, cu_k, is_var, sq, sk = self._seqs(problem, bufs)
            sq_arg = np.int32(problem.seqlen_q if not varlen else 0)
            sk_arg = np.int32(problem.seqlen_k if not varlen else 0)
            qk_mul, cap, left, right = self._scores(problem)
            scale = np.float32(problem.scale)

            prep = kernels["attn_bwd_prep"]
            self._set_args(prep, [bufs(o), *_strides(o, varlen), bufs(do), *_strides(do, varlen),
                                  bufs(lse), *l_strides, bufs(delta, output=True),
                                  bufs(lse2, output=True), cu_q, is_var, sq_arg])
            ev_prep = cl.enqueue_nd_range_kernel(self.queue, prep,
                                       (math.ceil(sq / _PREP_WG) * _PREP_WG, problem.heads_q,
                                        problem.batch), (_PREP_WG, 1, 1))

            common = [bufs(q), *_strides(q, varlen), bufs(k), *_strides(k, varlen),
                      bufs(v), *_strides(v, varlen), bufs(do), *_strides(do, varlen),
                      bufs(lse2), bufs(delta), *l_strides]
            tail = [cu_q, cu_k, is_var, sq_arg, sk_arg, np.int32(problem.group_size),
                    qk_mul, cap, scale, left, right]
            dkdv = kernels["attn_bwd_dkdv"]
            self._set_args(dkdv, [*common, bufs(dk, output=True), *out_strides(dk),
                                  bufs(dv, output=True), *out_strides(dv), *tail])
            gsize, lsize = self._grid(problem, t.block, t.wg, problem.heads_kv, sk)
            ev_dkdv = cl.enqueue_nd_range_kernel(self.queue, dkdv, gsize, lsize)

            dqk = kernels["attn_bwd_dq"]
            self._set_args(dqk, [*common, bufs(dq, output=True), *out_strides(dq), *tail])
            gsize, lsize = self._grid(problem, t.block, t.wg, problem.heads_q, sq)
            ev_dq = cl.enqueue_nd_range_kernel(self.queue, dqk, gsize, lsize)
            bufs.sync()
            self.last_events = [("attn_bwd_prep", ev_prep), ("attn_bwd_dkdv", ev_dkdv),
                                ("attn_bwd_dq", ev_dq)]
        return dq, dk, dv
