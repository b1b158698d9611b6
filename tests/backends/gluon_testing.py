"""What the Gluon kernels' CPU tests share (``test_triton_gluon*.py``): the check scripts
loaded by path as on the device, whether Triton ships the ptxas that an offline sm90 build
needs, and an offline build run in a child process without ``TRITON_INTERPRET`` (the
interpreter the other kernels' CPU tests turn on would replace the compiler)."""

import importlib.util
import json
import os
import subprocess
import sys


def kernel_dir() -> str:
    """The directory of ``attnhub_triton`` (the kernels and their check scripts)."""
    import attnhub_triton
    return os.path.dirname(os.path.abspath(attnhub_triton.__file__))


def check_module(script: str = "gluon_check"):
    """A check script (``gluon_check`` / ``gluon_bwd_check``) loaded by path, as on the device."""
    spec = importlib.util.spec_from_file_location(f"attnhub_{script}",
                                                  os.path.join(kernel_dir(), f"{script}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def has_ptxas() -> bool:
    """Whether Triton's bundled ptxas (an offline sm90 build needs it) is there."""
    import triton
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas"))


def run_build(script: str, specs: list, *args: str) -> list:
    """``python -c script json(specs) *args`` without TRITON_INTERPRET; the rows it prints as
    JSON on its last line, one a spec (asserted)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", script, json.dumps(specs), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(rows) == len(specs)
    return rows
