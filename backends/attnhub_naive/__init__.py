"""``naive``: pure-torch attention on any device torch supports.

The reference semantics (:mod:`attnhub.reference`) packaged as a backend: the always
available last resort.  Processes query blocks so peak memory is O(block × Sk).
"""

from __future__ import annotations

import torch

import attnhub
from attnhub import reference

__all__ = ["NaiveBackend"]


class NaiveBackend(attnhub.Backend):
    name = "naive"
    version = attnhub.__version__
    requires_api = ">=1,<2"
    capabilities = attnhub.Capabilities(
        devices=("cpu", "cuda", "mps", "xpu", "hpu", "meta"),
        dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64),
        min_head_dim=1,
        max_head_dim=1 << 16,
        causal=True, gqa=True, window=True, softcap=True, varlen=True,
        backward=True, fp8=False,
        priority=0,
    )

    def forward(self, q, k, v, problem):
        return reference.forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        return reference.backward(do, q, k, v, o, lse, problem)
