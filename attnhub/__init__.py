"""attnhub: one call for exact attention, dispatched to the fastest correct backend.

    o = attnhub.attention(q, k, v, causal=True)          # q (B, Hq, Sq, D) -> (B, Hq, Sq, Dv)
    print(attnhub.explain(q, k, v, causal=True))         # which backend, and why

Backends are plugins (entry-point group ``attnhub.backends``); the contract they implement
is :mod:`attnhub.contract`.  Importing attnhub loads no plugin, touches no GPU, and imports
torch only when a name below is first used (so the pytest plugin costs nothing).
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._lazy import lazy_exports

try:
    __version__ = _version("attnhub")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "PLUGIN_API_VERSION": "contract",
    "Backend": "contract",
    "BackendInfo": "contract",
    "Capabilities": "contract",
    "ContractViolation": "contract",
    "Problem": "contract",
    "attention": "api",
    "attention_varlen": "api",
    "Explanation": "dispatch",
    "explain": "dispatch",
    "use_backend": "dispatch",
    "list_backends": "registry",
    "quantize_fp8": "fp8",
    "probe": "_probe",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
