#!/usr/bin/env bash
# The thirty-fifth session's last chance at a device (BUDGET seconds, default 190; carry .whl):
# the few minutes device_s35.sh's first two steps need most.
# (0) the Gluon forward as shipped (pp, its source restructured this session) and on the
#     persistent grid: quick cases, then the grid's forward points against cuDNN/FLASH, 1 round.
# (1) the Gluon backward's first execution: its quick cases only (no bench).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s35s ${BUDGET:-190}
TAIL=40 step gluon_variants "$(left 100)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_variants" --timeout 60 --bench-timeout 70 --rounds 1 --cases quick \
    --variants pp,pp-persistent
repack
TAIL=30 step gluon_bwd "$(left 80)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd" --cases quick --no-bench --timeout 70
gpu_clocks
repack
