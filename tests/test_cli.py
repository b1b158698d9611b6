"""The attnhub console script."""

import json
import subprocess
import sys

import pytest

from attnhub.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "attnhub.cli", *args], capture_output=True,
                          text=True)


def test_list_backends_json():
    out = run("list-backends", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["naive"]["status"] == "available"
    assert rows["naive"]["origin"] == "attnhub"
    assert "varlen" in rows["naive"]["features"]
    assert rows["hopper-fa3"]["status"] in ("unavailable", "disabled", "broken")
    assert rows["hopper-fa3"]["reason"]


def test_list_backends_table(capsys):
    assert main(["list-backends"]) == 0
    text = capsys.readouterr().out
    assert "naive" in text and "available" in text


def test_probe_json():
    out = run("probe", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert "cpu" in info["torch_devices"] and info["torch"]
    assert "opencl" in info and "packages" in info


def test_explain(capsys):
    assert main(["explain", "--shape", "1,4,2,70,90,40", "--causal"]) == 0
    text = capsys.readouterr().out
    assert "chosen:" in text and "naive" in text


def test_explain_json(capsys):
    assert main(["explain", "--shape", "1,2,2,16,16,8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chosen"] and {r["name"] for r in doc["backends"]} >= {"naive"}


def test_explain_for_training_with_a_scale(capsys):
    """--training: inputs that require grad (the choice covers forward + backward);
    --scale: here 0 with a causal mask, which torch-sdpa refuses with its reason."""
    assert main(["explain", "--shape", "1,2,2,16,16,32", "--causal", "--scale", "0",
                 "--training", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["problem"].endswith("causal scale=0 +grad")
    assert "+grad" in doc["bucket"] and "scale<=0" in doc["bucket"]
    rows = {r["name"]: r for r in doc["backends"]}
    if rows.get("torch-sdpa", {}).get("status") == "available":
        assert any("scale=0.0 with a causal mask" in r for r in rows["torch-sdpa"]["reasons"])


@pytest.mark.parametrize("args", [["explain", "--shape", "1,2"], ["explain"], ["nope"],
                                  ["explain", "--shape", "1,2,2,8,8,8", "--dtype", "int8"]])
def test_usage_errors_exit_2(args):
    out = run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "usage" in out.stderr or "attnhub" in out.stderr


def test_explain_bad_problem_exit_2():
    out = run("explain", "--shape", "1,3,2,8,8,8")
    assert out.returncode == 2 and "multiple of heads_kv" in out.stderr


def test_demo():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    assert "chosen:" in out.stdout and "finite=True" in out.stdout
