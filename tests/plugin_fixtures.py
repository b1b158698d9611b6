"""Install the misbehaving test plugins as real distributions (pip --target)."""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("plugin-site")
    for project in ("misbehaving", "twin"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-compile", "--target", str(site),
                        str(HERE / project)], check=True)
    return site


@pytest.fixture
def test_plugins(plugin_site, fresh_registry, monkeypatch):
    """The registry with the misbehaving plugins installed (and removed afterwards)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("ATTNHUB_PROBE_TIMEOUT", "1")
    monkeypatch.setenv("ATTNHUB_CHECK_TIMEOUT", "1")
    fresh_registry.reload()
    yield fresh_registry
    for name in [m for m in sys.modules if m.startswith("attnhub_test_")]:
        del sys.modules[name]
