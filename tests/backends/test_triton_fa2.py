"""triton-fa2 against :mod:`attnhub.reference` under the flash-attn tolerance rule.

CPU: the same kernels in Triton's interpreter (``TRITON_INTERPRET=1``, set below before
triton is imported when there is no CUDA device) on small shapes -- every feature, forward
and both backward variants ("atomic": dQ by float32 atomics in the dK/dV kernel; "split":
dQ in its own kernel).  GPU (``-m gpu``; skipped without CUDA): the issue's grid of head dims,
(Sq, Sk) pairs, MHA/GQA/MQA, masks, varlen, every autotuning candidate on two shapes,
``torch.compile(fullgraph=True)`` and CUDA-graph capture.

Cases are generated from the backend's declared capabilities: a case the backend says it
cannot run is skipped with its reasons (e.g. bf16 on the CPU interpreter).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():  # the CPU runs the kernels in Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

from attnhub.contract import Problem  # noqa: E402
from attnhub.testing.tolerance import assert_matches_reference, random_inputs  # noqa: E402
from attnhub_triton import TritonFA2Backend  # noqa: E402
from attnhub_triton import ops  # noqa: E402
from attnhub_triton._kernel_lean import _lpt_order  # noqa: E402

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

BACKEND = TritonFA2Backend()
CUDA = torch.cuda.is_available()
INTERPRETED = "cpu" in BACKEND.capabilities.devices and ops._interpreting()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")

HEADS = {"mha": (4, 4), "gqa": (4, 2), "mqa": (4, 1)}


def make_problem(*, d=64, dv=None, sq=37, sk=53, heads="mha", batch=1, dtype=torch.float16,
                 device="cpu", causal=False, window=None, softcap=None, lens=None):
    """A resolved Problem; ``lens=[(len_q, len_k), ...]`` makes it varlen (packed)."""
    hq, hk = HEADS[heads]
    dv = d if dv is None else dv
    kw = {}
    if lens is not None:
        lq = torch.tensor([0] + [a for a, _ in lens]).cumsum(0).to(torch.int32)
        lk = torch.tensor([0] + [b for _, b in lens]).cumsum(0).to(torch.int32)
        kw = dict(cu_seqlens_q=lq.to(device), cu_seqlens_k=lk.to(device),
                  max_seqlen_q=max(a for a, _ in lens), max_seqlen_k=max(b for _, b in lens))
        batch, sq, sk = len(lens), int(lq[-1]), int(lk[-1])
    return Problem(batch=batch, heads_q=hq, heads_kv=hk, seqlen_q=sq, seqlen_k=sk, head_dim=d,
                   head_dim_v=dv, dtype=dtype, device=torch.device(device), causal=causal,
                   scale=d ** -0.5, window=window, softcap=softcap, **kw)


def case_id(p: Problem, layout: str = "bhsd", extra: str = "") -> str:
    dt = str(p.dtype).replace("torch.", "")
    dims = f"d{p.head_dim}" + (f"v{p.head_dim_v}" if p.head_dim_v != p.head_dim else "")
    if p.is_varlen:
        size = f"varlen{p.batch}"
    else:
        size = f"s{p.seqlen_q}x{p.seqlen_k}"
    heads = "mha" if p.heads_q == p.heads_kv else ("mqa" if p.heads_kv == 1 else "gqa")
    feats = [f for f in ("causal", "window", "softcap") if getattr(p, "is_" + f)]
    parts = ["triton-fa2", p.device.type, dt, dims, size, heads, *feats, layout]
    return "-".join(parts + ([extra] if extra else []))


def skip_unsupported(p: Problem) -> None:
    reasons = BACKEND.capabilities.reasons(p) + BACKEND.not_supported_reasons(p)
    if reasons:
        pytest.skip("; ".join(reasons))


def env(**values):
    """The kernel switches ``values`` set for a block, then put back (ops.pinned)."""
    return ops.pinned(**{k: str(v) for k, v in values.items()})


@pytest.fixture
def launches(monkeypatch):
    """The kernel kinds launched (``ops._launch`` calls), in order: shows which forward ran."""
    kinds = []
    launch = ops._launch

    def spy(kind, *args, **kwargs):
        kinds.append(kind)
        return launch(kind, *args, **kwargs)

    monkeypatch.setattr(ops, "_launch", spy)
    return kinds


@pytest.fixture(params=ops.BWD_VARIANTS)
def bwd_variant(request, monkeypatch):
    """Runs the test once per backward variant (through ATTNHUB_TRITON_BWD, which the
    backend's backward reads on every call)."""
    monkeypatch.setenv("ATTNHUB_TRITON_BWD", request.param)
    return request.param


def check(p: Problem, layout: str = "bhsd", seed: int = 0):
    skip_unsupported(p)
    torch.manual_seed(seed)
    q, k, v = random_inputs(p, layout=layout)
    return assert_matches_reference(BACKEND, q, k, v, p, backward=True)


# -- CPU: the kernels in the interpreter ------------------------------------------------------

needs_interpreter = pytest.mark.skipif(
    not INTERPRETED,
    reason="CPU cases run the kernels in Triton's interpreter: needs TRITON_INTERPRET=1 set "
           "before attnhub_triton is imported (set automatically without CUDA; this run has "
           "CUDA or imported attnhub_triton earlier)")

F16, F32, BF16 = torch.float16, torch.float32, torch.bfloat16
CPU_CASES = [  # (problem kwargs, layout); tiny shapes: the interpreter is slow
    (dict(d=32, sq=37, sk=53), "bhsd"),
    (dict(d=40, sq=53, sk=37, heads="gqa", causal=True), "bshd"),  # rows with no key
    (dict(d=64, sq=40, sk=40, heads="mqa", window=(7, 3), batch=2), "bhsd"),
    (dict(d=40, sq=33, sk=20, heads="gqa", causal=True, softcap=5.0, dtype=F32), "bhsd"),
    (dict(d=32, sq=33, sk=50, heads="mqa", window=(-1, 5), dtype=F32), "bhsd"),
    (dict(d=32, sq=50, sk=33, heads="gqa", window=(4, -1), causal=True, dtype=F32), "bhsd"),
    (dict(d=59, sq=40, sk=40, heads="mqa", window=(7, 3), softcap=3.0, dtype=F32), "bshd"),
    (dict(d=32, dv=48, sq=29, sk=45, causal=True), "bshd"),
    (dict(d=40, sq=20, sk=6, window=(0, 0), dtype=F32), "bhsd"),  # mostly empty rows
    (dict(d=32, sq=1, sk=64, heads="mqa", causal=True), "bhsd"),
    (dict(d=32, sq=64, sk=1, heads="gqa", causal=True), "bhsd"),
    (dict(d=40, heads="gqa", causal=True, lens=[(5, 30), (0, 9), (40, 40), (17, 0)]), "varlen"),
    (dict(d=32, heads="mqa", window=(6, 2), softcap=4.0, dtype=F32,
          lens=[(23, 11), (1, 33), (30, 30)]), "varlen"),
    (dict(d=32, sq=24, sk=24, dtype=BF16), "bhsd"),  # refused on the CPU: the skip is the test
]


@needs_interpreter
@pytest.mark.parametrize(
    "kw,layout", [pytest.param(kw, lay, id=case_id(make_problem(**kw), lay)) for kw, lay in CPU_CASES])
def test_cpu_matches_reference(kw, layout, bwd_variant):
    p = make_problem(**kw)
    if p.device.type == "cpu" and p.dtype == BF16:
        assert BACKEND.not_supported_reasons(p), "bf16 on the CPU interpreter must be refused"
    check(p, "bhsd" if layout == "varlen" else layout)


@needs_interpreter
@pytest.mark.parametrize("kw", [dict(d=32, sq=24, sk=30, heads="gqa", causal=True),
                                dict(d=32, heads="gqa", causal=True, lens=[(10, 16), (14, 14)])],
                         ids=["dense", "varlen"])
def test_cpu_rows_whose_offsets_pass_int32(kw):
    """q and v with a sequence stride that puts their rows past 2**31 elements (a BSHD tensor
    of ~500k tokens, as seen by the kernels' int32 in-sequence offsets): the kernels get
    head-major copies (the pointer paths segfaulted under the interpreter before)."""
    from attnhub.testing.tolerance import long_rows_view

    p = make_problem(**kw)
    torch.manual_seed(7)
    q, k, v = random_inputs(p)
    rows_q = p.max_seqlen_q if p.is_varlen else p.seqlen_q
    rows_k = p.max_seqlen_k if p.is_varlen else p.seqlen_k
    q, v = long_rows_view(q, rows_q), long_rows_view(v, rows_k)
    assert_matches_reference(BACKEND, q, k, v, p, backward=True)


def test_batches_past_the_grid_limit_are_refused():
    """Grid z is the batch (at most 65535): a launch past it fails with 'invalid argument',
    and a run-time failure would retire the backend for the whole class; refused instead."""
    assert any("65535" in r for r in BACKEND.not_supported_reasons(
        make_problem(d=64, sq=8, sk=8, batch=65536)))
    assert not any("65535" in r for r in BACKEND.not_supported_reasons(
        make_problem(d=64, sq=8, sk=8, batch=65535)))


def test_problems_past_int32_even_head_major_are_refused():
    p = make_problem(d=128, sq=1 << 24, sk=16)
    assert any("2**31" in r for r in BACKEND.not_supported_reasons(p))
    assert not any("2**31" in r for r in BACKEND.not_supported_reasons(
        make_problem(d=128, sq=(1 << 24) - 1, sk=16)))


@needs_interpreter
@pytest.mark.parametrize("tma", ["0", "auto"], ids=["pointers", "tma"])
@pytest.mark.parametrize("blocks", [(32, 16), (16, 32)], ids=["m32n16", "m16n32"])
def test_cpu_block_shapes_and_load_paths(tma, blocks, monkeypatch, bwd_variant):
    """BLOCK_M != BLOCK_N in every kernel, through pointer loads and TMA descriptors
    (the interpreter emulates tensor descriptors; dQ atomics stay pointer-based there)."""
    monkeypatch.setattr(ops, "INTERPRET_BLOCKS", {"fwd": blocks, "dq": blocks,
                                                  "dkdv": blocks[::-1], "dkdvq": blocks[::-1]})
    with env(ATTNHUB_TRITON_TMA=tma):
        check(make_problem(d=64, sq=45, sk=61, heads="gqa", window=(20, 4), dtype=F32))


DELTA_PREPASS_CASES = [  # Dv != D, rows with no key, varlen with an empty sequence, fp32
    (dict(d=32, dv=48, sq=29, sk=45, causal=True), "bshd"),
    (dict(d=40, sq=53, sk=37, heads="gqa", causal=True), "bhsd"),
    (dict(d=40, heads="gqa", causal=True, lens=[(5, 30), (0, 9), (40, 40), (17, 0)]), "varlen"),
    (dict(d=59, sq=40, sk=40, heads="mqa", window=(7, 3), softcap=3.0, dtype=F32), "bshd"),
]


@needs_interpreter
@pytest.mark.parametrize("kw,layout", [
    pytest.param(kw, lay, id=case_id(make_problem(**kw), lay, "delta-prepass"))
    for kw, lay in DELTA_PREPASS_CASES])
def test_cpu_split_backward_with_delta_prepass(kw, layout, monkeypatch):
    """ATTNHUB_TRITON_DELTA_PREPASS=1: the split backward reads Δ from the pre-pass
    (_attn_bwd_delta) instead of computing it in the dQ kernel -- same results."""
    passes = []
    delta = ops._delta
    monkeypatch.setattr(ops, "_delta", lambda *a: passes.append(1) or delta(*a))
    with env(ATTNHUB_TRITON_DELTA_PREPASS="1", ATTNHUB_TRITON_BWD="split"):
        check(make_problem(**kw), "bhsd" if layout == "varlen" else layout)
    assert passes, "the pre-pass did not run"


@needs_interpreter
@pytest.mark.parametrize("kw,layout", [
    pytest.param(kw, lay, id=case_id(make_problem(**kw), lay, "dkdv-parts"))
    for kw, lay in DELTA_PREPASS_CASES])
def test_cpu_split_backward_in_two_parts(kw, layout, launches, monkeypatch):
    """ATTNHUB_TRITON_DKDV_PARTS=1: the dK/dV pass as two launches of _attn_bwd_dkdv, dV
    (PART 1) then dK (PART 2), one accumulator each -- same results, and each part writes
    only its own gradient (outputs are allocated NaN-filled here, so a gradient a part
    leaves unwritten fails the comparison)."""
    empty_like_layout = ops._empty_like_layout
    monkeypatch.setattr(ops, "_empty_like_layout",
                        lambda *a, **kw: empty_like_layout(*a, **kw).fill_(float("nan")))
    with env(ATTNHUB_TRITON_DKDV_PARTS="1", ATTNHUB_TRITON_BWD="split"):
        check(make_problem(**kw), "bhsd" if layout == "varlen" else layout)
    assert "dv_part" in launches and "dk_part" in launches and "dkdv" not in launches, launches


@pytest.mark.parametrize("variable,table,use,d,padded", [
    ("ATTNHUB_TRITON_DKDV_PARTS", "DKDV_PARTS", "_use_dkdv_parts", 200, 256),
    ("ATTNHUB_TRITON_DELTA_PREPASS", "DELTA_PREPASS", "_use_delta_prepass", 40, 64)])
def test_split_backward_switches(variable, table, use, d, padded, monkeypatch):
    """Each switch, else its table by padded head dim (both empty: off everywhere)."""
    p = make_problem(d=d, sq=16, sk=16)
    q, k, v = random_inputs(p)
    call = ops._Launch(q, k, v, p.scale, -1, -1, 0.0, None, None, 0, 0)
    monkeypatch.delenv(variable, raising=False)
    assert not getattr(ops, use)(call)
    monkeypatch.setitem(getattr(ops, table), padded, True)
    assert getattr(ops, use)(call)
    monkeypatch.setenv(variable, "0")
    assert not getattr(ops, use)(call)


# The lean forward (_kernel_lean.py): dense, no window/softcap, D == Dv in {64, 128}, fp16
# here (bf16 is refused on the CPU).  Each case runs with it on and off; the default tiles
# (32x16) put several key blocks on a causal diagonal, one case swaps them.
LEAN_CASES = [  # (problem kwargs, layout, interpreter blocks or None)
    (dict(d=64, sq=113, sk=203, heads="gqa", causal=True), "bshd", None),  # Sq < Sk
    (dict(d=64, sq=203, sk=113, causal=True), "bhsd", None),  # Sq > Sk: rows with no key
    (dict(d=128, sq=113, sk=203, heads="mqa"), "bhsd", None),  # partial last block
    (dict(d=128, sq=45, sk=61, heads="gqa", causal=True), "bshd", (16, 32)),
    (dict(d=64, sq=1, sk=64, heads="mqa", causal=True), "bhsd", None),
    (dict(d=64, sq=64, sk=1, heads="gqa", causal=True), "bhsd", None),
    (dict(d=256, sq=45, sk=61, heads="gqa", causal=True), "bshd", None),  # forward only
]


def _lean_param(kw, layout, blocks, lean):
    ident = case_id(make_problem(**kw), layout, ("lean" if lean == "1" else "general") +
                    (f"-m{blocks[0]}n{blocks[1]}" if blocks else ""))
    return pytest.param(kw, layout, blocks, lean, id=ident)


@needs_interpreter
@pytest.mark.parametrize("kw,layout,blocks,lean", [
    _lean_param(kw, layout, blocks, lean) for kw, layout, blocks in LEAN_CASES for lean in "10"])
def test_cpu_lean_forward(kw, layout, blocks, lean, launches, monkeypatch):
    """The lean forward where it applies (ATTNHUB_TRITON_LEAN=1), against the reference and
    through the (unchanged) backward, which reads its O and LSE; =0: the general forward on
    the same inputs."""
    if blocks:
        monkeypatch.setitem(ops.INTERPRET_BLOCKS, "lean", blocks)
    p = make_problem(**kw)
    torch.manual_seed(0)
    q, k, v = random_inputs(p, layout=layout)
    # the general forward's backward is tested above; PTR_FWD=0 keeps "0" on the TMA path
    with env(ATTNHUB_TRITON_LEAN=lean, ATTNHUB_TRITON_PTR_FWD="0"):
        assert_matches_reference(BACKEND, q, k, v, p, backward=lean == "1")
    forwards = {kind for kind in launches if kind in ("fwd", "lean")}
    assert forwards == {"lean" if lean == "1" else "fwd"}, launches


@needs_interpreter
@pytest.mark.parametrize("window_bytes", [1, 3 * 2 * 203 * 64 * 2 // 2])  # W = 1; W = 3 or 2
@pytest.mark.parametrize("kw,layout", [
    (dict(d=64, sq=113, sk=203, heads="gqa", causal=True, batch=2), "bshd"),
    (dict(d=64, sq=203, sk=113, causal=True, batch=3), "bhsd")])  # Sq > Sk: keyless rows
def test_cpu_lean_forward_in_the_longest_first_window_order(kw, layout, window_bytes,
                                                            launches, monkeypatch):
    """ATTNHUB_TRITON_LPT=1 (causal lean forward, programs remapped across windows of
    (batch, head) pairs): the same answers, with windows of one pair and of several (3 of
    the first case's 8 pairs, the last window partial; 2 of the second's 12)."""
    monkeypatch.setattr(ops, "LPT_WINDOW_BYTES", window_bytes)
    p = make_problem(**kw)
    torch.manual_seed(0)
    q, k, v = random_inputs(p, layout=layout)
    with env(ATTNHUB_TRITON_LEAN="1", ATTNHUB_TRITON_LPT="1"):
        assert_matches_reference(BACKEND, q, k, v, p, backward=False)
    assert "lean" in launches


@triton.jit
def _lpt_probe(out, window):
    """Where _lpt_order sends each program: (block, head, batch) at its launch index."""
    m, h, b = _lpt_order(tl.program_id(0), tl.program_id(1), tl.program_id(2),
                         tl.num_programs(0), tl.num_programs(1), tl.num_programs(2), window)
    lin = tl.program_id(0) + tl.num_programs(0) * (tl.program_id(1) + tl.num_programs(1)
                                                   * tl.program_id(2))
    tl.store(out + 3 * lin, m)
    tl.store(out + 3 * lin + 1, h)
    tl.store(out + 3 * lin + 2, b)


@needs_interpreter
def test_lpt_order_is_a_permutation_longest_first_per_window():
    """_lpt_order, run for every program of a (5 blocks, 3 heads, 2 batches) grid: each
    (block, head, batch) exactly once; programs in launch order take windows of W pairs
    whole, block ranks descending within a window."""
    n_m, n_h, n_b = 5, 3, 2
    for window in (0, 1, 2, 4, 6):
        out = torch.full((n_m * n_h * n_b, 3), -1, dtype=torch.int32)
        _lpt_probe[(n_m, n_h, n_b)](out, window)
        got = [tuple(r) for r in out.tolist()]
        assert sorted(got) == sorted((m, h, b) for m in range(n_m) for h in range(n_h)
                                     for b in range(n_b)), window
        if window == 0:  # each head's blocks longest first, heads in grid order
            assert [g[0] for g in got[:n_m]] == list(range(n_m - 1, -1, -1))
            continue
        for w0 in range(0, n_h * n_b, window):  # window by window, in launch order
            wc = min(window, n_h * n_b - w0)
            chunk = got[w0 * n_m:(w0 + wc) * n_m]
            assert {h + n_h * b for _, h, b in chunk} == set(range(w0, w0 + wc))
            ranks = [m for m, _, _ in chunk]
            assert ranks == sorted(ranks, reverse=True)  # longest (last) block first


def test_lpt_window_follows_the_measured_range_and_fits_the_byte_budget(monkeypatch):
    class Call:
        batch, heads_q, heads_k, seqlen_k = 4, 16, 4, 8192

    class Short(Call):
        seqlen_k = ops.LPT_MIN_KEYS - 1

    q = torch.empty(1, 1, 1, 128, dtype=torch.float16)
    monkeypatch.delenv("ATTNHUB_TRITON_LPT", raising=False)
    assert ops.lpt_window(Short, q) == 0 and ops.lpt_window(Call, q) == 16  # unset: measured
    monkeypatch.setenv("ATTNHUB_TRITON_LPT", "0")
    assert ops.lpt_window(Call, q) == 0
    monkeypatch.setenv("ATTNHUB_TRITON_LPT", "1")
    assert ops.lpt_window(Short, q) > 0
    per_pair = 2 * 8192 * 128 * 2 // 4  # K and V, shared by the group's 4 query heads
    assert ops.lpt_window(Call, q) == ops.LPT_WINDOW_BYTES // per_pair == 16
    monkeypatch.setattr(ops, "LPT_WINDOW_BYTES", 1)
    assert ops.lpt_window(Call, q) == 1  # never 0 when on
    monkeypatch.setattr(ops, "LPT_WINDOW_BYTES", 1 << 40)
    assert ops.lpt_window(Call, q) == 4 * 16  # never more than every pair
    assert "ATTNHUB_TRITON_LPT" in ops._KERNEL_SWITCHES  # part of the dispatch cache key


@needs_interpreter
@pytest.mark.parametrize("kw,layout,blocks", [
    pytest.param(kw, layout, blocks, id=case_id(make_problem(**kw), layout, "lean-dkdv" + (
        f"-m{blocks[1]}n{blocks[0]}" if blocks else "")))
    for kw, layout, blocks in LEAN_CASES if kw["d"] != 256])
def test_cpu_lean_backward(kw, layout, blocks, launches, monkeypatch):
    """The lean dK/dV kernel (ATTNHUB_TRITON_LEAN_BWD=1) as the split backward's second pass,
    against the reference.  Its interpreter tiles (16 query rows x 32 keys) put two query
    blocks on each causal diagonal; one case swaps them (one key block per two steps)."""
    if blocks:
        monkeypatch.setitem(ops.INTERPRET_BLOCKS, "lean_dkdv", blocks[::-1])
    p = make_problem(**kw)
    torch.manual_seed(0)
    q, k, v = random_inputs(p, layout=layout)
    with env(ATTNHUB_TRITON_LEAN_BWD="1", ATTNHUB_TRITON_BWD="split"):
        assert_matches_reference(BACKEND, q, k, v, p, backward=True)
    assert launches[-2:] == ["dq", "lean_dkdv"], launches


def _ptxas() -> bool:
    import triton
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas"))


@pytest.mark.skipif(not _ptxas(), reason="Triton's bundled ptxas is missing")
def test_sm90_lean_kernels_leave_room_for_two_programs():
    """Compiled for sm90 with Triton's own ptxas (no GPU needed): every lean dK/dV
    candidate and the d256 lean forward's tile fit two programs per SM by registers and
    shared memory -- the reason these tiles exist -- and the tiles routed by default (d64's
    lean dK/dV) keep spills out of their loops (at most a handful of local loads/stores
    between the first and the last HGMMA; Triton 3.6 and 3.9 both give 0).  Causal: the
    larger variant."""
    jobs, defaults = [], set()
    for d in (64, 128):
        p = make_problem(d=d, sq=4096, sk=4096, causal=True, dtype=BF16)
        for kwargs, w, st in ops.candidate_configs("lean_dkdv", p):
            if (kwargs["BLOCK_M"], kwargs["BLOCK_N"], w, st) == ops._DEFAULTS["lean_dkdv"][d] \
                    and ops.LEAN_BWD_DEFAULT.get((d, True)):
                defaults.add(len(jobs))
            jobs.append(("lean_dkdv", dict(HEAD_DIM=d, IS_CAUSAL=True, **kwargs), w, st))
    assert len(jobs) >= 6 and defaults, jobs
    bm, bn, w, st = ops._DEFAULTS["lean"][256]
    jobs.append(("lean", dict(HEAD_DIM=256, IS_CAUSAL=True, BLOCK_M=bm, BLOCK_N=bn,
                              WARP_SPEC=False), w, st))
    from attnhub_triton import sm90_report
    for n, (job, r) in enumerate(zip(jobs, sm90_report.report_subprocess(jobs))):
        assert r["programs_per_sm"] >= 2, (job, r)
        if n in defaults:
            assert r["loop_ldl"] + r["loop_stl"] <= 8, (job, r)


LEAN_NOT_ELIGIBLE = [  # one reason each; tiny, the route is what is tested
    dict(d=40, causal=True),  # head dim not 64/128
    dict(d=64, dv=32),  # Dv != D
    dict(d=64, dtype=F32),
    dict(d=64, window=(8, 0)),
    dict(d=64, window=(-1, 4)),
    dict(d=64, softcap=5.0),
    dict(d=64, causal=True, lens=[(9, 12), (16, 16)]),  # varlen
]


@needs_interpreter
@pytest.mark.parametrize("kw", [pytest.param(kw, id=case_id(make_problem(**kw)))
                                for kw in LEAN_NOT_ELIGIBLE])
def test_cpu_lean_route(kw, launches, monkeypatch):
    """Problems outside the lean kernel's case take the general forward even when it is
    forced on; an eligible one follows LEAN_DEFAULT from LEAN_MIN_KEYS keys when the
    variable is unset."""
    p = make_problem(**dict(kw, sq=16, sk=16))
    q, k, v = random_inputs(p)
    with env(ATTNHUB_TRITON_LEAN="1"):
        ops.flash_forward(q, k, v, p)
    assert launches == ["fwd"]
    p = make_problem(d=64, sq=16, sk=16, causal=True)
    q, k, v = random_inputs(p)
    monkeypatch.delenv("ATTNHUB_TRITON_LEAN", raising=False)
    monkeypatch.setitem(ops.LEAN_MIN_KEYS, 64, 16)
    for on in (True, False):
        monkeypatch.setitem(ops.LEAN_DEFAULT, (64, True), on)
        launches.clear()
        ops.flash_forward(q, k, v, p)
        assert launches == ["lean" if on else "fwd"]
    # below LEAN_MIN_KEYS the default is the general kernel; ATTNHUB_TRITON_LEAN=1 still wins
    monkeypatch.setitem(ops.LEAN_MIN_KEYS, 64, 17)
    launches.clear()
    ops.flash_forward(q, k, v, p)
    assert launches == ["fwd"]
    with env(ATTNHUB_TRITON_LEAN="1"):
        launches.clear()
        ops.flash_forward(q, k, v, p)
    assert launches == ["lean"]


# The general forward on pointer loads (ops.POINTER_FWD, "fwd_ptr"): dense d64, 16-bit,
# more than 64 query rows.
POINTER_CASES = [  # (problem kwargs, layout)
    (dict(d=64, sq=113, sk=203, heads="gqa", causal=True), "bshd"),  # Sq < Sk
    (dict(d=64, sq=203, sk=113, causal=True), "bhsd"),  # Sq > Sk: rows with no key
    (dict(d=64, sq=97, sk=150, heads="mqa"), "bhsd"),  # partial blocks, not causal
]


def _forwards(launches) -> list:
    return [kind for kind in launches if kind in ("fwd", "fwd_ptr", "lean")]


@needs_interpreter
@pytest.mark.parametrize("kw,layout", [pytest.param(kw, layout, id=case_id(
    make_problem(**kw), layout, "pointer")) for kw, layout in POINTER_CASES])
def test_cpu_pointer_forward(kw, layout, launches):
    """The pointer-load route against the reference, and its O and LSE through the
    backward."""
    p = make_problem(**kw)
    torch.manual_seed(0)
    q, k, v = random_inputs(p, layout=layout)
    with env(ATTNHUB_TRITON_PTR_FWD="1"):
        assert_matches_reference(BACKEND, q, k, v, p, backward=True)
    assert set(_forwards(launches)) == {"fwd_ptr"}, launches


@needs_interpreter
def test_cpu_pointer_forward_route(launches, monkeypatch):
    """POINTER_FWD's key span when ATTNHUB_TRITON_PTR_FWD is unset, the switch both ways,
    ATTNHUB_TRITON_LEAN=1 over the table, and the cases outside the route."""
    for name in ("ATTNHUB_TRITON_PTR_FWD", "ATTNHUB_TRITON_LEAN"):
        monkeypatch.delenv(name, raising=False)
    p = make_problem(d=64, sq=80, sk=80, causal=True)
    q, k, v = random_inputs(p)

    def route(**switches):
        launches.clear()
        with env(**switches):
            ops.flash_forward(q, k, v, p)
        return _forwards(launches)

    for span, taken in (((0, None), True), ((80, 80), True), ((0, 79), False),
                        ((81, None), False), (None, False)):
        if span is None:
            monkeypatch.delitem(ops.POINTER_FWD, (64, True))
        else:
            monkeypatch.setitem(ops.POINTER_FWD, (64, True), span)
        assert route() == (["fwd_ptr"] if taken else ["fwd"]), span
    assert route(ATTNHUB_TRITON_PTR_FWD="1") == ["fwd_ptr"]
    monkeypatch.setitem(ops.POINTER_FWD, (64, True), (0, None))
    assert route(ATTNHUB_TRITON_PTR_FWD="0") == ["fwd"]
    assert route(ATTNHUB_TRITON_LEAN="1") == ["lean"]
    assert route(ATTNHUB_TRITON_LEAN="1", ATTNHUB_TRITON_PTR_FWD="1") == ["fwd_ptr"]
    for kw in LEAN_NOT_ELIGIBLE + [dict(d=128, causal=True), dict(d=64, sq=64, sk=80)]:
        p = make_problem(**dict(dict(sq=80, sk=80), **kw))
        q, k, v = random_inputs(p)
        assert route(ATTNHUB_TRITON_PTR_FWD="1") != ["fwd_ptr"], kw


@needs_interpreter
@pytest.mark.parametrize("kw", [pytest.param(kw, id=case_id(make_problem(**kw)))
                                for kw in LEAN_NOT_ELIGIBLE])
def test_cpu_lean_backward_route(kw, launches, monkeypatch):
    """The backward's route: outside the lean case the general dK/dV kernel runs even when
    the lean one is forced on; the atomic variant never takes it; an eligible problem
    follows LEAN_BWD_DEFAULT when ATTNHUB_TRITON_LEAN_BWD is unset (d64 on, d128 off)."""
    def backward(p, variant="split"):
        q, k, v = random_inputs(p)
        o, lse = ops.flash_forward(q, k, v, p)
        launches.clear()
        ops.flash_backward(torch.randn_like(o), q, k, v, o, lse, p, variant=variant)
        return launches[-1]

    with env(ATTNHUB_TRITON_LEAN_BWD="1"):
        assert backward(make_problem(**dict(kw, sq=16, sk=16))) == "dkdv"
        eligible = make_problem(d=64, sq=16, sk=16, causal=True)
        assert backward(eligible) == "lean_dkdv"
        assert backward(make_problem(d=256, sq=16, sk=16, causal=True)) == "dkdv"  # fwd only
        assert backward(eligible, "atomic") == "dkdvq"
    monkeypatch.delenv("ATTNHUB_TRITON_LEAN_BWD", raising=False)
    assert backward(eligible) == "lean_dkdv"  # measured to win at d64
    assert backward(make_problem(d=128, sq=16, sk=16, causal=True)) == "dkdv"  # and lose at d128
    monkeypatch.setitem(ops.LEAN_BWD_DEFAULT, (64, True), False)
    assert backward(eligible) == "dkdv"
    monkeypatch.setitem(ops.LEAN_BWD_DEFAULT, (64, True), True)
    with env(ATTNHUB_TRITON_LEAN_BWD="0"):
        assert backward(eligible) == "dkdv"


@needs_interpreter
def test_cpu_broadcast_rows_take_pointer_loads(launches):
    """The descriptors are per (sequence, head) with the row stride as theirs.  A dO whose
    rows are broadcast (stride 0: the gradient of ``(o * w).sum()`` for w of shape (D,)) is
    outside what TMA documents, so it takes pointer loads -- the general dK/dV kernel, not
    the lean (TMA-only) one -- and the gradients are right.  Batch or head strides of 0
    (an expanded K/V) never reach a descriptor and keep TMA."""
    p = make_problem(d=64, sq=16, sk=16, causal=True)
    q, k, v = random_inputs(p)
    cpu = torch.device("cpu")
    assert ops._tma_ok(cpu, (q,))
    do_rows = torch.randn(p.head_dim_v, dtype=q.dtype).expand(*q.shape[:3], p.head_dim_v)
    assert not ops._tma_ok(cpu, (do_rows,))
    assert ops._tma_ok(cpu, (k[:, :1].expand_as(k), k[:1].expand_as(k)))
    o, lse = ops.flash_forward(q, k, v, p)
    launches.clear()
    got = ops.flash_backward(do_rows, q, k, v, o, lse, p, variant="split")
    assert "lean_dkdv" not in launches and "dkdv" in launches
    want = ops.flash_backward(do_rows.contiguous(), q, k, v, o, lse, p, variant="split")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


@needs_interpreter
def test_cpu_sliced_packed_qkv(bwd_variant):
    """q, k, v as slices of one packed (B, S, 3, H, D) buffer: no copies, strides only."""
    p = make_problem(d=32, sq=33, sk=33, causal=True)
    torch.manual_seed(1)
    qkv = torch.randn(1, 33, 3, 4, 32).to(F16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    assert_matches_reference(BACKEND, q, k, v, p, backward=True)


@needs_interpreter
def test_cpu_output_layout_follows_input(bwd_variant):
    p = make_problem(d=32, sq=20, sk=20)
    q, k, v = random_inputs(p, layout="bshd")
    o, lse = BACKEND.forward(q, k, v, p)
    assert o.transpose(1, 2).is_contiguous() and lse.is_contiguous()
    dq, dk, dv = BACKEND.backward(torch.randn_like(o), q, k, v, o, lse, p)
    assert dq.transpose(1, 2).is_contiguous() and dk.shape == k.shape and dv.shape == v.shape


@needs_interpreter
@pytest.mark.parametrize("variant", ops.BWD_VARIANTS)
def test_cpu_custom_ops_opcheck(variant):
    """Schema, fake implementation and dispatch of attnhub_triton::fwd / ::bwd."""
    p = make_problem(d=16, sq=16, sk=16, causal=True, dtype=F32)
    q, k, v = random_inputs(p)
    o, lse = ops.flash_forward(q, k, v, p)
    left, right = p.window_bounds
    tail = (p.scale, left, right, 0.0, None, None, 0, 0)
    torch.library.opcheck(torch.ops.attnhub_triton.fwd.default, (q, k, v, *tail))
    torch.library.opcheck(torch.ops.attnhub_triton.bwd.default,
                          (torch.randn_like(o), q, k, v, o, lse, *tail, variant))


@needs_interpreter
def test_cpu_torch_compile_fullgraph(bwd_variant):
    """Dynamo traces flash_forward/backward as two custom-op nodes (aot_eager: no C++
    toolchain needed on the CPU; the GPU test uses inductor)."""
    p = make_problem(d=16, sq=16, sk=24, heads="gqa", window=(8, 0), dtype=F32)
    q, k, v = random_inputs(p)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def fwd_bwd(q, k, v, do):
        o, lse = ops.flash_forward(q, k, v, p)
        return (o, lse) + tuple(ops.flash_backward(do, q, k, v, o, lse, p))

    do = torch.randn(1, 4, 16, 16)
    got = fwd_bwd(q, k, v, do)
    o, lse = ops.flash_forward(q, k, v, p)
    want = (o, lse) + tuple(ops.flash_backward(do, q, k, v, o, lse, p))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_bwd_variant_choice(monkeypatch):
    """The argument wins over ATTNHUB_TRITON_BWD, which wins over the default ("split");
    unknown names fail with the known ones listed; torch's deterministic mode refuses the
    atomic variant (a warning with warn_only), as torch does for its own kernels."""
    monkeypatch.delenv("ATTNHUB_TRITON_BWD", raising=False)
    assert ops._bwd_variant(None) == "split"
    assert ops._bwd_variant("atomic") == "atomic"
    monkeypatch.setenv("ATTNHUB_TRITON_BWD", "atomic")
    assert ops._bwd_variant(None) == "atomic"
    assert ops._bwd_variant("split") == "split"
    monkeypatch.setenv("ATTNHUB_TRITON_BWD", "fast")
    with pytest.raises(ValueError, match="atomic, split"):
        ops._bwd_variant(None)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert ops._bwd_variant("split") == "split"
    with pytest.raises(RuntimeError, match="not deterministic"):
        ops._bwd_variant("atomic")
    monkeypatch.setattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: True)
    with pytest.warns(UserWarning, match="not deterministic"):
        assert ops._bwd_variant("atomic") == "atomic"


# -- GPU ------------------------------------------------------------------------------------

GPU_HEAD_DIMS = (32, 40, 64, 72, 96, 128, 160, 192, 256)


def _gpu_cases():
    cases = []
    for d in GPU_HEAD_DIMS:  # every head dim: ragged shapes, GQA and MHA, causal and not
        cases.append(dict(d=d, sq=113, sk=203, heads="gqa", batch=2, dtype=BF16))
        cases.append(dict(d=d, sq=1023, sk=1024, causal=True, dtype=BF16))
    for d in (64, 128):  # decode and single-key extremes, MQA
        cases.append(dict(d=d, sq=1, sk=4096, heads="mqa", causal=True, dtype=BF16))
        cases.append(dict(d=d, sq=4096, sk=1, heads="gqa", causal=True, dtype=BF16))
        cases.append(dict(d=d, sq=4096, sk=1, heads="mqa", dtype=BF16))
        cases.append(dict(d=d, sq=113, sk=203, dtype=F16, batch=2))
        cases.append(dict(d=d, sq=300, sk=257, causal=True, heads="mqa", dtype=torch.float32))
    for d in (40, 128, 256):  # sliding window + softcap, Sq != Sk both ways
        cases.append(dict(d=d, sq=1023, sk=1024, heads="gqa", window=(64, 16), softcap=30.0,
                          dtype=BF16))
        cases.append(dict(d=d, sq=203, sk=113, window=(32, -1), causal=True, dtype=BF16))
    cases.append(dict(d=96, sq=513, sk=700, heads="mqa", causal=True, softcap=20.0, dtype=F16))
    cases.append(dict(d=128, dv=64, sq=300, sk=301, heads="gqa", causal=True, dtype=BF16))
    ragged = [(1, 200), (113, 50), (0, 7), (300, 300), (64, 0), (257, 1000)]
    cases.append(dict(d=64, heads="gqa", causal=True, lens=ragged, dtype=BF16))
    cases.append(dict(d=72, heads="mqa", lens=ragged, dtype=F16))
    cases.append(dict(d=128, heads="gqa", window=(100, 10), softcap=15.0, lens=ragged, dtype=BF16))
    return [(dict(c, device="cuda"), "bhsd") for c in cases] + [
        (dict(d=128, sq=1023, sk=1024, heads="gqa", causal=True, dtype=BF16, device="cuda"), "bshd"),
        (dict(d=40, sq=113, sk=203, heads="mqa", dtype=BF16, device="cuda"), "bshd"),
    ]


def _gpu_param(kw, layout):
    try:
        p = make_problem(**kw)
        ident = case_id(p, layout)
    except (RuntimeError, AssertionError):  # no CUDA: ids only, the test skips
        ident = case_id(make_problem(**dict(kw, device="cpu")), layout).replace("-cpu-", "-cuda-")
    return pytest.param(kw, layout, id=ident, marks=[pytest.mark.gpu, gpu])


@pytest.mark.parametrize("kw,layout", [_gpu_param(kw, lay) for kw, lay in _gpu_cases()])
def test_gpu_matches_reference(kw, layout, bwd_variant):
    check(make_problem(**kw), layout)


def _config_cases():
    out = []
    for d in (64, 128):
        for causal in (False, True):
            kw = dict(d=d, sq=1000, sk=1000, heads="gqa", causal=causal, dtype=BF16, device="cuda")
            p = make_problem(**dict(kw, device="cpu"))
            ident = case_id(p).replace("-cpu-", "-cuda-") + "-every-config"
            out.append(pytest.param(kw, id=ident, marks=[pytest.mark.gpu, gpu]))
    return out


@pytest.mark.parametrize("kw", _config_cases())
def test_gpu_every_autotune_candidate(kw, launches, monkeypatch):
    """Each config keep() leaves for autotuning gives correct results, pinned one at a time
    (the autotuner only ever runs one of them per key), and the pinned kernel is the one
    that ran."""
    p = make_problem(**kw)
    torch.manual_seed(0)
    q, k, v = random_inputs(p)
    for kind in ("fwd", "fwd_ptr", "lean", "dq", "dkdv", "dkdvq", "lean_dkdv", "dv_part",
                 "dk_part"):
        if kind == "fwd_ptr" and p.head_dim != 64:  # the pointer route's one head dim
            continue
        monkeypatch.setenv("ATTNHUB_TRITON_BWD", "atomic" if kind == "dkdvq" else "split")
        monkeypatch.setenv("ATTNHUB_TRITON_LEAN", "0" if kind.startswith("fwd") else "1")
        monkeypatch.setenv("ATTNHUB_TRITON_PTR_FWD", "1" if kind == "fwd_ptr" else "0")
        monkeypatch.setenv("ATTNHUB_TRITON_LEAN_BWD", "1" if kind == "lean_dkdv" else "0")
        monkeypatch.setenv("ATTNHUB_TRITON_DKDV_PARTS", "1" if kind.endswith("_part") else "0")
        for config in ops.candidate_configs(kind, p, tma=kind != "fwd_ptr"):
            monkeypatch.setattr(ops, "FORCED_CONFIGS", {kind: config})
            print(kind, config)
            launches.clear()
            assert_matches_reference(BACKEND, q, k, v, p,
                                     backward=kind not in ("fwd", "fwd_ptr", "lean"))
            assert kind in launches, (kind, launches)


@pytest.mark.gpu
@gpu
def test_gpu_torch_compile_fullgraph(bwd_variant):
    p = make_problem(d=64, sq=256, sk=256, heads="gqa", causal=True, dtype=BF16, device="cuda")
    q, k, v = random_inputs(p)
    do = torch.randn(1, 4, 256, 64, device="cuda", dtype=BF16)

    @torch.compile(fullgraph=True)
    def fwd_bwd(q, k, v, do):
        o, lse = ops.flash_forward(q, k, v, p)
        return (o, lse) + tuple(ops.flash_backward(do, q, k, v, o, lse, p))

    got = fwd_bwd(q, k, v, do)
    o, lse = ops.flash_forward(q, k, v, p)
    want = (o, lse) + tuple(ops.flash_backward(do, q, k, v, o, lse, p))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.gpu
@gpu
def test_gpu_cuda_graph_capture():
    """Capturing a never-tuned key takes the fixed config: no benchmarking in the capture."""
    p = make_problem(d=64, sq=700, sk=700, causal=True, dtype=BF16, device="cuda")
    q, k, v = random_inputs(p)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        o, lse = ops.flash_forward(q, k, v, p)
    q.copy_(torch.randn_like(q))
    graph.replay()
    torch.cuda.synchronize()
    o_ref, lse_ref = ops.flash_forward(q, k, v, p)
    torch.testing.assert_close(lse, lse_ref, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(o, o_ref, atol=2e-2, rtol=2e-2)


def test_warp_specialised_configs_are_opt_in_and_warn(monkeypatch):
    """Triton 3.6 gave wrong outputs with warp_specialize=True on the H100 (NOTES.md), and the
    autotuner checks no config's output: off unless asked for, and a warning when asked."""
    monkeypatch.setattr(ops, "_interpreting", lambda: False)
    monkeypatch.delenv("ATTNHUB_TRITON_WARP_SPEC", raising=False)
    assert not ops._warp_spec_ok({"USE_TMA": True})
    monkeypatch.setenv("ATTNHUB_TRITON_WARP_SPEC", "1")
    with pytest.warns(RuntimeWarning, match="wrong outputs"):
        assert ops._warp_spec_ok({"USE_TMA": True})
    assert not ops._warp_spec_ok({"USE_TMA": False})


@needs_interpreter
@pytest.mark.parametrize("variant", ["pointer", "tma", "tma-host"])
def test_cpu_floor_kernel_of_the_triton_floor_benchmark(variant, benchmark_script):
    """benchmarks/_floor_kernel.py, the yardstick triton_floor.py times triton-fa2 against:
    its three load paths give SDPA's output (fp16, two heads, several blocks each way), so a
    device run spends its time on timings, not on finding a broken comparison kernel."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    floor = benchmark_script("_floor_kernel")
    B, H, S, D, BM, BN = 1, 2, 96, 32, 32, 16
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, S, D, dtype=torch.float16) for _ in range(3))
    o = torch.full_like(q, float("nan"))
    qk_scale = D ** -0.5 * 1.4426950408889634
    if variant == "tma-host":
        def rows(t, block):
            return TensorDescriptor.from_tensor(t.view(-1, D), [block, D])
        floor.floor_fwd_host[(S // BM, B * H)](rows(q, BM), rows(k, BN), rows(v, BN), o, S,
                                               qk_scale, HEAD_DIM=D, BLOCK_M=BM, BLOCK_N=BN)
    else:
        floor.floor_fwd[(S // BM, B * H)](q, k, v, o, S, qk_scale, HEAD_DIM=D, BLOCK_M=BM,
                                          BLOCK_N=BN, USE_TMA=variant == "tma",
                                          WARP_SPEC=False)
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(o.float(), ref, atol=2e-3, rtol=0)
