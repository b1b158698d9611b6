"""Plugins that misbehave are listed with a reason and never break the hub."""

import subprocess
import sys

import pytest
import torch

import attnhub

from .plugin_fixtures import plugin_site, test_plugins  # noqa: F401  (fixtures)


def statuses():
    return {(i.name, i.origin): (i.status, i.reason) for i in attnhub.list_backends()}


def status(name, origin="attnhub-test-plugins"):
    return statuses()[(name, origin)]


def test_first_party_backends_are_entry_points(fresh_registry):
    infos = {i.name: i for i in attnhub.list_backends()}
    assert {"naive", "triton-fa2", "hopper-fa3", "opencl"} <= set(infos)
    assert infos["naive"].status == "available" and infos["naive"].origin == "attnhub"
    assert infos["naive"].capabilities.varlen


def test_import_is_lazy():
    code = ("import sys, attnhub; "
            "bad = [m for m in ('triton', 'pyopencl', 'cupy', 'attnhub_triton', "
            "'attnhub_opencl', 'attnhub_naive') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name,want,reason", [
    ("probe-raises", "broken", "probe() raised OSError: driver exploded"),
    ("incompatible", "incompatible", "requires_api '>=2' excludes"),
    ("bad-specifier", "broken", "not a valid specifier"),
    ("hangs", "broken", "did not finish within 1 s"),
    ("import-error", "broken", "import failed: ImportError: this plugin needs libfoo"),
    ("name-mismatch", "broken", "differs from its entry-point name"),
    ("not-a-backend", "broken", "not a subclass of attnhub.Backend"),
    ("missing-forward", "broken", "missing methods: forward"),
    ("unavailable", "unavailable", "needs a Frobnicator NPU"),
    ("slow", "available", ""),
])
def test_misbehaving_plugin_is_listed_with_reason(test_plugins, name, want, reason):
    got_status, got_reason = status(name)
    print(name, got_status, got_reason)
    assert got_status == want
    assert reason in got_reason


def test_name_conflicts_are_reported_not_shadowed(test_plugins):
    s = statuses()
    assert s[("naive", "attnhub")][0] == "available"
    assert s[("naive", "attnhub-test-plugins")][0] == "broken"
    assert "first-party" in s[("naive", "attnhub-test-plugins")][1]
    for origin in ("attnhub-test-plugins", "attnhub-test-twin"):
        st, why = s[("twin", origin)]
        assert st == "broken" and "claimed by" in why


def test_disable_and_allow_list(test_plugins, monkeypatch):
    monkeypatch.setenv("ATTNHUB_DISABLE", "slow")
    monkeypatch.setenv("ATTNHUB_PLUGINS", "quick,forward-only")
    test_plugins.reload()
    assert status("slow") == ("disabled", "disabled by ATTNHUB_DISABLE")
    assert status("wrong-values")[0] == "disabled"
    assert "allow-list" in status("wrong-values")[1]
    assert status("quick")[0] == "available"
    assert statuses()[("naive", "attnhub")][0] == "available"  # first-party always allowed


def test_hub_still_works_with_every_broken_plugin(test_plugins):
    q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
    with pytest.warns(RuntimeWarning):
        o = attnhub.attention(q, k, v)
    assert o.shape == (1, 2, 16, 8)


def test_list_backends_cli_shows_broken_plugins(plugin_site):
    import os
    env = dict(os.environ, PYTHONPATH=str(plugin_site), ATTNHUB_PROBE_TIMEOUT="1")
    out = subprocess.run([sys.executable, "-m", "attnhub.cli", "list-backends", "--json"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    import json
    rows = {(r["name"], r["origin"]): r for r in json.loads(out.stdout)}
    assert rows[("import-error", "attnhub-test-plugins")]["status"] == "broken"
    assert rows[("naive", "attnhub")]["status"] == "available"
