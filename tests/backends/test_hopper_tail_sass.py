"""``BwdTile.tail``'s main loop against the whole-block build's (fa3_bwd.cu, ``TAIL_LINEAR``).

The tail build with no block cut ran 1-4 % slower than the shipped builds at d64 / d128 on an
H100 (NOTES.md, thirty-fourth session).  In SASS its consumer loop had the same instructions,
but the block index's division (through ``row_block``'s ``it += it0``) sat at the top of the
d64 loop, in front of Sᵀ's first wgmma, and ptxas rescheduled the rest (thirty-sixth
session).  ``TAIL_LINEAR`` takes the consumers' block index as ``blk0 + i``.  Checked here:
that index against the pairs' own (pure Python, every CTA of the GPU cases' shapes and the
FA grid's), and, where nvcc and cuobjdump are installed, the loops' instructions: every
tensor, FP32, shared-memory and barrier instruction of the whole-block loop, no division.
"""

import collections
import glob
import importlib.util
import math
import os
import re
import shutil
import subprocess

import pytest
import torch

from attnhub_hopper import cuda_bwd

NVCC = shutil.which("nvcc")


def _cuobjdump():
    """cuobjdump on PATH, else the ``nvidia-cuda-cuobjdump`` wheel's; None without either."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations if spec else []) or []:
        hits = sorted(glob.glob(os.path.join(root, "cu*", "bin", "cuobjdump")))
        if hits:
            return hits[0]
    return None


CUOBJDUMP = _cuobjdump()


# -- the index: blk0 + i is the pair's block (no compiler needed) ------------------------------
def _pair_block(b, kvh, it, Hk, group, n_m):
    """fa3_bwd.cu's ``pair_block`` for a non-causal key block: m_first = 0, n_mb = n_m."""
    hq, mb = kvh * group + it // n_m, it % n_m
    return (b * Hk * group + hq) * n_m + mb


@pytest.mark.parametrize("D", cuda_bwd.HEAD_DIMS)
@pytest.mark.parametrize("shape", ["gqa", "ragged", "fa_grid"])
def test_the_consumers_block_index_is_the_pairs(D, shape):
    """Every CTA of a cut launch (whole blocks and pieces, ``launch_grid``'s plan): the
    consumers' ``blk0 + i`` is the block ``row_block`` gives the producer for pair it0 + i."""
    bm, bn = cuda_bwd.block_m_for(D), cuda_bwd.block_n_for(D)
    B, Hq, Hk, Sq, Sk = {"gqa": (1, 8, 4, 1000, 35 * bn),
                         "ragged": (2, 2, 2, 40 * bn - 17, 40 * bn - 17),
                         "fa_grid": (8, 2048 // D, 2048 // D, 2048, 2048)}[shape]
    tile = cuda_bwd.default_tile(D, False)._replace(tail=True)
    grid, n_whole, parts = cuda_bwd.launch_grid(B, Hq, Hk, Sq, Sk, D, tile, False, 132)
    assert parts > 1  # cut
    n_kb, n_m, group = math.ceil(Sk / bn), math.ceil(Sq / bm), Hq // Hk
    n_iter_all = n_m * group
    seen = 0
    for cta in range(grid[0]):  # the kernel's decode (its lines: test_hopper_cuda_bwd.py)
        piece, lin = -1, cta
        if lin >= n_whole:
            piece, cut = (lin - n_whole) % parts, (lin - n_whole) // parts
            lin = n_whole + cut
        kvh, b = (lin // n_kb) % Hk, lin // (n_kb * Hk)
        it0 = 0 if piece < 0 else piece * n_iter_all // parts
        n_iter = n_iter_all if piece < 0 else (piece + 1) * n_iter_all // parts - it0
        blk0 = _pair_block(b, kvh, 0, Hk, group, n_m) + it0
        for i in range(n_iter):
            assert blk0 + i == _pair_block(b, kvh, it0 + i, Hk, group, n_m)
        seen += n_iter
    assert seen == n_kb * Hk * B * n_iter_all


def test_the_kernel_has_the_lines_mirrored_here():
    src = cuda_bwd._SRC.read_text()
    for line in ("#define TAIL_LINEAR (TAIL_SPLIT && HEAD_DIM != 256)",
                 "const long long blk0 = pair_block(0, 0, hq0_, mb0_) + it0;",
                 "return blk0 + i;",
                 "it += it0;  // TAIL_SPLIT: a piece's first pair (0 otherwise)",
                 "const long long blk = consumer_block(t, i, hq, mb);",
                 "dq_out_all(consumer_block(t, i, hq_, mb_), dq_all);"):
        assert line in src, line
    # the producer keeps row_block (it needs hq and mb for the TMA coordinates)
    assert "const long long rows = row_block(t, i, hq, mb) * ROWS_PER_BLOCK;" in src


# -- SASS: the tail build's main loop against the whole-block build's -------------------------
_LINE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
#: opcode groups that must match one for one between the two loops (all but integer and
#: uniform arithmetic, which the tail build's index changes)
_SAME = ("HGMMA", "MUFU.EX2", "FFMA", "FADD", "FMUL", "FSEL", "FSETP", "F2FP", "LDS", "STS",
         "STSM", "BAR", "SYNCS", "WARPGROUP", "UBLKRED", "MEMBAR", "FENCE", "DEPBAR")


def _sass(D, tile, tmp_path):
    cubin = str(tmp_path / f"{D}-{tile}.cubin")
    report = cuda_bwd.nvcc_check(D, False, torch.bfloat16, tile, cubin=cubin)
    out = subprocess.run([CUOBJDUMP, "-sass", cubin], capture_output=True, text=True, check=True)
    ins = [(int(m.group(1), 16), m.group(2)) for m in map(_LINE.match, out.stdout.splitlines())
           if m]
    return report, ins


def _opcode(text):
    return re.sub(r"^@!?U?P[T0-9]+\s+", "", text).split()[0]


def _consumer_loops(ins):
    """Instruction lists of the loops closed by a predicated backward branch whose body
    issues wgmma (the consumers' block loops), in address order."""
    loops = []
    for addr, text in ins:
        m = re.match(r"^@!?U?P[T0-9]+\s+BRA\s+(?:`\()?0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr]
            if len(body) > 100 and any(_opcode(t).startswith("HGMMA") for t in body):
                loops.append(body)
    return loops


def _groups(body):
    c = collections.Counter()
    for t in body:
        op = _opcode(t)
        for g in _SAME:
            if op == g or op.startswith(g + "."):
                c[g] += 1
                break
    return c


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None,
                    reason="needs nvcc and cuobjdump (pip install nvidia-cuda-cuobjdump)")
@pytest.mark.parametrize("D,tile", [(64, cuda_bwd.BwdTile(2, poly=1)),
                                    (128, cuda_bwd.BwdTile(2, poly=1, dq_alt=True))], ids=str)
def test_tail_loop_is_the_whole_block_loop_less_the_division(D, tile, tmp_path):
    """Built for sm_90a as the device builds them (nvcc's SASS is NVRTC's here): the tail
    build's consumer loops issue exactly the whole-block loops' tensor, FP32, conversion,
    shared-memory, barrier and fence instructions, no spills either, and none of the block
    index's division (I2F / MUFU.RCP / F2I), so no more instructions."""
    rep_a, a = _sass(D, tile, tmp_path)
    rep_b, b = _sass(D, tile._replace(tail=True), tmp_path)
    for rep in (rep_a, rep_b):
        assert re.search(r"\b0 bytes spill stores", rep) and not re.search(
            r"\b[1-9]\d* bytes spill stores", rep), rep
    la, lb = _consumer_loops(a), _consumer_loops(b)
    assert len(la) == len(lb) == (2 if tile.dq_alt else 1)  # DQ_ALT: one per warpgroup
    for whole, tail in zip(la, lb):
        assert _groups(tail) == _groups(whole)
        assert any(_opcode(t).startswith(("I2F", "MUFU.RCP", "F2I")) for t in whole)
        assert not any(_opcode(t).startswith(("I2F", "MUFU.RCP", "F2I")) for t in tail)
        assert len(tail) < len(whole)
