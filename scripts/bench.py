"""Training throughput: trainlab's Lightning loop vs a hand-written loop vs per-sample torchvision.

Several ways to train the same network on the same Fashion-MNIST batches, run in turn in one
process for several rounds so that concurrent load on a shared machine hits them alike:

- ``trainlab``: a real ``pytorch_lightning.Trainer`` built by ``trainlab.pipeline.build`` from the
  Hydra config (``conf/train.yaml`` + ``--override``s) with its callbacks (progress bar, LR
  schedule, diagnostics, per-epoch seeding, preemption) and CSV logger. Off for the benchmark:
  validation and the sanity check (``limit_val_batches=0``) and trainlab's checkpoint callback;
  Lightning then adds its default one, which like a real run's is called every step and
  writes once per epoch, never inside the timed steps. The rich progress bar renders as in a
  terminal, into memory. ``trainlab_nobar`` is the same without the progress bar.
- ``lightning``: the same network, loss and optimizer in a bare ``LightningModule`` and a
  Trainer with nothing added (no callbacks, logger, checkpoints, bar, metrics), fed the hand
  loop's batches: Lightning's own cost, the floor under ``trainlab_nobar`` (not run by default).
  ``lightning_bar`` adds the one thing the default job's Trainer shows, the progress bar of
  ``conf/callbacks`` (Lightning's ``RichProgressBar``, drawn into memory, nothing logged to
  it): the floor under ``trainlab`` with its bar.
- ``hand``: a hand-written PyTorch loop on the same network, optimizer and batch size, fed from
  float tensors normalized once up front (the fastest a user would write): trainlab's loop
  overhead is ``trainlab/hand``.
- ``hand_torch``: the same hand loop with PyTorch's stock pieces where trainlab's network has
  faster ones (out-of-place activations before each max-pool, ``nn.Dropout`` and the optimizer's
  per-tensor loop where an opt-in switched them; see ``scripts/bench_nets.py``): the same
  function written from PyTorch's parts.
- ``torchvision0`` / ``torchvision2``: the same hand loop fed by ``torchvision.datasets``-style
  per-sample ``ToTensor() + Normalize`` through a ``DataLoader`` with 0 / 2 workers, as
  lightning-hydra-template does.

All variants run in one process with the settings ``python train.py`` chooses by default before
torch loads (``trainlab.runtime``, ``process`` in ``conf/train.yaml``): OpenMP threads that spin
between ops (``OMP_WAIT_POLICY=PASSIVE`` in the environment makes them sleep), glibc malloc
thresholds that keep freed activation buffers (``--default-malloc`` leaves them as they are),
and no NVML probe per Adam step where NVML cannot load.
Each variant runs ``--warmup`` untimed steps, then ``--steps`` timed ones (the time between two
``on_train_batch_start``-equivalent points, so data loading and every per-step hook count).
One untimed round of every variant comes first. The per-round ratios are ratios of variants
measured next to each other; the report gives their median over rounds, and the ratio of the
variants' best rounds (Python's ``timeit`` reports the best of its repeats: on a shared host
the slower rounds are mostly other work's).

    python scripts/bench.py                         # 5 rounds of 60 steps, batch 128
    python scripts/bench.py --rounds 7 --json out.json
    python scripts/bench.py --profile trainlab      # cProfile of one trainlab round
    python scripts/bench.py --startup               # `python train.py` -> first step, and --help
    python scripts/bench.py --override trainer=gpu  # every variant on the GPU (not yet run on one)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trainlab.compose import compose_config  # Hydra only: torch is not loaded yet

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("trainlab", "trainlab_nobar", "lightning", "lightning_bar", "hand", "hand_torch",
            "torchvision0", "torchvision2")
DEFAULT_VARIANTS = ("trainlab", "hand", "hand_torch", "torchvision0", "torchvision2")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- config


# ----------------------------------------------------------------------------- variants


def clock(cuda: bool = False) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of all this process's threads, minor page faults so far),
    after the GPU's queued work has finished when ``cuda``."""
    if cuda:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _minus(a: tuple, b: tuple) -> tuple:
    return tuple(x - y for x, y in zip(a, b, strict=True))


class Bench:
    """Holds the data once and runs one timed round of any variant."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        import torch

        self.args, self.workdir = args, workdir
        self.total = args.warmup + args.steps
        self.base = [f"data.batch_size={args.batch_size}", *args.override]
        cfg = compose_config(self.base, workdir / "probe")
        from hydra.utils import instantiate

        # trainer=gpu: every variant trains on the GPU, the hand loop's data resident there
        self.cuda = str(cfg.trainer.accelerator) in ("gpu", "cuda")
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.data_root = Path(cfg.data.source.root) if cfg.data.source.get("root") else FASHION_MNIST

        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        self.datamodule_splits = datamodule.splits  # kept so every round skips the gunzip
        x, y = datamodule.splits["train"]
        self.train_y = y.to(self.device)
        self.shift, self.scale = datamodule.shift, datamodule.scale
        # the hand loop's data: normalized float32 once, indexed per batch
        self.train_x = datamodule.to_model_input(x.to(self.device)).contiguous()
        self.rounds_done = 0
        torch.set_num_threads(torch.get_num_threads())

    # -- trainlab: the real Trainer -------------------------------------------------------

    def trainlab(self, progress_bar: bool = True) -> float:
        from trainlab.pipeline import build

        out = self.workdir / f"trainlab{self.rounds_done}"
        overrides = [*self.base, "trainer.max_epochs=1", f"trainer.limit_train_batches={self.total + 1}",
                     "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
                     "callbacks.model_checkpoint=null"]
        if not progress_bar:
            overrides.append("callbacks.progress_bar=null")
        cfg = compose_config(overrides, out)
        datamodule, model, trainer = build(cfg)
        datamodule.splits = self.datamodule_splits  # already read: skip the gunzip
        datamodule.shift, datamodule.scale = self.shift, self.scale
        sink = io.StringIO()
        if trainer.progress_bar_callback is not None:  # draw as on a terminal, but into memory
            trainer.progress_bar_callback._console_kwargs = {
                "file": sink, "force_terminal": True, "width": 120}

        stamps: dict[int, tuple] = {}
        trainer.callbacks.append(self._stopwatch(stamps))
        with contextlib.redirect_stdout(sink):
            trainer.fit(model, datamodule=datamodule)
        if model.status != "ok":
            raise RuntimeError(f"trainlab round ended with status {model.status}")
        return _minus(stamps[self.total], stamps[self.args.warmup])

    def _stopwatch(self, stamps: dict[int, tuple]):
        """A callback that clocks the start of the first timed batch and of the one after."""
        import pytorch_lightning as pl

        first, last, cuda = self.args.warmup, self.total, self.cuda

        class Stopwatch(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx in (first, last):
                    stamps[batch_idx] = clock(cuda)

        return Stopwatch()

    # -- Lightning alone: the floor under trainlab -----------------------------------------

    def lightning(self, progress_bar: bool = False) -> tuple:
        """A bare ``LightningModule`` (the net, the loss, the optimizer; nothing else) in a
        Trainer without callbacks, logger, checkpoints or progress bar, on the hand loop's
        float batches: what Lightning's loop costs by itself. ``progress_bar``: with the
        config's bar, drawn into memory as ``trainlab``'s is."""
        import pytorch_lightning as pl
        import torch
        import torch.nn.functional as F
        from hydra.utils import instantiate

        from trainlab.data.batches import TensorBatchLoader

        net, opt, channels_last, cfg = self._net_and_optimizer()
        smoothing = float(cfg.model.label_smoothing)

        class Bare(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx):
                x, y = batch
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                return F.cross_entropy(self.net(x), y, label_smoothing=smoothing)

            def configure_optimizers(self):
                return opt

        stamps: dict[int, tuple] = {}
        callbacks, sink = [self._stopwatch(stamps)], io.StringIO()
        if progress_bar:
            if cfg.callbacks.get("progress_bar") is None:
                raise SystemExit("lightning_bar: the config has no callbacks.progress_bar to compare with")
            callbacks.append(instantiate(cfg.callbacks.progress_bar, console_kwargs={
                "file": sink, "force_terminal": True, "width": 120}))
        trainer = pl.Trainer(accelerator=self.device.type, devices=1, max_epochs=1, logger=False,
                             limit_train_batches=self.total + 1, num_sanity_val_steps=0,
                             precision=cfg.trainer.precision, enable_checkpointing=False,
                             enable_progress_bar=progress_bar, enable_model_summary=False,
                             callbacks=callbacks)
        loader = TensorBatchLoader.from_tensors(self.train_x, self.train_y, self.args.batch_size,
                                                shuffle=True, drop_last=True, seed=cfg.seed)
        with contextlib.redirect_stdout(sink):
            trainer.fit(Bare(), train_dataloaders=loader)
        return _minus(stamps[self.total], stamps[self.args.warmup])

    # -- the hand-written loop --------------------------------------------------------------

    def _net_and_optimizer(self, stock: bool = False):
        """The same network (init, channels_last) and optimizer trainlab's config builds; with
        ``stock``, PyTorch's dropout, out-of-place activations before the pools and the unfused
        optimizer step."""
        import pytorch_lightning as pl
        from bench_nets import switch_off  # scripts/ is on the path when run as a script
        from hydra.utils import instantiate

        cfg = compose_config(self.base, self.workdir / "hand")
        pl.seed_everything(cfg.seed, verbose=False)
        model = instantiate(cfg.model)
        model.net.to(self.device)
        channels_last = model.channels_last
        if not stock:
            return model.net.train(), model.configure_optimizers(), channels_last, cfg
        net = switch_off(model.net, {"op", "ap", "td"}).train()
        factory = model.optimizer_factory
        unfused = {"fused": None} if getattr(factory, "keywords", {}).get("fused") else {}
        return net, factory(model.regularization.param_groups(net), **unfused), channels_last, cfg

    def _hand_loop(self, batches: Callable[[], object], stock: bool = False) -> float:
        import torch
        import torch.nn.functional as F

        net, opt, channels_last, cfg = self._net_and_optimizer(stock)
        smoothing = float(cfg.model.label_smoothing)
        precision = str(cfg.trainer.precision)
        if precision not in ("32-true", "32", "bf16-mixed"):
            raise SystemExit(f"the hand loop knows 32-true and bf16-mixed, not {precision}")
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=precision == "bf16-mixed")
        start = None
        for step, (x, y) in enumerate(batches()):
            if step == self.args.warmup:
                start = clock(self.cuda)
            if step == self.total:
                return _minus(clock(self.cuda), start)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        raise RuntimeError("ran out of batches; lower --steps")

    def hand(self, stock: bool = False) -> float:
        import torch

        x, y, b = self.train_x, self.train_y, self.args.batch_size

        def batches():
            order = torch.randperm(len(x), device=x.device)
            for i in range(0, len(order) - b + 1, b):
                idx = order[i : i + b]
                yield x[idx], y[idx]

        return self._hand_loop(batches, stock)

    # -- per-sample torchvision -------------------------------------------------------------

    def _torchvision_dataset(self):
        """``torchvision.datasets.FashionMNIST`` on the Debian files (or ``data.source.root``),
        per-sample transforms."""
        from torchvision import datasets, transforms

        root = self.workdir / "tv"
        raw = root / "FashionMNIST" / "raw"
        if not raw.is_dir():  # torchvision reads the unpacked IDX files (its md5s reject Debian's gz)
            raw.mkdir(parents=True)
            for gz in self.data_root.glob("*.gz"):
                with gzip.open(gz, "rb") as src, open(raw / gz.stem, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        mean, std = self.shift.tolist(), self.scale.tolist()  # the same normalization
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        return datasets.FashionMNIST(root, train=True, download=False, transform=tf)

    def torchvision(self, workers: int) -> float:
        from torch.utils.data import DataLoader

        ds = self._torchvision_dataset()
        loader = DataLoader(ds, batch_size=self.args.batch_size, shuffle=True, drop_last=True,
                            num_workers=workers, persistent_workers=False, pin_memory=self.cuda)
        return self._hand_loop(lambda: iter(loader))

    def run(self, variant: str) -> tuple[float, float, float]:
        """Samples per wall second, per CPU second (this process's threads) and minor page
        faults per step of one timed round of ``variant``."""
        if variant.startswith("trainlab"):
            seconds = self.trainlab(progress_bar=variant == "trainlab")
        elif variant.startswith("lightning"):
            seconds = self.lightning(progress_bar=variant == "lightning_bar")
        elif variant.startswith("hand"):
            seconds = self.hand(stock=variant == "hand_torch")
        else:
            seconds = self.torchvision(int(variant.removeprefix("torchvision")))
        self.rounds_done += 1
        samples = self.args.steps * self.args.batch_size
        return samples / seconds[0], samples / seconds[1], seconds[2] / self.args.steps


# ----------------------------------------------------------------------------- start-up


def startup(args: argparse.Namespace) -> dict[str, float]:
    """Wall seconds of ``python train.py`` until its first training step begins (caches warm),
    and of ``--help`` / ``--cfg job``, which must not import torch."""
    times: dict[str, list[float]] = {"help_s": [], "cfg_job_s": [], "first_step_s": []}
    tmp = Path(tempfile.mkdtemp(prefix="trainlab-startup-"))
    # scripts/ on the path for the probe callback; the run's own output is not wanted here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))}
    python = sys.executable
    try:
        for r in range(args.rounds + 1):  # round 0 warms the page cache and .pyc files
            for key, extra in (("help_s", ["--help"]), ("cfg_job_s", ["--cfg", "job"])):
                t0 = time.perf_counter()
                subprocess.run([python, "train.py", *extra], cwd=ROOT, env=env, check=True,
                               capture_output=True)
                if r:
                    times[key].append(time.perf_counter() - t0)
            stamp = tmp / f"first_step{r}"
            t0 = time.time()
            subprocess.run(
                [python, "train.py", *args.override, f"hydra.run.dir={tmp / f'run{r}'}",
                 "+callbacks.first_step._target_=first_step_stamp.FirstStepStamp",
                 f"+callbacks.first_step.path={stamp}", "test=false"],
                cwd=ROOT, env=env, check=True, capture_output=True)
            if r:
                times["first_step_s"].append(float(stamp.read_text()) - t0)
        # does `--cfg job` load torch? Run it in-process under a check of sys.modules.
        probe = subprocess.run(
            [python, "-c", "import runpy, sys\nsys.argv = ['train.py', '--cfg', 'job']\n"
             "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('TORCH_IMPORTED', 'torch' in sys.modules)"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        torch_imported = "TORCH_IMPORTED True" in probe.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, object] = {k: statistics.median(v) for k, v in times.items()}
    out["rounds"] = times
    out["cfg_job_imports_torch"] = torch_imported
    print(f"start-up over {args.rounds} rounds (after one warm-up round), overrides {args.override}:")
    for k, v in times.items():
        print(f"  {k:>13}: median {statistics.median(v):.2f} s  ({', '.join(f'{s:.2f}' for s in v)})")
    print(f"  `train.py --cfg job` imports torch: {torch_imported}")
    return out


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="timed training steps per round")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--override", action="append", default=[],
                   help="Hydra override for all variants, e.g. --override model.channels_last=false")
    p.add_argument("--profile", choices=VARIANTS, help="cProfile one round of this variant and stop")
    p.add_argument("--startup", action="store_true",
                   help="measure `python train.py` start-up to the first step instead")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc thresholds as they are (train.py raises them)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from trainlab.runtime import keep_freed_memory, openmp_wait_policy

    policy = openmp_wait_policy()  # as `python train.py` does by default, before torch loads
    print(f"process: {policy}")
    if not args.default_malloc:
        keep_freed_memory()
    if args.startup:
        result = {"startup": startup(args)}
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    import pytorch_lightning  # noqa: F401  (sets the NVML variable that train.py then drops)
    import torch

    from trainlab.runtime import nvml_check

    print(f"NVML check: {nvml_check()}")
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {VARIANTS}")
    workdir = Path(tempfile.mkdtemp(prefix="trainlab-bench-"))
    try:
        bench = Bench(args, workdir)
        if args.profile:
            bench.run(args.profile)  # warm caches and lazy imports first
            prof = cProfile.Profile()
            prof.enable()
            rate, _, _ = bench.run(args.profile)
            prof.disable()
            print(f"{args.profile}: {rate:,.0f} samples/s under cProfile")
            pstats.Stats(prof).sort_stats("tottime").print_stats(35)
            return
        wall: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        faults: dict[str, list[float]] = {v: [] for v in variants}
        for v in variants:  # one untimed round each: lazy imports, allocator and page cache
            bench.run(v)
        for r in range(args.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):  # alternate the order too
                w, c, f = bench.run(v)
                wall[v].append(w)
                cpu[v].append(c)
                faults[v].append(f)
            print(f"round {r + 1}/{args.rounds}: " +
                  "  ".join(f"{v} {wall[v][-1]:,.0f}" for v in variants) + " samples/s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"wall": summarize(wall), "cpu": summarize(cpu),
              "page_faults_per_step": {v: statistics.median(x) for v, x in faults.items()}}
    print(f"\nmedians over {args.rounds} rounds of {args.steps} steps, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
          f"{policy}, load average "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    for kind, title in (("wall", "samples per wall second"),
                        ("cpu", "samples per CPU second of this process (excludes DataLoader "
                                "worker processes)")):
        print(f"{title}:")
        for v in variants:
            rounds = ", ".join(f"{x:,.0f}" for x in report[kind]["rounds"][v])
            print(f"  {v:>15}: {report[kind]['median'][v]:8,.0f}   (rounds: {rounds})")
        for k, v in report[kind]["ratios"].items():
            low, high = report[kind]["ratio_quartiles"][k]
            print(f"  {k:>28}: {v:.3f}x (median of per-round ratios; quartiles {low:.3f}-{high:.3f}; "
                  f"best rounds {report[kind]['best_ratios'][k]:.3f}x)")
    print("minor page faults per step (median): " + ", ".join(
        f"{v} {n:,.0f}" for v, n in report["page_faults_per_step"].items()))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "openmp": policy, "malloc": "default" if args.default_malloc else "kept",
                        "loadavg_at_end": os.getloadavg(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "processor": platform.processor() or platform.machine()},
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            **report,
        }, indent=2))


def summarize(rates: dict[str, list[float]]) -> dict:
    """Per-round rates, their medians, and the median per-round ratio of trainlab to each
    variant (and of trainlab without its bar to bare Lightning, of bare Lightning to the hand
    loop) with the quartiles of those ratios: how far one run's median can be trusted on a
    noisy machine. ``best_ratios`` divide the variants' fastest rounds instead: the figure
    Python's ``timeit`` reports ("best of 5"), as the rounds a shared host slowed least."""
    pairs = [("trainlab", v) for v in rates if v != "trainlab"]
    pairs += [("trainlab_nobar", "lightning"), ("lightning", "hand")]
    ratios, quartiles, best = {}, {}, {}
    for a, b in pairs:
        if a in rates and b in rates:
            per_round = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
            ratios[f"{a}/{b}"] = statistics.median(per_round)
            q = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
            quartiles[f"{a}/{b}"] = [q[0], q[2]]
            best[f"{a}/{b}"] = max(rates[a]) / max(rates[b])
    return {"rounds": rates, "median": {v: statistics.median(x) for v, x in rates.items()},
            "ratios": ratios, "ratio_quartiles": quartiles, "best_ratios": best}


if __name__ == "__main__":
    main()
