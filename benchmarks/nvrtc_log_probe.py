"""Why does NVRTC's log on the lent GPU machine lack ptxas's ``Used ... registers`` lines
for a source with front-end warnings (test_nvrtc_accepts_the_source, 2026-12-06)?  Prints
the library, its version, the log and the CUBIN size for the first failing spec, with and
without the warning suppressed.  Answer (H100, 2026-12-06): NVRTC 13's ptxas cache
(~/.nv/ComputeCache): a repeat of an input already compiled logs no ptxas lines; the second
and third compiles here differ in ptxas options only through ``-w``.  Run it with
CUDA_CACHE_DISABLE=1 in the environment to see every compile's lines (tests/conftest.py
sets it for the test suite)."""
import ctypes
import sys

import torch

sys.path[:0] = [".", "backends"]
from attnhub_hopper import cuda_fwd  # noqa: E402

path = cuda_fwd.nvrtc_library()
lib = ctypes.CDLL(path)
major, minor = ctypes.c_int(), ctypes.c_int()
lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
print("libnvrtc", path, f"{major.value}.{minor.value}")
tile = cuda_fwd.Tile(128, 2, False, lpt=True)
src = cuda_fwd.source(128, tile.block_n, torch.bfloat16)
base = list(cuda_fwd.nvrtc_options(128, tile, True, torch.bfloat16))
print("options", base)
for extra in ((), ("-diag-suppress=549",), ("-w",)):
    log = cuda_fwd.nvrtc_compile(src, base + ["--ptxas-options=-v", *extra])
    print(f"--- extra {extra}: {len(log)} chars, 'Used' in log: {'Used' in log}")
    print(log[-1500:])
