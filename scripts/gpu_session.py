"""Issue 19's GPU figures in one call on a lent GPU machine (the device tool's ``run``).

The lent machine (an H100/H200 image with PyTorch and Lightning) cannot reach a package index
and lacks Hydra, its launcher plugins and jsonargparse, and Fashion-MNIST. Here, once:

    python scripts/gpu_session.py --prepare

puts wheels of those packages (the versions installed here) and Fashion-MNIST's four ``.gz``
files into ``.gpu/`` (git-ignored). Then one device call that carries ``.gpu``:

    python3 scripts/gpu_session.py --out $OUT

installs the wheels into ``/tmp/site`` and runs, one at a time, each with a time limit cut to
what is left of ``--budget-s``:

1. ``tests``: the ``gpu``-marked tests;
2. ``bench``: ``scripts/bench.py --override trainer=gpu`` (trainlab against bare Lightning and
   the hand loops, data resident on the GPU);
3. ``recipe``: ``+experiment=fmnist_94 trainer=gpu`` (bf16-mixed, data resident on the GPU)
   for each ``--seeds``; ``compile``: the first seed again with ``model.compile=true``;
4. ``pack``: the same sweep of ``--pack-trials`` short trials with ``+experiment=gpu_pack``
   at ``gpu_pack.per_gpu=--per-gpu`` and at ``per_gpu=1`` (one trial at a time through the
   same launcher): trials per hour of each.

It writes ``summary.json`` (every figure, each step's status and seconds) and ``session.log``
(every command's output) into ``--out``. A step that fails or runs out of time is recorded
and the next one runs. ``--smoke`` runs every step tiny on the CPU, without installing
anything: how ``tests/test_gpu_session.py`` checks the wiring on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / ".gpu"
SITE = Path("/tmp/site")
# what the GPU image lacks (the device tool's KINDS.md lists what it has), as installed here
MISSING_THERE = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "hydra-joblib-launcher",
                 "hydra-submitit-launcher", "submitit", "jsonargparse", "docstring-parser",
                 "typeshed-client")
# a trial of the packed sweep: the default job, short
PACK_TRIAL = ("trainer.max_epochs=2",)
# every step cut to one batch or two, for --smoke on the CPU
TINY = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0")


def status(code: int | None) -> str:
    """A step's status from its exit code (None: cut at its time limit)."""
    return "ok" if code == 0 else ("timeout" if code is None else f"exit {code}")


def prepare(target: Path = PREPARED) -> None:
    """Wheels of ``MISSING_THERE`` at this machine's versions, and Fashion-MNIST, into ``target``."""
    from trainlab.data.sources import DEBIAN_FASHION_MNIST  # here only: it loads torch

    wheels = target / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={metadata.version(name)}" for name in MISSING_THERE]
    # all pure Python; pip wheel also builds antlr4's, which PyPI ships as a source archive only
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), *pins],
                   check=True)
    data = target / "fashion-mnist"
    data.mkdir(exist_ok=True)
    for gz in sorted(DEBIAN_FASHION_MNIST.glob("*.gz")):
        shutil.copy2(gz, data / gz.name)
    print(f"{target}: {len(list(wheels.glob('*.whl')))} wheels, {len(list(data.glob('*.gz')))} data files; "
          f"carry '.gpu' and run: python3 scripts/gpu_session.py --out $OUT")


class Session:
    """Runs the steps in turn inside one time budget and collects their figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, args.out
        self.out.mkdir(parents=True, exist_ok=True)
        # a fresh dir each session: train.py never writes into a run dir that holds a run
        self.work = self.out / "runs" if args.smoke else Path(f"/tmp/gpu_session/{time.strftime('%H%M%S')}")
        self.deadline = time.monotonic() + args.budget_s
        self.log = (self.out / "session.log").open("w")
        self.summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": {}}
        paths = [str(ROOT / "src")] + ([] if args.smoke else [str(SITE)]) + \
            ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(paths)}
        self.device = ["trainer=cpu"] if args.smoke else ["trainer=gpu"]
        self.tiny = list(TINY) if args.smoke else []
        data = PREPARED / "fashion-mnist"
        self.data = [f"data.source.root={data}"] if data.is_dir() else []

    def command(self, step: str, argv: list[str], limit_s: float) -> tuple[int | None, float]:
        """Run ``argv`` from the repo root with its output in session.log; (exit code or None
        when cut at its limit, seconds)."""
        left = self.deadline - time.monotonic()
        limit = min(limit_s, left)
        self.log.write(f"\n=== {step}: {' '.join(argv)}  (limit {limit:.0f} s)\n")
        self.log.flush()
        self.output_from = self.log.tell()
        if limit < 5:
            self.log.write("skipped: the session's budget is spent\n")
            return None, 0.0
        start = time.monotonic()
        try:
            code = subprocess.run(argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                  timeout=limit).returncode
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - start
        self.log.write(f"=== {step}: exit {code} after {seconds:.1f} s\n")
        self.log.flush()
        return code, seconds

    def last_line(self) -> str:
        """The last line the latest command printed (pytest's count of passed and skipped)."""
        self.log.flush()
        with (self.out / "session.log").open() as log:
            log.seek(self.output_from)
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
        return next((line for line in reversed(lines) if not line.startswith("===")), "")

    def record(self, step: str, state: str, seconds: float, **figures) -> None:
        self.summary["steps"][step] = {"status": state, "seconds": round(seconds, 1), **figures}
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2))

    def machine(self) -> None:
        probe = ("import json, torch; print(json.dumps({'torch': torch.__version__, "
                 "'cuda': torch.cuda.is_available(), 'gpu': torch.cuda.get_device_name(0) "
                 "if torch.cuda.is_available() else None}))")
        found = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True,
                               text=True, timeout=120)
        self.summary["machine"] = json.loads(found.stdout) if found.returncode == 0 else found.stderr[-2000:]

    def tests(self) -> None:
        code, s = self.command("tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu",
                                         "-p", "no:cacheprovider", "tests"], 240)
        self.record("tests", status(code), s, result=self.last_line())

    def bench(self) -> None:
        target = self.out / "bench.json"
        sizes = ["--rounds", "1", "--steps", "3", "--warmup", "1"] if self.args.smoke else \
            ["--rounds", "5", "--steps", "60"]
        argv = [sys.executable, "scripts/bench.py", *sizes, "--variants",
                "trainlab,trainlab_nobar,lightning,hand,hand_torch", "--json", str(target),
                *[f"--override={o}" for o in self.device + self.data]]
        code, s = self.command("bench", argv, 150)
        wall = json.loads(target.read_text())["wall"] if code == 0 and target.is_file() else {}
        self.record("bench", status(code), s, ratios=wall.get("ratios"), best_ratios=wall.get("best_ratios"),
                    samples_per_s=wall.get("median"))

    def train(self, step: str, run_dir: Path, overrides: list[str], limit_s: float) -> dict:
        argv = [sys.executable, "train.py", "+experiment=fmnist_94", *self.device, *self.data,
                *self.tiny, *overrides, "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}"]
        code, s = self.command(step, argv, limit_s)
        results = run_dir / "results.json"
        found = json.loads(results.read_text()) if code == 0 and results.is_file() else {}
        return {"status": status(code), "process_s": round(s, 1),
                **{k: found.get(k) for k in ("test/acc", "wall_s", "epoch")}}

    def recipe(self) -> None:
        start, runs = time.monotonic(), []
        for seed in self.args.seeds:
            runs.append({"seed": seed, **self.train("recipe", self.work / f"fmnist_94_seed{seed}",
                                                     [f"seed={seed}"], 120)})
        done = [r for r in runs if r["status"] == "ok"]
        state = "ok" if len(done) == len(runs) else f"{len(runs) - len(done)} of {len(runs)} runs failed"
        accs = [r["test/acc"] for r in done if r["test/acc"] is not None]
        walls = [r["wall_s"] for r in done if r["wall_s"] is not None]
        self.record("recipe", state, time.monotonic() - start, runs=runs,
                    mean_acc=sum(accs) / len(accs) if accs else None,
                    mean_wall_s=sum(walls) / len(walls) if walls else None)

    def compile(self) -> None:
        seed = self.args.seeds[0]
        run = self.train("compile", self.work / f"fmnist_94_compile_seed{seed}",
                         [f"seed={seed}", "model.compile=true"], 240)
        self.record("compile", run["status"], run["process_s"], run={"seed": seed, **run})

    def pack(self) -> None:
        seeds = ",".join(str(s) for s in range(1, self.args.pack_trials + 1))
        per_run = {}
        for per_gpu in (self.args.per_gpu, 1):
            argv = [sys.executable, "train.py", "-m", "+experiment=gpu_pack", f"gpu_pack.per_gpu={per_gpu}",
                    *self.data, *(self.tiny or PACK_TRIAL), f"seed={seeds}",
                    f"hydra.sweep.dir={self.work / f'pack_per_gpu{per_gpu}'}"]
            code, s = self.command(f"pack per_gpu={per_gpu}", argv, 150)
            per_hour = round(self.args.pack_trials * 3600 / s) if code == 0 else None
            per_run[per_gpu] = {"status": status(code), "sweep_s": round(s, 1), "trials_per_hour": per_hour}
        packed, single = per_run[self.args.per_gpu], per_run[1]
        ok = packed["status"] == single["status"] == "ok"
        self.record("pack", "ok" if ok else "a sweep failed", packed["sweep_s"] + single["sweep_s"],
                    trials=self.args.pack_trials, per_gpu={str(k): v for k, v in per_run.items()},
                    packed_over_one_at_a_time=round(single["sweep_s"] / packed["sweep_s"], 2) if ok else None)

    def run(self) -> None:
        if not self.args.smoke:
            wheels = sorted(str(w) for w in (PREPARED / "wheels").glob("*.whl"))
            if not wheels:
                raise SystemExit(f"no wheels in {PREPARED / 'wheels'}: run `python scripts/gpu_session.py "
                                 f"--prepare` here first and carry '.gpu'")
            code, s = self.command("install", [sys.executable, "-m", "pip", "install", "-q", "--no-index",
                                               "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                                               "--target", str(SITE), *wheels], 120)
            self.record("install", status(code), s)
            if code != 0:
                raise SystemExit("installing the wheels failed: see session.log")
        self.machine()
        for step in self.args.steps:
            getattr(self, step)()
        self.log.close()
        print(json.dumps(self.summary, indent=2))


STEPS = ("tests", "bench", "recipe", "compile", "pack")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help="put the wheels and the data into .gpu/ and stop")
    p.add_argument("--out", type=Path, help="where summary.json and session.log go ($OUT on the device)")
    p.add_argument("--budget-s", type=float, default=540, help="seconds for every step together")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="fmnist_94's seeds")
    p.add_argument("--pack-trials", type=int, default=8, help="trials of the packed sweep")
    p.add_argument("--per-gpu", type=int, default=4, help="trials sharing the GPU in the packed sweep")
    p.add_argument("--smoke", action="store_true", help="every step tiny, on the CPU, nothing installed")
    args = p.parse_args(argv)
    if not args.prepare and args.out is None:
        p.error("--out is required (or --prepare)")
    if args.per_gpu < 2:
        p.error(f"--per-gpu must be >= 2 to compare with one trial at a time, got {args.per_gpu}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.prepare:
        prepare()
    else:
        Session(args).run()


if __name__ == "__main__":
    main()
