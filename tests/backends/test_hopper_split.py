"""hopper-fa3's ``Tile.split``: the last wave's tiles cut along the keys over every CTA.

On the CPU: :func:`cuda_fwd.split_plan`'s properties (every key block of the last wave in
exactly one segment, ranges near-equal and at most one a CTA, a tile's segments
consecutive and labelled as the kernel reads them), an emulation of what the kernel does
with the plan (one partial O, m, l per segment in base 2, merged in segment order) against
float64 attention, and the source compiling with the split for the tiles the A/B measures.
On an sm90 GPU: the tolerance rule with the split on shapes whose last wave is cut (and
shapes where it is not), bit-identical reruns, and agreement with the unsplit tile.
"""

import math
import re
import shutil

import pytest
import torch
from hypothesis import given, settings, strategies as st

from attnhub_hopper import cuda_fwd

ON_SM90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
needs_sm90 = pytest.mark.skipif(not ON_SM90, reason="needs an sm90 (Hopper) GPU")
NVCC = shutil.which("nvcc")

#: d128's non-causal 2k tile with the split (measured, not shipped) and d64's shipped
#: non-causal 2k tile (192-row, ones_sum), which has it.  d256 has no persistent twin of
#: its shipped non-causal tile: with persistence it needs 263272 bytes of shared memory
#: (limit 232448; the first GPU run refused it, s32)
SPLIT_TILES = [(128, cuda_fwd.default_tile(128, False, 2048)._replace(split=True)),
               (64, cuda_fwd.default_tile(64, False, 2048))]


@pytest.mark.parametrize("D,tile", SPLIT_TILES, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=("bf16", "fp16"))
def test_split_tiles_are_launchable(D, tile, dtype):
    """What the launch checks first (shared memory, the tile's rules), on the CPU."""
    assert tile.split
    assert cuda_fwd.tile_refusal(D, tile, False, dtype) is None


def test_d256_persistent_twin_is_refused_for_its_shared_memory():
    tile = cuda_fwd.default_tile(256, False, 8192)._replace(persistent=True, split=True)
    assert "shared memory" in cuda_fwd.tile_refusal(256, tile, False, torch.bfloat16)


def _check_plan(n_tiles, n_blocks, n_ctas, min_blocks=cuda_fwd.SPLIT_MIN_BLOCKS):
    n_whole, first, segs = cuda_fwd.split_plan(n_tiles, n_blocks, n_ctas, min_blocks)
    n_ranges = len(first) - 1
    if n_ranges == 0:
        assert n_whole == n_tiles and segs == ()
        tail = n_tiles % n_ctas
        # no split only where none would cut a tile
        assert tail == 0 or min(n_ctas, tail * n_blocks // min_blocks) <= tail
        return
    tail = n_tiles - n_whole
    assert n_whole % n_ctas == 0 and 0 < tail < n_ctas
    assert tail < n_ranges <= n_ctas
    assert first[0] == 0 and first[-1] == len(segs) and list(first) == sorted(first)
    covered = {}
    sizes = []
    for j in range(n_ranges):
        size = 0
        for tile, lo, hi, part in segs[first[j]:first[j + 1]]:
            assert n_whole <= tile < n_tiles and 0 <= lo < hi <= n_blocks
            size += hi - lo
            for b in range(lo, hi):
                assert (tile, b) not in covered, "a key block in two segments"
                covered[(tile, b)] = j
        sizes.append(size)
    assert len(covered) == tail * n_blocks  # every block of the last wave, once
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= min(min_blocks, n_blocks)
    for i, (tile, lo, hi, part) in enumerate(segs):
        seg0, n = part >> 8, part & 255
        assert seg0 <= i < seg0 + n and all(segs[s][0] == tile for s in range(seg0, seg0 + n))
        assert seg0 == 0 or segs[seg0 - 1][0] != tile
        assert seg0 + n == len(segs) or segs[seg0 + n][0] != tile
        assert sum(segs[s][2] - segs[s][1] for s in range(seg0, seg0 + n)) == n_blocks


@settings(max_examples=300, deadline=None)
@given(n_tiles=st.integers(1, 3000), n_blocks=st.integers(1, 300),
       n_ctas=st.integers(1, 160), min_blocks=st.integers(1, 8))
def test_split_plan_covers_the_last_wave_once_in_near_equal_ranges(n_tiles, n_blocks, n_ctas,
                                                                   min_blocks):
    _check_plan(n_tiles, n_blocks, n_ctas, min_blocks)


def test_split_plan_refuses_more_pieces_than_the_label_holds():
    """A tile's piece count has 8 bits in the segment label (at most one more piece than
    ranges, so never on 132 SMs)."""
    with pytest.raises(ValueError, match="300 pieces"):
        cuda_fwd.split_plan(1, 300, 300, min_blocks=1)
    _check_plan(1, 300, 254, min_blocks=1)


@pytest.mark.parametrize("D,S,block_n", [(128, 2048, 128), (128, 8192, 128), (256, 2048, 64),
                                         (256, 16384, 64), (64, 2048, 128)])
def test_split_plan_on_the_grid(D, S, block_n):
    """The FA grid's non-causal points on 132 SMs: the last wave (68 of 132 tiles at
    d128, 100 at d256) becomes 132 ranges, within a block of each other."""
    H, B = 2048 // D, 16384 // S
    block_m = 192 if D == 64 else 128
    n_tiles = B * H * math.ceil(S / block_m)
    n_blocks = math.ceil(S / block_n)
    _check_plan(n_tiles, n_blocks, 132)
    n_whole, first, segs = cuda_fwd.split_plan(n_tiles, n_blocks, 132)
    assert len(first) - 1 == 132 and n_whole == n_tiles // 132 * 132
    work = (n_tiles - n_whole) * n_blocks
    assert all(math.floor(work / 132) <= sum(s[2] - s[1] for s in segs[first[j]:first[j + 1]])
               <= math.ceil(work / 132) for j in range(132))


def test_split_plan_refuses_nonsense():
    with pytest.raises(ValueError, match="positive"):
        cuda_fwd.split_plan(0, 16, 132)
    with pytest.raises(ValueError, match="positive"):
        cuda_fwd.split_plan(10, 16, 0)


def _emulate(q, k, v, scale, block_m, block_n, n_ctas):
    """What the split kernel computes, in float64 on the CPU: (O, LSE) of (H, S, D) inputs,
    whole tiles as one pass, the plan's pieces as partial (O unnormalised, m, l) in base 2,
    merged in segment order the way fa3_fwd.cu's epilogue does."""
    H, Sq, D = q.shape
    Sk = k.shape[1]
    n_m, n_blocks = math.ceil(Sq / block_m), math.ceil(Sk / block_n)
    n_tiles = H * n_m
    n_whole, first, segs = cuda_fwd.split_plan(n_tiles, n_blocks, n_ctas)
    o = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=q.dtype)
    log2e = 1 / math.log(2)

    def partial(tile, lo, hi):
        h, mi = divmod(tile, n_m)
        rows = slice(mi * block_m, min(Sq, (mi + 1) * block_m))
        keys = slice(lo * block_n, min(Sk, hi * block_n))
        s = q[h, rows] @ k[h, keys].T * scale * log2e
        m = s.max(dim=1).values
        p = torch.exp2(s - m[:, None])
        return h, rows, p @ v[h, keys], m, p.sum(dim=1)

    def finish(h, rows, acc, m, l):
        o[h, rows] = acc / l[:, None]
        lse[h, rows] = (m + torch.log2(l)) / log2e

    for t in range(n_whole if segs else n_tiles):
        finish(*partial(t, 0, n_blocks))
    parts = [partial(tile, lo, hi) for tile, lo, hi, _ in segs]
    for i, (tile, lo, hi, label) in enumerate(segs):
        seg0, n = label >> 8, label & 255
        if i != seg0:
            continue  # the tile's merge is done once, over all its pieces in order
        h, rows = parts[i][0], parts[i][1]
        acc = torch.zeros_like(parts[i][2])
        mm = torch.full_like(parts[i][3], float("-inf"))
        ll = torch.zeros_like(mm)
        for _, _, op, mp, lp in parts[seg0:seg0 + n]:
            mn = torch.maximum(mm, mp)
            a = torch.where(mm == float("-inf"), 0.0, torch.exp2(mm - mn))
            b = torch.exp2(mp - mn)
            acc, ll, mm = acc * a[:, None] + op * b[:, None], ll * a + lp * b, mn
        finish(h, rows, acc, mm, ll)
    return o, lse, (n_whole, len(first) - 1)


@pytest.mark.parametrize("H,Sq,Sk,n_ctas", [(3, 5 * 64, 1000, 4), (5, 3 * 64 + 7, 333, 7),
                                            (2, 64, 4096, 132), (9, 256, 260, 8)])
def test_split_merge_emulation_matches_attention(H, Sq, Sk, n_ctas):
    g = torch.Generator().manual_seed(H * Sq + Sk)
    q, k, v = (torch.randn(H, s, 32, generator=g, dtype=torch.float64) * 2
               for s in (Sq, Sk, Sk))
    scale = 32 ** -0.5
    o, lse, (n_whole, n_ranges) = _emulate(q, k, v, scale, 64, 64, n_ctas)
    assert n_ranges > 0  # these shapes cut their last wave
    s = q @ k.transpose(1, 2) * scale
    torch.testing.assert_close(o, torch.softmax(s, -1) @ v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), rtol=1e-10, atol=1e-10)


def _run_schedule(n_tiles, n_blocks, n_ctas, seed=None):
    """fa3_fwd.cu's persistent producers under SPLIT_TAIL, mirrored: each CTA starts at
    unit blockIdx.x, hands out a range's segments one by one, and takes the next unit from
    the shared counter only when its range is used up.  With a seed the CTAs take turns in
    a random order (any interleaving of the atomics); without, the one that is least busy
    goes next (a list schedule, an item costing its key blocks).  Returns the plan, the
    items each CTA published, the item that merged each cut tile (the last arrival on its
    counter) and the busiest CTA's key blocks."""
    import random

    n_whole, first, segs = cuda_fwd.split_plan(n_tiles, n_blocks, n_ctas)
    n_ranges = len(first) - 1
    grid = min(n_whole + n_ranges, n_ctas)
    counter = [0]
    state = [{"t": b, "seg": 0, "seg_end": 0, "items": [], "busy": 0} for b in range(grid)]

    def enter(st_):
        t = st_["t"]
        if n_whole <= t < n_whole + n_ranges:
            st_["seg"], st_["seg_end"] = first[t - n_whole], first[t - n_whole + 1]

    for st_ in state:
        enter(st_)
    arrivals, merged = {}, {}
    rng = random.Random(seed)
    live = list(range(grid))
    while live:
        b = (rng.choice(live) if seed is not None
             else min(live, key=lambda i: (state[i]["busy"], i)))
        st_ = state[b]
        if st_["seg"] < st_["seg_end"]:
            item = n_whole + st_["seg"]
            st_["seg"] += 1
        else:
            item = st_["t"] if st_["t"] < n_whole else None
        if item is None:
            live.remove(b)
            continue
        st_["items"].append(item)
        st_["busy"] += n_blocks
        if item >= n_whole:  # the consumers' epilogue: count the piece, the last merges
            tile, lo, hi, label = segs[item - n_whole]
            st_["busy"] += hi - lo - n_blocks
            if label & 255 > 1:
                arrivals[tile] = arrivals.get(tile, 0) + 1
                if arrivals[tile] == label & 255:
                    merged[tile] = item
        if st_["seg"] >= st_["seg_end"]:
            st_["t"] = grid + counter[0]
            counter[0] += 1
            enter(st_)
    return (n_whole, segs, [st_["items"] for st_ in state], merged,
            max(st_["busy"] for st_ in state))


@pytest.mark.parametrize("n_tiles,n_blocks,n_ctas", [(2048, 16, 132), (1024, 32, 132),
                                                     (64, 9, 132), (144, 9, 132),
                                                     (2816, 16, 132), (37, 5, 7)])
@pytest.mark.parametrize("seed", range(3))
def test_split_schedule_does_every_block_once(n_tiles, n_blocks, n_ctas, seed):
    """The producer loop's order of units and segments (mirrored from the kernel) covers
    every key block of every tile exactly once whatever order the CTAs reach the counter,
    merges each cut tile exactly once."""
    n_whole, segs, items, merged, _ = _run_schedule(n_tiles, n_blocks, n_ctas, seed)
    done = {}
    for cta_items in items:
        for item in cta_items:
            if item < n_whole:
                blocks = [(item, b) for b in range(n_blocks)]
            else:
                tile, lo, hi, _ = segs[item - n_whole]
                blocks = [(tile, b) for b in range(lo, hi)]
            for key in blocks:
                assert key not in done, f"key block {key} done twice"
                done[key] = item
    assert len(done) == n_tiles * n_blocks
    cut = {s[0] for s in segs if s[3] & 255 > 1}
    assert set(merged) == cut


@pytest.mark.parametrize("n_tiles,n_blocks", [(2048, 16), (2048, 64), (1024, 32), (1024, 256),
                                              (2816, 16), (2816, 32), (200, 16)])
def test_split_schedule_evens_out_the_last_wave(n_tiles, n_blocks):
    """In a list schedule on 132 CTAs (costs in key blocks, no per-item overhead), the
    busiest CTA does floor(T / 132) whole tiles and one range, where unsplit it does
    ceil(T / 132) tiles: at the FA grid's d128 2k, 15 x 16 + 9 = 249 blocks against 256."""
    n_whole, segs, _, _, busiest = _run_schedule(n_tiles, n_blocks, 132)
    tail_work = (n_tiles - n_whole) * n_blocks
    assert busiest == n_whole // 132 * n_blocks + math.ceil(tail_work / 132)
    assert busiest < math.ceil(n_tiles / 132) * n_blocks


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("D,tile", SPLIT_TILES, ids=lambda x: str(x))
def test_split_compiles_for_sm90a(D, tile):
    report = cuda_fwd.nvcc_check(D, tile, False, torch.bfloat16)
    assert "Used" in report and not re.search(r"C751\d", report), report
    if D == 128:  # as the unsplit tile: no local memory (d256's persistent twin spills too)
        assert "0 bytes spill stores" in report, report


@pytest.mark.skipif(cuda_fwd.nvrtc_library() is None, reason="no libnvrtc: pip install "
                    "nvidia-cuda-nvrtc")
@pytest.mark.parametrize("D,tile", SPLIT_TILES, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=("bf16", "fp16"))
def test_split_is_accepted_by_nvrtc(D, tile, dtype):
    """What the device compiles with (CuPy's NVRTC): the split's intrinsics (st.cg / ld.cg,
    bar.red) are accepted and ptxas keeps the wgmma pipeline (no C751x serialisation)."""
    log = cuda_fwd.nvrtc_compile(cuda_fwd.source(D, tile.block_n, dtype, tile.ones_sum),
                                 cuda_fwd.nvrtc_options(D, tile, False, dtype)
                                 + ("--ptxas-options=-v",))
    assert "Used" in log and not re.search(r"C751\d", log), log


def test_split_is_refused_where_tiles_differ():
    tile = cuda_fwd.default_tile(128, False, 2048)._replace(split=True)
    assert "persistent non-causal" in cuda_fwd.tile_refusal(128, tile, True, torch.bfloat16)
    plain = tile._replace(persistent=False)
    assert "persistent non-causal" in cuda_fwd.tile_refusal(128, plain, False, torch.bfloat16)
    assert cuda_fwd.tile_refusal(128, tile, False, torch.bfloat16) is None
    assert str(tile).endswith("-split")


# -- GPU ------------------------------------------------------------------------------------
def _problem(B, Hq, Hk, Sq, Sk, D, dtype=torch.bfloat16):
    from attnhub.contract import Problem

    return Problem(B, Hq, Hk, Sq, Sk, D, D, dtype, torch.device("cuda"), scale=D ** -0.5)


@needs_sm90
@pytest.mark.gpu
@pytest.mark.parametrize("D,tile", SPLIT_TILES, ids=lambda x: str(x))
@pytest.mark.parametrize("shape", [dict(B=2, Hq=4, Hk=2, Sq=1023, Sk=1031),  # all one wave
                                   dict(B=3, Hq=6, Hk=2, Sq=1000, Sk=1031),  # 144 tiles
                                   dict(B=4, Hq=8, Hk=8, Sq=2000, Sk=2000),
                                   dict(B=8, Hq=16, Hk=16, Sq=2048, Sk=2048),  # the grid's
                                   dict(B=2, Hq=4, Hk=4, Sq=113, Sk=203),  # not cut
                                   dict(B=1, Hq=4, Hk=1, Sq=777, Sk=4096)],
                         ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=("bf16", "fp16"))
def test_split_forward_on_the_gpu(D, tile, shape, dtype, monkeypatch):
    from attnhub.testing.tolerance import assert_matches_reference, random_inputs
    from attnhub_hopper.cuda_check import _Cuda

    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_UNVERIFIED", "1")
    p = _problem(D=D, dtype=dtype, **shape)
    q, k, v = random_inputs(p)
    assert_matches_reference(_Cuda(tile), q, k, v, p)  # poisoned O/LSE first
    o1, l1 = cuda_fwd.forward(q, k, v, p, tile=tile)
    o2, l2 = cuda_fwd.forward(q, k, v, p, tile=tile)
    assert torch.equal(o1, o2) and torch.equal(l1, l2)  # pieces merge in a fixed order
    # Against the unsplit tile: not bit for bit -- a piece's row max differs from the whole
    # tile's, so P rounds differently to 16 bits, and the ones-column tiles (d64) sum l from
    # those rounded P (the first GPU run: LSE 6.5e-4 apart at d64, 8.5e-5 relative).  So
    # both are held to the float64 reference: the split's mean error at most 1.3x the
    # unsplit tile's, its largest at most 3x (a lost or doubled piece is far off both).
    o0, l0 = cuda_fwd.forward(q, k, v, p, tile=tile._replace(split=False))
    from attnhub import reference
    o_ref, l_ref = reference.forward(q, k, v, p, compute_dtype=torch.float64)
    for name, got, unsplit, ref in (("O", o1, o0, o_ref), ("LSE", l1, l0, l_ref)):
        e_split = (got.double() - ref.double()).abs()
        e_whole = (unsplit.double() - ref.double()).abs()
        tiny = 1e-7
        assert e_split.mean().item() <= 1.3 * e_whole.mean().item() + tiny, name
        assert e_split.max().item() <= 3 * e_whole.max().item() + tiny, name
