"""Count how much of a causal forward's tensor work is wasted on masked scores: products
computed ÷ products useful for hopper-fa3's tiling (64-row consumer warpgroups, tiles of
``block_m`` rows aligned to the last query, key blocks of ``block_n`` aligned to key 0,
bottom-right causal with Sq = Sk).  ``skip`` is what a warpgroup leaves out of a tile's
first key block (the diagonal) when that block lies wholly past its last row, as
``fa3_fwd.cu``'s DEAD_SKIP decides it: 0 nothing, 1 the S product (what ships: the mask and
the P·V of zeros still run), 2 S and P·V (the twenty-first session's variant 1).

    python benchmarks/causal_waste.py --seqlens 2048 4096 --block-n 128

No GPU; the twenty-sixth session used it to drop "mixed tile heights" (hopper NOTES.md).
It also counts which of ``Tile.halves``' mask paths each masked key block takes
(:func:`mask_paths`) and checks those paths against the causal mask itself
(:func:`halves_violations`; twenty-seventh session).
"""
from __future__ import annotations

import argparse
import math


def useful_fraction(S: int, block_m: int, block_n: int, skip: int = 1) -> float:
    """Useful ÷ computed products (S and P·V counted alike) over one (batch, head)."""
    if block_m % 64 or block_m <= 0:
        raise ValueError(f"block_m must be a positive multiple of 64 (warpgroups of 64 rows), "
                         f"got {block_m}")
    if skip not in (0, 1, 2):
        raise ValueError(f"skip must be 0, 1 or 2, got {skip}")
    computed = useful = 0
    for m1 in range(S, 0, -block_m):  # tiles aligned to the last query
        n_blocks = math.ceil(m1 / block_n)
        for top in range(m1 - block_m, m1, 64):  # each consumer warpgroup
            if top + 64 <= 0:
                continue  # rows before the first query: none
            dead = (n_blocks - 1) * block_n >= top + 64
            products = 2 * n_blocks - (skip if dead else 0)
            computed += 64 * block_n * products
            first = max(top, 0)
            useful += 2 * sum(r + 1 for r in range(first, top + 64))  # row r sees r + 1 keys
    return useful / computed


def _masked_blocks(Sq: int, Sk: int, block_m: int, block_n: int):
    """(m0, cw, n0, d) of every key block a consumer warpgroup masks, as fa3_fwd.cu's decode
    and mask see them: tiles of block_m rows aligned to the last query (the first clamped to
    row 0), key blocks aligned to key 0, bottom-right causal; d = the block column where the
    warpgroup's diagonal starts.  Yields None for each (warpgroup, block) pair needing no
    mask, so the count of everything yielded is the count of pairs."""
    offset = Sk - Sq
    for mi in range(math.ceil(Sq / block_m)):
        m0 = max(0, Sq - (mi + 1) * block_m)
        n_end = min(Sk, m0 + block_m + offset)
        n_blocks = math.ceil(n_end / block_n) if n_end > 0 else 0
        for cw in range(block_m // 64):
            for nb in range(n_blocks):
                n0 = nb * block_n
                need = n0 + block_n > Sk or n0 + block_n - 1 > m0 + cw * 64 + offset
                yield (m0, cw, n0, m0 + cw * 64 + offset - n0) if need else None


def halves_path(d: int, n0: int, Sk: int) -> str:
    """Which of ``Tile.halves``' mask paths a masked block takes (fa3_fwd.cu, MASK_HALVES):
    "le0" (columns 0-63 tested, the rest unseen), "eq64" (0-63 seen by every row, 64-127
    tested, the rest unseen) or "general" (every element tested)."""
    if d <= 0:
        return "le0"
    return "eq64" if d == 64 and n0 + 64 <= Sk else "general"


def mask_paths(Sq: int, Sk: int, block_m: int, block_n: int) -> dict:
    """How many (warpgroup, key block) pairs there are ("blocks") and how many masked ones
    take each ``Tile.halves`` path, over one (batch, head)."""
    out = {"blocks": 0, "le0": 0, "eq64": 0, "general": 0}
    for b in _masked_blocks(Sq, Sk, block_m, block_n):
        out["blocks"] += 1
        if b is not None:
            m0, cw, n0, d = b
            out[halves_path(d, n0, Sk)] += 1
    return out


def halves_violations(Sq: int, Sk: int, block_m: int, block_n: int, width: int = 64) -> list:
    """Every (m0, cw, n0, row, column) where ``Tile.halves``' untested columns disagree with
    the causal mask itself (key < Sk and key <= row + Sk - Sq): the columns a path leaves
    alone must be seen by all 64 rows and those it sets to -inf by none.  ``width`` is the
    diagonal's width the paths assume (64 ships; anything else should find violations)."""
    offset, bad = Sk - Sq, []
    for b in _masked_blocks(Sq, Sk, block_m, block_n):
        if b is None:
            continue
        m0, cw, n0, d = b
        path = halves_path(d, n0, Sk)
        if path == "general":
            continue
        lo, hi = (0, width) if path == "le0" else (width, 2 * width)  # tested columns
        for r in range(64):
            row = m0 + cw * 64 + r
            for c in range(block_n):
                if lo <= c < hi:
                    continue
                key = n0 + c
                seen = key < Sk and key <= row + offset
                if seen != (c < lo):
                    bad.append((m0, cw, n0, r, c))
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqlens", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--block-m", type=int, nargs="+", default=[128, 192])
    ap.add_argument("--block-n", type=int, default=128)
    args = ap.parse_args(argv)
    print("| S | tile rows | skip 0 | skip 1 (shipped) | skip 2 |")
    print("|---|---|---|---|---|")
    for S in args.seqlens:
        for M in args.block_m:
            r = [useful_fraction(S, M, args.block_n, s) for s in (0, 1, 2)]
            print(f"| {S} | {M} | " + " | ".join(f"{x:.3f}" for x in r) + " |")
    print("\nTile.halves: masked (warpgroup, key block) pairs by mask path\n")
    print("| S | tile rows | pairs | d <= 0 | d = 64 | general |")
    print("|---|---|---|---|---|---|")
    for S in args.seqlens:
        for M in args.block_m:
            c = mask_paths(S, S, M, args.block_n)
            print(f"| {S} | {M} | {c['blocks']} | {c['le0']} | {c['eq64']} | {c['general']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
