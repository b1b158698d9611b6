#!/usr/bin/env bash
# Last call of the thirty-sixth session (BUDGET seconds, default 450; carry .whl): the shipped
# changes on the GPU: the Gluon forward at d256 (ws2) and over (B, S, H, D) memory by default,
# the Gluon backward by default at d64/d128 (from 1024 keys).
# (0) the Gluon GPU tests through the backend (d256 and BSHD / packed QKV cases included).
# (1) the d256 route against the plain-Triton forward, 1k-16k, 3 interleaved rounds
#     (prediction: Gluon 1.2-1.4x, from the kernel's 0.98-1.15x cuDNN against run20's 0.67-0.83x).
# (2) triton-fa2's GPU suite (its backward now the Gluon one at d64/d128).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s36c ${BUDGET:-450}
TAIL=4 step gluon_gpu_tests "$(left 90)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py
repack
TAIL=12 step ab_d256 "$(left 80)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_d256_s36 --seqs 1024,2048,4096,8192,16384 \
    --pair tri:256:full:nogluon,gluon --pair tri:256:causal:nogluon,gluon
repack
TAIL=6 step fa2_gpu_suite "$(left 300)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=5 tests/backends/test_triton_fa2.py
gpu_clocks
repack
