"""The backend registry: entry points in, explained :class:`BackendInfo` out.

Plugins are found in the entry-point group ``attnhub.backends`` and loaded with stevedore,
lazily (on the first call that needs them, never at ``import attnhub``).  Every way a plugin
can fail — import error, not a :class:`~attnhub.Backend`, wrong ``name``, incompatible
``requires_api``, a probe that raises or hangs — becomes a listed status with a reason,
never an exception in the user's code.

Environment:
  ``ATTNHUB_DISABLE=a,b``   hide these backends (status ``disabled``).
  ``ATTNHUB_PLUGINS=a,b``   allow-list for third-party plugins (first-party ones, shipped in the
                            ``attnhub`` distribution, are always allowed unless disabled); unset
                            means every installed plugin is allowed.
  ``ATTNHUB_PROBE_TIMEOUT`` seconds a probe may take before the backend is quarantined (30).

Name conflicts: when two distributions register one name, a first-party backend keeps the
name and the other is reported ``broken``; between third parties neither is loaded and both
are reported ``broken``.  Nothing is ever silently shadowed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import threading
from typing import Optional

import stevedore
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .contract import PLUGIN_API_VERSION, Backend, BackendInfo, Capabilities

__all__ = ["NAMESPACE", "list_backends", "get_backend", "available_backends", "reload",
           "quarantine"]

NAMESPACE = "attnhub.backends"
FIRST_PARTY = "attnhub"
_lock = threading.RLock()
_state: Optional[dict[str, "_Entry"]] = None


@dataclasses.dataclass
class _Entry:
    info: BackendInfo
    backend: Optional[Backend] = None


def _env_set(name: str) -> Optional[set[str]]:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return (getattr(dist, "name", None) if dist is not None else None) or "unknown"


class _Manager(stevedore.ExtensionManager):
    """A stevedore manager over a pre-filtered list of entry points, so that plugins that are
    disabled, not allowed or in conflict are never imported."""

    def __init__(self, entry_points, on_load_failure_callback):
        self._selected = list(entry_points)
        super().__init__(NAMESPACE, invoke_on_load=False,
                         on_load_failure_callback=on_load_failure_callback)

    def list_entry_points(self):
        return self._selected


def _probe_timeout() -> float:
    try:
        return float(os.environ.get("ATTNHUB_PROBE_TIMEOUT", "30"))
    except ValueError:
        return 30.0


def call_with_timeout(fn, timeout: float, what: str):
    """Run ``fn()`` in a daemon thread; raise TimeoutError naming ``what`` if it takes longer
    than ``timeout`` seconds (the thread is abandoned, the hub goes on)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"attnhub:{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _interface_problems(cls) -> list[str]:
    if not isinstance(cls, type) or not issubclass(cls, Backend):
        return [f"{cls!r} is not a subclass of attnhub.Backend"]
    out = []
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        out.append("capabilities is not an attnhub.Capabilities")
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        out.append(f"missing methods: {', '.join(abstract)}")
    if cls.capabilities.backward if isinstance(getattr(cls, "capabilities", None), Capabilities) \
            else False:
        if cls.backward is Backend.backward:
            out.append("declares backward=True but does not implement backward()")
    return out


def _load_all() -> dict[str, _Entry]:
    disabled = _env_set("ATTNHUB_DISABLE") or set()
    allowed = _env_set("ATTNHUB_PLUGINS")
    by_name: dict[str, list] = {}
    for ep in importlib.metadata.entry_points(group=NAMESPACE):
        by_name.setdefault(ep.name, []).append(ep)

    entries: dict[str, _Entry] = {}
    to_load = []

    def mark(name, origin, status, reason, ep=None, conflict=False):
        entries[f"{name}@{origin}" if conflict else name] = _Entry(BackendInfo(
            name=name, version="?", origin=origin, status=status, reason=reason,
            capabilities=None, entry_point=getattr(ep, "value", "")))

    for name, eps in sorted(by_name.items()):
        # Duplicate registrations of one entry point by one distribution (e.g. an editable and
        # a regular install seen twice on sys.path) are the same plugin.
        unique = {(_dist_name(ep), ep.value): ep for ep in eps}
        eps = list(unique.values())
        if len(eps) > 1:
            first = [ep for ep in eps if _dist_name(ep) == FIRST_PARTY]
            claimants = ", ".join(f"{_dist_name(ep)} ({ep.value})" for ep in eps)
            if first:
                for ep in eps:
                    if ep is not first[0]:
                        mark(name, _dist_name(ep), "broken",
                             f"name conflict: {name!r} is first-party ({first[0].value}); "
                             "rename this plugin's entry point", ep, conflict=True)
                eps = first[:1]
            else:
                for ep in eps:
                    mark(name, _dist_name(ep), "broken",
                         f"name conflict: {name!r} is claimed by {claimants}; neither is "
                         "loaded — uninstall one or rename its entry point", ep, conflict=True)
                continue
        ep = eps[0]
        origin = _dist_name(ep)
        if name in disabled:
            mark(name, origin, "disabled", "disabled by ATTNHUB_DISABLE", ep)
        elif allowed is not None and origin != FIRST_PARTY and name not in allowed:
            mark(name, origin, "disabled",
                 "third-party plugin not in the ATTNHUB_PLUGINS allow-list", ep)
        else:
            to_load.append(ep)

    failures: dict[str, BaseException] = {}

    def on_failure(_manager, ep, err):
        failures[ep.name] = err

    manager = _Manager(to_load, on_failure)
    loaded = {ext.name: ext for ext in manager.extensions}
    timeout = _probe_timeout()
    for ep in to_load:
        origin = _dist_name(ep)
        if ep.name in failures:
            err = failures[ep.name]
            mark(ep.name, origin, "broken", f"import failed: {type(err).__name__}: {err}", ep)
            continue
        cls = loaded[ep.name].plugin
        entries[ep.name] = _check_and_probe(ep, origin, cls, timeout)
    return entries


def _check_and_probe(ep, origin: str, cls, timeout: float) -> _Entry:
    def info(status, reason, version="?", caps=None, extra=None):
        return BackendInfo(name=ep.name, version=str(version), origin=origin, status=status,
                           reason=reason, capabilities=caps, entry_point=ep.value,
                           extra=extra or {})

    problems = _interface_problems(cls)
    if problems:
        return _Entry(info("broken", "; ".join(problems)))
    version, caps = getattr(cls, "version", "?"), cls.capabilities
    if cls.name != ep.name:
        return _Entry(info("broken", f"class name {cls.name!r} differs from its entry-point name "
                                     f"{ep.name!r}; make them equal", version, caps))
    try:
        spec = SpecifierSet(cls.requires_api)
    except (InvalidSpecifier, TypeError) as exc:
        return _Entry(info("broken", f"requires_api={cls.requires_api!r} is not a valid "
                                     f"specifier: {exc}", version, caps))
    if Version(PLUGIN_API_VERSION) not in spec:
        return _Entry(info("incompatible", f"requires_api {cls.requires_api!r} excludes this "
                                           f"attnhub's plugin API {PLUGIN_API_VERSION}; upgrade "
                                           "the plugin or attnhub", version, caps))
    try:
        backend = cls()
    except Exception as exc:  # noqa: BLE001 - quarantined with its reason
        return _Entry(info("broken", f"__init__ raised {type(exc).__name__}: {exc}", version, caps))
    try:
        reason = call_with_timeout(backend.probe, timeout, f"{ep.name}.probe()")
    except TimeoutError as exc:
        return _Entry(info("broken", f"quarantined: {exc}", version, caps))
    except Exception as exc:  # noqa: BLE001
        return _Entry(info("broken", f"probe() raised {type(exc).__name__}: {exc}", version, caps))
    if reason is not None and not isinstance(reason, str):
        return _Entry(info("broken", f"probe() returned {type(reason).__name__}, expected "
                                     "None or a reason string", version, caps))
    try:
        extra = dict(backend.extra_info() or {})
    except Exception as exc:  # noqa: BLE001
        extra = {"extra_info_error": f"{type(exc).__name__}: {exc}"}
    if reason:
        return _Entry(info("unavailable", reason, version, caps, extra), backend)
    return _Entry(info("available", "", version, caps, extra), backend)


def _entries() -> dict[str, _Entry]:
    global _state
    if _state is None:
        with _lock:
            if _state is None:
                _state = _load_all()
    return _state


def reload() -> None:
    """Forget every loaded plugin; the next call re-reads entry points and environment."""
    global _state
    with _lock:
        _state = None
    from . import dispatch  # late: dispatch imports this module

    dispatch._reset_memory()


def list_backends() -> list["BackendInfo"]:
    """Every registered backend with its status and reason, sorted by name."""
    return [e.info for _, e in sorted(_entries().items())]


def known_names() -> list[str]:
    return sorted({e.info.name for e in _entries().values()})


def available_backends() -> list[Backend]:
    """Instances of the available backends, highest declared priority first."""
    backends = [e.backend for e in _entries().values()
                if e.info.status == "available" and e.backend is not None]
    return sorted(backends, key=lambda b: (-b.capabilities.priority, b.name))


def info(name: str) -> BackendInfo:
    entries = _entries()
    if name not in entries:
        for entry in entries.values():
            if entry.info.name == name:
                return entry.info
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(known_names()) or 'none'}. "
                         "See `attnhub list-backends`")
    return entries[name].info


def get_backend(name: str) -> Backend:
    """The available backend called ``name``; ``ValueError`` for unknown names,
    ``RuntimeError`` with the reason when it is not available."""
    entry_info = info(name)
    entry = _entries().get(name)
    if entry_info.status != "available" or entry is None or entry.backend is None:
        raise RuntimeError(f"backend {name!r} is {entry_info.status}: {entry_info.reason}")
    return entry.backend


def quarantine(name: str, reason: str) -> None:
    """Mark ``name`` broken for the rest of this process (a misbehaving plugin)."""
    entries = _entries()
    with _lock:
        if name in entries:
            entries[name].info = dataclasses.replace(entries[name].info, status="broken",
                                                     reason=f"quarantined: {reason}")
