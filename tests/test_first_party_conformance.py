"""Every first-party backend that can run on this machine passes the conformance kit
(quick mode), on CUDA where the machine has it and the backend declares it, else on the
CPU.  On the CPU CI that is naive, opencl (PoCL) and triton-fa2 (Triton's interpreter);
GPU-only ones are skipped with their probe's reason."""

import importlib.metadata

import pytest
import torch

from attnhub.testing import run_checks

FIRST_PARTY = sorted(ep for ep in importlib.metadata.entry_points(group="attnhub.backends")
                     if ep.dist is not None and ep.dist.name == "attnhub")


@pytest.mark.parametrize("ep", FIRST_PARTY, ids=[ep.name for ep in FIRST_PARTY])
def test_first_party_backend_conforms(ep):
    backend = ep.load()()
    why = backend.probe()
    if why:
        pytest.skip(f"{ep.name} cannot run here: {why}")
    # the backend's own device: on a GPU machine triton-fa2 and hopper-fa3 run on CUDA
    # (checking them "on cpu" there verifies nothing, and the kit says so)
    device = "cuda" if torch.cuda.is_available() and "cuda" in backend.capabilities.devices \
        else "cpu"
    report = run_checks(backend, device=device, quick=True)
    print(report.render())
    assert report.ok, report.render()
