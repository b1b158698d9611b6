#!/usr/bin/env bash
# The thirty-sixth session's short call (BUDGET seconds, default 190; carry .whl): the few
# minutes device_s36.sh's first two steps need most.
# (0) the Gluon forward as shipped (pp), on the persistent grid, with the lazy rescale and over
#     (B, S, H, D) memory: quick cases, then the grid's forward points against cuDNN/FLASH,
#     1 round.
# (1) the Gluon backward's first execution: its quick cases only (no bench).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s36s ${BUDGET:-190}
TAIL=40 step gluon_variants "$(left 100)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_variants" --timeout 60 --bench-timeout 70 --rounds 1 --cases quick \
    --variants pp,pp-persistent,pp:lazy=8,pp:bshd=1
repack
TAIL=30 step gluon_bwd "$(left 80)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd" --cases quick --no-bench --timeout 70 --variants m64,m64v4
gpu_clocks
repack
