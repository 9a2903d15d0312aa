"""Process settings chosen before torch loads (trainlab.runtime): OpenMP waiting, malloc."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from hydra.types import RunMode

from trainlab import runtime
from trainlab.errors import ConfigError
from trainlab.train import trials_share_cores


def run_python(code: str, **env: str) -> str:
    """stdout of ``python -c code`` in a fresh process (no torch loaded) with ``env`` added."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stdout.strip()


CHOOSE = ("import os\nfrom trainlab import runtime\nruntime.busy_cpus = lambda: {busy}\n"
          "print(runtime.openmp_wait_policy({wait!r}, {shares}), os.environ.get('OMP_WAIT_POLICY'), sep='|')")


@pytest.mark.e2e
@pytest.mark.parametrize(("wait", "busy", "shares", "env", "expected"), [
    ("launcher", 1.0, False, {}, ("threads spin (process.openmp_wait=launcher)", "None")),
    ("launcher", 0.0, True, {}, ("threads sleep, OMP_WAIT_POLICY=PASSIVE (process.openmp_wait=launcher, "
                                 "trials share the cores)", "PASSIVE")),
    ("spin", 1.0, True, {}, ("threads spin (process.openmp_wait=spin, trials share", "None")),
    ("sleep", 0.0, False, {}, ("threads sleep, OMP_WAIT_POLICY=PASSIVE (process.openmp_wait=sleep)",
                               "PASSIVE")),
    ("auto", 0.0, False, {}, ("threads spin (process.openmp_wait=auto, 0.00 CPUs busy", "None")),
    ("auto", 1.0, False, {}, ("threads sleep, OMP_WAIT_POLICY=PASSIVE (process.openmp_wait=auto, "
                              "1.00 CPUs busy", "PASSIVE")),
    ("auto", None, False, {}, ("threads sleep, OMP_WAIT_POLICY=PASSIVE (process.openmp_wait=auto, "
                               "CPU load unknown", "PASSIVE")),
    ("sleep", 1.0, True, {"OMP_WAIT_POLICY": "ACTIVE"}, ("OMP_WAIT_POLICY=ACTIVE (set by the user)",
                                                          "ACTIVE")),
    ("launcher", 1.0, False, {"GOMP_SPINCOUNT": "1000"}, ("GOMP_SPINCOUNT=1000 (set by the user)",
                                                           "None")),
])
def test_openmp_waits_as_configured_load_is_read_only_for_auto_and_the_environment_wins(
        wait, busy, shares, env, expected):
    why, policy = run_python(CHOOSE.format(wait=wait, busy=busy, shares=shares), **env).split("|")
    assert why.startswith(expected[0]) and policy == expected[1]


def test_a_bad_openmp_wait_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match="process.openmp_wait='fast' is not allowed: one of launcher, "
                                          "spin, sleep, auto"):
        runtime._choose_openmp_wait_policy("fast", False)


@pytest.mark.e2e
def test_the_first_choice_holds_and_none_is_made_after_torch_loaded():
    out = run_python("from trainlab import runtime\n"
                     "a = runtime.openmp_wait_policy('spin')\nb = runtime.openmp_wait_policy('sleep')\n"
                     "print(a == b)")
    assert out == "True"
    out = run_python("import torch\nfrom trainlab import runtime\n"
                     "print(runtime.openmp_wait_policy('sleep'))")
    assert out.startswith("as set when torch loaded")


def test_busy_cpus_sees_a_spinning_thread():
    stop = time.monotonic() + 1.0

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        busy = runtime.busy_cpus(0.3)  # sleeps, so the spinning thread holds the GIL and a CPU
    finally:
        thread.join()
    assert busy is not None and runtime.BUSY_CPUS < busy <= len(os.sched_getaffinity(0)) + 0.01


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_thresholds_are_raised_unless_asked_not_to():
    # the effect (page faults per step, samples/s) is measured by scripts/bench.py, not here
    code = "from trainlab import runtime\nprint(runtime.tune_process('spin', {keep})['process/malloc'])"
    assert run_python(code.format(keep=True)) == "keeps freed buffers"
    assert run_python(code.format(keep=False)) == "as is (process.malloc_keep_freed=false)"


def test_only_parallel_launchers_in_a_multirun_share_the_cores(compose_hydra):
    def shares(*overrides: str, mode: RunMode = RunMode.MULTIRUN) -> bool:
        compose_hydra(*overrides, f"hydra.mode={mode.name}")
        return trials_share_cores()

    assert shares("hydra/launcher=joblib") and shares("hydra/launcher=submitit_local")
    assert not shares("hydra/launcher=joblib", "hydra.launcher.n_jobs=1")
    assert not shares("hydra/launcher=joblib", mode=RunMode.RUN)
    assert not shares() and not shares("hydra/launcher=slurm", "hydra.launcher.partition=x")


def test_the_nvml_check_is_dropped_only_where_nvml_cannot_load(monkeypatch):
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(runtime.ctypes, "CDLL", no_library)
    assert runtime.drop_failing_nvml_check()
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
    assert not runtime.drop_failing_nvml_check()  # nothing left to drop

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: object())  # NVML loads: a GPU host
    assert not runtime.drop_failing_nvml_check()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_nvml_check_reports_the_same_for_every_job_of_a_sweep_and_can_be_put_back(monkeypatch):
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(runtime.ctypes, "CDLL", no_library)
    monkeypatch.setattr(runtime, "_nvml_dropped", False)
    assert runtime.nvml_check(True) == runtime.nvml_check(True) == "skipped (no NVML on this machine)"
    assert runtime.nvml_check(False) == "as PyTorch does it (process.skip_failing_nvml_check=false)"
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
