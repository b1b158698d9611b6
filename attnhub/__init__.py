"""attnhub: one call for exact attention, dispatched to the fastest correct backend.

    o = attnhub.attention(q, k, v, causal=True)          # q (B, Hq, Sq, D) -> (B, Hq, Sq, Dv)
    print(attnhub.explain(q, k, v, causal=True))         # which backend, and why

Backends are plugins (entry-point group ``attnhub.backends``); the contract they implement
is :mod:`attnhub.contract`.  Importing attnhub loads no plugin and touches no GPU.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("attnhub")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .contract import (PLUGIN_API_VERSION, Backend, BackendInfo, Capabilities,
                       ContractViolation, Problem)
from .api import attention, attention_varlen
from .dispatch import Explanation, explain, use_backend
from .registry import list_backends
from .fp8 import quantize_fp8
from .probe import probe

__all__ = [
    "__version__",
    "PLUGIN_API_VERSION",
    "Backend",
    "BackendInfo",
    "Capabilities",
    "ContractViolation",
    "Explanation",
    "Problem",
    "attention",
    "attention_varlen",
    "explain",
    "list_backends",
    "probe",
    "quantize_fp8",
    "use_backend",
]
