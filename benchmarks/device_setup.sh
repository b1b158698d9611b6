# Sourced by the benchmarks/device_*.sh scripts on the lent GPU machine (no network):
# installs the carried wheels (.whl/: stevedore, platformdirs, pyopencl, pytools, siphash24,
# transformers and its dependencies) into /tmp/site and attnhub + the torch-sdpa plugin
# editable, so the entry points are registered.
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 ATTNHUB_CACHE_DIR=/tmp/attnhub-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    -e plugins/attnhub-torch-sdpa 2>&1 | tail -3
