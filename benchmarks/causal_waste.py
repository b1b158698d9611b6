"""Count how much of a causal forward's tensor work is wasted on masked scores: products
computed ÷ products useful for hopper-fa3's tiling (64-row consumer warpgroups, tiles of
``block_m`` rows aligned to the last query, key blocks of ``block_n`` aligned to key 0,
bottom-right causal with Sq = Sk).  ``skip`` is what a warpgroup leaves out of a tile's
first key block (the diagonal) when that block lies wholly past its last row, as
``fa3_fwd.cu``'s DEAD_SKIP decides it: 0 nothing, 1 the S product (what ships: the mask and
the P·V of zeros still run), 2 S and P·V (the twenty-first session's variant 1).

    python benchmarks/causal_waste.py --seqlens 2048 4096 --block-n 128

No GPU; the twenty-sixth session used it to drop "mixed tile heights" (hopper NOTES.md).
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
