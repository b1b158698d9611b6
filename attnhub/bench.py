"""The FlashAttention benchmark grid: attnhub backends, auto-dispatch and torch's SDPA
kernels timed side by side in one run.

The grid (the FlashAttention papers')::

    tokens per batch 16384   batch = 16384 // seqlen
    hidden 2048              heads = 2048 // head_dim
    head_dim  in {64, 128, 256}
    seqlen    in {512, 1k, 2k, 4k, 8k, 16k}     (Sq = Sk, so causal is the same mask
    causal and not, forward and backward,        top-left or bottom-right)
    bf16 and fp16

Methods, every one on the same fresh random inputs q, k, v: (B, H, S, D) contiguous:

    <backend>        attnhub.attention(q, k, v, causal=c, backend=<backend>), for every
                     available backend that supports the point (``naive`` only up to
                     ``--small-seqlen``: it is the MATH-like reference, not a contender)
    auto             attnhub.attention(q, k, v, causal=c) (dispatch warmed up first)
    sdpa-flash       torch SDPA FLASH_ATTENTION (FlashAttention-2)
    sdpa-cudnn       torch SDPA CUDNN_ATTENTION
    sdpa-efficient   torch SDPA EFFICIENT_ATTENTION (xformers' kernel)
    sdpa-math        torch SDPA MATH, only up to ``--small-seqlen``

Each method is run once per point and its output (and gradients, for the backward) compared
with SDPA MATH in float32 on two (batch, head) slices; a mismatch is recorded as ``wrong``
(timed, but flagged in the JSON, the table and left out of plots and ratios).  Timing is
``triton.testing.do_bench(..., return_mode="median")`` on CUDA and a host-clock median on
the CPU.  FLOPs follow the FlashAttention papers: ``4·B·H·S²·D`` forward, halved when causal,
backward = 2.5 × forward.

Entry points: ``python benchmarks/fa_grid.py [--quick]`` and ``attnhub bench``, both calling
:func:`main`.  Results: ``<out>/fa_grid_<device>_<date>.json`` plus one PNG per dtype.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

__all__ = [
    "Point",
    "Method",
    "attention_flops",
    "fa_grid",
    "quick_grid",
    "discover_methods",
    "make_timer",
    "run_grid",
    "environment",
    "run_benchmark",
    "load_results",
    "write_json",
    "plot_results",
    "render_tables",
    "main",
]

SCHEMA = "attnhub-bench/1"
TOKENS = 16384
HIDDEN = 2048
HEAD_DIMS = (64, 128, 256)
SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
DIRECTIONS = ("fwd", "bwd")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: MATH and ``naive`` materialise (B, H, S, S) scores or loop in Python: small sizes only.
SMALL_SEQLEN = 1024
#: Loose check: relative L2 error vs float32 SDPA MATH above this flags the method ``wrong``.
#: A correct bf16/fp16 kernel lands near 3e-3 for O and 1e-2 for gradients; real bugs land
#: far above 1e-1.
LOOSE_REL_ERR = {torch.bfloat16: 0.05, torch.float16: 0.05, torch.float32: 1e-3}
#: Peers whose speed ratios are reported for every attnhub method.
RATIO_BASES = {"vs_cudnn": "sdpa-cudnn", "vs_flash": "sdpa-flash"}
STATUSES = ("ok", "wrong", "skipped", "error")


# -- the grid ---------------------------------------------------------------------------------
def attention_flops(batch: int, heads: int, seqlen_q: int, seqlen_k: int, head_dim: int, *,
                    causal: bool, direction: str = "fwd") -> float:
    """Matmul FLOPs of attention as the FlashAttention papers count them: ``4·B·H·Sq·Sk·D``
    for the forward (QKᵀ and PV), halved when causal, backward = 2.5 × forward."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} (expected one of {DIRECTIONS})")
    f = 4.0 * batch * heads * seqlen_q * seqlen_k * head_dim
    if causal:
        f /= 2
    return f * (2.5 if direction == "bwd" else 1.0)


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point: q, k, v are (batch, heads, seqlen, head_dim) in ``dtype``."""

    dtype: str  # a key of DTYPES, e.g. "bf16"
    head_dim: int
    seqlen: int
    causal: bool
    batch: int
    heads: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def flops(self, direction: str) -> float:
        return attention_flops(self.batch, self.heads, self.seqlen, self.seqlen, self.head_dim,
                               causal=self.causal, direction=direction)

    def label(self) -> str:
        return (f"{self.dtype} d{self.head_dim} s{_seqlen_text(self.seqlen)} "
                f"{'causal' if self.causal else 'full'} (B={self.batch}, H={self.heads})")


def fa_grid(*, tokens: int = TOKENS, hidden: int = HIDDEN,
            head_dims: Sequence[int] = HEAD_DIMS, seqlens: Sequence[int] = SEQLENS,
            causal: Sequence[bool] = (False, True),
            dtypes: Sequence[str] = ("bf16", "fp16")) -> list[Point]:
    """The grid's points: batch = tokens // seqlen, heads = hidden // head_dim."""
    points = []
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} (supported: {', '.join(DTYPES)})")
        for d in head_dims:
            if d <= 0 or hidden % d:
                raise ValueError(f"head_dim={d} must divide hidden={hidden} "
                                 f"(heads = hidden // head_dim); try --hidden {d * 16}")
            for s in seqlens:
                if s <= 0 or s > tokens:
                    raise ValueError(f"seqlen={s} must be in 1..tokens={tokens} "
                                     f"(batch = tokens // seqlen); raise --tokens")
                for c in causal:
                    points.append(Point(dtype, d, s, bool(c), tokens // s, hidden // d))
    return points


def quick_grid() -> list[Point]:
    """A smoke subset of :func:`fa_grid` (bf16, head dims 64/128, seqlens 1k/4k)."""
    return fa_grid(head_dims=(64, 128), seqlens=(1024, 4096), dtypes=("bf16",))


# -- methods ----------------------------------------------------------------------------------
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclasses.dataclass
class Method:
    """Something that computes ``o = attention(q, k, v, causal)`` on (B, H, S, D) tensors.

    ``group`` is ``"attnhub"`` (a pinned first-party backend or auto-dispatch: gets speed
    ratios), ``"plugin"`` (a third-party backend, pinned), ``"reference"`` (naive, timed at
    small sizes only) or ``"peer"`` (torch SDPA).
    """

    name: str
    group: str
    fn: AttentionFn
    max_seqlen: Optional[int] = None  # None: no limit
    capabilities: Any = None  # attnhub.Capabilities of a pinned backend, for a fast skip
    note: str = ""

    def skip_reason(self, point: Point, device: torch.device, direction: str) -> Optional[str]:
        """Why this method is not run at ``point`` (None: run it)."""
        if self.max_seqlen is not None and point.seqlen > self.max_seqlen:
            return f"timed only at seqlen <= {self.max_seqlen} (--small-seqlen)"
        if self.capabilities is not None:
            reasons = self.capabilities.reasons(_problem(point, device, direction))
            if reasons:
                return "; ".join(reasons)
        return None


def _problem(point: Point, device: torch.device, direction: str):
    from .contract import Problem, default_scale

    return Problem(batch=point.batch, heads_q=point.heads, heads_kv=point.heads,
                   seqlen_q=point.seqlen, seqlen_k=point.seqlen, head_dim=point.head_dim,
                   head_dim_v=point.head_dim, dtype=point.torch_dtype, device=device,
                   causal=point.causal, scale=default_scale(point.head_dim),
                   requires_grad=direction == "bwd")


def _pinned(name: str) -> AttentionFn:
    import attnhub

    def fn(q, k, v, causal):
        return attnhub.attention(q, k, v, causal=causal, backend=name)
    return fn


def _auto(q, k, v, causal):
    import attnhub

    return attnhub.attention(q, k, v, causal=causal)


def _sdpa(kernel: str) -> AttentionFn:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, kernel)

    def fn(q, k, v, causal):
        # Sq == Sk on the grid, so torch's top-left causal mask equals attnhub's bottom-right.
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return fn


def _backend_infos() -> list:
    import attnhub

    try:
        return list(attnhub.list_backends() or [])
    except Exception as exc:  # a broken registry must not stop the peers from running
        warnings.warn(f"attnhub.list_backends() raised {type(exc).__name__}: {exc}; "
                      "benchmarking auto-dispatch and torch SDPA only")
        return []


def discover_methods(*, small_seqlen: int = SMALL_SEQLEN, infos: Optional[list] = None,
                     peers: bool = True) -> list[Method]:
    """Every available attnhub backend pinned by name, auto-dispatch, and torch SDPA peers."""
    infos = _backend_infos() if infos is None else infos
    methods = []
    for info in sorted(infos, key=lambda i: (i.name == "naive", i.name)):
        if info.status != "available":
            continue
        if info.name == "naive":
            methods.append(Method("naive", "reference", _pinned("naive"), small_seqlen,
                                  info.capabilities, "attnhub's pure-torch reference (MATH-like)"))
        else:
            first_party = info.origin in ("attnhub", "")
            methods.append(Method(info.name, "attnhub" if first_party else "plugin",
                                  _pinned(info.name), None, info.capabilities,
                                  f"attnhub backend {info.name} {info.version} ({info.origin})"))
    methods.append(Method("auto", "attnhub", _auto, note="attnhub auto-dispatch"))
    if peers:
        methods += [
            Method("sdpa-flash", "peer", _sdpa("FLASH_ATTENTION"),
                   note="torch SDPA FLASH_ATTENTION (FlashAttention-2)"),
            Method("sdpa-cudnn", "peer", _sdpa("CUDNN_ATTENTION"),
                   note="torch SDPA CUDNN_ATTENTION"),
            Method("sdpa-efficient", "peer", _sdpa("EFFICIENT_ATTENTION"),
                   note="torch SDPA EFFICIENT_ATTENTION (memory-efficient)"),
            Method("sdpa-math", "peer", _sdpa("MATH"), small_seqlen, note="torch SDPA MATH"),
        ]
    return methods


# -- timing -----------------------------------------------------------------------------------
Timer = Callable[..., float]  # timer(fn, grad_to_none=None) -> milliseconds


def make_timer(device: torch.device, *, warmup_ms: float = 25,
               rep_ms: float = 100) -> tuple[Timer, str]:
    """``(timer, description)``: triton's ``do_bench`` median on CUDA, a host-clock median
    elsewhere.  ``warmup_ms``/``rep_ms`` are time budgets, as in ``do_bench``."""
    if device.type == "cuda":
        try:
            from triton.testing import do_bench
        except ImportError as exc:
            raise RuntimeError("timing on CUDA needs triton (triton.testing.do_bench): "
                               "pip install 'attnhub[bench]'") from exc

        def cuda_timer(fn, grad_to_none=None):
            return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none,
                                  return_mode="median"))
        return cuda_timer, f"triton.testing.do_bench(warmup={warmup_ms}, rep={rep_ms}, median)"

    def cpu_timer(fn, grad_to_none=None):
        return _host_median(fn, warmup_ms, rep_ms, grad_to_none)
    return cpu_timer, f"host clock median (warmup={warmup_ms} ms, rep={rep_ms} ms)"


def _host_median(fn, warmup_ms: float, rep_ms: float, grad_to_none=None) -> float:
    def once() -> float:
        for t in grad_to_none or ():
            t.grad = None
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    estimate = once()
    n_warmup = min(1000, max(1, int(warmup_ms / max(estimate, 1e-3))))
    n_rep = min(1000, max(3, int(rep_ms / max(estimate, 1e-3))))
    for _ in range(n_warmup):
        once()
    return statistics.median(once() for _ in range(n_rep))


# -- correctness check ------------------------------------------------------------------------
def _slices(point: Point, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, head) index pairs checked: the first and the last."""
    bi = torch.tensor([0, point.batch - 1], device=device)
    hi = torch.tensor([0, point.heads - 1], device=device)
    return bi, hi


def _reference(q, k, v, do, point: Point, backward: bool) -> dict[str, torch.Tensor]:
    """float32 SDPA MATH on the checked slices: {"o"[, "dq", "dk", "dv"]}, each (2, S, D)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    bi, hi = _slices(point, q.device)
    qs, ks, vs = (t[bi, hi].float().unsqueeze(1).requires_grad_(backward) for t in (q, k, v))
    with sdpa_kernel([SDPBackend.MATH]), torch.set_grad_enabled(backward):
        o = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=point.causal)
    out = {"o": o.detach().squeeze(1)}
    if backward:
        o.backward(do[bi, hi].float().unsqueeze(1))
        out.update(dq=qs.grad.squeeze(1), dk=ks.grad.squeeze(1), dv=vs.grad.squeeze(1))
    return out


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    got = got.float()
    if not torch.isfinite(got).all():
        return math.inf
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


# -- running ----------------------------------------------------------------------------------
class _Unsupported(Exception):
    """The method refused this point (NotImplementedError, or torch SDPA found no kernel)."""


def _call(method: Method, q, k, v, causal: bool) -> torch.Tensor:
    """One call that turns refusals into :class:`_Unsupported` with the reasons given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            o = method.fn(q, k, v, causal)
        except NotImplementedError as exc:
            raise _Unsupported(_first_lines(str(exc))) from exc
        except RuntimeError as exc:
            text = str(exc)
            if "No available kernel" in text or "No viable backend" in text:
                why = [str(w.message).strip() for w in caught
                       if "sdp" in str(w.message).lower() or "attention" in str(w.message).lower()]
                raise _Unsupported(_first_lines(" | ".join(why) or text)) from exc
            raise
    if not isinstance(o, torch.Tensor):
        raise TypeError(f"returned {type(o).__name__}, expected a tensor")
    if o.shape != q.shape or o.dtype != q.dtype:
        raise TypeError(f"returned {tuple(o.shape)} {o.dtype}, expected {tuple(q.shape)} {q.dtype}")
    return o


def _first_lines(text: str, limit: int = 400) -> str:
    text = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _measure(method: Method, point: Point, direction: str, q, k, v, do,
             ref: Optional[dict], timer: Timer) -> tuple[dict, Callable[[], float]]:
    """Check once, then time; returns the fields of one result record and a call that
    times the same thing again (milliseconds)."""
    rec: dict[str, Any] = {}
    causal = point.causal
    if direction == "fwd":
        o = _call(method, q, k, v, causal)  # warm-up: compilation, autotuning, dispatch
        if ref is not None:
            rec["errors"] = _errors(point, {"o": o}, ref)
        del o

        def call():
            return timer(lambda: method.fn(q, k, v, causal))
    else:
        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
        o = _call(method, qg, kg, vg, causal)
        o.backward(do, retain_graph=True)  # warm-up of the backward, and its check
        if ref is not None:
            rec["errors"] = _errors(point, {"o": o, "dq": qg.grad, "dk": kg.grad,
                                            "dv": vg.grad}, ref)
        for t in (qg, kg, vg):
            t.grad = None
        # Only the backward is timed; do_bench sets the grads to None before each rep.
        def call():
            return timer(lambda: o.backward(do, retain_graph=True), grad_to_none=[qg, kg, vg])
    ms = call()
    rec["ms"] = ms
    rec["tflops"] = point.flops(direction) / (ms * 1e-3) / 1e12
    return rec, call


def _errors(point: Point, got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict:
    bi, hi = _slices(point, ref["o"].device)
    return {name: _rel_err(got[name].detach()[bi, hi], r) for name, r in ref.items()}


def run_grid(points: Sequence[Point], methods: Sequence[Method], *,
             directions: Sequence[str] = DIRECTIONS, device: torch.device, timer: Timer,
             check: bool = True, seed: int = 0, console=None,
             progress: bool = True, rounds: int = 1,
             checkpoint: Optional[Callable[[list], None]] = None) -> list[dict]:
    """Run every method at every point and direction; one record per (point, direction,
    method) with ``status`` in ``ok | wrong | skipped | error``.  Never raises for a
    method's failure: it is recorded with its reason.

    ``rounds`` > 1: after every method's check and first timing at a point and direction,
    the methods that ran are timed ``rounds - 1`` more times, round by round, each round in
    the previous one's order rotated by one; a record's ``ms`` is then the median of its
    ``ms_rounds``.  Peers and contenders then share the clocks of each round (one timing
    after another moved a ratio by ±5-10 % on an H100: benchmarks/NOTES.md, twenty-fifth
    session).

    ``checkpoint``: called with the records so far after every point (e.g. to write them to
    disk), so a run killed outright (SIGKILL, a lost machine, a signal a library's handler
    swallowed) still leaves what it measured; a checkpoint that raises ``OSError`` is
    reported once and not called again."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}: expected an int >= 1 (1 = one timing each)")
    results: list[dict] = []
    total = len(points) * len(directions) * len(methods)
    bar = _progress(console, progress)
    with bar, _signals_stop_the_grid():
        task = bar.add_task("fa grid", total=total)
        try:
            _grid_loop(points, methods, directions, device, timer, check, seed, bar, task,
                       results, rounds, _guarded(checkpoint, console))
        except KeyboardInterrupt:  # e.g. `timeout -s INT`: keep and write what was measured
            if console is not None:
                console.print(f"[yellow]interrupted:[/] keeping {len(results)} records")
    _add_ratios(results)
    return results


def _guarded(checkpoint: Optional[Callable[[list], None]], console) -> Optional[Callable]:
    """``checkpoint`` that reports its first ``OSError`` (a full disk, a removed folder)
    and is then switched off: losing the checkpoint must not lose the run."""
    if checkpoint is None:
        return None
    state = {"on": True}

    def call(results: list) -> None:
        if not state["on"]:
            return
        try:
            checkpoint(results)
        except OSError as exc:
            state["on"] = False
            msg = f"checkpoint failed, no more partial writes this run: {exc}"
            if console is not None:
                console.print(f"[yellow]warning:[/] {msg}")
            else:
                warnings.warn(msg, RuntimeWarning, stacklevel=2)

    return call


@contextlib.contextmanager
def _signals_stop_the_grid():
    """While the grid runs, SIGINT and SIGTERM raise KeyboardInterrupt, which
    :func:`run_grid` turns into "keep what was measured": ``timeout`` (TERM, or ``-s INT``)
    then ends a run with its results written.  Python's own SIGINT handler is installed
    again on purpose: a library a backend loads may have replaced it (a device run of
    2026-12-06 ended on SIGINT with nothing written).  Main thread only (where signal
    handlers can be set); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _grid_loop(points, methods, directions, device, timer, check, seed, bar, task, results,
               rounds=1, checkpoint=None):
    for i, point in enumerate(points):
        bar.update(task, description=point.label())
        try:
            gen = torch.Generator(device=device).manual_seed(seed + i)
            shape = (point.batch, point.heads, point.seqlen, point.head_dim)
            q, k, v, do = (torch.randn(shape, generator=gen, device=device,
                                       dtype=point.torch_dtype) for _ in range(4))
            # One float32 reference per point; the forward checks use its O only.
            ref = _reference(q, k, v, do, point, "bwd" in directions) if check else None
        except Exception as exc:  # e.g. a dead CUDA context: keep what was measured
            why = _first_lines(f"point set-up failed: {type(exc).__name__}: {exc}")
            for direction in directions:
                for method in methods:
                    results.append(dict(_record(method, point, direction), status="error",
                                        reason=why))
                    bar.advance(task)
            if checkpoint is not None:
                checkpoint(results)
            continue
        for direction in directions:
            ref_dir = ref and (ref if direction == "bwd" else {"o": ref["o"]})
            again: list = []  # (record, its timed call) of the methods that ran
            for method in methods:
                results.append(_run_one(method, point, direction, q, k, v, do, ref_dir,
                                        timer, device, again if rounds > 1 else None))
                bar.advance(task)
            _more_rounds(again, rounds, point, direction, timer, device)
            del again
        del q, k, v, do, ref
        _free(device)
        if checkpoint is not None:
            checkpoint(results)


def _more_rounds(again: list, rounds: int, point: Point, direction: str, timer: Timer,
                 device: torch.device) -> None:
    """Rounds 2..``rounds`` of :func:`run_grid`: each ran method timed once a round, the
    order rotated by one each round; ``ms`` becomes the median of ``ms_rounds``.  A method
    that fails in a later round is recorded as an error (what it measured stays in
    ``ms_rounds``)."""
    if not again:
        return
    for r in range(1, rounds):
        shift = r % len(again)
        for rec, call in again[shift:] + again[:shift]:
            if rec["status"] == "error":
                continue
            try:
                rec["ms_rounds"].append(call())
            except Exception as exc:
                rec["status"] = "error"
                rec["reason"] = _first_lines(f"round {r + 1}: {type(exc).__name__}: {exc}")
                _free(device)
    for rec, _ in again:
        rec["ms"] = statistics.median(rec["ms_rounds"])
        rec["tflops"] = point.flops(direction) / (rec["ms"] * 1e-3) / 1e12


def _record(method: Method, point: Point, direction: str) -> dict:
    return dict(dtype=point.dtype, head_dim=point.head_dim, seqlen=point.seqlen,
                causal=point.causal, batch=point.batch, heads=point.heads, direction=direction,
                flops=point.flops(direction), method=method.name, group=method.group,
                status="skipped", ms=None, tflops=None, reason="")


def _run_one(method, point, direction, q, k, v, do, ref, timer, device,
             again: Optional[list] = None) -> dict:
    """One method's record at one point and direction; with ``again`` (a list), the record
    and a call that times the method once more are appended to it when the method ran."""
    rec = _record(method, point, direction)
    why = method.skip_reason(point, device, direction)
    if why:
        rec["reason"] = why
        return rec
    started = time.perf_counter()
    try:
        fields, call = _measure(method, point, direction, q, k, v, do, ref, timer)
        rec.update(fields)
        rec["status"] = "ok"
        if again is not None:
            rec["ms_rounds"] = [rec["ms"]]
            again.append((rec, call))
        bad = {n: e for n, e in rec.get("errors", {}).items()
               if not e <= LOOSE_REL_ERR.get(point.torch_dtype, 0.05)}
        if bad:
            rec["status"] = "wrong"
            rec["reason"] = "relative L2 error vs float32 SDPA MATH: " + ", ".join(
                f"{n}={e:.3g}" for n, e in bad.items())
        if method.name == "auto":
            rec["chosen"] = _chosen(q, k, v, point.causal, training=direction == "bwd")
    except _Unsupported as exc:
        rec["reason"] = str(exc)
    except Exception as exc:  # recorded, never fatal: one method must not stop the grid
        rec["status"] = "error"
        rec["reason"] = _first_lines(f"{type(exc).__name__}: {exc}")
        try:
            _free(device)
        except Exception:  # a dead CUDA context: the next point's set-up records it
            pass
    rec["wall_s"] = round(time.perf_counter() - started, 3)  # check + timing, for budgeting
    if "errors" in rec:
        rec["errors"] = {n: (e if math.isfinite(e) else None) for n, e in rec["errors"].items()}
    return rec


def _chosen(q, k, v, causal, training: bool = False) -> Optional[str]:
    """The backend auto-dispatch uses for this point: for the backward direction, the one it
    picks for a training problem (inputs that require grad), as the timed call did."""
    import attnhub

    try:
        if training:
            q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
        with torch.enable_grad() if training else contextlib.nullcontext():
            return getattr(attnhub.explain(q, k, v, causal=causal), "chosen", None)
    except Exception:
        return None


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _add_ratios(results: list[dict]) -> None:
    """``vs_cudnn``/``vs_flash``: an attnhub method's TFLOP/s over the peer's, same point."""
    ok = {(_key(r), r["method"]): r["tflops"] for r in results if r["status"] == "ok"}
    for r in results:
        if r.get("group", _group_of(r["method"])) != "attnhub" or r["status"] != "ok":
            continue
        for field, peer in RATIO_BASES.items():
            base = ok.get((_key(r), peer))
            r[field] = r["tflops"] / base if base else None


def _group_of(name: str) -> str:
    if name.startswith("sdpa-"):
        return "peer"
    return "reference" if name == "naive" else "attnhub"


def _key(r: dict) -> tuple:
    return (r["dtype"], r["head_dim"], r["seqlen"], r["causal"], r["direction"])


def _progress(console, enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=not enabled, transient=False)


# -- environment ------------------------------------------------------------------------------
def environment(device: torch.device, infos: Optional[list] = None) -> dict:
    """Device, driver and library versions, and every attnhub backend's status."""
    import attnhub

    env: dict[str, Any] = {
        "device": device.type,
        "device_name": _cpu_name(),
        "torch": torch.__version__,
        "triton": _dist_version("triton"),
        "cuda": torch.version.cuda,
        "cudnn": None,
        "driver": None,
        "attnhub": attnhub.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)  # cached: works after a CUDA error
        env.update(device_name=props.name, compute_capability=f"sm{props.major}{props.minor}",
                   sm_count=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2**30, 1), driver=_driver_version())
        if torch.backends.cudnn.is_available():
            env["cudnn"] = _cudnn_text(torch.backends.cudnn.version())
    infos = _backend_infos() if infos is None else infos
    # extra: which kernels a backend runs (hopper-fa3: CUDA or Triton forward/backward), and
    # the ATTNHUB_* switches that chose them, so a results file says what was timed
    env["backends"] = [dict(name=i.name, version=i.version, origin=i.origin, status=i.status,
                            reason=i.reason, extra=dict(getattr(i, "extra", None) or {}))
                       for i in infos]
    env["attnhub_env"] = {k: v for k, v in sorted(os.environ.items())
                          if k.startswith("ATTNHUB_")}
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _dist_version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cudnn_text(v: Optional[int]) -> Optional[str]:
    if not v:
        return None
    if v >= 90000:  # cuDNN 9: major*10000 + minor*100 + patch
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}"


def _driver_version() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # the CUDA driver API version, when nvidia-smi is missing
        import ctypes

        lib, ver = ctypes.CDLL("libcuda.so.1"), ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(ver)) == 0:
            return f"CUDA driver API {ver.value // 1000}.{ver.value % 1000 // 10}"
    except OSError:
        pass
    return None


#: what :func:`gpu_state` asks nvidia-smi for, and the names it records them under
GPU_STATE_FIELDS = {"clocks.sm": "sm_mhz", "clocks.max.sm": "sm_max_mhz",
                    "power.draw": "power_w", "temperature.gpu": "temperature_c",
                    "clocks_throttle_reasons.active": "throttle_reasons"}
#: the same bit mask under the name newer drivers use; nvidia-smi refuses a whole query
#: with a field it does not know, so :func:`gpu_state` tries each, then neither
_REASON_FIELDS = ("clocks_throttle_reasons.active", "clocks_event_reasons.active", None)


def gpu_state(device: torch.device) -> Optional[dict]:
    """The GPU's SM clock (and its maximum), power draw, temperature and active throttle
    reasons now, from nvidia-smi, for the run's JSON beside the matmul ceiling: what clocks
    the timings ran at.  ``None`` off CUDA or without nvidia-smi (never raises)."""
    if device.type != "cuda":
        return None
    try:
        props = torch.cuda.get_device_properties(device)
    except (RuntimeError, AssertionError):
        return None
    uuid = getattr(props, "uuid", None)
    target = f"GPU-{uuid}" if uuid else str(device.index or 0)
    base = [f for f in GPU_STATE_FIELDS if f != _REASON_FIELDS[0]]
    for reason in _REASON_FIELDS:
        fields = base + ([reason] if reason else [])
        try:
            out = subprocess.run(["nvidia-smi", "-i", target, "--query-gpu=" + ",".join(fields),
                                  "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0 and out.stdout.strip():
            return parse_gpu_state(out.stdout.strip().splitlines()[0], len(fields))
    return None


def parse_gpu_state(line: str, n_fields: int = len(GPU_STATE_FIELDS)) -> dict:
    """One nvidia-smi csv line (noheader, nounits) of :data:`GPU_STATE_FIELDS` (the first
    ``n_fields`` of them): numbers as floats, anything else (``[N/A]``, the throttle bit
    mask) as text."""
    values = [x.strip() for x in line.split(",")]
    out: dict[str, Any] = {}
    for name, value in zip(list(GPU_STATE_FIELDS.values())[:n_fields], values):
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def device_tag(env: dict) -> str:
    """A short file-name tag for the device: ``h100``, ``a100``, ``cpu``."""
    if env.get("device") != "cuda":
        return env.get("device", "cpu")
    name = env.get("device_name", "gpu")
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Za-z]*)\b", name)
    if m:
        return m.group(1).lower()
    words = [w for w in name.split() if w.lower() not in ("nvidia", "geforce", "tesla")]
    return re.sub(r"[^a-z0-9]+", "", "".join(words[:2]).lower()) or "gpu"


# -- the matmul ceiling, timed in the run ----------------------------------------------------
def ceiling_size(device: torch.device) -> int:
    """The ``n`` of :func:`matmul_ceiling`: 8192 on CUDA (a 1.1 TFLOP product), 256 elsewhere."""
    return 8192 if device.type == "cuda" else 256


def matmul_ceiling(dtypes: Sequence[str], device: torch.device, timer: Timer,
                   n: Optional[int] = None) -> dict[str, Optional[float]]:
    """TFLOP/s of one ``n × n × n`` ``torch.matmul`` per dtype (2·n³ FLOPs), timed by the
    grid's own ``timer``: the attention numbers of a run read against the ceiling of the
    same clocks (an H100 grid of 2026-12-06 put d256 at 833 TFLOP/s, above the 774 that a
    separate, longer matmul run had measured).  ``n``: :func:`ceiling_size` unless given;
    a dtype the device cannot multiply records ``None``."""
    n = n or ceiling_size(device)
    out: dict[str, Optional[float]] = {}
    for name in dtypes:
        try:
            a, b = (torch.randn(n, n, device=device, dtype=DTYPES[name]) for _ in range(2))
            ms = timer(lambda: torch.matmul(a, b))
            out[name] = 2 * n ** 3 / (ms * 1e-3) / 1e12 if ms > 0 and math.isfinite(ms) else None
            del a, b
        except RuntimeError:  # e.g. no such matmul kernel for the dtype on this device
            out[name] = None
    return out


# -- one whole run ----------------------------------------------------------------------------
def run_benchmark(points: Sequence[Point], *, device: torch.device,
                  methods: Optional[Sequence[Method]] = None,
                  directions: Sequence[str] = DIRECTIONS, warmup_ms: float = 25,
                  rep_ms: float = 100, check: bool = True, suite: str = "fa_grid",
                  infos: Optional[list] = None, console=None, progress: bool = True,
                  rounds: int = 1, checkpoint_dir: Optional[Path] = None) -> dict:
    """Run the grid and return the JSON document (see benchmarks/README.md for its schema).

    ``checkpoint_dir``: after every point the document so far is written there as
    ``<stem>.partial.json`` (``"partial"`` says how far it got; no end-of-run ceiling), and
    removed once the run returns, when the caller writes the whole document: a run killed
    before its end leaves that file instead of nothing."""
    infos = _backend_infos() if infos is None else infos
    methods = list(discover_methods(infos=infos) if methods is None else methods)
    timer, timer_text = make_timer(device, warmup_ms=warmup_ms, rep_ms=rep_ms)
    started = time.time()
    now = datetime.datetime.now().astimezone()
    dtypes, n = sorted({p.dtype for p in points}, key=list(DTYPES).index), ceiling_size(device)
    ceiling_start = matmul_ceiling(dtypes, device, timer, n)
    state_start = gpu_state(device)  # right after the matmuls: the clocks under load

    env = environment(device, infos)
    expected = len(points) * len(directions)

    def document(results, ceiling_end, state_end, why=None):
        data = _document(points, methods, directions, suite, now, started, env, timer_text,
                         rounds, check, n, ceiling_start, ceiling_end, state_start, state_end,
                         results)
        per_key = collections.Counter(_key(r) for r in results)
        done = sum(1 for c in per_key.values() if c >= len(methods))  # every method recorded
        if why is not None or done < expected:
            data["partial"] = {"points_done": done, "points": expected,
                               "why": why or "interrupted (a signal ended the grid early)"}
        return data

    partial = None
    checkpoint = None
    if checkpoint_dir is not None:
        stem = output_stem({"suite": suite, "env": env, "date": now.date().isoformat()})
        partial = Path(checkpoint_dir) / f"{stem}.partial.json"

        def checkpoint(results):
            _add_ratios(results)
            write_json_to(document(results, {}, None, why="written after every point; the "
                                   "run did not finish (killed, or the machine lost)"), partial)

    results = run_grid(points, methods, directions=directions, device=device, timer=timer,
                       check=check, console=console, progress=progress, rounds=rounds,
                       checkpoint=checkpoint)
    ceiling_end = matmul_ceiling(dtypes, device, timer, n)
    state_end = gpu_state(device)
    if partial is not None:
        partial.unlink(missing_ok=True)
    return document(results, ceiling_end, state_end)


def _document(points, methods, directions, suite, now, started, env, timer_text, rounds,
              check, n, ceiling_start, ceiling_end, state_start, state_end, results) -> dict:
    return {
        "schema": SCHEMA,
        "suite": suite,
        "date": now.date().isoformat(),
        "timestamp": now.isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 1),
        "env": env,
        "config": {
            "dtypes": sorted({p.dtype for p in points}, key=list(DTYPES).index),
            "head_dims": sorted({p.head_dim for p in points}),
            "seqlens": sorted({p.seqlen for p in points}),
            "causal": sorted({p.causal for p in points}),
            "directions": list(directions),
            "tokens": sorted({p.batch * p.seqlen for p in points}),
            "hidden": sorted({p.heads * p.head_dim for p in points}),
            "timer": timer_text,
            "rounds": rounds,
            "check": ("float32 SDPA MATH on (batch, head) slices (0, 0) and (B-1, H-1); "
                      f"wrong if relative L2 error > {LOOSE_REL_ERR[torch.bfloat16]} "
                      "(bf16/fp16)") if check else None,
            "flops": "4*B*H*S*S*D forward, /2 causal, backward = 2.5 x forward",
        },
        "methods": [dict(name=m.name, group=m.group, note=m.note, max_seqlen=m.max_seqlen)
                    for m in methods],
        "ceiling": {"what": "TFLOP/s of one n x n x n torch.matmul, the same timer, before "
                            "and after the grid",
                    "n": n,
                    "start": ceiling_start, "end": ceiling_end,
                    "gpu_start": state_start, "gpu_end": state_end},
        "results": results,
    }


def estimate_seconds(points: Sequence[Point], methods: Sequence[Method], directions: Sequence[str],
                     warmup_ms: float, rep_ms: float) -> float:
    """Rough wall time: (warmup + rep) per measurement plus ~0.2 s of set-up each (the
    check call, do_bench's estimate runs; cuDNN builds a graph per new shape: 0.1-2.7 s,
    measured on an H100, 2026-11-23).  Backends' own first-call autotuning comes on top."""
    n = sum(1 for p in points for _ in directions for m in methods
            if m.max_seqlen is None or p.seqlen <= m.max_seqlen)
    return n * ((warmup_ms + rep_ms) / 1e3 + 0.2)


# -- output -----------------------------------------------------------------------------------
def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def output_stem(data: dict) -> str:
    return f"{data.get('suite', 'fa_grid')}_{device_tag(data['env'])}_{data['date']}"


def write_json(data: dict, out_dir: Path) -> Path:
    return write_json_to(data, Path(out_dir) / f"{output_stem(data)}.json")


def write_json_to(data: dict, path: Path) -> Path:
    """``data`` as JSON at ``path`` (its folder made), through a temporary file and a
    rename, so a reader (or a kill mid-write) never sees half a document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_results(path: Path) -> dict:
    """Read a results JSON written by :func:`write_json` (checks the schema tag)."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r} "
                         "(a file written by attnhub.bench)")
    return data


def _method_groups(data: dict) -> dict[str, str]:
    groups = {m["name"]: m["group"] for m in data.get("methods", [])}
    for r in data["results"]:
        groups.setdefault(r["method"], r.get("group") or _group_of(r["method"]))
    return groups


def _seqlen_text(s: int) -> str:
    return f"{s // 1024}k" if s >= 1024 and s % 1024 == 0 else str(s)


def plot_results(data: dict, out_dir: Path) -> list[Path]:
    """One PNG per dtype: TFLOP/s vs seqlen, one panel per head dim × causal × direction.
    Methods flagged ``wrong`` are left out of the lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    groups = _method_groups(data)
    style = {"attnhub": "-", "plugin": "-.", "reference": ":", "peer": "--"}
    paths = []
    for dtype in sorted({r["dtype"] for r in data["results"]}):
        rows = [r for r in data["results"] if r["dtype"] == dtype]
        head_dims = sorted({r["head_dim"] for r in rows})
        cols = [(c, d) for c in (False, True) for d in DIRECTIONS
                if any(r["causal"] == c and r["direction"] == d for r in rows)]
        fig = Figure(figsize=(4.2 * len(cols), 3.2 * len(head_dims)), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(head_dims), len(cols), squeeze=False)
        seqlens = sorted({r["seqlen"] for r in rows})
        for i, d in enumerate(head_dims):
            for j, (c, direction) in enumerate(cols):
                ax = axes[i][j]
                for n, name in enumerate(groups):
                    pts = sorted((r["seqlen"], r["tflops"]) for r in rows
                                 if r["method"] == name and r["head_dim"] == d and r["causal"] == c
                                 and r["direction"] == direction and r["status"] == "ok")
                    if pts:
                        ax.plot(*zip(*pts), style.get(groups[name], "-"), marker="o",
                                markersize=3, color=f"C{n % 10}", label=name)
                ax.set_xscale("log", base=2)
                ax.set_xticks(seqlens, [_seqlen_text(s) for s in seqlens])
                ax.set_title(f"d{d} {'causal' if c else 'full'} {direction}", fontsize=10)
                ax.set_xlabel("seqlen")
                ax.set_ylabel("TFLOP/s")
                ax.set_ylim(bottom=0)
                ax.grid(True, alpha=0.3)
        handles = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncol=min(len(handles), 8), fontsize=9)
        env = data["env"]
        fig.suptitle(f"{data.get('suite', 'fa_grid')}: {env.get('device_name')}, {dtype}, "
                     f"{data['date']} (torch {env.get('torch')}, triton {env.get('triton')}, "
                     f"cuDNN {env.get('cudnn')})", fontsize=11)
        path = out_dir / f"{output_stem(data)}_{dtype}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def partial_text(data: dict) -> Optional[str]:
    """How far a run that did not finish got (its ``"partial"`` entry), or None."""
    part = data.get("partial")
    if not part:
        return None
    return (f"{part.get('points_done')} of {part.get('points')} (point, direction) pairs "
            f"measured ({part.get('why')})")


def render_tables(data: dict, console=None) -> None:
    """Print TFLOP/s per method per point, ratios of every attnhub method vs sdpa-cudnn and
    sdpa-flash, then the skip/error/wrong reasons (grouped)."""
    from rich.table import Table

    console = console or _console()
    groups = _method_groups(data)
    names = list(groups)
    contenders = [n for n in names if groups[n] == "attnhub"]
    res = data["results"]
    by = {(_key(r), r["method"]): r for r in res}
    env = data["env"]
    console.print(f"[bold]{data.get('suite')}[/] on {env.get('device_name')} "
                  f"({env.get('compute_capability', env.get('device'))}, "
                  f"driver {env.get('driver')}), "
                  f"torch {env.get('torch')}, triton {env.get('triton')}, CUDA {env.get('cuda')}, "
                  f"cuDNN {env.get('cudnn')}, attnhub {env.get('attnhub')}, {data.get('date')}")
    part = partial_text(data)
    if part:
        console.print(f"[yellow]partial:[/] {part}")
    ceiling = data.get("ceiling")  # runs before 2026-12-06's twenty-fifth session lack it
    if ceiling:
        console.print("matmul ceiling in this run (TFLOP/s, before / after the grid): " + ", ".join(
            f"{d} {_tf(ceiling['start'].get(d))} / {_tf(ceiling['end'].get(d))}"
            for d in ceiling["start"]))
        for when in ("start", "end"):
            state = ceiling.get(f"gpu_{when}")
            if state:
                console.print(f"GPU at the {when}: " + ", ".join(
                    f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in state.items()))
    for dtype in sorted({r["dtype"] for r in res}):
        for direction in DIRECTIONS:
            keys = sorted({_key(r) for r in res if r["dtype"] == dtype
                           and r["direction"] == direction}, key=lambda k: (k[1], k[3], k[2]))
            if not keys:
                continue
            table = Table(title=f"{dtype} {direction}: TFLOP/s (ratios: attnhub / peer)",
                          show_lines=False, header_style="bold")
            for col in ("d", "seqlen", "causal"):
                table.add_column(col, justify="right")
            for n in names:
                table.add_column(n, justify="right")
            for n in contenders:
                for field, peer in RATIO_BASES.items():
                    table.add_column(f"{n}/{peer.removeprefix('sdpa-')}", justify="right")
            for key in keys:
                row = [str(key[1]), _seqlen_text(key[2]), "yes" if key[3] else "no"]
                for n in names:
                    r = by.get((key, n))
                    row.append(_cell(r))
                for n in contenders:
                    r = by.get((key, n))
                    for field in RATIO_BASES:
                        val = r.get(field) if r else None
                        row.append("—" if val is None else
                                   (f"[green]{val:.2f}[/]" if val >= 1 else f"{val:.2f}"))
                table.add_row(*row)
            console.print(table)
    _print_reasons(res, console)


def _tf(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.0f}"


def _cell(r: Optional[dict]) -> str:
    if r is None or r["status"] == "skipped":
        return "[dim]—[/]"
    if r["status"] == "error":
        return "[red]err[/]"
    if r["status"] == "wrong":
        return f"[red]{_fmt(r['tflops'])}✗[/]"
    return _fmt(r["tflops"])


def _print_reasons(res: Iterable[dict], console) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for r in res:
        if r["status"] != "ok" and r.get("reason"):
            k = (r["method"], r["status"], r["reason"])
            seen[k] = seen.get(k, 0) + 1
    if not seen:
        return
    console.print("[bold]Not timed / flagged[/] (✗ = wrong output, timed but not trusted):")
    for (method, status, reason), count in sorted(seen.items()):
        colour = "red" if status in ("error", "wrong") else "dim"
        console.print(f"  [{colour}]{method} {status}[/] ×{count}: {reason}", soft_wrap=True,
                      markup=True, highlight=False)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the wide tables to 80 columns
        console = Console(width=240)
    return console


# -- command line -----------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    out = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)([kK]?)", part)
        if not m:
            raise argparse.ArgumentTypeError(f"{part!r}: expected an integer like 512 or 2k")
        out.append(int(m.group(1)) * (1024 if m.group(2) else 1))
    return out


def _parser(prog: str = "attnhub bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="FlashAttention benchmark grid: attnhub backends, auto-dispatch and torch "
                    "SDPA peers in one run; writes JSON + PNG plots and prints a table.")
    p.add_argument("--quick", action="store_true",
                   help="smoke subset: bf16, head dims 64,128, seqlens 1k,4k, shorter timing")
    p.add_argument("--head-dims", "--heads-dims", dest="head_dims", type=_ints, nargs="+",
                   help="head dims (default 64 128 256)")
    p.add_argument("--seqlens", type=_ints, nargs="+",
                   help="sequence lengths, '2k' = 2048 (default 512 1k 2k 4k 8k 16k)")
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), help="default bf16 fp16")
    p.add_argument("--causal", choices=("both", "yes", "no"), default="both")
    p.add_argument("--directions", nargs="+", choices=DIRECTIONS, default=list(DIRECTIONS))
    p.add_argument("--tokens", type=int, help=f"tokens per batch (default {TOKENS})")
    p.add_argument("--hidden", type=int, help=f"heads x head_dim (default {HIDDEN})")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="only these methods (table names, e.g. triton-fa2 auto sdpa-cudnn)")
    p.add_argument("--exclude", nargs="+", metavar="NAME", default=[],
                   help="leave these methods out")
    p.add_argument("--small-seqlen", type=int, default=SMALL_SEQLEN,
                   help="naive and sdpa-math are timed only up to this seqlen")
    p.add_argument("--device", help="cuda (default when available) or cpu")
    p.add_argument("--warmup", type=float, help="do_bench warmup in ms (default 25, quick 10)")
    p.add_argument("--rep", type=float, help="do_bench rep in ms (default 100, quick 30)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time every method this many times per point, round by round in a "
                        "rotating order, and keep the median (default 1)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the once-per-point check against float32 SDPA MATH")
    p.add_argument("--out",
                   help="output folder (default benchmarks/results; with --from-json: the "
                        "JSON's folder)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--from-json", metavar="PATH",
                   help="re-render the table and plots from a results JSON; runs nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "attnhub bench") -> int:
    """``attnhub bench`` / ``benchmarks/fa_grid.py``.  Returns the exit code."""
    parser = _parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    console = _console()
    if args.from_json:
        try:
            data = load_results(Path(args.from_json))
        except (OSError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}")
            return 2
        render_tables(data, console)
        out = Path(args.out) if args.out else Path(args.from_json).parent
        if not args.no_plot:
            _plot_or_hint(data, out, console)
        return 0

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        console.print("[red]error:[/] --device cuda but torch sees no CUDA device "
                      f"(torch {torch.__version__}); use --device cpu with a small grid")
        return 2
    if device.type != "cuda" and args.tokens is None:
        console.print(f"[red]error:[/] no CUDA device: the FlashAttention grid (tokens={TOKENS}, "
                      f"hidden={HIDDEN}) is a GPU benchmark. For a CPU smoke run pass small "
                      "sizes, e.g. --device cpu --tokens 256 --hidden 64 --head-dims 32 "
                      "--seqlens 64 128 --dtypes bf16 --warmup 1 --rep 5")
        return 2
    quick = args.quick
    try:
        points = fa_grid(
            tokens=args.tokens or TOKENS, hidden=args.hidden or HIDDEN,
            head_dims=args.head_dims and [d for ds in args.head_dims for d in ds]
            or ((64, 128) if quick else HEAD_DIMS),
            seqlens=args.seqlens and [s for ss in args.seqlens for s in ss]
            or ((1024, 4096) if quick else SEQLENS),
            causal={"both": (False, True), "yes": (True,), "no": (False,)}[args.causal],
            dtypes=args.dtypes or (("bf16",) if quick else ("bf16", "fp16")))
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    warmup = args.warmup if args.warmup is not None else (10 if quick else 25)
    rep = args.rep if args.rep is not None else (30 if quick else 100)
    if args.rounds < 1:
        console.print(f"[red]error:[/] --rounds {args.rounds}: expected 1 or more (1 = one "
                      "timing per method and point)")
        return 2

    infos = _backend_infos()
    _print_backends(infos, console)
    methods = discover_methods(small_seqlen=args.small_seqlen, infos=infos)
    known = [m.name for m in methods]
    for name in args.exclude:
        if name not in known:
            console.print(f"[yellow]note:[/] --exclude {name}: no such method here")
    for name in args.methods or []:
        if name not in known:
            console.print(f"[red]error:[/] unknown method {name!r} (available here: "
                          f"{', '.join(known)}; see `attnhub list-backends` for backends)")
            return 2
    methods = [m for m in methods if (not args.methods or m.name in args.methods)
               and m.name not in args.exclude]
    out = Path(args.out or os.path.join("benchmarks", "results"))
    eta = estimate_seconds(points, methods, args.directions, warmup, rep)
    console.print(f"{len(points)} points x {len(args.directions)} directions x "
                  f"{len(methods)} methods ({', '.join(m.name for m in methods)}) on {device}; "
                  f"estimated {eta / 60:.1f} min")
    data = run_benchmark(points, device=device, methods=methods, directions=args.directions,
                         warmup_ms=warmup, rep_ms=rep, check=not args.no_check,
                         suite="fa_grid_quick" if quick else "fa_grid", infos=infos,
                         console=console, progress=not args.quiet, rounds=args.rounds,
                         checkpoint_dir=out)
    path = write_json(data, out)
    render_tables(data, console)
    console.print(f"wrote {path} ({data['elapsed_s']} s"
                  + (", partial)" if data.get("partial") else ")"))
    if not args.no_plot:
        _plot_or_hint(data, out, console)
    return 0


def _print_backends(infos: list, console) -> None:
    for i in infos:
        colour = "green" if i.status == "available" else "yellow"
        console.print(f"  backend {i.name} {i.version}: [{colour}]{i.status}[/]"
                      + (f" ({_first_lines(i.reason, 160)})" if i.reason else ""), highlight=False)
    if not any(i.status == "available" for i in infos):
        console.print("[yellow]warning:[/] no attnhub backend is available, not even naive: "
                      "is attnhub installed with its entry points (python -m pip install -e .)? "
                      "Only the torch SDPA peers will be timed.")


def _plot_or_hint(data: dict, out: Path, console) -> None:
    try:
        paths = plot_results(data, out)
    except ImportError:
        console.print("[yellow]no plots:[/] matplotlib is missing (pip install 'attnhub[bench]'); "
                      "re-render later with --from-json")
        return
    for p in paths:
        console.print(f"wrote {p}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
