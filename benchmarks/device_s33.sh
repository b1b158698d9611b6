#!/usr/bin/env bash
# One device call, ready after the thirty-second session (BUDGET seconds, default 560; carry
# .whl; $OUT/all.tgz re-packed after every step).
# (0) d64 with Tile.split shipped (non-causal, 1025-4096 keys): the d64 cases of the forward
#     suites through default_tile (the split's own GPU cases passed on this tile; the suites'
#     shapes through the default path have not run with it), then the split cases again.
# (1) The bf16 grid with its dispatch.json (3 timing rounds; d64 non-causal 2k / 4k read
#     1.059 / 1.119x cuDNN in run19, before the split), then fp16 with what is left.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s33 560
TAIL=4 step d64_default "$(left 90)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py tests/backends/test_hopper_fa3.py -k "D64 or d64 or -64-"
TAIL=4 step split_tests "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_split.py
repack
grid_step bf16_r3 "$(left 280)" bf16 --rounds 3
repack
grid_step fp16_r3 "$(left 280)" fp16 --rounds 3
gpu_clocks
repack
