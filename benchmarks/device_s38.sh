#!/usr/bin/env bash
# Thirty-eighth session's build (BUDGET seconds, default 330; carry .whl): the Gluon forward's
# persistent grid with a dynamic tile scheduler, pp-dynamic (GLUON_NOTES "Thirty-eighth
# session").  Runs after device_s37b.sh, before device_s37.sh.
# (0) quick cases (pp, pp-persistent, pp-dynamic; the 133-tile case: one CTA takes a second
#     tile, the rest stop), then the FA grid's forward points at d64 / d128 from 512 to 16k,
#     causal and not, against SDPA cuDNN / FLASH, 2 interleaved rounds.
#     Predictions (pp-dynamic ÷ pp, the kernel alone): non-causal +2..+4 % at 2k (as the
#     static grid's +3 %), ±1 % from 8k; causal +0..+4 % at 2k-4k where the static grid lost
#     2-6 %; d128 causal 16k back from 0.73x to pp's 1.06x cuDNN +-2 %; 512 / 1k +5..+15 %.
# (1) its GPU tests through the backend (forward and backward, two calls per case).
# (2) through the backend: pp ÷ pp-dynamic at 512-16k (both the Gluon forward at every
#     length), 3 rounds: sets GLUON_VARIANTS and GLUON_MIN_KEYS if it wins.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s38 ${BUDGET:-330}
P64=512x64,1024x64,2048x64,4096x64,8192x64,16384x64
P128=512x128,1024x128,2048x128,4096x128,8192x128,16384x128
TAIL=60 step gluon_dynamic "$(left 150)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_dynamic" --timeout 100 --bench-timeout 130 --rounds 2 --cases quick \
    --variants "${GVARIANTS:-pp,pp-persistent,pp-dynamic}" \
    --points "${POINTS:-$P64,${P64//x64/x64c},$P128,${P128//x128/x128c}}"
repack
grep -Eq "^correctness: ([0-9]+)/\1 passed" "$RES/gluon_dynamic.txt" || { gpu_clocks; repack; exit 0; }
TAIL=6 step gluon_dynamic_tests "$(left 70)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py -k "dynamic"
repack
TAIL=26 step ab_gluon_dyn "$(left 20)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_dyn_s38 --seqs 512,1024,2048,4096,8192,16384 \
    --pair tri:64:full:gluon,gluon_dyn --pair tri:64:causal:gluon,gluon_dyn \
    --pair tri:128:full:gluon,gluon_dyn --pair tri:128:causal:gluon,gluon_dyn
gpu_clocks
repack
