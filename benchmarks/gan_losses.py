"""Standard vs relativistic GAN losses on the CPU-sized BigGAN (``configs/biggan_cifar_cpu.yaml``), measured.

Checks the relativistic-GAN paper's CIFAR-10 claim (Jolicoeur-Martineau 2018: the relativistic and
relativistic-average losses train better than their standard counterparts) on our data and our network. For
each loss and seed one run of ``gensr train configs/biggan_cifar_cpu.yaml`` (a subprocess, one thread) with the
same seed -- so the same initial weights, the same latent draws and the same real batches in the same order
(a relativistic G update reuses the last D update's real batches, see :mod:`gensr.tasks.biggan`) -- and the same
number of iterations; only ``task.loss`` changes.
Losses (``--losses``): hinge, ns (non-saturating, the module's ``vanilla``), rsgan, rasgan, ralsgan, rahinge
(any other name of :mod:`gensr.losses.adversarial` works too).

Overrides per run: ``task.loss``, ``seed``, ``train.total_iters`` (``--iters``), ``train.eval_every``,
``task.generator.ch`` = ``task.discriminator.ch`` (``--ch``), ``task.data.batch_size``, ``task.d_steps``,
``task.eval.samples``, ``task.eval.ref_max``, ``ema.start_iter = min(1000, iters // 5)`` (the recipe's 1000 is
meant for 36k iterations), ``train.checkpoint_every = min(1000, eval_every)``, ``train.log_every``
(``--log-every``, default 10: finer loss curves for the spike test), ``task.sv_log_every = eval_every`` (when a
multiple of ``log_every``), ``output_dir = OUT/<loss>_s<seed>`` and ``task.data.train =
$GENSR_DATASETS/cifar10_subset/train_50k_jpeg.npz`` (default ``../shared/datasets``; absent: nothing runs).

Resume: a killed benchmark is continued with ``--resume``: unfinished runs continue from their latest
checkpoint (``gensr train --resume``); finished ones (``model.safetensors`` written and the log at ``--iters``)
are skipped, with or without ``--resume``. Without ``--resume`` an unfinished run folder stops the benchmark
before anything starts; a folder holding a run with other settings is always refused. If the benchmark is
killed, its training subprocess gets SIGTERM (Linux ``PR_SET_PDEATHSIG``; Ctrl-C reaches it directly) and saves
a checkpoint before it ends; the trainer acts on an interrupt only between iterations, so a resume from that
checkpoint continues exactly like an uninterrupted run.

Table (printed, and written to ``OUT/results.md`` and ``OUT/results.json``), from each run's ``log.jsonl``
(records of iterations re-run after a resume are deduplicated, the last one wins): final and best
``classifier_acc`` of the EMA generator's samples, the iteration of the best, ``classifier_fd`` at the best and at
the end, the largest ``g_sv_max`` / ``d_sv_max`` (top singular value over G's / D's SN layers; train-window means
and evaluation values), the training-loop time from the log (the log windows' seconds: they include the
evaluations and checkpoints but not the start-up of each attempt), the CPU time of the benchmark's ``gensr
train`` attempts (start-up included; an attempt whose benchmark was killed is not counted) and the median
seconds per iteration of the log windows. Collapse flags, each with the first iteration it fired at:

* ``g_loss spike`` / ``d_loss spike``: a log window (``log_every`` iterations, mean) whose loss differs from the
  median of the previous up-to-20 windows (at least 5) by more than 10 x their median absolute deviation
  (floored at 0.01);
* ``g_sv jump`` / ``d_sv jump``: a window's ``g_sv_max`` / ``d_sv_max`` above 2 x the median of the previous
  up-to-20 windows (at least 5);
* both tests start at 10 % of the run (the fast transients after the N(0, 0.02) init are not counted);
* ``acc drop``: final ``classifier_acc`` below 50 % of the run's best, when the best is >= 0.2 (chance: 0.1);
* ``non-finite``: iterations skipped for a non-finite loss; ``failed``: the run ended with an error or did not
  reach ``--iters``.

``no learning`` (best accuracy < 0.2) is noted separately: it is not a collapse. The classifier numbers come from
the shipped CIFAR-10 classifier and its feature space; they are NOT comparable to published FID / IS values.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/gan_losses.py --iters 3000 --eval-every 250 --out runs/gan_losses
    OMP_NUM_THREADS=1 python benchmarks/gan_losses.py --iters 3000 --eval-every 250 --out runs/gan_losses --resume
    python benchmarks/gan_losses.py --losses hinge,rasgan --iters 20 --eval-every 10 --ch 8 --batch-size 8 \\
        --d-steps 1 --samples 100 --ref-max 500 --out /tmp/gan_losses_smoke                       # smoke test
    python benchmarks/gan_losses.py --out runs/gan_losses --table-only    # tabulate what is there
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from benchcommon import LoadRange, cpu_model, machine

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/biggan_cifar_cpu.yaml"
DATA = "cifar10_subset/train_50k_jpeg.npz"
LOSS_NAMES = {"hinge": "hinge", "ns": "vanilla", "rsgan": "rsgan", "rasgan": "rasgan", "ralsgan": "ralsgan",
              "rahinge": "rahinge"}  # fmt: skip
HISTORY, MIN_HISTORY = 20, 5  # windows before the current one for the spike / jump tests
SPIKE_MADS, MAD_FLOOR, SV_JUMP, ACC_DROP, LEARNED = 10.0, 0.01, 2.0, 0.5, 0.2
NOT_COMPARABLE = (
    "classifier_acc and classifier-FD use the shipped CIFAR-10 classifier (its predictions and penultimate features) "
    "on EMA samples; they are NOT comparable to published FID / IS values (Inception features)."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--losses", default=",".join(LOSS_NAMES), help="comma-separated (default: all six)")
    p.add_argument("--iters", type=int, default=3000, help="iterations per run (default 3000)")
    p.add_argument("--eval-every", type=int, default=250, help="evaluation interval (default 250)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--ch", type=int, default=16, help="G and D width (default 16, the CPU recipe)")
    p.add_argument("--batch-size", type=int, default=32, help="real batch per D step (default 32)")
    p.add_argument("--d-steps", type=int, default=2, help="D updates per G update (default 2)")
    p.add_argument("--samples", type=int, default=1000, help="EMA samples per evaluation (default 1000)")
    p.add_argument("--ref-max", type=int, default=10_000, help="real images for classifier-FD (default 10000)")
    p.add_argument("--log-every", type=int, default=10, help="log window in iterations (default 10)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gan_losses", help="folder of the runs")
    p.add_argument("--resume", action="store_true", help="continue unfinished runs, skip finished ones")
    p.add_argument("--table-only", action="store_true", help="train nothing; tabulate the runs in --out")
    args = p.parse_args(argv)
    args.losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    for name in ("iters", "eval_every", "ch", "batch_size", "d_steps", "samples", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    from gensr.errors import GensrError
    from gensr.losses.adversarial import canonical_kind

    try:
        args.kinds = {name: LOSS_NAMES.get(name) or canonical_kind(name) for name in args.losses}
    except GensrError as exc:
        p.error(f"--losses: {exc}")
    args.out = args.out.resolve()
    return args


def data_path() -> Path:
    """The CIFAR-10 training file under ``$GENSR_DATASETS`` (default ``../shared/datasets`` from the repo root)."""
    root = Path(os.environ.get("GENSR_DATASETS", str(ROOT.parent / "shared" / "datasets")))
    return (root / DATA).resolve()


def overrides(args: argparse.Namespace, kind: str, seed: int, run_dir: Path, data: Path) -> list[str]:
    """The ``key=value`` overrides of one run (see the module docstring)."""
    sv_every = args.eval_every if args.eval_every % args.log_every == 0 else 0
    return [
        f"task.loss={kind}", f"seed={seed}", f"output_dir={run_dir}", f"task.data.train={data}",
        f"train.total_iters={args.iters}", f"train.eval_every={args.eval_every}",
        f"train.checkpoint_every={min(1000, args.eval_every)}", f"train.log_every={args.log_every}",
        f"task.generator.ch={args.ch}", f"task.discriminator.ch={args.ch}",
        f"task.data.batch_size={args.batch_size}", f"task.d_steps={args.d_steps}",
        f"task.eval.samples={args.samples}", f"task.eval.ref_max={args.ref_max}",
        f"task.sv_log_every={sv_every}", f"ema.start_iter={min(1000, args.iters // 5)}",
    ]  # fmt: skip


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return "(missing)"
        tree = tree[part]
    return tree


def settings_mismatch(run_dir: Path, sets: list[str]) -> list[str]:
    """Overrides whose value differs from the run folder's ``config.yaml`` (iterations and paths may differ)."""
    path = run_dir / "config.yaml"
    if not path.exists():
        return []
    cfg = yaml.safe_load(path.read_text()) or {}
    out = []
    for item in sets:
        key, raw = item.split("=", 1)
        if key in ("train.total_iters", "output_dir", "task.data.train"):
            continue
        want, have = yaml.safe_load(raw), _lookup(cfg, key)
        if want != have:
            out.append(f"{key} {have!r} (wanted {want!r})")
    return out


def read_log(run_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """(train records, val records, messages) of ``log.jsonl``, one record per iteration (the last written)."""
    train: dict[int, dict] = {}
    val: dict[int, dict] = {}
    messages: list[str] = []
    path = run_dir / "log.jsonl"
    if not path.exists():
        return [], [], []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if "message" in rec:
            messages.append(str(rec["message"]))
        elif rec.get("split") == "train":
            train[int(rec["iter"])] = rec
        elif rec.get("split") == "val":
            val[int(rec["iter"])] = rec
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)], messages


def is_finished(run_dir: Path, iters: int) -> bool:
    train, _, _ = read_log(run_dir)
    return (run_dir / "model.safetensors").exists() and bool(train) and train[-1]["iter"] >= iters


def _set_pdeathsig() -> None:
    """In the child: SIGTERM when the benchmark dies (Linux), so the training saves a checkpoint and ends."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train_once(cmd: list[str], run_dir: Path, log_path: Path) -> int:
    """Run one ``gensr train`` attempt (output appended to ``log_path``); records its wall and CPU time in
    ``run_dir/bench_attempts.json``. Ctrl-C / SIGTERM: the child is asked to save a checkpoint, then re-raised."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, rc = time.perf_counter(), None
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_set_pdeathsig if sys.platform == "linux" else None)  # fmt: skip
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait()
            raise
        finally:
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            attempt = {"rc": rc, "wall_s": time.perf_counter() - t0,
                       "cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
                       "resume": "--resume" in cmd, "time": round(time.time(), 3)}  # fmt: skip
            if run_dir.is_dir():
                path = run_dir / "bench_attempts.json"
                old = json.loads(path.read_text()) if path.exists() else []
                path.write_text(json.dumps([*old, attempt], indent=1))
    return rc


def run_all(args: argparse.Namespace, data: Path, load: LoadRange) -> None:
    """Train every (loss, seed) in turn; folders are checked first, so nothing starts if one is refused."""
    plan = []
    for seed in args.seeds:
        for name, kind in args.kinds.items():
            run_dir = args.out / f"{name}_s{seed}"
            sets = overrides(args, kind, seed, run_dir, data)
            bad = settings_mismatch(run_dir, sets)
            if bad:
                sys.exit(f"gan_losses: {run_dir} holds a run with other settings: {'; '.join(bad)}; use another --out")
            exists = (run_dir / "config.yaml").exists() or (run_dir / "log.jsonl").exists()
            if exists and is_finished(run_dir, args.iters):
                print(f"{name} seed {seed}: finished already, skipped", file=sys.stderr)
                continue
            if exists and not args.resume:
                sys.exit(f"gan_losses: {run_dir} holds an unfinished run; continue with --resume or use another --out")
            plan.append((name, seed, run_dir, [sys.executable, "-m", "gensr", "train", CONFIG, *sets]
                         + (["--resume"] if exists else [])))  # fmt: skip
    for i, (name, seed, run_dir, cmd) in enumerate(plan, 1):
        log_path = args.out / "logs" / f"{run_dir.name}.log"
        verb = "resuming" if cmd[-1] == "--resume" else "training"
        print(f"[{i}/{len(plan)}] {verb} {name} seed {seed} -> {run_dir} (output: {log_path})", file=sys.stderr)
        t0 = time.perf_counter()
        load.sample()
        rc = train_once(cmd, run_dir, log_path)
        load.sample()
        state = "done" if rc == 0 else f"FAILED (exit {rc}; see {log_path})"
        print(f"[{i}/{len(plan)}] {name} seed {seed}: {state} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def _median_mad(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    return med, statistics.median(abs(v - med) for v in values)


def first_spike(series: list[tuple[int, float]], from_iter: int) -> int | None:
    """First iteration >= ``from_iter`` whose value is > SPIKE_MADS robust deviations from the previous windows'
    median."""
    for t in range(MIN_HISTORY, len(series)):
        if series[t][0] < from_iter:
            continue
        med, mad = _median_mad([v for _, v in series[max(0, t - HISTORY) : t]])
        if abs(series[t][1] - med) > SPIKE_MADS * max(mad, MAD_FLOOR):
            return series[t][0]
    return None


def first_jump(series: list[tuple[int, float]], from_iter: int) -> int | None:
    """First iteration >= ``from_iter`` whose value exceeds SV_JUMP x the previous windows' median."""
    for t in range(MIN_HISTORY, len(series)):
        if series[t][0] >= from_iter:
            if series[t][1] > SV_JUMP * statistics.median(v for _, v in series[max(0, t - HISTORY) : t]):
                return series[t][0]
    return None


def _series(records: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["iter"], float(r[key])) for r in records if key in r and r[key] == r[key]]  # drops NaN


def collapse_flags(train: list[dict], val: list[dict], messages: list[str], iters: int, finished: bool) -> list[str]:
    """The collapse flags of the module docstring, each as 'name @iteration'."""
    flags = []
    for key in ("g_loss", "d_loss"):
        it = first_spike(_series(train, key), iters // 10)
        if it is not None:
            flags.append(f"{key} spike @{it}")
    for key in ("g_sv_max", "d_sv_max"):
        it = first_jump(_series(train, key), iters // 10)
        if it is not None:
            flags.append(f"{key[0]}_sv jump @{it}")
    acc = _series(val, "classifier_acc")
    if acc:
        best = max(v for _, v in acc)
        if best >= LEARNED and acc[-1][1] < ACC_DROP * best:
            flags.append(f"acc drop @{acc[-1][0]}")
    skipped = sorted({int(m.split()[1].rstrip(":")) for m in messages if "non-finite loss, step skipped" in m})
    if skipped:
        flags.append(f"non-finite x{len(skipped)} @{skipped[0]}")
    if not finished:
        flags.append("failed")
    return flags


def summarize(run_dir: Path, name: str, kind: str, seed: int, iters: int) -> dict[str, Any]:
    """One table row from the run folder (missing values are None)."""
    train, val, messages = read_log(run_dir)
    finished = is_finished(run_dir, iters)
    row: dict[str, Any] = {"loss": name, "kind": kind, "seed": seed, "run_dir": str(run_dir),
                           "iters_done": train[-1]["iter"] if train else 0, "finished": finished}  # fmt: skip
    acc = [r for r in val if "classifier_acc" in r]
    if acc:
        best = max(acc, key=lambda r: (r["classifier_acc"], -r["iter"]))
        row.update(final_acc=acc[-1]["classifier_acc"], best_acc=best["classifier_acc"], best_iter=best["iter"],
                   fd_best=best.get("classifier_fd"), fd_final=acc[-1].get("classifier_fd"),
                   final_iter=acc[-1]["iter"])  # fmt: skip
    for key in ("g_sv_max", "d_sv_max"):
        values = [v for _, v in _series(train, key) + _series(val, key)]
        row[key] = max(values) if values else None
    prev, wall = 0, 0.0
    for r in train:
        wall += float(r.get("sec_per_iter", 0.0)) * (r["iter"] - prev)
        prev = r["iter"]
    sec = [float(r["sec_per_iter"]) for r in train if "sec_per_iter" in r]
    row["wall_s"], row["s_per_iter"] = (wall, statistics.median(sec)) if sec else (None, None)
    attempts_path = run_dir / "bench_attempts.json"
    attempts = json.loads(attempts_path.read_text()) if attempts_path.exists() else []
    row["cpu_s"] = sum(a["cpu_s"] for a in attempts) if attempts else None
    row["attempts"] = len(attempts)
    flags = collapse_flags(train, val, messages, iters, finished)
    row["collapse"] = flags
    row["learned"] = None if not acc else row["best_acc"] >= LEARNED
    return row


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The Markdown table of the rows, with the settings and the caveats."""
    lines = [
        f"GAN losses on the CPU BigGAN ({CONFIG}: ch {args.ch}, batch {args.batch_size}, d_steps {args.d_steps}), "
        f"{args.iters} iterations, evaluation every {args.eval_every} ({args.samples} EMA samples, classifier-FD "
        f"vs {args.ref_max} training images).",
        "",
        "| loss | seed | final acc | best acc | best @iter | cFD @best | cFD final | max g_sv | max d_sv | collapse "
        "| loop time (log) | CPU time | s/it (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        collapse = "; ".join(r["collapse"]) or "no"
        if r["learned"] is False:
            collapse += " (no learning: best acc < 0.2)"
        lines.append(
            f"| {r['loss']} ({r['kind']}) | {r['seed']} | {_fmt(r.get('final_acc'))} | {_fmt(r.get('best_acc'))} "
            f"| {_fmt(r.get('best_iter'), 'd')} | {_fmt(r.get('fd_best'), '.2f')} | {_fmt(r.get('fd_final'), '.2f')} "
            f"| {_fmt(r['g_sv_max'], '.3g')} | {_fmt(r['d_sv_max'], '.3g')} | {collapse} | {_hours(r['wall_s'])} "
            f"| {_hours(r['cpu_s'])} | {_fmt(r['s_per_iter'], '.3f')} |"
        )
    lines += [
        "",
        f"Note: {NOT_COMPARABLE} acc = classifier accuracy for the conditioned class (chance 0.1); cFD = "
        "classifier-FD (lower is better). Collapse flags: see the docstring of benchmarks/gan_losses.py. "
        "Every loss reads the same real batches (a relativistic G update reuses the last D update's).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, load = data_path(), LoadRange()
    if not args.table_only:
        if not data.exists():
            print(f"gan_losses: skipped: {data} not found (set GENSR_DATASETS to the folder holding {DATA})",
                  file=sys.stderr)  # fmt: skip
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        run_all(args, data, load)
    rows = [
        summarize(args.out / f"{name}_s{seed}", name, kind, seed, args.iters)
        for seed in args.seeds
        for name, kind in args.kinds.items()
        if (args.out / f"{name}_s{seed}").is_dir()
    ]
    if not rows:
        print(f"gan_losses: no runs under {args.out}", file=sys.stderr)
        return 0
    text = table(rows, args)
    header = (
        f"machine: {machine()}\ncpu: {cpu_model()}; one training thread per run, runs one after another; "
        f"load average (1 min) around the runs of this call: {load}"
    )
    command = f"command: python benchmarks/gan_losses.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    print(f"\n{header}\n{command}\n\n{text}")
    (args.out / "results.md").write_text(f"{header}\n\n{command}\n\n{text}\n")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps(
        {"machine": machine(), "cpu": cpu_model(), "settings": settings, "note": NOT_COMPARABLE, "rows": rows},
        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
