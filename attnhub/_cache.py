"""Persistent dispatch verdicts and timings: one JSON file, safe across processes.

Location: ``$ATTNHUB_CACHE_DIR/dispatch.json``, else platformdirs' user cache dir.  The file
carries a header (attnhub, torch and CUDA versions); a file that cannot be parsed or whose
header differs is ignored and rewritten.  Writers take a :class:`filelock.FileLock`, merge
their entries into what is on disk, and replace the file atomically, so concurrent processes
never corrupt it and never lose each other's entries.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import filelock
import platformdirs
import torch

# 2: the problem classes keep scale <= 0 apart (a verdict written under schema 1 for a
# positive-scale class may have come from a scale <= 0 call)
SCHEMA = 2
_SECTIONS = ("verdicts", "timings")


def cache_dir() -> Path:
    override = os.environ.get("ATTNHUB_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("attnhub"))


def cache_path() -> Path:
    return cache_dir() / "dispatch.json"


def header() -> dict[str, Any]:
    from . import __version__

    return {"schema": SCHEMA, "attnhub": __version__, "torch": torch.__version__,
            "cuda": torch.version.cuda or "none"}


class DispatchCache:
    """Verdicts (``backend@version|class`` → {ok, reason}) and timings
    (``bucket`` → {``backend@version``: seconds}) loaded from and saved to disk."""

    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path is not None else cache_path()
        self._lock = threading.Lock()
        self.data: dict[str, dict] = {s: {} for s in _SECTIONS}
        self.ignored_reason: Optional[str] = None
        self._load()

    def _read(self) -> tuple[dict[str, dict], Optional[str]]:
        empty = {s: {} for s in _SECTIONS}
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return empty, None
        except OSError as exc:
            return empty, f"unreadable ({exc})"
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            return empty, f"corrupt JSON ({exc})"
        if not isinstance(doc, dict) or doc.get("header") != header():
            return empty, "written by another attnhub/torch/CUDA version"
        out = {}
        for section in _SECTIONS:
            value = doc.get(section)
            if not isinstance(value, dict):
                return empty, f"section {section!r} malformed"
            out[section] = value
        return out, None

    def _load(self) -> None:
        self.data, self.ignored_reason = self._read()

    def get(self, section: str, key: str):
        return self.data[section].get(key)

    def put(self, section: str, key: str, value) -> None:
        """Store one entry in memory and on disk (merged under the file lock)."""
        with self._lock:
            if isinstance(value, dict) and isinstance(self.data[section].get(key), dict):
                self.data[section][key] = {**self.data[section][key], **value}
            else:
                self.data[section][key] = value
            try:
                self._save(section, key)
            except OSError:  # a read-only cache dir must not break attention
                pass

    def _save(self, section: str, key: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(self.path) + ".lock", timeout=60):
            on_disk, _ = self._read()  # others' entries survive; a corrupt file is rewritten
            for s in _SECTIONS:
                for k, v in on_disk[s].items():
                    if s == section and k == key:
                        if isinstance(v, dict) and isinstance(self.data[s][k], dict):
                            self.data[s][k] = {**v, **self.data[s][k]}
                        continue
                    self.data[s].setdefault(k, v)
            doc = {"header": header(), **self.data}
            fd, tmp = tempfile.mkstemp(prefix=".dispatch-", suffix=".json", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(doc, fh, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
