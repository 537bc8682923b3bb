"""The house: one import root when installed, and the torch-free layers really are."""

from __future__ import annotations

import os
import subprocess
import sys

BLOCK_TORCH = ("import sys\n"
               "for name in ('torch', 'diffusers', 'transformers', 'peft'):\n"
               "    sys.modules[name] = None  # any import of them now fails\n")


def run(code: str, cwd) -> subprocess.CompletedProcess:
    """`code` as an installed user runs it: from `cwd`, without a PYTHONPATH into the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_no_generic_names_outside_the_checkout(tmp_path):
    for name in ("export", "calibration"):
        r = run(f"import {name}", tmp_path)
        assert r.returncode == 1 and f"No module named '{name}'" in r.stderr
    r = run("import f2i_mobile.export.pipeline, f2i_mobile.calibration.quantize, android_bench;"
            "print(f2i_mobile.export.pipeline.__name__)", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "f2i_mobile.export.pipeline"


def test_the_core_and_the_bench_run_without_torch(tmp_path):
    """A phone-lab machine: plan a 12 MP photo from a manifest and read a bench report with
    torch unimportable."""
    code = BLOCK_TORCH + (
        "sys.path.insert(0, sys.argv[1])\n"
        "from conftest import make_manifest\n"
        "import android_bench.harness, android_bench.worker, f2i_mobile.runners\n"
        "import f2i_mobile.core.contract, f2i_mobile.core.fidelity, f2i_mobile.core.image\n"
        "from android_bench.plan import photo_plan\n"
        "print(photo_plan(make_manifest(tile=128, overlap=32), 4000, 3000).tiles)\n")
    r = subprocess.run([sys.executable, "-c", code, str(pytest_tests_dir())], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == 11 * 8


def pytest_tests_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
