"""Check and time the warp-specialised CUDA forward (``fa3_fwd.cu``) on an H100 in one call.

    python backends/attnhub_hopper/cuda_check.py --out $OUT [--quick] [--no-grid]

1. Builds every specialisation timed below (NVRTC through CuPy; seconds each).
2. Correctness: the tolerance rule (attnhub.testing.tolerance: O and LSE within 2x torch's
   own low-precision error against the reference) on fresh random inputs with NaN-poisoned
   output memory, over head dims 64/128/192/256 (and 96/160/224 on the next kernel up),
   causal and not, (Sq, Sk) in (113, 203),
   (1023, 1024), (1, 4096), (4096, 1), (300, 100), MHA/GQA/MQA, BHSD and BSHD, fp16 and
   bf16, every tile variant; plus a determinism check (two runs bit-identical).
3. Timing (triton.testing.do_bench medians): the FA grid (batch = 16384 // S, heads =
   2048 // D) for the CUDA kernel's tile variants, the Triton hopper-fa3 kernel, and SDPA
   cuDNN / flash in the same run.
4. ``--fp8``: the FP8 (e4m3) kernel instead: the FP8 accuracy rule (fp8_rule.check_fp8,
   against an fp64 reference and FlashAttention-3's own rounding) on quantize_fp8 inputs over
   d128/d256, causal and not, awkward shapes, GQA, BSHD, both tiles, plus determinism; then
   TFLOP/s at d128/d256, 2k-16k, against the Triton FP8 kernel and, for scale, bf16 cuDNN
   and SDPA-flash on the same shapes, all in the same run (writes cuda_fp8.json / _log.txt).
Writes cuda_fwd.json, cuda_fwd.png and cuda_fwd_log.txt under --out; prints a table last.
``--plot-from JSON`` only redraws the PNG of an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

# the Triton kernel's device check already has the poisoning, timing and SDPA-peer helpers
from attnhub_hopper.device_check import (_bench, _poison, _sdpa, fa_point,  # noqa: E402
                                         plot_only, tee_log)

# (block_n, stages, pingpong) per head dim, timed on the grid next to the default tile
# (cuda_fwd.default_tile); the correctness grid runs the defaults, the rest run on one
# awkward shape each.
VARIANTS = {
    64: [(192, 2, True), (128, 2, True), (192, 2, False), (192, 2, True, False, True),
         (128, 2, True, False, True),
         # exp2 of 1 or 2 of every 4 column groups by the FMA-pipe cubic (Tile.poly)
         (192, 2, True, False, False, 1), (192, 2, True, False, False, 2),
         (128, 2, True, False, True, 1),
         # three consumer warpgroups, 192-row tiles (Tile.consumers; FA3's d64 tile); the
         # persistent one spills 56-76 bytes at 160 registers
         (128, 2, True, False, False, 0, False, 3), (128, 2, False, False, False, 0, False, 3),
         (112, 2, True, False, False, 0, False, 3), (128, 2, True, False, True, 0, False, 3),
         # CTA pairs sharing K/V by TMA multicast (Tile.cluster; non-causal only)
         (128, 2, True, False, False, 0, False, 3, 2)],
    128: [(128, 2, True), (176, 2, False), (128, 2, False), (176, 2, True),
          (128, 2, True, False, True), (128, 2, False, False, True),
          (128, 2, True, False, False, 1), (176, 2, False, False, False, 1),
          (128, 2, True, False, False, 0, False, 2, 2), (176, 2, False, False, False, 0, False, 2, 2)],
    # d192 (first GPU run 2026-12-06): the default n112s2, ping-pong, narrower blocks, the
    # persistent kernel (its O buffer fits at 64-wide blocks), CTA pairs
    192: [(112, 2, False), (112, 2, True), (96, 2, False), (96, 2, True),
          (64, 2, True, False, True), (112, 2, False, False, False, 0, False, 2, 2)],
    256: [(80, 2, False), (80, 2, True), (64, 2, True), (80, 2, False, False, False, 0, False, 2, 2)],
    # head dims the next kernel up serves on TMA's zero fill (cuda_fwd.kernel_head_dim): its
    # default tile only
    96: [], 160: [], 224: [],
}
# the persistent kernel (one CTA per SM, tiles from an atomic counter) on shapes that give a
# CTA many tiles, tiles with no key block (causal, Sq > Sk), GQA and ragged ends
PERSISTENT_CASES = [dict(Sq=2000, Sk=2000, B=4, Hq=8, Hk=8),
                    dict(Sq=1500, Sk=200, B=4, Hq=16, Hk=4),
                    dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                    dict(Sq=4096, Sk=1, B=2, Hq=4, Hk=4),
                    dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=2)]


def _problem(B, Hq, Hk, Sq, Sk, D, dtype, causal):
    import torch
    from attnhub.contract import Problem

    return Problem(B, Hq, Hk, Sq, Sk, D, D, dtype, torch.device("cuda"), scale=D ** -0.5,
                   causal=causal)


class _Cuda:
    name = "hopper-fa3-cuda"

    def __init__(self, tile=None):
        self.tile = tile

    def forward(self, q, k, v, p):
        from attnhub_hopper import cuda_fwd

        why = cuda_fwd.unsupported_reason(q, k, v, p)
        if why:
            raise RuntimeError(f"CUDA forward refused: {why}")
        _poison(q.numel() * 2 + 4 * p.batch * p.heads_q * p.seqlen_q)
        return cuda_fwd.forward(q, k, v, p, tile=self.tile)


def cases(quick):
    import torch
    from attnhub_hopper.cuda_fwd import Tile

    out = []
    for D in VARIANTS:
        for causal in (False, True):
            for sq, sk in ((113, 203), (1023, 1024), (1, 4096), (4096, 1), (300, 100)):
                out.append(dict(D=D, causal=causal, Sq=sq, Sk=sk, B=2, Hq=4, Hk=4))
            out.append(dict(D=D, causal=causal, Sq=1024, Sk=1100, B=2, Hq=8, Hk=2))
            # many tiles per persistent CTA, and (causal) tiles with no key block at all
            out.append(dict(D=D, causal=causal, Sq=2000, Sk=2000, B=4, Hq=8, Hk=8))
            out.append(dict(D=D, causal=causal, Sq=1500, Sk=200, B=4, Hq=16, Hk=4))
            out.append(dict(D=D, causal=causal, Sq=777, Sk=777, B=1, Hq=4, Hk=1,
                            layout="bshd"))
            out.append(dict(D=D, causal=causal, Sq=1023, Sk=1024, B=2, Hq=4, Hk=2,
                            dtype=torch.float16))
            for tile in VARIANTS[D][1:]:
                if _refused(D, tile, causal):
                    continue  # e.g. CTA pairs, which are non-causal only
                out.append(dict(D=D, causal=causal, Sq=1023, Sk=1031, B=2, Hq=4, Hk=2,
                                tile=tile))
            # the persistent kernel's shapes; for CTA pairs: many pairs, a lone tile (the
            # cluster-1 twin runs), one key (the second CTA's half is all out of bounds)
            for tile in (t for t in VARIANTS[D]
                         if Tile(*t).persistent or Tile(*t).cluster > 1):
                if _refused(D, tile, causal):
                    continue
                for shape in PERSISTENT_CASES:
                    out.append(dict(D=D, causal=causal, tile=tile, **shape))
                if Tile(*tile).cluster > 1:
                    out.append(dict(D=D, causal=False, Sq=1000, Sk=1000, B=1, Hq=4, Hk=1,
                                    layout="bshd", tile=tile))
        for tile in lpt_tiles(D):  # the shipped causal tiles with Tile.lpt's launch order
            for shape in PERSISTENT_CASES + [dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2),
                                             dict(Sq=777, Sk=777, B=3, Hq=5, Hk=5)]:
                out.append(dict(D=D, causal=True, tile=tile, shipped=True, **shape))
    if quick:
        out = out[::3]
    return out


def _refused(D, tile, causal, dtype=None) -> bool:
    """Whether the kernel refuses this VARIANTS tuple for (D, causal) (cuda_fwd.tile_refusal;
    CTA pairs, for one, are non-causal only): such combinations are not built or run."""
    import torch
    from attnhub_hopper import cuda_fwd

    return cuda_fwd.tile_refusal(D, cuda_fwd.Tile(*tile), causal,
                                 dtype or torch.bfloat16) is not None


def lpt_tiles(D) -> list:
    """The shipped causal tiles of head dim D with ``lpt`` (as tuples): timed next to the
    default at every causal grid point."""
    from attnhub_hopper import cuda_fwd

    return sorted({tuple(t._replace(lpt=True)) for d, c, t in cuda_fwd.shipped_tiles()
                   if d == D and c})


#: Shapes for a tile change's tolerance cases (:func:`tile_cases`): Sq not a multiple of the
#: tile, Sq != Sk both ways (keys ahead of the queries; rows that see no key, whole tiles
#: and warpgroups of them), one query or one key, GQA/MQA, BSHD, fp16, wide scores (q * 8:
#: the running max moves often).
TILE_SHAPES = (
    dict(Sq=2048, Sk=2048, B=4, Hq=8, Hk=8), dict(Sq=1000, Sk=1000, B=2, Hq=4, Hk=4),
    dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
    dict(Sq=203, Sk=113, B=2, Hq=4, Hk=4), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4),
    dict(Sq=4096, Sk=1, B=2, Hq=4, Hk=2), dict(Sq=300, Sk=100, B=2, Hq=4, Hk=1),
    dict(Sq=3000, Sk=1000, B=2, Hq=8, Hk=8), dict(Sq=1900, Sk=2500, B=2, Hq=4, Hk=2),
    dict(Sq=100, Sk=3000, B=2, Hq=4, Hk=4), dict(Sq=4000, Sk=64, B=2, Hq=8, Hk=2),
    dict(Sq=2000, Sk=2000, B=2, Hq=4, Hk=4, q_scale=8.0),
    dict(Sq=1500, Sk=3000, B=2, Hq=4, Hk=2, q_scale=4.0, dtype="float16"),
    dict(Sq=777, Sk=777, B=3, Hq=6, Hk=3, layout="bshd"))


def tile_cases(tiles, shapes=TILE_SHAPES) -> list:
    """:func:`run_case` cases of every (D, causal, Tile) in ``tiles`` on every shape (which
    also checks two runs bit-identical: the first causal tile overlaps its neighbour, both
    write those rows)."""
    import torch

    def case(D, causal, tile, shape):
        c = dict(D=D, causal=causal, tile=tuple(tile), **shape)
        if isinstance(c.get("dtype"), str):
            c["dtype"] = getattr(torch, c["dtype"])
        return c

    return [case(D, causal, tile, shape) for D, causal, tile in tiles for shape in shapes]


def causal_tile_cases() -> list:
    """:func:`tile_cases` of every shipped causal 16-bit tile (other lists: call
    :func:`tile_cases` with their (D, causal, Tile) triples)."""
    from attnhub_hopper import cuda_fwd

    tiles = sorted({(D, t) for D, causal, t in cuda_fwd.shipped_tiles() if causal}, key=str)
    return tile_cases([(D, True, t) for D, t in tiles])


def run_case(c):
    import torch
    from attnhub.testing.tolerance import check_forward, random_inputs
    from attnhub_hopper.cuda_fwd import Tile

    dtype = c.get("dtype", torch.bfloat16)
    cid = (f"d{c['D']} s{c['Sq']}x{c['Sk']} h{c['Hq']}/{c['Hk']} "
           f"{'causal' if c['causal'] else 'full'} {str(dtype)[6:]} {c.get('layout', 'bhsd')}"
           + (f" tile{c['tile']}" if c.get("tile") else "")
           + (f" q*{c['q_scale']}" if c.get("q_scale") else ""))
    try:
        torch.manual_seed(zlib.crc32(cid.encode()))
        p = _problem(c["B"], c["Hq"], c["Hk"], c["Sq"], c["Sk"], c["D"], dtype, c["causal"])
        q, k, v = random_inputs(p, layout=c.get("layout", "bhsd"))
        if c.get("q_scale"):  # wider scores: the running max moves by more, more often
            q = q * c["q_scale"]
        be = _Cuda(Tile(*c["tile"]) if c.get("tile") else None)
        res = check_forward(be, q, k, v, p)
        o1, l1 = be.forward(q, k, v, p)
        o2, l2 = be.forward(q, k, v, p)
        same = bool(torch.equal(o1, o2) and torch.equal(l1, l2))
        ok = all(r.ok for r in res) and same
        return dict(id=cid, ok=ok, D=c["D"], tile=c.get("tile"), deterministic=same,
                    report=[str(r) for r in res])
    except Exception as exc:
        return dict(id=cid, ok=False, D=c["D"], tile=c.get("tile"),
                    error=f"{type(exc).__name__}: {exc}"[:1500],
                    tb=traceback.format_exc()[-1500:])


def report_cases(cases, label: str) -> list:
    """Run :func:`run_case` over ``cases`` (the device scripts' tolerance checks of tile
    variants), print up to ten failures and "<label>: passed/total passed"; returns the
    results."""
    res = [run_case(c) for c in cases]
    bad = [r for r in res if not r["ok"]]
    for r in bad[:10]:
        print("FAIL", r["id"], r.get("error") or r.get("report"), "det", r.get("deterministic"))
    print(f"{label}: {len(res) - len(bad)}/{len(res)} passed")
    return res


def checked_tiles(results) -> set:
    """(D, str(Tile)) of the variants whose own cases ran and all passed: only these may be
    called the best of a grid point (every variant is still timed)."""
    from attnhub_hopper.cuda_fwd import Tile

    ok = {}
    for r in results:
        if r.get("tile"):
            key = (r["D"], str(Tile(*r["tile"])))
            ok[key] = ok.get(key, True) and r["ok"]
    return {key for key, good in ok.items() if good}


def grid(log, quick, checked=None, variants=None):
    """The timing grid.  ``checked`` (from :func:`checked_tiles`): variants outside it are
    timed but marked, and never reported as a point's best.  ``variants`` ({D: [tiles]},
    default :data:`VARIANTS`) limits the head dims and the tiles timed next to the default."""
    from attnhub_hopper import cuda_fwd, ops
    from attnhub_hopper.cuda_fwd import Tile

    rows = []
    seqs = (1024, 2048, 4096, 8192, 16384) if not quick else (2048, 16384)
    variants = VARIANTS if variants is None else variants
    for D in variants:
        for S in seqs:
            for causal in (False, True):
                p, q, k, v = fa_point(D, S, causal)
                B, H = q.shape[:2]
                fl = p.flops()
                row = dict(D=D, S=S, causal=causal, B=B, H=H, cuda={}, peers={})
                dft_tile = cuda_fwd.default_tile(D, causal, S)
                row["default_tile"] = str(dft_tile)
                row["default_tflops"] = fl / _bench(lambda: cuda_fwd.forward(q, k, v, p)) / 1e9
                tiles = list(variants[D])
                if causal:  # the default's own tile in the other launch order (Tile.lpt)
                    tiles.append(tuple(dft_tile._replace(lpt=not dft_tile.lpt)))
                for tile in tiles:
                    if _refused(D, tile, causal):
                        continue
                    try:
                        ms = _bench(lambda: cuda_fwd.forward(q, k, v, p, tile=Tile(*tile)))
                        row["cuda"][str(Tile(*tile))] = fl / ms / 1e9
                    except Exception as exc:
                        log(f"  cuda {tile} failed: {type(exc).__name__}: {str(exc)[-300:]}")
                try:
                    ms = _bench(lambda: ops.forward(q, k, v, p))
                    row["peers"]["triton-hopper"] = fl / ms / 1e9
                except Exception as exc:
                    log(f"  triton failed: {exc}")
                for name, key in (("CUDNN_ATTENTION", "cudnn"), ("FLASH_ATTENTION", "flash")):
                    try:
                        fn = _sdpa(name)
                        row["peers"][key] = fl / _bench(lambda: fn(q, k, v, causal)) / 1e9
                    except Exception as exc:
                        log(f"  {key} failed: {exc}")
                if checked is not None:
                    row["unchecked"] = [t for t in row["cuda"] if (D, t) not in checked
                                        and t != row["default_tile"]]
                eligible = {t: x for t, x in row["cuda"].items()
                            if t not in row.get("unchecked", ())}
                best = max(eligible, key=eligible.get) if eligible else None
                row["best"] = best
                row["best_tflops"] = row["cuda"].get(best)
                cu = row["peers"].get("cudnn")
                dft = row["default_tflops"]
                row["x_cudnn"] = dft / cu if cu else None  # the shipped (default) tile
                row["best_x_cudnn"] = row["best_tflops"] / cu if cu and best else None
                fa = row["peers"].get("flash")
                row["x_flash"] = dft / fa if fa else None
                rows.append(row)
                log(f"d{D} s{S:>5} {'causal' if causal else 'full  '} default "
                    f"{row['default_tile']} {dft:.0f} best {best} "
                    f"{row['best_tflops'] or 0:.0f} | cudnn {cu or 0:.0f} flash {fa or 0:.0f} "
                    f"triton {row['peers'].get('triton-hopper', 0):.0f} | "
                    f"x cudnn {row['x_cudnn'] or 0:.3f} x flash {row['x_flash'] or 0:.2f} | "
                    + " ".join(f"{k_}:{x:.0f}" for k_, x in row["cuda"].items()))
                del q, k, v
    return rows


# -- FP8 ----------------------------------------------------------------------------------
FP8_TILES = {128: [(128, 2, False), (128, 2, True), (128, 3, False), (128, 2, False, True),
                   (128, 2, False, False, False, 1), (128, 2, False, False, False, 2)],
             256: [(128, 2, True), (128, 2, False), (128, 2, True, True),
                   (128, 2, False, True), (128, 2, False, False, False, 1)]}


def fp8_cases(quick):
    out = []
    for D in (128, 256):
        for causal in (False, True):
            for sq, sk in ((113, 203), (1023, 1024), (1, 4096), (4096, 1), (300, 100)):
                out.append(dict(D=D, causal=causal, Sq=sq, Sk=sk, B=2, Hq=4, Hk=4))
            out.append(dict(D=D, causal=causal, Sq=1024, Sk=1100, B=2, Hq=8, Hk=2))
            out.append(dict(D=D, causal=causal, Sq=777, Sk=777, B=1, Hq=4, Hk=1,
                            layout="bshd"))
            # V not sequence-major: copied once into the layout the TMA reads
            out.append(dict(D=D, causal=causal, Sq=500, Sk=640, B=2, Hq=4, Hk=2,
                            v_layout="natural"))
            for tile in FP8_TILES[D]:
                out.append(dict(D=D, causal=causal, Sq=1000, Sk=1031, B=2, Hq=4, Hk=2,
                                tile=tile))
    return out[::3] if quick else out


def run_fp8_case(c):
    import torch
    from attnhub.contract import Problem
    from attnhub.fp8 import quantize_fp8
    from attnhub.testing.tolerance import random_inputs
    from attnhub_hopper.cuda_fwd import Tile
    from attnhub_hopper.fp8_rule import check_fp8

    cid = (f"fp8 d{c['D']} s{c['Sq']}x{c['Sk']} h{c['Hq']}/{c['Hk']} "
           f"{'causal' if c['causal'] else 'full'} {c.get('layout', 'bhsd')}"
           + (f" v-{c['v_layout']}" if c.get("v_layout") else "")
           + (f" tile{c['tile']}" if c.get("tile") else ""))
    try:
        torch.manual_seed(zlib.crc32(cid.encode()))
        p0 = _problem(c["B"], c["Hq"], c["Hk"], c["Sq"], c["Sk"], c["D"], torch.bfloat16,
                      c["causal"])
        q, k, v = random_inputs(p0, layout=c.get("layout", "bhsd"))
        f = quantize_fp8(q, k, v)
        q8, k8 = f.q, f.k
        if c.get("layout") == "bshd":  # BSHD storage for q and k too
            q8, k8 = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q8, k8))
        p = Problem(c["B"], c["Hq"], c["Hk"], c["Sq"], c["Sk"], c["D"], c["D"],
                    torch.float8_e4m3fn, torch.device("cuda"), scale=c["D"] ** -0.5,
                    causal=c["causal"], q_descale=f.q_descale, k_descale=f.k_descale,
                    v_descale=f.v_descale)
        be = _Cuda(Tile(*c["tile"]) if c.get("tile") else None)
        v8 = f.v.contiguous() if c.get("v_layout") == "natural" else f.v
        ok, info = check_fp8(be, q8, k8, v8, p)
        o1, l1 = be.forward(q8, k8, v8, p)
        o2, l2 = be.forward(q8, k8, v8, p)
        same = bool(torch.equal(o1, o2) and torch.equal(l1, l2))
        return dict(id=cid, ok=ok and same, deterministic=same, **info)
    except Exception as exc:
        return dict(id=cid, ok=False, error=f"{type(exc).__name__}: {exc}"[:1500],
                    tb=traceback.format_exc()[-1500:])


def fp8_grid(log, quick):
    import torch
    from attnhub.contract import Problem
    from attnhub_hopper import cuda_fwd, ops
    from attnhub_hopper.cuda_fwd import Tile

    rows = []
    seqs = (2048, 4096, 8192, 16384) if not quick else (16384,)
    for D in (256, 128):
        for S in seqs:
            for causal in (False, True):
                B, H = 16384 // S, 2048 // D
                p = Problem(B, H, H, S, S, D, D, torch.float8_e4m3fn, torch.device("cuda"),
                            scale=D ** -0.5, causal=causal)
                x = [torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
                     for _ in range(3)]
                q8, k8 = (t.to(torch.float8_e4m3fn) for t in x[:2])
                v8 = ops._seq_major(x[2].to(torch.float8_e4m3fn))  # as quantize_fp8 stores it
                fl = p.flops()
                row = dict(D=D, S=S, causal=causal, B=B, H=H, cuda={}, peers={})
                for tile in FP8_TILES[D]:
                    try:
                        ms = _bench(lambda: cuda_fwd.forward(q8, k8, v8, p, tile=Tile(*tile)))
                        row["cuda"][str(Tile(*tile))] = fl / ms / 1e9
                    except Exception as exc:
                        log(f"  cuda fp8 {tile} failed: {type(exc).__name__}: "
                            f"{str(exc)[-300:]}")
                row["v_relayout_us"] = _bench(lambda: cuda_fwd._fp8_v(v8, 0)) * 1e3
                try:
                    ms = _bench(lambda: ops.forward(q8, k8, v8, p))
                    row["peers"]["triton-fp8"] = fl / ms / 1e9
                except Exception as exc:
                    log(f"  triton fp8 failed: {exc}")
                for name, key in (("CUDNN_ATTENTION", "cudnn-bf16"),
                                  ("FLASH_ATTENTION", "flash-bf16")):
                    try:
                        fn = _sdpa(name)
                        row["peers"][key] = fl / _bench(lambda: fn(*x, causal)) / 1e9
                    except Exception as exc:
                        log(f"  {key} failed: {exc}")
                row["default_tile"] = str(cuda_fwd.default_tile(D, causal, S, fp8=True))
                row["default_tflops"] = row["cuda"].get(row["default_tile"])
                tr = row["peers"].get("triton-fp8")
                dft = row["default_tflops"]
                row["x_triton_fp8"] = dft / tr if tr and dft else None
                rows.append(row)
                log(f"fp8 d{D} s{S:>5} {'causal' if causal else 'full  '} "
                    + " ".join(f"{k_}:{v_:.0f}" for k_, v_ in row["cuda"].items())
                    + f" | triton-fp8 {tr or 0:.0f} cudnn-bf16 "
                    f"{row['peers'].get('cudnn-bf16', 0):.0f} flash-bf16 "
                    f"{row['peers'].get('flash-bf16', 0):.0f} | V pass "
                    f"{row['v_relayout_us']:.0f} us")
                del x, q8, k8, v8
    return rows


def fp8_v_checks(log):
    """fp8_v.cu against fp8_v_reference: sequence-major and natural layouts, ragged Sk,
    a misaligned view; outputs poisoned first."""
    import torch
    from attnhub_hopper import cuda_fwd

    out = []
    for B, H, S, D, how in ((2, 3, 4096, 128, "seq-major"), (1, 2, 1000, 256, "seq-major"),
                            (2, 2, 77, 128, "natural"), (1, 1, 1, 256, "natural"),
                            (2, 2, 300, 128, "offset")):
        x = torch.randint(0, 256, (B, H, S + 1, D), dtype=torch.uint8, device="cuda")
        v = x[:, :, 1:] if how == "offset" else x[:, :, :S]
        if how == "seq-major":
            v = v.transpose(-1, -2).contiguous().transpose(-1, -2)
        v = v.view(torch.float8_e4m3fn)
        _poison(B * H * D * (S + 32))
        ok = bool(torch.equal(cuda_fwd._fp8_v(v, 0), cuda_fwd.fp8_v_reference(v)))
        out.append(dict(shape=(B, H, S, D), layout=how, ok=ok))
        log(f"fp8 V layout {how} {(B, H, S, D)}: {'ok' if ok else 'MISMATCH'}")
    return out


def fp8_score_error(log):
    """How exact are FP8 tensor-core scores?  Max |S - S_fp64| * scale of torch._scaled_mm
    (cuBLAS FP8, with and without fast accumulation), against this kernel's and the Triton
    kernel's LSE error with one key (where LSE is the score itself)."""
    import torch
    from attnhub.contract import Problem
    from attnhub.fp8 import quantize_fp8
    from attnhub_hopper import cuda_fwd, ops

    out = []
    for D in (128, 256):
        torch.manual_seed(D)
        Sq = 4096
        q, k, v = (torch.randn(1, 1, n, D, device="cuda") for n in (Sq, 16, 16))
        f = quantize_fp8(q, k, v)
        qd, kd = f.q_descale.item(), f.k_descale.item()
        ref = (f.q[0, 0].double() @ f.k[0, 0].double().T) * qd * kd * D ** -0.5
        row = dict(D=D)
        one = torch.ones((), device="cuda")
        for fast in (False, True):
            s = torch._scaled_mm(f.q[0, 0], f.k[0, 0].T, one, one, out_dtype=torch.float32,
                                 use_fast_accum=fast)
            row[f"scaled_mm_fast{int(fast)}"] = ((s.double() * qd * kd * D ** -0.5 - ref)
                                                 .abs().max().item())
        p = Problem(1, 1, 1, Sq, 1, D, D, torch.float8_e4m3fn, torch.device("cuda"),
                    scale=D ** -0.5, q_descale=f.q_descale, k_descale=f.k_descale,
                    v_descale=f.v_descale)
        k1, v1 = f.k[:, :, :1], f.v[:, :, :1]
        for name, fn in (("cuda", cuda_fwd.forward), ("triton", ops.forward)):
            _, lse = fn(f.q, k1, v1, p)
            row[f"{name}_lse_1key"] = (lse[0, 0].double() - ref[:, 0]).abs().max().item()
        out.append(row)
        log("fp8 score error " + " ".join(f"{k_}={v_:.2e}" if isinstance(v_, float)
                                         else f"{k_}={v_}" for k_, v_ in row.items()))
    return out


def build_all(log, tiles_per_dim, dtypes):
    """Build every (head dim, tile, causal, dtype) specialisation; one record each."""
    from attnhub_hopper import cuda_fwd
    from attnhub_hopper.cuda_fwd import Tile

    builds = []
    for D, tiles in tiles_per_dim.items():
        for tile in tiles:
            for causal in (False, True):
                for dt in dtypes:
                    if _refused(D, tile, causal, dt):
                        continue
                    rec = dict(D=D, tile=tile, causal=causal, dtype=str(dt))
                    t = time.time()
                    try:
                        cuda_fwd._kernel(0, D, Tile(*tile), causal, dt)
                        builds.append(dict(rec, ok=True, s=time.time() - t))
                    except Exception as exc:
                        builds.append(dict(rec, ok=False, error=str(exc)[-2000:]))
                        log(f"build d{D} {tile} causal={causal} {dt} FAILED: "
                            f"{str(exc)[-2000:]}")
    return builds


def main_fp8(args, log):
    import torch
    from attnhub_hopper import cuda_fwd

    t0 = time.time()
    builds = build_all(log, FP8_TILES, (torch.float8_e4m3fn,))
    log(f"fp8 builds: {sum(b['ok'] for b in builds)}/{len(builds)} in {time.time() - t0:.1f} s")
    try:
        score = fp8_score_error(log)
    except Exception as exc:
        score = dict(error=f"{type(exc).__name__}: {exc}")
        log(f"fp8 score error probe failed: {traceback.format_exc()[-1500:]}")
    layout = fp8_v_checks(log)
    results = []
    for c in fp8_cases(args.quick):
        r = run_fp8_case(c)
        results.append(r)
        log(("ok   " if r["ok"] else "FAIL ") + f"{r['id']}: "
            + (r.get("error") or f"o_err {r.get('o_err', 0):.3e} baseline "
               f"{r.get('baseline_err', 0):.3e} lse_err {r.get('lse_err', 0):.2e} "
               f"det={r.get('deterministic')}") + (f"\n{r['tb']}" if r.get("tb") else ""))
    n_ok = sum(r["ok"] for r in results)
    log(f"fp8 correctness: {n_ok}/{len(results)} passed")
    from attnhub_hopper.device_check import fp8_rmse

    rmse = fp8_rmse(log, forward=cuda_fwd.forward)
    rows = [] if args.no_grid else fp8_grid(log, args.quick)
    data = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                date=time.strftime("%Y-%m-%d"), builds=builds, v_layout=layout,
                score_error=score, rmse=rmse, cases=results, grid=rows)
    with open(os.path.join(args.out, "cuda_fp8.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)
    if rows:
        plot(os.path.join(args.out, "cuda_fp8.json"), os.path.join(args.out, "cuda_fp8.png"))
    log(f"fp8 correctness: {n_ok}/{len(results)} passed")


def plot(json_path: str, png_path: str) -> None:
    """TFLOP/s against seqlen, one panel per head dim x causal: the shipped CUDA tile, cuDNN,
    SDPA-flash and the Triton hopper kernel, all from the same run (for an FP8 run: the
    FP8 kernels against bf16 cuDNN / SDPA-flash on the same shapes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    rows = data["grid"]
    fp8 = any("triton-fp8" in r["peers"] for r in rows)
    dims = sorted({r["D"] for r in rows})
    fig, axes = plt.subplots(2, len(dims), figsize=(4.2 * len(dims), 7), squeeze=False)
    for j, D in enumerate(dims):
        for i, causal in enumerate((False, True)):
            ax = axes[i][j]
            sel = sorted((r for r in rows if r["D"] == D and r["causal"] == causal),
                         key=lambda r: r["S"])
            xs = [r["S"] for r in sel]
            if fp8:
                series = {
                    "hopper-fa3 CUDA FP8 (shipped tile)": [r.get("default_tflops") for r in sel],
                    "hopper-fa3 Triton FP8": [r["peers"].get("triton-fp8") for r in sel],
                    "cuDNN bf16 (SDPA)": [r["peers"].get("cudnn-bf16") for r in sel],
                    "SDPA flash bf16 (FA2)": [r["peers"].get("flash-bf16") for r in sel]}
            else:
                series = {
                    "hopper-fa3 CUDA (shipped tile)": [r.get("default_tflops") for r in sel],
                    "cuDNN (SDPA)": [r["peers"].get("cudnn") for r in sel],
                    "SDPA flash (FA2)": [r["peers"].get("flash") for r in sel],
                    "hopper-fa3 Triton": [r["peers"].get("triton-hopper") for r in sel]}
            for name, ys in series.items():
                ax.plot(xs, ys, marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{x // 1024}k" for x in xs])
            ax.set_title(f"d{D} {'causal' if causal else 'non-causal'}")
            ax.set_xlabel("seqlen")
            ax.set_ylabel("TFLOP/s")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    what = "FP8 (e4m3) forward" if fp8 else "bf16 forward"
    fig.suptitle(f"{data['device']}, {what}, {data['date']} (one run)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--fp8", action="store_true", help="the FP8 kernel's checks and timing")
    ap.add_argument("--plot-from", metavar="JSON", help="only draw the PNG of a results JSON")
    ap.add_argument("--dims", type=lambda x: [int(d) for d in x.split(",")],
                    help="bf16/fp16: only these head dims, e.g. 64 (default: all of VARIANTS)")
    ap.add_argument("--tiles", type=lambda x: x.split(","),
                    help="bf16/fp16: only these variants' builds, cases and timing (the "
                         "default tile's cases and timing still run), e.g. n128s2-pp-m192")
    args = ap.parse_args()
    if args.plot_from:
        return plot_only(plot, args.plot_from)
    from attnhub_hopper.cuda_fwd import Tile

    variants = {D: [t for t in ts if not args.tiles or str(Tile(*t)) in args.tiles]
                for D, ts in VARIANTS.items() if not args.dims or D in args.dims}
    unknown = set(args.tiles or ()) - {str(Tile(*t)) for ts in variants.values() for t in ts}
    if unknown or not variants:
        ap.error(f"--tiles {sorted(unknown)} / --dims {args.dims}: no such variant or head dim "
                 "(see cuda_check.VARIANTS)")
    os.makedirs(args.out, exist_ok=True)
    import torch

    log = tee_log(os.path.join(args.out, "cuda_fp8_log.txt" if args.fp8 else "cuda_fwd_log.txt"))

    from attnhub_hopper import cuda_fwd

    # this script is what checks them: the head dims still waiting for it run here
    os.environ["ATTNHUB_HOPPER_CUDA_UNVERIFIED"] = "1"
    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} "
        f"{time.strftime('%Y-%m-%d %H:%M')}")
    log(f"import: {cuda_fwd._import_reason() or 'ok'}")
    if args.fp8:
        return main_fp8(args, log)
    t0 = time.time()
    builds = build_all(log, variants, (torch.bfloat16, torch.float16))
    log(f"builds: {sum(b['ok'] for b in builds)}/{len(builds)} in {time.time() - t0:.1f} s")

    results = []
    for c in cases(args.quick):
        if c["D"] not in variants or (args.tiles and c.get("tile") and not c.get("shipped")
                                      and str(Tile(*c["tile"])) not in args.tiles):
            continue  # the shipped tiles' cases always run
        r = run_case(c)
        results.append(r)
        if not r["ok"]:
            log(f"FAIL {r['id']}: {r.get('error') or r.get('report')} "
                f"det={r.get('deterministic')}\n{r.get('tb', '')}")
    n_ok = sum(r["ok"] for r in results)
    log(f"correctness: {n_ok}/{len(results)} passed")
    for r in results[:6]:
        log(f"  {r['id']}: {r.get('report')}")

    checked = checked_tiles(results)
    rows = [] if args.no_grid else grid(log, args.quick, checked, variants)
    data = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                date=time.strftime("%Y-%m-%d"), builds=builds, cases=results, grid=rows)
    with open(os.path.join(args.out, "cuda_fwd.json"), "w") as f:
        json.dump(data, f, indent=1, default=str)
    if rows:
        plot(os.path.join(args.out, "cuda_fwd.json"), os.path.join(args.out, "cuda_fwd.png"))
    log(f"correctness: {n_ok}/{len(results)} passed")
    for row in rows:
        log(f"d{row['D']} s{row['S']:>5} {'c' if row['causal'] else 'n'} "
            f"{row['default_tflops']:.0f} cudnn {row['peers'].get('cudnn', 0):.0f} "
            f"x{row['x_cudnn'] or 0:.3f} xflash {row['x_flash'] or 0:.2f}")


if __name__ == "__main__":
    main()
