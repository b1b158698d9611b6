"""Test-session defaults: a private dispatch cache; without CUDA, Triton's CPU interpreter and
the slow interpreted GPU backends kept out of *auto*-dispatch (their own tests use them
directly)."""

import os

# NVRTC 13 keeps ptxas's results in ~/.nv/ComputeCache and a hit logs no ``ptxas info``
# lines, which test_nvrtc_accepts_the_source reads (``Used … registers``); libnvrtc reads
# this when it loads, which torch's import does, so it is set before that
# (NVIDIA/cuda-python#1124; seen on the lent GPU machine, 2026-12-06).
os.environ.setdefault("CUDA_CACHE_DISABLE", "1")

import torch  # noqa: E402

if not torch.cuda.is_available():  # CPU CI: Triton's interpreter, set before triton loads
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("ATTNHUB_DISABLE", "triton-fa2,hopper-fa3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["ATTNHUB_CACHE_DIR"] = str(tmp_path_factory.mktemp("attnhub-cache"))
    yield


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """A registry and dispatch memory reloaded for this test, with its own cache dir."""
    import attnhub.registry as registry

    monkeypatch.setenv("ATTNHUB_CACHE_DIR", str(tmp_path / "cache"))
    registry.reload()
    yield registry
    monkeypatch.undo()
    registry.reload()


@pytest.fixture
def benchmark_script():
    """``load(name)``: ``benchmarks/<name>.py`` as a module (``benchmarks/`` is not a
    package), for tests of the benchmark scripts and their kernels."""
    import importlib.util
    import pathlib

    def load(name: str):
        path = pathlib.Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load
