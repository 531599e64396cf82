"""Data parallelism over local devices (`SampModel(..., devices=n)`, `samp_jax.sharding`).

The sharded runs need several devices, which a CPU process has only if XLA is told so before it starts:
tests/sharded_worker.py runs in a fresh process with four forced host devices and reports, for every plan,
the largest difference between the 4-device and the 1-device model (direct calls at 5 and 13 rows, which
do not split evenly; hidden states; predict and embed with a last batch of one row; the serving engine's
forwards for the head and the unnormalized pooling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from samp_jax.sharding import DataParallel
from tests.conftest import REPO


@pytest.fixture(scope="module")
def sharded(minilm_dir) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "tests.sharded_worker", str(minilm_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_worker_ran_on_four_devices(sharded):
    assert sharded["devices"] == 4


# Each device runs its block of rows as a smaller batch, whose XLA code may sum in another order: float32
# outputs move by float32 rounding only; a 16-bit or 8-bit plan can see one rounding step of a 16-bit
# intermediate move (fp16 holds hidden values of 2-4 in steps of 0.002), or an 8-bit code at a tie.
TOLERANCE = {"fp32": 1e-5}
HIDDEN_16BIT_STEP = 4e-3
OUTPUT_16BIT = 1e-3


@pytest.mark.parametrize("plan", ["fp32", "bf16", "fp16", "ffn_int8", "full_int8", "full_int8,probs:int8", "ffn_fp8",
                                  "full_fp8", "ffn_int8:0,full_fp8:1"])
def test_every_plan_on_four_devices_equals_one(sharded, plan):
    row = sharded[plan]
    assert row["labels_equal"], row
    tol = TOLERANCE.get(plan)
    for key in ("head_5", "head_13", "scores", "served_head", "embed", "served_pooled"):
        assert row[key] <= (tol or OUTPUT_16BIT), (plan, key, row[key])
    for key in ("hidden_5", "hidden_13"):
        assert row[key] <= (tol or HIDDEN_16BIT_STEP), (plan, key, row[key])


def test_devices_are_checked_by_value():
    with pytest.raises(ValueError, match=r"devices=9: this process has 1 local CPU device"):
        DataParallel.over(9)
    for bad in (0, -1, True, "some", [], ["cpu:0"], 2.0):
        with pytest.raises(ValueError, match="devices="):
            DataParallel.over(bad)
    with pytest.raises(ValueError, match="names a device twice"):
        DataParallel.over([jax.devices()[0]] * 2)
    assert DataParallel.over(None) is None


def test_one_device_mesh_rounds_nothing_and_splits_by_rows():
    dp = DataParallel.over(1)
    assert dp is not None and dp.size == 1 and dp.rows(5) == 5
    assert dp.input_spec(3, 8).shape == (3, 8)


@pytest.mark.parametrize("value", ["zero", "0", "-2", "1.5"])
def test_cli_devices_option_names_a_bad_value(tmp_path, capsys, value):
    from samp_jax.cli import main

    assert main(["predict", str(tmp_path / "ckpt"), "a text", "--devices", value]) == 2
    assert f"--devices={value!r}: pass 'all' or a positive number of devices" in capsys.readouterr().err
