#!/usr/bin/env python3
"""The FlashAttention benchmark grid (attnhub backends, auto-dispatch and torch SDPA peers in
one run).  Same as ``attnhub bench``; see benchmarks/README.md.

    python benchmarks/fa_grid.py                 # the full grid (CUDA), < 9 min on an H100
    python benchmarks/fa_grid.py --quick         # bf16, d64/d128, 1k/4k: a smoke run
    python benchmarks/fa_grid.py --head-dims 128 --seqlens 4k 16k --directions fwd
    python benchmarks/fa_grid.py --from-json benchmarks/results/fa_grid_h100_2026-11-23.json
"""

import os
import sys

try:
    from attnhub.bench import main
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    from attnhub.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="benchmarks/fa_grid.py"))
