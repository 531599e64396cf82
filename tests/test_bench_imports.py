"""bench/ is imported as the package `bench`: its module names (`kernels`, `latency`, ...) never shadow
installed ones, whether the tests import it or a benchmark is run as `python bench/NAME.py`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_bench_modules_import_as_the_bench_package(name):
    module = importlib.import_module(f"bench.{name}")
    assert Path(module.__file__).parent == BENCH
    assert not [p for p in sys.path if Path(p or ".").resolve() == BENCH], "bench/ must never be on sys.path"


def test_a_script_run_as_a_file_imports_installed_packages_not_bench_modules(tmp_path):
    """transformers 5 imports the `kernels` package; bench/kernels.py must not be what it gets."""
    probe = (
        "import runpy, sys; sys.argv = ['bench/_models.py', '--help']\n"
        "sys.path.insert(0, 'bench')  # what `python bench/_models.py` does\n"
        "try:\n    runpy.run_path('bench/_models.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "import importlib.util, pathlib\n"
        "assert pathlib.Path(sys.path[0]).resolve() == pathlib.Path('.').resolve(), sys.path[0]\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "assert spec is None or 'bench' not in pathlib.Path(spec.origin).parts, spec.origin\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # The case that failed: a script that imports transformers, run as a file.
    pytest.importorskip("torch", reason="bench/float_parity.py needs PyTorch (the test extra)")
    out = subprocess.run([sys.executable, "bench/float_parity.py", "--data-dir", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "not found: pass --data-dir" in out.stderr, out.stderr[-2000:]
