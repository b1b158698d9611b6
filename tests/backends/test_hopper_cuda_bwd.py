"""hopper-fa3's warp-specialised CUDA backward (``fa3_bwd.cu``, host side ``cuda_bwd.py``).

On the CPU: the source compiles for sm_90a (no spills, no serialised wgmma pipeline); the
host's pre-pass (``prepare``) and its decoding of the dQ accumulator (``dq_from_accum``)
against the kernel's store formula written out per thread; and an emulation of the
kernel's block schedule in torch (which query blocks a key block visits, when it masks,
the +inf log2-LSE padding, P and dS rounded to 16 bits, GQA iterations, dQ summed through
the accumulator layout) held to the tolerance rule against the fp64 reference, which
checks the schedule's arithmetic though not the PTX.  On an sm90 GPU: the tolerance rule
on the kernel itself (``cuda_bwd_check.py`` runs the same on the device).
"""

import math
import pathlib
import re
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnhub.contract import Problem
from attnhub.testing.tolerance import compare_backward, random_inputs
from attnhub_hopper import cuda_bwd, cuda_fwd

ON_SM90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
NVCC = shutil.which("nvcc")
LOG2E = 1.4426950408889634


def spill_bytes(report: str) -> int:
    """The largest spill-store count in a ptxas ``-v`` report (a substring test for "0 bytes
    spill stores" would also accept 20 or 120); -1 when the report has none."""
    found = [int(n) for n in re.findall(r"(\d+) bytes spill stores", report)]
    return max(found) if found else -1


def _problem(B=1, Hq=2, Hk=2, Sq=64, Sk=64, D=128, dtype=torch.bfloat16, device="cpu", **kw):
    return Problem(B, Hq, Hk, Sq, Sk, D, D, dtype, torch.device(device),
                   scale=kw.pop("scale", D ** -0.5), **kw)


# -- compile ---------------------------------------------------------------------------------
@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("D,tile", [(D, t) for D in cuda_bwd.HEAD_DIMS
                                    for t in cuda_bwd.tiles_for(D)],
                         ids=str)
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
def test_nvcc_compiles_for_sm90a(D, tile, causal):
    dtype = torch.float16 if tile.stages == 3 else torch.bfloat16  # both dtypes, half each
    report = cuda_bwd.nvcc_check(D, causal, dtype, tile)
    assert spill_bytes(report) == 0 and re.search(r"(?<!\d)0 bytes stack frame", report), report
    assert not re.search(r"C751\d", report), report  # ptxas serialised the wgmma pipeline


def test_a_tile_that_does_not_build_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="does not build at head dim 256.*BwdTile"):
        cuda_bwd._kernel(0, 256, False, torch.bfloat16, cuda_bwd.BwdTile(2, False))


def test_variants_that_do_not_fit_are_left_out():
    assert cuda_bwd.BwdTile(3, False) in cuda_bwd.tiles_for(128)
    assert cuda_bwd.BwdTile(3, False) not in cuda_bwd.tiles_for(64)  # 233720 bytes
    assert cuda_bwd.BwdTile(2, False, True) in cuda_bwd.tiles_for(128)
    assert cuda_bwd.BwdTile(2, False, True) not in cuda_bwd.tiles_for(64)  # spills
    assert cuda_bwd.tiles_for(256) == [  # one stage, atomic dQ (8- or 16-byte reductions)
        cuda_bwd.BwdTile(1, True), cuda_bwd.BwdTile(1, True, lpt=True),
        cuda_bwd.BwdTile(1, True, red_v4=True), cuda_bwd.BwdTile(1, True, lpt=True, red_v4=True),
        cuda_bwd.BwdTile(1, True, red_v4=True, fold=True),
        # relay (P to warpgroup 1, dS back, one buffer): 16 KB less, so two stages fit
        cuda_bwd.BwdTile(1, True, red_v4=True, relay=True),
        cuda_bwd.BwdTile(2, True, red_v4=True, relay=True),
        cuda_bwd.BwdTile(2, True, red_v4=True, fold=True, relay=True),
        cuda_bwd.BwdTile(2, True, red_v4=True, relay=True, tail=True)]
    assert (cuda_bwd.smem_bytes(256, cuda_bwd.BwdTile(2, True, red_v4=True))
            - cuda_bwd.smem_bytes(256, cuda_bwd.BwdTile(2, True, red_v4=True, relay=True))
            == 64 * 64 * 4)
    assert cuda_bwd.smem_bytes(256, cuda_bwd.BwdTile(2, True, red_v4=True)) > 232448
    assert not any(t.relay for D in (64, 128) for t in cuda_bwd.tiles_for(D))
    # relay's two-stage tile is d256's default (measured 2026-12-06), at every length; with
    # the last wave cut (BwdTile.tail) when non-causal (measured 2026-12-07)
    relay = cuda_bwd.BwdTile(2, True, red_v4=True, relay=True)
    assert {cuda_bwd.default_tile(256, True, s) for s in (1024, 4096, 8192, 16384)} == {relay}
    assert {cuda_bwd.default_tile(256, False, s) for s in (1024, 4096, 8192, 16384)} == {
        relay._replace(tail=True)}
    # pairs of key blocks per CTA (never with lpt): the shipped d256 one, and at d64 / d128
    # the shipped causal tiles (s2-poly1, s2-alt) and s2-poly1 at d128
    assert [(D, str(t)) for D in cuda_bwd.HEAD_DIMS for t in cuda_bwd.tiles_for(D)
            if t.fold] == [(64, "s2-poly1-fold"), (128, "s2-poly1-fold"), (128, "s2-alt-fold"),
                           (256, "s1-atomic-v4-fold"), (256, "s2-atomic-v4-fold-relay")]
    fold256 = cuda_bwd.BwdTile(1, True, red_v4=True, fold=True)
    assert "-DFOLD=1" in cuda_bwd.options(256, True, torch.bfloat16, fold256)
    assert "-DFOLD=0" in cuda_bwd.options(256, False, torch.bfloat16, fold256)
    # whole-block dQ by alternate warpgroups: d128 only, staged, plain schedule (32 KB of
    # staging each, as dq_db)
    assert [str(t) for t in cuda_bwd.tiles_for(128) if t.dq_alt] == [
        "s2-alt", "s2-poly1-alt", "s2-lpt-alt", "s2-alt-fold", "s2-poly1-alt-tail"]
    assert not any(t.dq_alt for D in (64, 256) for t in cuda_bwd.tiles_for(D))
    assert cuda_bwd.smem_bytes(128, cuda_bwd.BwdTile(2, dq_alt=True)) == cuda_bwd.smem_bytes(
        128, cuda_bwd.BwdTile(2, dq_db=True))
    assert "-DDQ_ALT=1" in cuda_bwd.options(128, False, torch.bfloat16,
                                            cuda_bwd.BwdTile(2, dq_alt=True))
    assert "wgmma_sst_n128_init" in cuda_bwd.source(128, torch.bfloat16)  # its N = 128 product
    # two dQ staging buffers: d128 only (d64 is 224 bytes short), never with atomic dQ
    assert [str(t) for t in cuda_bwd.tiles_for(128) if t.dq_db] == [
        "s2-db", "s2-poly1-db", "s2-release-db", "s2-release-lpt-db"]
    assert not any(t.dq_db for D in (64, 256) for t in cuda_bwd.tiles_for(D))
    assert cuda_bwd.smem_bytes(64, cuda_bwd.BwdTile(2, dq_db=True)) > 232448
    # the schedule variants (early stage release, Sᵀ ahead of the dQ hand-off) at d64/d128
    for D in (64, 128):
        assert cuda_bwd.BwdTile(2, s_ahead=True) in cuda_bwd.tiles_for(D)
        assert cuda_bwd.BwdTile(2, early_release=True) in cuda_bwd.tiles_for(D)
    assert str(cuda_bwd.BwdTile(2, early_release=True, s_ahead=True)) == "s2-release-ahead"
    # 16-byte LSE/Δ/dQ accesses: d128 only (40 B of spills at d64), never with atomic dQ
    assert cuda_bwd.BwdTile(2, vec_io=True) in cuda_bwd.tiles_for(128)
    assert not any(t.vec_io for D in (64, 256) for t in cuda_bwd.tiles_for(D))
    # exp2 partly on the FMA pipe: d64/d128 (d256's one tile stays as it is)
    for D in (64, 128):
        assert {t.poly for t in cuda_bwd.tiles_for(D)} == {0, 1, 2}
    assert str(cuda_bwd.BwdTile(2, early_release=True, poly=2)) == "s2-release-poly2"
    assert all(cuda_bwd.smem_bytes(D, t) <= 232448 for D in cuda_bwd.HEAD_DIMS
               for t in cuda_bwd.tiles_for(D))


def _cta_order(n_kb: int, n_bh: int, window: int) -> list:
    """fa3_bwd.cu's CTA remap (sched_window), line for line: (key block, pair) per launch
    index."""
    out = []
    for lin in range(n_kb * n_bh):
        if window == 0:
            out.append((lin % n_kb, lin // n_kb))
            continue
        w0 = lin // (window * n_kb) * window
        wc = min(window, n_bh - w0)
        r = lin - w0 * n_kb
        out.append((r // wc, w0 + r % wc))
    return out


@pytest.mark.parametrize("n_kb,n_bh,window", [(8, 256, 32), (16, 128, 16), (32, 64, 8),
                                              (128, 16, 2), (7, 5, 2), (3, 10, 4), (5, 3, 1)])
def test_lpt_order_is_a_permutation_longest_first_per_window(n_kb, n_bh, window):
    """Every (key block, pair) exactly once; within a window of pairs, key blocks in
    launch order never go down (causal: key block 0 has the most query blocks); windows
    in pair order (one window's Q/dO in L2 at a time).  The forward's ``decode``
    (fa3_fwd.cu, ``Tile.lpt``) runs the same remap over (m block from the last, pair)."""
    order = _cta_order(n_kb, n_bh, window)
    assert sorted(order) == sorted((kb, bh) for kb in range(n_kb) for bh in range(n_bh))
    for w0 in range(0, n_bh, window):
        kbs = [kb for kb, bh in order if w0 <= bh < w0 + window]
        assert kbs == sorted(kbs)
    firsts = [order.index(next(x for x in order if x[1] == bh)) for bh in range(n_bh)]
    assert firsts == sorted(firsts)
    src = cuda_bwd._SRC.read_text()
    for line in ("const int w0 = lin / (sched_window * n_kb) * sched_window;",
                 "const int wc = min(sched_window, n_bh - w0);",
                 "const int r = lin - w0 * n_kb;", "const int bh = w0 + r % wc;",
                 "kb = r / wc;"):
        assert line in src, line
    src = cuda_fwd._SRC.read_text()
    for line in ("const int w0 = lin / (sched_window * n_mb) * sched_window;",
                 "const int wc = min(sched_window, n_pairs - w0);",
                 "const int r = lin - w0 * n_mb;", "bh = w0 + r % wc;", "mi = r / wc;",
                 "c.m0 = (n_mb - 1 - mi) * BLOCK_M;"):
        assert line in src, line


def _fold_tiles(n_kb: int) -> list:
    """fa3_bwd.cu's FOLD pairs, line for line: the key blocks each CTA of the host's grid
    (``ceil(n_kb / 2)`` along x) takes, in order."""
    return [[kb] + ([n_kb - 1 - kb] if 2 * kb + 1 < n_kb else [])
            for kb in range(math.ceil(n_kb / 2))]


@pytest.mark.parametrize("D", cuda_bwd.HEAD_DIMS)
@pytest.mark.parametrize("Sq,Sk", [(4096, 4096), (4000, 4096), (1000, 1000), (300, 900),
                                   (900, 300), (64, 64), (130, 130)])
def test_fold_pairs_cover_every_key_block_once_with_equal_work(D, Sq, Sk):
    """Every key block in exactly one CTA; with Sq = Sk every CTA of two tiles has the same
    number of query blocks to within one (the point of the pairs), counted with the kernel's
    ``first_block``; and the kernel's lines are the ones mirrored here."""
    bm, bn = cuda_bwd.block_m_for(D), cuda_bwd.block_n_for(D)
    n_kb, n_m, offset = math.ceil(Sk / bn), math.ceil(Sq / bm), Sk - Sq
    ctas = _fold_tiles(n_kb)
    assert sorted(kb for tiles in ctas for kb in tiles) == list(range(n_kb))
    work = lambda kb: max(0, n_m - max(0, kb * bn - offset) // bm)  # noqa: E731
    pairs = [sum(map(work, tiles)) for tiles in ctas if len(tiles) == 2]
    if Sq == Sk and pairs:
        assert max(pairs) - min(pairs) <= 1, pairs
    src = cuda_bwd._SRC.read_text()
    for line in ("const int n0s[2] = {kb * BLOCK_N, (n_kb - 1 - kb) * BLOCK_N};",
                 "st_shared_u32(tile_info, 2 * kb + 1 < n_kb ? 2u : 1u);",
                 "auto first_block = [&](int n0_) { return max(0, n0_ - offset) / BLOCK_M; };",
                 "if (ld_shared_u32(tile_info) > 1) run_tile(IntC<1>{});"):
        assert line in src, line
    assert "grid = (math.ceil(math.ceil(Sk / block_n_for(kd)) / (2 if fold else 1)), Hk, B)" in \
        pathlib.Path(cuda_bwd.__file__).read_text()
    # every word of the tiles' numbers that is read is written (thread 0, before the
    # __syncthreads), and within FOLD's 8 words (TILE_OFF)
    written = set(re.findall(r"st_shared_u32\(tile_info( \+ [^,]+)?,", src))
    read = set(re.findall(r"ld_(?:volatile_)?shared_u32\(tile_info( \+ [^)]+)?\)", src))
    assert read and read <= written, (read, written)
    assert max(eval(w.lstrip(" +") or "0", {"t": 1}) for w in written) <= 28


def test_forward_sched_window_counts_kv_per_query_head():
    # FA grid d128 causal 4k: 4 x 16 query heads; K+V of one head 2 MB -> 8 pairs in 16 MB
    assert cuda_fwd.sched_window(4, 16, 1, 4096, 128) == 8
    assert cuda_fwd.sched_window(4, 16, 4, 4096, 128) == 32  # GQA: 4 heads share K/V
    assert cuda_fwd.sched_window(4, 16, 1, 4096, 128, elem_bytes=1) == 16  # FP8
    assert cuda_fwd.sched_window(1, 8, 1, 16384, 256) == 1
    assert str(cuda_fwd.Tile(128, 2, True, lpt=True)) == "n128s2-pp-lpt"


def test_sched_window_keeps_the_window_in_a_third_of_l2():
    # FA grid, d128, causal: batch 16384 / S, 16 heads, no GQA
    got = {S: cuda_bwd.sched_window(16384 // S, 16, 1, S, 128) for S in (1024, 4096, 16384)}
    assert got == {1024: 32, 4096: 8, 16384: 2}
    assert cuda_bwd.sched_window(1, 8, 1, 16384, 256) == 1  # one pair is more than 16 MB
    assert cuda_bwd.sched_window(2, 2, 4, 512, 64) == 4  # all pairs fit: all of them
    for B, Hk, g, S, D in ((4, 8, 2, 2048, 128), (1, 32, 1, 8192, 64)):
        w = cuda_bwd.sched_window(B, Hk, g, S, D)
        assert 1 <= w <= B * Hk and w * 4 * S * D * g <= cuda_fwd.SCHED_WINDOW_BYTES


def test_tile_override_picks_a_variant_where_it_builds(monkeypatch):
    monkeypatch.setenv("ATTNHUB_HOPPER_BWD_TILE", "s2-ahead")
    assert cuda_bwd.default_tile(128) == cuda_bwd.BwdTile(2, s_ahead=True)
    # not built there: the shipped one
    assert cuda_bwd.default_tile(256, True) == cuda_bwd.BwdTile(2, True, red_v4=True,
                                                                relay=True)
    monkeypatch.setenv("ATTNHUB_HOPPER_BWD_TILE", "s9-fast")
    with pytest.raises(ValueError, match="ATTNHUB_HOPPER_BWD_TILE='s9-fast'.*s2-ahead"):
        cuda_bwd.default_tile(128)
    monkeypatch.delenv("ATTNHUB_HOPPER_BWD_TILE")
    # the shipped ones (H100, 2026-12-05, NOTES.md): s2-poly1 at d64, s2-poly1-alt at d128 non-causal,
    # s2-alt at d128 causal, in longest-first order with LPT_QUERIES queries
    assert cuda_bwd.default_tile(128) == cuda_bwd.BwdTile(2, poly=1, dq_alt=True)
    assert cuda_bwd.default_tile(128, True) == cuda_bwd.BwdTile(2, dq_alt=True)
    assert cuda_bwd.default_tile(64) == cuda_bwd.default_tile(64, True) == cuda_bwd.BwdTile(
        2, poly=1)
    assert cuda_bwd.default_tile(256, True, 2048) == (
        cuda_bwd.BwdTile(2, True, red_v4=True, relay=True))  # s2-atomic-v4-relay
    assert cuda_bwd.default_tile(256) == cuda_bwd.BwdTile(  # its tail twin (2026-12-07)
        2, True, red_v4=True, relay=True, tail=True)
    lo, hi = cuda_bwd.LPT_QUERIES[128]
    for s in (lo, hi):
        assert cuda_bwd.default_tile(128, True, s) == cuda_bwd.BwdTile(2, dq_alt=True, lpt=True)
    for s in (lo - 1, hi + 1):
        assert not cuda_bwd.default_tile(128, True, s).lpt
    assert not cuda_bwd.default_tile(128, False, lo).lpt
    assert not cuda_bwd.default_tile(64, True, lo).lpt
    # key-block pairs for causal problems at FOLD_QUERIES (none shipped since 2026-12-06:
    # the mechanism, with d256's old range), never together with lpt
    assert cuda_bwd.FOLD_QUERIES == {}
    monkeypatch.setitem(cuda_bwd.FOLD_QUERIES, 256, (4096, 8192))
    f_lo, f_hi = cuda_bwd.FOLD_QUERIES[256]
    assert cuda_bwd.default_tile(256, True, f_lo) == cuda_bwd.default_tile(256, True, f_hi) == (
        cuda_bwd.BwdTile(2, True, red_v4=True, fold=True, relay=True))
    for s in (f_lo - 1, f_hi + 1):
        assert not cuda_bwd.default_tile(256, True, s).fold
    assert not cuda_bwd.default_tile(256, False, f_lo).fold
    assert not any((t := cuda_bwd.default_tile(D, True, s)).fold and t.lpt
                   for D in cuda_bwd.HEAD_DIMS for s in range(512, 20000, 512))
    assert all(cuda_bwd.default_tile(D, c, s) in cuda_bwd.tiles_for(D)
               for D in cuda_bwd.HEAD_DIMS for c in (False, True) for s in (1024, 4096))
    monkeypatch.setenv("ATTNHUB_HOPPER_BWD_TILE", "s2")  # the override reaches s2 at d128
    assert cuda_bwd.default_tile(128) == cuda_bwd.default_tile(128, True, lo) == \
        cuda_bwd.BwdTile(2)


@pytest.mark.skipif(cuda_fwd.nvrtc_library() is None, reason="no libnvrtc: pip install "
                    "nvidia-cuda-nvrtc")
@pytest.mark.parametrize("D,tile,trace,prof", [(D, t, False, False) for D in cuda_bwd.HEAD_DIMS
                                               for t in cuda_bwd.tiles_for(D)]
                         + [(128, cuda_bwd.BwdTile(), True, False),
                            (256, cuda_bwd.BwdTile(1, True), True, False),
                            (128, cuda_bwd.BwdTile(2, poly=1), False, True),
                            (256, cuda_bwd.BwdTile(1, True), False, True)],
                         ids=str)
def test_nvrtc_accepts_the_source(D, tile, trace, prof):
    """NVRTC (what CuPy compiles with on the device; 13.0 there, pinned in the dev extra)
    builds every variant, causal, and the tracing and phase-profiling builds, with no spills
    and no serialised wgmma.  (NVRTC 13.0 rejected the per-warpgroup generic lambda that
    nvcc and NVRTC 13.5 accept; this test is what caught it.)"""
    dtype = torch.float16 if tile.stages == 3 else torch.bfloat16
    log = cuda_fwd.nvrtc_compile(cuda_bwd.source(D, dtype),
                                 cuda_bwd.nvrtc_options(D, True, dtype, tile, trace, prof)
                                 + ("--ptxas-options=-v",))
    assert spill_bytes(log) == 0 and not re.search(r"C751\d", log), log


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_the_tracing_build_compiles_without_spills():
    report = cuda_bwd.nvcc_check(128, True, torch.bfloat16, trace=True)
    assert spill_bytes(report) == 0, report


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("D,causal,tile", [
    (64, False, None), (128, False, None), (128, True, None), (256, True, None),
    *[(D, True, t) for D in cuda_bwd.HEAD_DIMS for t in cuda_bwd.tiles_for(D) if t.fold]],
    ids=str)
def test_the_phase_profiling_build_compiles_without_spills(D, causal, tile):
    """BWD_PROF adds ten cycle counters per consumer thread; the shipped tile (and the
    key-block pair builds, whose phase split is planned) must still fit (a spilling profile
    would measure the spills)."""
    report = cuda_bwd.nvcc_check(D, causal, torch.bfloat16,
                                 tile or cuda_bwd.default_tile(D, causal), prof=True)
    assert spill_bytes(report) == 0 and not re.search(r"C751\d", report), report
    with pytest.raises(RuntimeError, match="share the trace pointer"):
        cuda_bwd.nvcc_check(128, False, torch.bfloat16, trace=True, prof=True)


def test_phase_profile_names_every_slot_of_the_kernel():
    text = cuda_bwd._SRC.read_text()
    slots = int(re.search(r"#define PROF_SLOTS (\d+)", text).group(1))
    stride = int(re.search(r"#define PROF_STRIDE (\d+)", text).group(1))
    # the last word of a warpgroup's slots holds the previous clock reading
    assert len(cuda_bwd.PROF_PHASES) == slots and cuda_bwd.PROF_STRIDE == stride > slots + 1
    q = torch.zeros(1, 1, 8, 128)
    p = _problem(1, 1, 1, 8, 8, 128)
    with pytest.raises(ValueError, match="trace or prof"):
        cuda_bwd.backward(q, q, q, q, q, q[..., 0], p, trace=q, prof=q)


def test_phase_profile_sums_unsigned_slots_over_ctas_and_warpgroups(monkeypatch):
    """The kernel's slots are unsigned 32-bit sums in an int32 tensor: a slot past 2³¹
    reads negative and must count as its unsigned value; shares add up to 1."""
    def fake_backward(do, q, k, v, o, lse, problem, tile, prof=None):
        if prof is None:  # the plain build, compared with the profiled one
            return q + 1, k, v
        n = len(cuda_bwd.PROF_PHASES)
        prof.zero_()
        prof[:, :, 1] = 100  # q_wait
        prof[:, :, 4] = 300  # softmax_ds
        prof[0, 0, 6] = -(2 ** 31)  # dq_product: 2³¹ cycles, unsigned
        prof[:, :, n] = 5  # blocks
        return q, k, v

    monkeypatch.setattr(cuda_bwd, "backward", fake_backward)
    q = torch.zeros(2, 4, 300, 128)  # 3 key blocks of 128 × 4 heads × 2 = 24 CTAs
    out = cuda_bwd.phase_profile(q, q, q, q, q, q[..., 0], _problem(2, 4, 4, 300, 300, 128))
    assert out["blocks"] == 24 * 2 * 5
    assert out["cycles"] == 24 * 2 * 400 + 2 ** 31
    # each warpgroup's slot sums its 5 blocks: per block and warpgroup 300 / 5, 100 / 5
    assert out["per_block"]["softmax_ds"] == 60 and out["per_block"]["q_wait"] == 20
    assert out["share"]["dq_product"] == pytest.approx(2 ** 31 / out["cycles"])
    assert sum(out["share"].values()) == pytest.approx(1.0)
    assert out["max_diff_vs_plain"] == {"dq": 1.0, "dk": 0.0, "dv": 0.0}
    # the CTAs' durations on the SMs: 24 CTAs on 132 SMs all start at once; the longest
    # (400 + 2³¹ cycles, CTA 0's warpgroup 0) is the makespan
    pack = out["packing"]
    assert pack["n_sm"] == 132 and pack["makespan_cycles"] == 400 + 2 ** 31
    assert pack["busy"] == pytest.approx((23 * 400 + 400 + 2 ** 31) / (132 * (400 + 2 ** 31)))


def test_packing_is_the_block_schedulers_greedy_fill():
    # 5 CTAs on 2 SMs in launch order: [3, 3] start, then 2 and 2 (at 3), then 1 (at 5)
    p = cuda_bwd.packing([3, 3, 2, 2, 1], 2)
    assert p["makespan_cycles"] == 6 and p["busy"] == pytest.approx(11 / 12)
    # equal CTAs: 4 on 3 SMs leave two SMs idle for the second wave
    assert cuda_bwd.packing([4] * 4, 3)["busy"] == pytest.approx(16 / 24)


def test_phase_profile_sizes_the_slots_to_the_launch_grid(monkeypatch):
    """Key-block pairs launch half the CTAs (rounded up): the slots the kernel writes."""
    seen = {}

    def fake_backward(do, q, k, v, o, lse, problem, tile, prof=None):
        if prof is not None:
            seen[tile] = prof.shape[0]
        return q, k, v

    monkeypatch.setattr(cuda_bwd, "backward", fake_backward)
    q = torch.zeros(1, 2, 1000, 256)  # 16 key blocks of 64 (d256)
    p = _problem(1, 2, 2, 1000, 1000, 256, causal=True)
    fold = cuda_bwd.BwdTile(1, True, red_v4=True, fold=True)
    for tile in (fold, cuda_bwd.BwdTile(1, True, red_v4=True)):
        cuda_bwd.phase_profile(q, q, q, q, q, q[..., 0], p, tile, n_sm=132)
    assert seen == {fold: 8 * 2, cuda_bwd.BwdTile(1, True, red_v4=True): 16 * 2}


def test_trace_values_are_described_per_role():
    from attnhub_hopper.cuda_bwd_check import describe_trace

    assert describe_trace([-1, 15, 16 * 3 + 5, 16 * 3 + 5], "consumer") == (
        "not started x1, K/V landed x1, block 3: past the dS barrier x2")
    assert describe_trace([14, 16 * 2 + 1], "producer") == (
        "K/V issued x1, block 2: stage free, Q/dO issued x1")


def test_only_register_feasible_tiles_are_offered():
    assert [cuda_bwd.block_m_for(d) for d in (64, 128, 256)] == [128, 64, 64]
    assert [cuda_bwd.block_n_for(d) for d in (64, 128, 256)] == [128, 128, 64]
    with pytest.raises(ValueError, match="head_dim must be one of"):
        cuda_bwd.block_m_for(96)


# -- host pre/post-processing ----------------------------------------------------------------
def _thread_store_index(dq_n: int, vec_io: bool = False) -> torch.Tensor:
    """For each (row, col) of a warpgroup's 64 × dq_n tile, the float index its thread
    stores it at, written out as the kernel does: thread ctid = 32 warp + lane holds rows
    16 warp + lane/4 (+8 for h = 1), columns 8j + 2 (lane % 4) + e, and stores element
    (j, h, e) at ((2j + h) * 128 + ctid) * 2 + e (VEC_IO: (j * 128 + ctid) * 4 + 2h + e)."""
    idx = torch.empty(64, dq_n, dtype=torch.long)
    for ctid in range(128):
        warp, lane = divmod(ctid, 32)
        for j in range(dq_n // 8):
            for h in range(2):
                for e in range(2):
                    row = 16 * warp + lane // 4 + 8 * h
                    col = 8 * j + 2 * (lane % 4) + e
                    idx[row, col] = ((j * 128 + ctid) * 4 + 2 * h + e if vec_io
                                     else ((2 * j + h) * 128 + ctid) * 2 + e)
    assert sorted(idx.flatten().tolist()) == list(range(64 * dq_n))  # a permutation
    return idx


def _store_tile(acc_slot: torch.Tensor, tile: torch.Tensor, idx: torch.Tensor):
    acc_slot[idx.flatten()] += tile.flatten()


def _accumulator(dq_true: torch.Tensor, bm: int, n: int, vec: bool) -> torch.Tensor:
    """The float32 accumulator the kernel leaves for dQ = ``dq_true`` (B, H, n_m·bm, d):
    each warpgroup's 64 × n tile in its threads' store order."""
    B, H, rows, _ = dq_true.shape
    n_m = rows // bm
    idx = _thread_store_index(n, vec)
    acc = torch.zeros(B, H, n_m, 2, 64 * n)
    for b in range(B):
        for h in range(H):
            for mb in range(n_m):
                blk = dq_true[b, h, mb * bm:(mb + 1) * bm]
                for w in range(2):
                    tile = blk[64 * w:64 * w + 64] if bm == 128 else blk[:, n * w:n * w + n]
                    _store_tile(acc[b, h, mb, w], tile, idx)
    return acc


@pytest.mark.parametrize("D,Sq,vec", [(64, 300, False), (128, 300, False), (128, 64, False),
                                      (64, 1, False), (256, 100, False), (64, 300, True),
                                      (128, 300, True), (128, 64, True),
                                      (256, 100, True)])  # red_v4's order at d256
@pytest.mark.parametrize("layout", ("bhsd", "bshd"))
def test_dq_accumulator_decodes_the_kernel_store_order(D, Sq, vec, layout):
    B, H = 2, 3
    bm = cuda_bwd.block_m_for(D)
    n = cuda_bwd._dq_n(D)
    n_m = math.ceil(Sq / bm)
    dq_true = torch.randn(B, H, n_m * bm, D)
    acc = _accumulator(dq_true, bm, n, vec)
    q = torch.empty(B, H, Sq, D, dtype=torch.bfloat16)
    if layout == "bshd":
        q = torch.empty(B, Sq, H, D, dtype=torch.bfloat16).transpose(1, 2)
    dq = cuda_bwd.dq_from_accum(acc, q, 0.5, vec)
    assert dq.shape == q.shape and dq.dtype == q.dtype and dq.stride() == q.stride()
    torch.testing.assert_close(dq.float(), (dq_true[:, :, :Sq] * 0.5).bfloat16().float())


@pytest.mark.parametrize("D,Sq,vec", [(64, 300, False), (128, 70, False), (128, 64, False),
                                      (256, 70, False), (64, 300, True), (128, 70, True),
                                      (256, 70, True)])
@pytest.mark.parametrize("layout", ("bhsd", "bshd"))
def test_triton_host_passes_match_the_torch_ones(D, Sq, vec, layout):
    """bwd_host's two Triton kernels (run by the interpreter here) against the torch
    formulations, on strided inputs, with a row that sees no key (``vec``: the VEC_IO
    layouts; the rows' padding floats are never read and not compared)."""
    B, H = 2, 3
    bm = cuda_bwd.block_m_for(D)

    def make(dtype=torch.bfloat16):
        if layout == "bshd":
            return torch.randn(B, Sq, H, D).to(dtype).transpose(1, 2)
        return torch.randn(B, H, Sq, D).to(dtype)
    o, do = make(), make()
    lse = torch.randn(B, H, Sq)
    lse[1, 2, Sq // 2] = -math.inf
    l_t, d_t = cuda_bwd._prepare_torch(do, o, lse, bm, vec)
    l_k, d_k = cuda_bwd._prepare_triton(do, o, lse, bm, vec)
    assert l_k.shape == l_t.shape and l_k.is_contiguous()
    n_m = math.ceil(Sq / bm)
    read = torch.ones(B, H, n_m, 4, bm // 4 + 4, dtype=torch.bool)  # the kernel's reads
    if vec:
        read[..., bm // 4:] = False
    read = read.reshape(B, H, -1) if vec else torch.ones_like(l_t, dtype=torch.bool)
    torch.testing.assert_close(l_k[read], l_t[read])
    torch.testing.assert_close(d_k[read], d_t[read], rtol=1e-5, atol=1e-4)
    acc = torch.randn(B, H, n_m, 2, 64 * cuda_bwd._dq_n(D))
    n = cuda_bwd._dq_n(D)
    configs = [None] + [(c, 4) for c in (8, 32) if c < n]  # shipped, and column chunks
    for q in (make(torch.float32), make()):
        a = cuda_bwd._dq_from_accum_torch(acc, q, 0.125, vec)
        for config in configs:
            b = cuda_bwd._dq_from_accum_triton(acc, q, 0.125, vec, config)
            assert b.shape == q.shape and b.stride() == q.stride() and b.dtype == q.dtype
            if q.dtype == torch.float32:  # the gather itself: exact
                assert torch.equal(a, b), config
            else:  # the interpreter truncates float32 -> bf16 (the GPU rounds): one ulp
                torch.testing.assert_close(b.float(), a.float(), rtol=2 ** -7, atol=0)
    with pytest.raises(ValueError, match="cols must divide"):
        cuda_bwd._dq_from_accum_triton(acc, make(), 0.125, vec, (12, 4))


@pytest.mark.parametrize("D,vec", [(96, False), (224, True), (48, False), (112, True)])
def test_prepare_of_a_padded_head_dim_matches_the_torch_one(D, vec):
    """The pre-pass on a head dim that is not a power of two (tl.arange needs one: the
    first GPU run at d96/d224 failed to compile here): Triton (interpreted) == torch."""
    B, H, Sq = 2, 3, 70
    bm = cuda_bwd.block_m_for(cuda_bwd.kernel_head_dim(D))
    o = torch.randn(B, Sq, H, D).bfloat16().transpose(1, 2)
    do = torch.randn(B, H, Sq, D).bfloat16()
    lse = torch.randn(B, H, Sq)
    lse[0, 1, 3] = -math.inf
    l_t, d_t = cuda_bwd._prepare_torch(do, o, lse, bm, vec)
    l_k, d_k = cuda_bwd._prepare_triton(do, o, lse, bm, vec)
    assert l_k.shape == l_t.shape
    read = torch.ones(B, H, math.ceil(Sq / bm), 4, bm // 4 + 4, dtype=torch.bool)
    if vec:
        read[..., bm // 4:] = False
    read = read.reshape(B, H, -1) if vec else torch.ones_like(l_t, dtype=torch.bool)
    torch.testing.assert_close(l_k[read], l_t[read])
    torch.testing.assert_close(d_k[read], d_t[read], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("D,Sq", [(96, 70), (48, 300), (224, 70), (112, 64)])
def test_dq_of_a_padded_head_dim_drops_the_kernels_extra_columns(D, Sq):
    """A head dim the next kernel up serves (its accumulator has that kernel's columns;
    the ones past D hold whatever the zero-filled loads gave, here noise): both decoders
    return D columns, the torch one and bwd_host's Triton pass (interpreted here)."""
    B, H = 2, 3
    kd = cuda_bwd.kernel_head_dim(D)
    assert kd in cuda_bwd.HEAD_DIMS and kd > D
    bm, n = cuda_bwd.block_m_for(kd), cuda_bwd._dq_n(kd)
    n_m = math.ceil(Sq / bm)
    dq_true = torch.randn(B, H, n_m * bm, kd)
    acc = _accumulator(dq_true, bm, n, False)
    q = torch.empty(B, Sq, H, D, dtype=torch.float32).transpose(1, 2)
    want = dq_true[:, :, :Sq, :D] * 0.5
    for decode in (cuda_bwd._dq_from_accum_torch, cuda_bwd._dq_from_accum_triton):
        dq = decode(acc, q, 0.5, False)
        assert dq.shape == q.shape and dq.stride() == q.stride()
        assert torch.equal(dq, want), decode.__name__
    assert cuda_bwd.default_tile(D) == cuda_bwd.default_tile(kd)


def test_prepare_pads_and_neutralises_empty_rows():
    o = torch.randn(1, 2, 70, 64, dtype=torch.bfloat16)
    do = torch.randn_like(o)
    lse = torch.randn(1, 2, 70)
    lse[0, 1, 5] = -math.inf  # a row that sees no key
    lse2, delta = cuda_bwd.prepare(do, o, lse, 64)
    assert lse2.shape == delta.shape == (1, 2, 128) and lse2.is_contiguous()
    torch.testing.assert_close(lse2[0, 0, :70], lse[0, 0] * LOG2E)
    assert lse2[0, 1, 5] == math.inf and (lse2[..., 70:] == math.inf).all()
    torch.testing.assert_close(delta[..., :70], (do.double() * o.double()).sum(-1).float())
    assert (delta[..., 70:] == 0).all()


def test_vec_io_rows_layout_is_what_the_kernel_reads():
    """VEC_IO: thread pair p = lane % 4 reads, with one 16-byte access per two j, the values
    of query columns 8j + 2p, +1 at p·(BLOCK_M/4 + 4) + 2j (fa3_bwd.cu's row_quad)."""
    for bm in (64, 128):
        o = torch.randn(1, 1, 2 * bm - 5, 64, dtype=torch.bfloat16)
        lse = torch.randn(1, 1, 2 * bm - 5)
        plain, _ = cuda_bwd.prepare(torch.randn_like(o), o, lse, bm)
        vec, _ = cuda_bwd.prepare(torch.randn_like(o), o, lse, bm, vec_io=True)
        rpb = cuda_bwd.rows_per_block(bm, True)
        assert vec.shape[-1] == 2 * rpb and rpb == bm + 16 and (rpb * 4) % 16 == 0
        for mb in range(2):
            for p in range(4):
                for j in range(bm // 8):
                    for e in range(2):
                        got = vec[0, 0, mb * rpb + p * (bm // 4 + 4) + 2 * j + e]
                        assert got == plain[0, 0, mb * bm + 8 * j + 2 * p + e]
        src = cuda_bwd._SRC.read_text()
        assert "((qc / 2) * L_STRIDE + 2 * j) * 4" in src and "#define L_STRIDE (BLOCK_M / 4 + 4)" in src


# -- the kernel's block schedule, emulated ---------------------------------------------------
def emulate(q, k, v, o, lse, do, p, tail_sm=None):
    """The kernel's arithmetic per CTA (key block, KV head, batch), in torch: Sᵀ, dPᵀ in
    float32 from 16-bit inputs; P from the padded log2-LSE; the mask applied only where the
    kernel's ``need`` says (and asserted to be a no-op elsewhere); query blocks from the
    kernel's ``m_first`` (those before it asserted fully masked); P and dS rounded to the
    input dtype for the dV, dK, dQ products; dQ summed through the accumulator's layout.
    ``tail_sm`` (non-causal): BwdTile.tail's pieces as :func:`cuda_bwd.tail_plan` cuts
    them for that many SMs, each with its own float32 dK/dV partial, summed in piece order."""
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    group, BN = Hq // Hk, cuda_bwd.block_n_for(D)
    bm, n = cuda_bwd.block_m_for(D), cuda_bwd._dq_n(D)
    n_m, n_n = math.ceil(Sq / bm), math.ceil(Sk / BN)
    offset, causal = Sk - Sq, p.causal
    sl2 = p.scale * LOG2E
    lse2, delta = cuda_bwd.prepare(do, o, lse, bm)
    pad_q = lambda t: torch.nn.functional.pad(t.float(), (0, 0, 0, n_m * bm - Sq))  # noqa: E731
    pad_k = lambda t: torch.nn.functional.pad(t.float(), (0, 0, 0, n_n * BN - Sk))  # noqa: E731
    qp, dop, kp, vp = pad_q(q), pad_q(do), pad_k(k), pad_k(v)
    acc = torch.zeros(B, Hq, n_m, 2, 64 * n)
    idx = _thread_store_index(n)
    dk = torch.zeros(B, Hk, n_n * BN, D)
    dv = torch.zeros_like(dk)
    keys_all = torch.arange(BN)[:, None]
    queries_all = torch.arange(bm)[None, :]
    n_whole, parts = B * Hk * n_n, 1
    if tail_sm is not None:
        assert not causal
        n_whole, parts = cuda_bwd.tail_plan(B * Hk * n_n, tail_sm, n_m * group)
    for b in range(B):
        for kvh in range(Hk):
            for nb in range(n_n):
                cut = nb + n_n * (kvh + Hk * b) >= n_whole  # the kernel's linear order
                n0 = nb * BN
                m_first = max(0, n0 - offset) // bm if causal else 0
                n_mb = max(0, n_m - m_first)
                keys = n0 + keys_all
                for mb in range(m_first):  # skipped blocks: nothing visible there
                    qs = mb * bm + queries_all
                    assert not ((keys < Sk) & (qs < Sq) & (keys <= qs + offset)).any()
                kt, vt = kp[b, kvh, n0:n0 + BN], vp[b, kvh, n0:n0 + BN]
                partials = []
                n_it = n_mb * group
                ranges = ([range(pc * n_it // parts, (pc + 1) * n_it // parts)
                           for pc in range(parts)] if cut else [range(n_it)])
                for its in ranges:
                    dK, dV = torch.zeros(BN, D), torch.zeros(BN, D)
                    partials.append((dK, dV))
                    for it in its:
                        hq, mb = kvh * group + it // n_mb, m_first + it % n_mb
                        m0 = mb * bm
                        qt, dot = qp[b, hq, m0:m0 + bm], dop[b, hq, m0:m0 + bm]
                        st, dpt = kt @ qt.T, vt @ dot.T
                        pt = torch.exp2(st * sl2 - lse2[b, hq, m0:m0 + bm][None, :])
                        keep = keys < Sk
                        if causal:
                            keep = keep & (keys <= m0 + queries_all + offset)
                        need = n0 + BN > Sk or (causal and n0 + BN - 1 > m0 + offset)
                        if need:
                            pt = torch.where(keep, pt, 0.0)
                        else:
                            assert keep.all()
                        dst = pt * (dpt - delta[b, hq, m0:m0 + bm][None, :])
                        pr, dsr = pt.to(q.dtype).float(), dst.to(q.dtype).float()
                        dV += pr @ dot
                        dK += dsr @ qt
                        dq_part = dsr.T @ kt  # (bm, D)
                        for w in range(2):
                            tile = (dq_part[64 * w:64 * w + 64] if bm == 128
                                    else dq_part[:, n * w:n * w + n])
                            _store_tile(acc[b, hq, mb, w], tile, idx)
                dK, dV = torch.zeros(BN, D), torch.zeros(BN, D)
                for pk, pv in partials:  # in piece order, as the last piece sums them
                    dK, dV = dK + pk, dV + pv
                dk[b, kvh, n0:n0 + BN] = dK * p.scale
                dv[b, kvh, n0:n0 + BN] = dV
    dq = cuda_bwd.dq_from_accum(acc, q, p.scale)
    return dq, dk[:, :, :Sk].to(q.dtype), dv[:, :, :Sk].to(q.dtype)


_CASES = [dict(D=64, Sq=113, Sk=203), dict(D=128, Sq=113, Sk=203),
          dict(D=64, Sq=300, Sk=100, causal=True), dict(D=128, Sq=300, Sk=100, causal=True),
          dict(D=128, Sq=100, Sk=300, causal=True), dict(D=64, Sq=200, Sk=200, causal=True),
          dict(D=128, Sq=1, Sk=260), dict(D=64, Sq=260, Sk=1, causal=True),
          dict(D=128, Sq=130, Sk=130, Hq=4, Hk=1, causal=True),
          dict(D=64, Sq=150, Sk=140, Hq=4, Hk=2, dtype=torch.float16),
          dict(D=256, Sq=113, Sk=203), dict(D=256, Sq=150, Sk=70, causal=True),
          dict(D=256, Sq=100, Sk=130, Hq=4, Hk=1, causal=True),
          # BwdTile.tail on 3 (7) SMs: 2 x 2 x 4 key blocks = 16, the last wave cut: 1 (2) blocks
          dict(D=64, Sq=700, Sk=500, B=2, tail_sm=3), dict(D=128, Sq=650, Sk=480, B=2, tail_sm=7),
          dict(D=256, Sq=330, Sk=250, B=2, Hq=4, tail_sm=3)]


@pytest.mark.parametrize("case", _CASES, ids=lambda c: "-".join(
    f"{k}{v}" for k, v in c.items() if k != "dtype") + ("-fp16" if "dtype" in c else ""))
def test_emulated_schedule_meets_the_tolerance_rule(case):
    from attnhub import reference

    case = dict(case)
    tail_sm = case.pop("tail_sm", None)
    p = _problem(B=case.pop("B", 1), Hq=case.pop("Hq", 2), Hk=case.pop("Hk", 2), **case)
    q, k, v = random_inputs(p)
    o, lse = reference.forward(q, k, v, p, compute_dtype=torch.float32)
    o = o.to(p.dtype)
    do = torch.randn_like(o)
    grads = emulate(q, k, v, o, lse, do, p, tail_sm)
    results = compare_backward(grads, do, q, k, v, p)
    assert all(r.ok for r in results), "\n".join(map(str, results))


def test_emulation_catches_a_wrong_mask():
    """The check above can fail: drop the causal mask and it does."""
    from attnhub import reference

    p = _problem(Sq=200, Sk=200, D=64, causal=True)
    q, k, v = random_inputs(p)
    o, lse = reference.forward(q, k, v, p, compute_dtype=torch.float32)
    do = torch.randn_like(o).to(p.dtype)
    grads = emulate(q, k, v, o.to(p.dtype), lse, do, _problem(Sq=200, Sk=200, D=64))
    assert not all(r.ok for r in compare_backward(grads, do, q, k, v, p))


# -- which problems it takes ------------------------------------------------------------------
def test_on_by_default_and_off_with_its_switch(monkeypatch):
    monkeypatch.setattr(cuda_fwd, "enabled", lambda: True)
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_BWD", raising=False)
    assert cuda_bwd.enabled()
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "0")
    assert not cuda_bwd.enabled()
    p = _problem()
    q, k, v = random_inputs(p)
    assert "ATTNHUB_HOPPER_CUDA_BWD=0" in cuda_bwd.unsupported_reason(q, k, v, p)


@pytest.mark.parametrize("change,needle", [
    (dict(D=88), "64, 128 or 256"), (dict(D=160), "64, 128 or 256"),  # no d192 backward
    (dict(window=(16, 0)), "window"),
    (dict(softcap=30.0), "softcap"), (dict(dtype=torch.float32), "dtype"),
])
def test_unsupported_problems_give_reasons(monkeypatch, change, needle):
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "1")
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", raising=False)
    p = _problem(**change)
    q, k, v = random_inputs(p)
    assert needle in cuda_bwd.unsupported_reason(q, k, v, p)


def test_padded_head_dims_wait_for_their_own_gate(monkeypatch):
    """The backward's padded head dims have a gate of their own (the forward's passed its
    GPU check first); checked, d96/d224 get as far as the device check."""
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "1")
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", raising=False)
    for D in (96, 224, 48):
        p = _problem(D=D)
        assert cuda_bwd.unsupported_reason(*random_inputs(p), p) == "not a CUDA tensor", D
    monkeypatch.setattr(cuda_bwd, "PADDED_UNVERIFIED", "not yet checked on a GPU")
    p = _problem(D=96)
    q, k, v = random_inputs(p)
    why = cuda_bwd.unsupported_reason(q, k, v, p)
    assert "runs the d128 kernel on TMA's zero fill, not yet checked" in why
    assert "cuda_bwd_check.py" in why
    assert cuda_fwd.unsupported_reason(q, k, v, p) == "not a CUDA tensor"  # not the forward
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", "1")
    assert cuda_bwd.unsupported_reason(q, k, v, p) == "not a CUDA tensor"


def test_deterministic_mode_is_refused(monkeypatch):
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "1")
    p = _problem()
    q, k, v = random_inputs(p)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert "deterministic" in cuda_bwd.unsupported_reason(q, k, v, p)
    finally:
        torch.use_deterministic_algorithms(prev)
    assert "not a CUDA tensor" in cuda_bwd.unsupported_reason(q, k, v, p)


# -- GPU ---------------------------------------------------------------------------------------
def _gpu_cases():
    from attnhub_hopper.cuda_bwd_check import cases

    return cases(quick=False)


@pytest.mark.skipif(not ON_SM90, reason="needs an sm90 (Hopper) GPU")
@pytest.mark.gpu
@pytest.mark.parametrize("case", _gpu_cases() if ON_SM90 else [], ids=str)
def test_cuda_backward_tolerance(case, monkeypatch):
    from attnhub_hopper.cuda_bwd_check import run_case

    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "1")
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", "1")  # padded head dims: their check
    res = run_case(case)
    assert res["ok"], res


def test_check_script_selects_dims_and_variants(monkeypatch):
    """--dims / --tiles limit the device check to what a run is for; the shipped tiles
    stay (the variants are compared with it) and the schedule variants get the cases
    with one and with many query blocks per CTA."""
    from attnhub_hopper import cuda_bwd_check

    monkeypatch.setitem(cuda_bwd_check._SELECT, "dims", [128])
    monkeypatch.setitem(cuda_bwd_check._SELECT, "tiles", ["s2-ahead"])
    assert cuda_bwd_check.selected_dims() == (128,)
    assert [str(t) for t in cuda_bwd_check.selected_tiles(128)] == [
        "s2-ahead", "s2-alt", "s2-poly1-alt", "s2-lpt-alt"]  # every shipped one too
    cs = cuda_bwd_check.cases(quick=False)
    assert {c["D"] for c in cs} == {128}
    ahead = [(c["Sq"], c["Sk"]) for c in cs if c.get("tile") == tuple(cuda_bwd.BwdTile(
        2, s_ahead=True))]
    assert (1, 4096) in ahead and (1500, 200) in ahead and len(ahead) == 8  # 4 × causal


def test_check_script_cases_cut_every_tail_tile_at_every_head_dim():
    """The GPU case list builds at every head dim the suite runs (padded ones on their
    kernel's blocks), and every tail tile -- the shipped d256 one included -- gets
    non-causal cases whose last wave is cut on 132 SMs (more key blocks than SMs, not a
    multiple of them)."""
    from attnhub_hopper import cuda_bwd_check

    cs = cuda_bwd_check.cases(quick=False)
    assert {c["D"] for c in cs} == set(cuda_bwd.HEAD_DIMS + cuda_bwd_check.PADDED_DIMS)
    for D in {c["D"] for c in cs}:
        for tile in cuda_bwd_check.selected_tiles(D):
            if not tile.tail:
                continue
            bn = cuda_bwd.block_n_for(cuda_bwd.kernel_head_dim(D) or D)
            blocks = [c.get("B", 1) * c["Hk"] * -(-c["Sk"] // bn) for c in cs
                      if c["D"] == D and not c["causal"] and c.get("tile") == tuple(tile)]
            assert len([n for n in blocks if n > 132 and n % 132]) >= 3, (D, str(tile), blocks)


def test_check_script_plots_a_results_json(tmp_path):
    pytest.importorskip("matplotlib")
    from attnhub_hopper import cuda_bwd_check

    rows = [dict(D=d, S=s, causal=c, default_tflops=400.0 + s / 1024,
                 variants={"s2": 400.0 + s / 1024, "s2-atomic": None},
                 peers={"cudnn": 500.0, "flash": 300.0, "triton-fa2": 320.0})
            for d in (64, 128) for s in (1024, 4096) for c in (False, True)]
    js = tmp_path / "r.json"
    js.write_text(__import__("json").dumps(dict(device="GPU", date="today", grid=rows)))
    cuda_bwd_check.plot(str(js), str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_script_plots_a_phase_split(tmp_path):
    pytest.importorskip("matplotlib")
    from attnhub_hopper import cuda_bwd_check

    share = {n: 1 / len(cuda_bwd.PROF_PHASES) for n in cuda_bwd.PROF_PHASES}
    rows = [dict(D=128, S=s, causal=c, tile="s2-poly1", share=share) for s in (1024, 4096)
            for c in (False, True)]
    for key in ("rows", "phases"):  # device_bwd_phases.sh's file; --phases' cuda_bwd.json
        js = tmp_path / f"{key}.json"
        js.write_text(__import__("json").dumps({"device": "GPU", "date": "today", key: rows}))
        cuda_bwd_check.plot_phases(str(js), str(tmp_path / f"{key}.png"))
        assert (tmp_path / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not ON_SM90, reason="needs an sm90 (Hopper) GPU")
@pytest.mark.gpu
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
def test_backend_backward_runs_the_cuda_kernel_when_enabled(causal, monkeypatch):
    """Through attnhub.attention: with ATTNHUB_HOPPER_CUDA_BWD=1 hopper-fa3's backward is
    this kernel (the gradients equal cuda_bwd.backward's dK/dV bit for bit) and meets the
    tolerance rule."""
    import attnhub
    from attnhub_hopper import cuda_fwd

    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "1")
    p = _problem(B=2, Hq=8, Hk=2, Sq=1000, Sk=1000, D=128, device="cuda", causal=causal)
    q, k, v = random_inputs(p)
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    o = attnhub.attention(qg, kg, vg, causal=causal, backend="hopper-fa3")
    do = torch.randn_like(o)
    o.backward(do)
    o2, lse = cuda_fwd.forward(q, k, v, p)
    _, dk, dv = cuda_bwd.backward(do, q, k, v, o2, lse, p)
    assert torch.equal(kg.grad, dk) and torch.equal(vg.grad, dv)
    results = compare_backward((qg.grad, kg.grad, vg.grad), do, q, k, v, p)
    assert all(r.ok for r in results), "\n".join(map(str, results))


def test_backend_routes_to_the_cuda_backward_only_when_it_can_run(monkeypatch):
    """HopperFA3Backend.backward: the CUDA kernel when cuda_bwd.unsupported_reason is None,
    triton-fa2's (or the reference) otherwise; extra_info says which."""
    from attnhub_hopper import HopperFA3Backend

    calls = []
    monkeypatch.setattr(cuda_bwd, "backward", lambda *a: calls.append("cuda") or "cuda")
    be = HopperFA3Backend()
    p = _problem(Sq=16, Sk=16, D=64)
    q, k, v = random_inputs(p)
    from attnhub import reference

    o, lse = reference.forward(q, k, v, p, compute_dtype=torch.float32)
    o = o.to(p.dtype)
    monkeypatch.setattr(cuda_bwd, "unsupported_reason", lambda *a: None)
    assert be.backward(o, q, k, v, o, lse, p) == "cuda" and calls == ["cuda"]
    monkeypatch.setattr(cuda_bwd, "unsupported_reason", lambda *a: "off")
    grads = be.backward(torch.randn_like(o), q, k, v, o, lse, p)
    assert calls == ["cuda"] and len(grads) == 3 and grads[0].shape == q.shape
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "0")
    assert "is off" in be.extra_info()["backward"]
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_BWD", raising=False)
    monkeypatch.setattr(cuda_fwd, "installed_reason", lambda: "cupy is not installed")
    assert "unavailable: cupy is not installed" in be.extra_info()["backward"]
    monkeypatch.setattr(cuda_fwd, "installed_reason", lambda: None)
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", raising=False)
    assert "quarter below" not in be.extra_info()["backward"]
    monkeypatch.setattr(cuda_bwd, "PADDED_UNVERIFIED", "not yet checked on a GPU")
    assert "a quarter below d128/256 (cuda_bwd.kernel_head_dim): not yet checked" in (
        be.extra_info()["backward"])
    assert be.extra_info()["backward"].startswith("warp-specialised CUDA")


def test_ds_is_stored_before_the_product_that_reads_its_registers():
    """PTX leaves touching an in-flight wgmma's A registers before its wait_group undefined
    (ptxas does not warn): dS is stored from pd after dV's product (A = pp) is issued and
    before dK's (A = pd), in every path of the loop."""
    src = cuda_bwd._SRC.read_text()
    loop = src[src.index("for (int i = 0; i < n_iter; ++i)"):src.index("epilogue: dK")]
    # RELAY's hand-over (d256) is a path of its own: warpgroup 1 stores dS (store_ds, the
    # same stmatrix) between its dV and dK products; warpgroup 0 only reads pd back
    lam0 = loop.index("#if RELAY  // warpgroup 1's share")  # its form_ds / store_ds
    loop = loop[:lam0] + loop[loop.index("#endif", lam0):]
    start = loop.index("#if RELAY\n")
    mid, end = loop.index("#else", start), loop.index("#endif  // RELAY")
    relay, loop = loop[start:mid], loop[:start] + loop[mid:end] + loop[end:]
    wg1 = relay[relay.index("} else {"):]
    assert (wg1.index("issue_kv(dv, pp") < wg1.index("store_ds(")
            < relay.index("issue_kv(dk, pd") and relay.count("issue_kv(dk, pd") == 1)
    assert "stmatrix_x4_trans(" not in relay
    lam = src[src.index("auto store_ds"):src.index("};", src.index("auto store_ds"))]
    assert lam.count("stmatrix_x4_trans(") == 1
    dv = loop.rindex("issue_kv(dv, pp")
    st = loop.index("stmatrix_x4_trans(")
    dk = loop.index("issue_kv(dk, pd")
    assert dv < st < dk and loop.count("issue_kv(dk, pd") == 1
    assert loop.count("stmatrix_x4_trans(") == 1


_SM90_HOST_PASSES = r"""
import sys
from attnhub_hopper import bwd_host
from attnhub_triton.sm90_report import compile_sm90
ints = {"H": "i32", "seqlen_q": "i32", "rows_pad": "i32", "head_dim": "i32", "scale": "fp32",
        "ACC": "*fp32"}
for D in (64, 128, 256):
    compile_sm90(bwd_host._prep, dict(HEAD_DIM=D, BLOCK=128 if D == 64 else 64), 4, 1, ints)
    compile_sm90(bwd_host._prep, dict(HEAD_DIM=D, BLOCK=64, VEC=True), 4, 1, ints)
    for vec in (False, True):
        for cols in (0, 32):
            compile_sm90(bwd_host._dq_convert, dict(
                BLOCK_M=128 if D == 64 else 64, DQ_N=64 if D == 64 else D // 2,
                SPLIT_ROWS=D == 64, VEC=vec, COLS=cols), 4, 1, ints)
print("compiled")
"""


def test_host_passes_compile_for_sm90():
    """bwd_host's Triton kernels compiled for sm90 with Triton's bundled ptxas (no GPU):
    compilation rejects what the interpreter-run tests let through -- the first device run
    failed on a module float read inside @jit (LOG2E), which compiles only as a constexpr."""
    pytest.importorskip("attnhub_triton.sm90_report")
    import os
    import subprocess
    import sys

    import triton
    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas")):
        pytest.skip("Triton's bundled ptxas is missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _SM90_HOST_PASSES], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "compiled" in res.stdout, res.stderr[-3000:]


def test_red_v4_writes_the_vec_io_order_and_backward_decodes_it_so():
    """red_v4's atomics put element (j, h, e) of thread ctid at (j·128 + ctid)·4 + 2h + e,
    the order ``dq_from_accum(vec_io=True)`` decodes (the test above); the kernel's address
    and the host's choice of decoder say the same."""
    src = cuda_bwd._SRC.read_text()
    assert "dq_accum + (blk * 2 + cw) * DQ_WG_FLOATS + 4 * ctid;" in src
    assert "red_add_f4(g + j * 512, dq[4 * j], dq[4 * j + 1], dq[4 * j + 2], dq[4 * j + 3]);" in src
    assert "dq_from_accum(acc, q, scale, tile.vec_io or tile.red_v4)" in (
        pathlib.Path(cuda_bwd.__file__).read_text())
    assert all(t.dq_atomic for D in cuda_bwd.HEAD_DIMS for t in cuda_bwd.tiles_for(D)
               if t.red_v4)


# -- the last wave cut along the queries (BwdTile.tail) ------------------------------------------
def test_tail_tiles_are_the_shipped_non_causal_ones_and_build_only_non_causal():
    """The tail twins of the shipped non-causal tiles; d256's is the default."""
    assert [(D, str(t)) for D in cuda_bwd.HEAD_DIMS for t in cuda_bwd.tiles_for(D)
            if t.tail] == [(64, "s2-poly1-tail"), (128, "s2-poly1-tail"),
                           (128, "s2-poly1-alt-tail"), (256, "s2-atomic-v4-relay-tail")]
    for D in cuda_bwd.HEAD_DIMS:  # each shipped non-causal tile has its tail twin
        assert cuda_bwd.default_tile(D, False)._replace(tail=True) in cuda_bwd.tiles_for(D)
        # the default where it was measured to pay (d256 non-causal, 2026-12-07), never causal
        assert [cuda_bwd.default_tile(D, c, s).tail for c in (False, True)
                for s in (1024, 2048, 4096, 16384)] == [D == 256] * 4 + [False] * 4
    assert cuda_bwd.default_tile(224, False).tail  # d224 runs d256's kernel
    tail = cuda_bwd.BwdTile(2, poly=1, dq_alt=True, tail=True)
    assert "-DTAIL_SPLIT=1" in cuda_bwd.options(128, False, torch.bfloat16, tail)
    assert "-DTAIL_SPLIT=0" in cuda_bwd.options(128, True, torch.bfloat16, tail)
    assert "-DTAIL_SPLIT=0" in cuda_bwd.options(128, False, torch.bfloat16,
                                                  tail._replace(tail=False))


@given(n_blocks=st.integers(1, 5000), n_sm=st.sampled_from([1, 8, 114, 132, 144]),
       n_iter=st.integers(1, 300), piece_bytes=st.sampled_from([0, 65536, 131072]))
@settings(max_examples=300, deadline=None)
def test_tail_plan_cuts_only_the_last_wave_and_never_lengthens_it(n_blocks, n_sm, n_iter,
                                                                  piece_bytes):
    n_whole, parts = cuda_bwd.tail_plan(n_blocks, n_sm, n_iter, piece_bytes)
    tail = n_blocks - n_whole
    assert 1 <= parts <= min(16, n_iter) and 0 <= tail < n_sm
    if parts == 1:
        assert n_whole == n_blocks
        return
    assert tail == n_blocks % n_sm and n_whole % n_sm == 0 and n_whole >= n_sm
    if piece_bytes:
        assert tail * parts * piece_bytes <= cuda_bwd.TAIL_WS_BYTES
    # a list schedule (the block scheduler, idealised) of the planned CTAs in launch order,
    # a piece costing its query blocks plus TAIL_PIECE_COST, is no longer than the uncut one
    cost = cuda_bwd.TAIL_PIECE_COST
    whole = [n_iter + cost] * n_blocks
    cut = [n_iter + cost] * n_whole + [
        (p + 1) * n_iter // parts - p * n_iter // parts + cost
        for _ in range(tail) for p in range(parts)]
    assert (cuda_bwd.packing(cut, n_sm)["makespan_cycles"]
            <= cuda_bwd.packing(whole, n_sm)["makespan_cycles"])


def test_tail_plan_refuses_what_it_cannot_plan():
    with pytest.raises(ValueError, match="n_blocks, n_sm and n_iter must be positive"):
        cuda_bwd.tail_plan(0, 132, 8)
    assert cuda_bwd.tail_plan(264, 132, 64) == (264, 1)  # two whole waves: nothing to cut
    assert cuda_bwd.tail_plan(100, 132, 64) == (100, 1)  # one partial wave: nothing gains
    assert cuda_bwd.tail_plan(2048, 132, 64, 131072)[0] == 1980  # the FA grid at d128


def _tail_ctas(n_blocks, parts, n_whole, n_kb, n_kvh, n_iter):
    """fa3_bwd.cu's TAIL_SPLIT decode, mirrored: CTA lin → (kb, kv head, batch, pairs)."""
    out = []
    for lin in range(n_whole + (n_blocks - n_whole) * parts):
        piece, blk = -1, lin
        if lin >= n_whole:
            piece, cut = (lin - n_whole) % parts, (lin - n_whole) // parts
            blk = n_whole + cut
        kb, kvh, b = blk % n_kb, (blk // n_kb) % n_kvh, blk // (n_kb * n_kvh)
        it0 = 0 if piece < 0 else piece * n_iter // parts
        n = n_iter if piece < 0 else (piece + 1) * n_iter // parts - it0
        out.append((kb, kvh, b, range(it0, it0 + n)))
    return out


@pytest.mark.parametrize("D", cuda_bwd.HEAD_DIMS)
@pytest.mark.parametrize("shape", ["gqa", "ragged", "square", "fa_grid"])
def test_tail_pieces_cover_every_key_block_and_query_pair_once(D, shape):
    """Every (key block, KV head, batch) and every one of its (query head, query block)
    pairs in exactly one CTA; whole blocks in the 3-D grid's order, first; the kernel's
    and the host's lines are the ones mirrored here.  The shapes: the GPU cases'
    (cuda_bwd_check.cases) and the FA grid's at 2k."""
    bm, bn = cuda_bwd.block_m_for(D), cuda_bwd.block_n_for(D)
    B, Hq, Hk, Sq, Sk = {"gqa": (1, 8, 4, 1000, 35 * bn),
                         "ragged": (2, 2, 2, 40 * bn - 17, 40 * bn - 17),
                         "square": (1, 4, 4, 35 * bn, 35 * bn),
                         "fa_grid": (8, 2048 // D, 2048 // D, 2048, 2048)}[shape]
    n_kb, n_iter = math.ceil(Sk / bn), math.ceil(Sq / bm) * (Hq // Hk)
    n_blocks = n_kb * Hk * B
    n_whole, parts = cuda_bwd.tail_plan(n_blocks, 132, n_iter, 2 * cuda_bwd._kv_n(D) * 512)
    assert parts > 1  # these shapes are cut
    ctas = _tail_ctas(n_blocks, parts, n_whole, n_kb, Hk, n_iter)
    seen = {}
    for kb, kvh, b, its in ctas:
        for it in its:
            key = (kb, kvh, b, it)
            assert key not in seen, key
            seen[key] = True
    assert len(seen) == n_blocks * n_iter
    assert [c[:3] for c in ctas[:n_whole]] == [
        (kb, h, b) for b in range(B) for h in range(Hk) for kb in range(n_kb)][:n_whole]
    src = cuda_bwd._SRC.read_text()
    for line in ("piece = (lin - n_whole) % tail_parts;", "cut = (lin - n_whole) / tail_parts;",
                 "lin = n_whole + cut;", "kb = lin % n_kb;", "kv_head = (lin / n_kb) % n_kvh;",
                 "batch = lin / (n_kb * n_kvh);",
                 "const int it0 = piece < 0 ? 0 : piece * (n_mb * group) / tail_parts;",
                 "const int n_iter = piece < 0 ? n_mb * group : (piece + 1) * (n_mb * group) "
                 "/ tail_parts - it0;",
                 "it += it0;  // TAIL_SPLIT: a piece's first pair (0 otherwise)",
                 "if (ctid == 0) last = atomicAdd(tail_cnt + 2 * cut + cw, 1) == tail_parts - 1;",
                 "for (int pc = 0; pc < tail_parts; ++pc) {"):
        assert line in src, line
    # a warpgroup that is not the last piece returns: only after the epilogue's barrier of
    # both warpgroups (bar 4), which the other one would otherwise wait at for ever, and
    # after its dQ bulk reduction has read the shared memory it leaves
    tail_at = src.index("    if (piece >= 0) {")
    assert src.index('asm volatile("bar.sync 4, 256;" ::: "memory");') < tail_at
    assert "bar.sync 4," not in src[tail_at:] and "bar.sync 1," not in src[tail_at:]
    ret = src.index("return;", tail_at)
    assert "cp.async.bulk.wait_group.read 0;" in src[tail_at:ret]
    host = pathlib.Path(cuda_bwd.__file__).read_text()
    assert "return (n_whole + (n_blocks - n_whole) * parts, 1, 1), n_whole, parts" in host
    # the launch the host computes is the one mirrored
    grid, nw, pp = cuda_bwd.launch_grid(B, Hq, Hk, Sq, Sk, D, cuda_bwd.default_tile(
        D, False)._replace(tail=True), False, 132)
    assert grid == (len(ctas), 1, 1) and (nw, pp) == (n_whole, parts)

