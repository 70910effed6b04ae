"""The figures and pictures of docs/MODEL_CARD_biggan.md: a class-conditional 32 px CIFAR-10 BigGAN generator.

Everything goes through the library (:func:`gensr.inference.generation.generate`,
:mod:`gensr.metrics.classifier_metrics`, :func:`gensr.data.class_datasets.load_class_images`), with a fixed seed:

* **Truncation sweep** (``--truncations``, default none,2.0,1.5,1.0,0.75,0.5,0.25; ``--truncation-mode resample``,
  the paper's: every z entry with ``|z| > t`` is redrawn, so "truncation 1.0" means each of the dim_z entries is
  N(0, 1) conditioned on ``|z_i| <= 1``: 68.3 % of its mass kept, std 0.54; "none" is z ~ N(0, I)). For each value:
  ``--per-class`` samples of every class (default 100, i.e. 1000 in all), generated with standing BN statistics
  from ``--standing-stats`` forwards of ``--batch-size`` at that truncation (defaults 16 x 100), scored by the
  classifier: its accuracy for the conditioned class, its worst class, and the Frechet distance between its
  penultimate-layer features of the samples and of all images of ``--reference`` (default the 10,000 CIFAR-10
  test images of cifar10_subset/test_10k_jpeg.npz). Classifier-FD is NOT FID (another feature space, 1000 vs
  10,000 images; lower is better). With ``--file-stats`` (default) the same samples are also scored with the
  file's own BN statistics (standing statistics 0, what ``gensr generate`` does unless given --standing-stats).
* **The classifier's own accuracy** on the reference set (computed here, not copied).
* **Training-evaluation reproduction**: the export's training iteration (from its meta) seeds exactly the procedure
  of ``BigGANTask.evaluate`` with configs/biggan_cifar_cpu.yaml's eval settings (1000 samples = 100 per class,
  untruncated z, standing statistics 16 x 100, one z stream); its accuracy should equal the run log's
  ``classifier_acc`` of that iteration. The sweep's "none" row uses the same settings but ``generate``'s z
  (image k of every class shares its z, a pure function of (seed, k)), so it differs from the logged value
  only by sampling noise. (The training's classifier-FD used 10,000 training images as the reference.)

Pictures (tiles enlarged 2x, nearest neighbour; refused if they exist unless ``--overwrite``):

* ``IMAGES_DIR/biggan_cifar_grid.png``: one row per class (class names in a left column), images 0..9 of the
  ``--grid-truncation`` row of the sweep (default none = untruncated), i.e. the same z in every column.
* ``IMAGES_DIR/biggan_cifar_truncation.png``: one row per truncation value, ``--strip-samples`` images (default 2)
  of every class, the same z seeds in every row (entries with |z_i| <= t are identical across rows).

Prints a Markdown table (and the machine and wall time) and writes it as ``OUT/biggan_card.md`` plus everything as
``OUT/biggan_card.json``.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/biggan_card.py --model runs/biggan_cifar_cpu/model.safetensors
    OMP_NUM_THREADS=1 python benchmarks/biggan_card.py --model G.safetensors --images-dir /tmp/card --out /tmp/card \\
        --truncations none,1.0,0.5 --per-class 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchcommon import cpu_model, machine
from PIL import Image, ImageDraw, ImageFont

from gensr.errors import GensrError

DEFAULT_TRUNCATIONS = "none,2.0,1.5,1.0,0.75,0.5,0.25"
# task.eval of configs/biggan_cifar_cpu.yaml: 1000 samples (100 per class), untruncated, standing stats 16 x 100
EVAL_PER_CLASS = 100
EVAL_STANDING_STATS = 16
EVAL_BATCH = 100
GRID_NAME = "biggan_cifar_grid.png"
STRIP_NAME = "biggan_cifar_truncation.png"
ZOOM = 2
GAP = 2
GROUP_GAP = 6
FONT_SIZE = 13


def default_reference() -> str:
    root = os.environ.get("GENSR_DATASETS") or str(Path(__file__).resolve().parents[2] / "shared" / "datasets")
    return str(Path(root) / "cifar10_subset" / "test_10k_jpeg.npz")


def parse_truncations(text: str) -> list[float | None]:
    """'none,2,1.0' -> [None, 2.0, 1.0]; GensrError for a value outside (0, 2] or a repeated one."""
    from gensr.inference.generation import check_truncation

    values: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            raise GensrError(f"--truncations {text!r}: an empty entry")
        try:
            t = None if part == "none" else check_truncation(float(part))
        except ValueError:
            raise GensrError(f"--truncations {text!r}: {part!r} is neither 'none' nor a number") from None
        if t in values:
            raise GensrError(f"--truncations {text!r}: {part} is listed twice")
        values.append(t)
    return values


def truncations_arg(text: str) -> list[float | None]:
    """argparse type of :func:`parse_truncations`."""
    try:
        return parse_truncations(text)
    except GensrError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def trunc_label(t: float | None) -> str:
    return "none" if t is None else str(float(t))


def _truncated_std(t: float) -> float:
    """Std of N(0, 1) conditioned on |z| <= t: sqrt(1 - 2 t phi(t) / (2 Phi(t) - 1))."""
    mass = math.erf(t / math.sqrt(2.0))
    return math.sqrt(1.0 - 2.0 * t * math.exp(-t * t / 2.0) / math.sqrt(2.0 * math.pi) / mass)


def truncation_meaning(t: float | None, mode: str) -> str:
    """What one z entry is at truncation ``t`` (see gensr.inference.generation)."""
    if t is None:
        return "N(0, 1), std 1"
    if mode == "scale":
        return f"{t:g} x truncnorm(-2, 2), std {t * _truncated_std(2.0):.2f}"
    return f"N(0, 1) given |z| <= {t:g} ({100 * math.erf(t / math.sqrt(2)):.1f} % kept), std {_truncated_std(t):.2f}"


# ----------------------------------------------------------------------------------------------- inputs


def read_meta(path: Path) -> dict:
    """The ``meta`` of a gensr file ({} for other files or none)."""
    from gensr.checkpoints.gensr_format import read_header

    try:
        return json.loads(read_header(path).get("meta", "{}"))
    except (GensrError, ValueError):
        return {}


def load_classifier(name: str, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The scoring classifier; GensrError unless it is a classifier for ``net``'s image size and classes."""
    from gensr.checkpoints.loader import load_model

    clf = load_model(name, device=device)
    size = getattr(getattr(clf, "config", None), "input_size", None)
    if getattr(clf, "kind", None) != "classifier" or not hasattr(clf, "features"):
        raise GensrError(f"--classifier {name}: is a {type(clf).__name__}, not a classifier")
    if size != net.resolution:
        raise GensrError(f"--classifier {name}: takes {size} px images, the generator makes {net.resolution} px")
    if getattr(clf, "num_classes", None) != net.n_classes:
        raise GensrError(f"--classifier {name}: has {clf.num_classes} classes, the generator {net.n_classes}")
    return clf.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------- measures


def score(clf, images: np.ndarray, labels: np.ndarray, ref, names: list[str], batch: int) -> dict:
    """Accuracy for ``labels``, per class and its worst class, and classifier-FD vs ``ref`` (FeatureStats)."""
    from gensr.metrics.classifier_metrics import classifier_frechet_distance, classifier_predictions

    hit = classifier_predictions(clf, images, batch_size=batch) == labels
    per_class = {names[c]: float(hit[labels == c].mean()) for c in np.unique(labels)}
    worst = min(per_class, key=per_class.get)
    fd = classifier_frechet_distance(clf, images, ref, batch_size=batch) if ref is not None else None
    return {
        "n": int(len(labels)), "acc": float(hit.mean()), "worst_class": worst, "worst_acc": per_class[worst],
        "fd": fd, "acc_per_class": per_class,
    }  # fmt: skip


def classifier_on_reference(clf, data, batch: int) -> tuple[dict, object]:
    """(the classifier's scores on the real reference images and their labels, their feature statistics)."""
    from gensr.metrics.classifier_metrics import classifier_feature_stats

    ref = classifier_feature_stats(clf, data.x, batch_size=batch)
    return score(clf, data.x, data.y, None, data.class_names, batch), ref


def sweep(net, clf, ref, names: list[str], args: argparse.Namespace) -> tuple[list[dict], dict[str, tuple]]:
    """One row per truncation (see the module docstring) and the images of each: label -> (uint8 NHWC, labels)."""
    from gensr.inference.generation import generate

    rows, images = [], {}
    for t in args.truncations:
        tic = time.perf_counter()
        common = {"truncation": t, "truncation_mode": args.truncation_mode, "seed": args.seed}
        x, y = generate(net, None, args.per_class, batch_size=args.batch_size, standing_stats=args.standing_stats,
                        **common)  # fmt: skip
        row = {"truncation": trunc_label(t), "value": t, "z": truncation_meaning(t, args.truncation_mode)}
        row.update(score(clf, x, y, ref, names, args.batch_size))
        if args.file_stats and args.standing_stats:
            fx, fy = generate(net, None, args.per_class, batch_size=args.batch_size, standing_stats=0, **common)
            row["file_stats"] = score(clf, fx, fy, ref, names, args.batch_size)
        row["seconds"] = time.perf_counter() - tic
        rows.append(row)
        images[trunc_label(t)] = (x, y)
        fd = "n/a" if row["fd"] is None else f"{row['fd']:.3f}"
        print(f"  truncation {row['truncation']:>4}: acc {100 * row['acc']:.1f} %, FD {fd} ({row['seconds']:.0f} s)")
    return rows, images


def eval_reproduction(net, clf, ref, names: list[str], iteration: int) -> dict:
    """BigGANTask.evaluate's samples (its seed = ``iteration``, the CPU config's eval settings), scored."""
    from gensr.inference.generation import render, sample_z, standing_stats_copy

    gen = torch.Generator().manual_seed(iteration)
    g = standing_stats_copy(net, EVAL_STANDING_STATS, None, "resample", EVAL_BATCH, gen)
    labels = torch.arange(net.n_classes).repeat_interleave(EVAL_PER_CLASS)
    z = sample_z(len(labels), g.dim_z, None, "resample", gen)
    images = render(g, z, labels, None, EVAL_BATCH)
    return {"iteration": iteration, **score(clf, images, labels.numpy(), ref, names, EVAL_BATCH)}


# ----------------------------------------------------------------------------------------------- pictures


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, align: str) -> None:
    """``text`` vertically centred on xy[1]; right-aligned to xy[0] ("right") or centred on it ("center")."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = xy[0] - (right - left) if align == "right" else xy[0] - (right - left) / 2
    draw.text((x - left, xy[1] - (bottom - top) / 2 - top), text, fill="black", font=font)


def labelled_sheet(rows: list[np.ndarray], row_labels: list[str], header: list[str] | None = None,
                   group: int = 1) -> np.ndarray:  # fmt: skip
    """Rows of uint8 tiles (k, h, w, 3) -> one uint8 (H, W, 3) sheet: tiles enlarged ZOOM x, a left column of
    ``row_labels`` and, optionally, a header line with one label centred over each group of ``group`` columns
    (groups of more than one column are set GROUP_GAP px further apart)."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(probe.textbbox((0, 0), s, font=font)[2] for s in row_labels) + 10
    top = FONT_SIZE + 8 if header else 0
    h, w = rows[0].shape[1] * ZOOM, rows[0].shape[2] * ZOOM
    cols = max(len(r) for r in rows)
    extra = GROUP_GAP if group > 1 else 0

    def x_of(j: int) -> int:
        return label_w + j * (w + GAP) + (j // group) * extra

    canvas = Image.new("RGB", (x_of(cols - 1) + w, top + len(rows) * (h + GAP) - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = top + i * (h + GAP)
        _text(draw, (label_w - 6, y + h / 2), label, font, "right")
        for j, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile).resize((w, h), Image.Resampling.NEAREST), (x_of(j), y))
    for g, label in enumerate(header or []):
        _text(draw, ((x_of(g * group) + x_of(g * group + group - 1) + w) / 2, top / 2), label, font, "center")
    return np.asarray(canvas)


def grid_picture(images: np.ndarray, labels: np.ndarray, names: list[str], per_class: int) -> np.ndarray:
    """One row per class, its images 0 .. per_class - 1, class names on the left."""
    rows = [images[labels == c][:per_class] for c in range(len(names))]
    return labelled_sheet(rows, list(names))


def truncation_picture(images: dict[str, tuple], names: list[str], per_class: int) -> np.ndarray:
    """One row per truncation: images 0 .. per_class - 1 of every class; class names over the columns."""
    rows, row_labels = [], []
    for label, (x, y) in images.items():
        rows.append(np.concatenate([x[y == c][:per_class] for c in range(len(names))]))
        row_labels.append("untruncated" if label == "none" else f"t = {label}")
    return labelled_sheet(rows, row_labels, header=list(names), group=per_class)


# ----------------------------------------------------------------------------------------------- report


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def markdown(doc: dict) -> str:
    """The report: settings lines, the sweep table, the classifier's own accuracy and the reproduction line."""
    s = doc["settings"]
    lines = [
        f"Generator `{s['model']}` (run {doc['model_meta'].get('name', '?')}, iteration "
        f"{doc['model_meta'].get('iteration', '?')}, EMA {doc['model_meta'].get('ema', '?')}); classifier "
        f"`{s['classifier']}`; {s['per_class']} samples per class, seed {s['seed']}, truncation mode "
        f"{s['truncation_mode']}, standing BN statistics {s['standing_stats']} x {s['batch_size']}; classifier-FD vs "
        f"the classifier features of all {doc['reference']['n']} images of `{s['reference']}` (NOT FID).",
        "",
    ]
    file_cols = any("file_stats" in r for r in doc["sweep"])
    head = "| truncation | z entry | accuracy | worst class | classifier-FD |"
    rule = "|---|---|---|---|---|"
    if file_cols:
        head += " accuracy, file BN stats | classifier-FD, file BN stats |"
        rule += "---|---|"
    lines += [head, rule]
    for r in doc["sweep"]:
        z = r["z"].replace("|", "\\|")
        line = f"| {r['truncation']} | {z} | {_pct(r['acc'])} | {r['worst_class']} {_pct(r['worst_acc'])} |"
        line += f" {r['fd']:.3f} |"
        if file_cols:
            f = r.get("file_stats")
            line += f" {_pct(f['acc'])} | {f['fd']:.3f} |" if f else " | |"
        lines.append(line)
    ref = doc["reference"]
    lines += ["", f"Classifier accuracy on `{s['reference']}` ({ref['n']} images): {_pct(ref['acc'])} "
              f"(worst class {ref['worst_class']} {_pct(ref['worst_acc'])})."]  # fmt: skip
    rep = doc.get("eval_reproduction")
    if rep:
        lines.append(
            f"Training-evaluation reproduction (BigGANTask.evaluate's samples for iteration {rep['iteration']}: "
            f"1000 untruncated, standing stats 16 x 100): accuracy {_pct(rep['acc'])}, worst class "
            f"{rep['worst_class']} {_pct(rep['worst_acc'])}, classifier-FD vs the reference above {rep['fd']:.3f}."
        )
    lines.append(f"Machine: {doc['machine']}; CPU: {doc['cpu']}; wall time {doc['wall_s']:.0f} s "
                 f"(process CPU time {doc['cpu_s']:.0f} s).")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a gensr BigGAN generator export (or a shipped name)")
    p.add_argument("--classifier", default="cifar_classifier", help="scoring classifier (default cifar_classifier)")
    p.add_argument("--reference", default=default_reference(), help="real labelled images (default: CIFAR-10 test)")
    p.add_argument("--truncations", type=truncations_arg, default=parse_truncations(DEFAULT_TRUNCATIONS))
    p.add_argument("--truncation-mode", choices=("resample", "scale"), default="resample")
    p.add_argument("--per-class", type=int, default=EVAL_PER_CLASS, help="samples per class and truncation")
    p.add_argument("--standing-stats", type=int, default=EVAL_STANDING_STATS, help="forwards (0: the file's stats)")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH, help="images per forward (also standing stats)")
    p.add_argument("--file-stats", action=argparse.BooleanOptionalAction, default=True,
                   help="also score with the file's own BN statistics (standing stats 0)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-truncation", type=truncations_arg, default=[None], help="the grid's truncation")
    p.add_argument("--grid-per-class", type=int, default=10)
    p.add_argument("--strip-samples", type=int, default=2, help="images per class in the truncation picture")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.add_argument("--out", default="runs/biggan_card", help="folder for biggan_card.md / .json")
    p.add_argument("--images-dir", default="docs/images", help="folder for the two PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = p.parse_args(argv)
    if len(args.grid_truncation) != 1:
        p.error("--grid-truncation takes one value")
    if args.grid_truncation[0] not in args.truncations:
        p.error("--grid-truncation must be one of --truncations")
    for name in ("per_class", "batch_size", "grid_per_class", "strip_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.standing_stats < 0:
        p.error("--standing-stats must be >= 0")
    if max(args.grid_per_class, args.strip_samples) > args.per_class:
        p.error("--grid-per-class and --strip-samples must be <= --per-class")
    return args


def claim_outputs(args: argparse.Namespace, model_path: Path) -> dict[str, Path]:
    """Output name -> path, every one checked against the output policy before anything is computed."""
    from gensr.fileutil import OutputPolicy

    policy = OutputPolicy([model_path, args.reference], overwrite=args.overwrite)
    out, img = Path(args.out), Path(args.images_dir)
    plan = {"md": out / "biggan_card.md", "json": out / "biggan_card.json", "grid": img / GRID_NAME,
            "strip": img / STRIP_NAME}  # fmt: skip
    for target in plan.values():
        policy.claim(target)
    return plan


def run(args: argparse.Namespace) -> dict:
    from gensr.checkpoints.shipped import resolve_model_path
    from gensr.data.class_datasets import load_class_images
    from gensr.fileutil import ensure_writable_dir, write_bytes_atomic, write_json_atomic
    from gensr.inference.generation import load_generator
    from gensr.inference.precision import resolve_device
    from gensr.io import write_image

    wall, cpu = time.perf_counter(), time.process_time()
    model_path = resolve_model_path(args.model)
    plan = claim_outputs(args, model_path)
    device = resolve_device(args.device)
    net = load_generator(model_path, device)
    clf = load_classifier(args.classifier, net, device)
    data = load_class_images(args.reference, where="--reference")
    if data.num_classes != net.n_classes or data.image_size != (net.resolution, net.resolution):
        raise GensrError(f"--reference {args.reference}: {data.num_classes} classes of {data.image_size} px images, "
                         f"the generator makes {net.n_classes} classes of {net.resolution} px")  # fmt: skip
    names, meta = list(data.class_names), read_meta(model_path)
    print(f"classifier on {args.reference} ...")
    reference, ref_stats = classifier_on_reference(clf, data, args.batch_size)
    rows, images = sweep(net, clf, ref_stats, names, args)
    repro = None
    if isinstance(meta.get("iteration"), int):
        repro = eval_reproduction(net, clf, ref_stats, names, meta["iteration"])
    for d in (plan["md"].parent, plan["grid"].parent):
        ensure_writable_dir(d)
    x, y = images[trunc_label(args.grid_truncation[0])]
    write_image(plan["grid"], grid_picture(x, y, names, args.grid_per_class), overwrite=args.overwrite)
    write_image(plan["strip"], truncation_picture(images, names, args.strip_samples), overwrite=args.overwrite)
    settings = {k: v for k, v in vars(args).items() if k not in ("truncations", "grid_truncation", "overwrite")}
    settings.update(model=str(args.model), truncations=[trunc_label(t) for t in args.truncations],
                    grid_truncation=trunc_label(args.grid_truncation[0]))  # fmt: skip
    doc = {
        "settings": settings, "model_meta": meta, "class_names": names,
        "reference": {**reference, "source": str(data.source), "n": len(data)}, "sweep": rows,
        "eval_reproduction": repro, "images": {"grid": str(plan["grid"]), "truncation": str(plan["strip"])},
        "machine": machine(), "cpu": cpu_model(),
        "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
    }  # fmt: skip
    text = markdown(doc)
    write_bytes_atomic(plan["md"], text.encode(), overwrite=args.overwrite)
    write_json_atomic(plan["json"], doc, overwrite=args.overwrite)
    print("\n" + text)
    print(f"wrote {plan['md']}, {plan['json']}, {plan['grid']}, {plan['strip']}")
    return doc


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        run(args)
    except GensrError as exc:
        print(f"biggan_card: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
