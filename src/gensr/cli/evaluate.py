"""``gensr eval``: score SR images against ground truth (PSNR, SSIM, LR-PSNR; NIQE, LPIPS on request).

Pairing is by file stem. For every GT image ``<stem>.<ext>`` the SR folder must hold one image named, in this
order of preference, ``<stem><suffix>`` (when ``--sr-suffix`` is given), ``<stem>`` or ``<stem>x<scale>``
(the EDSR/Set5 ``LR_bicubic`` naming, e.g. ``babyx4.png``); the LR folder (``--lr``) is searched the same way.
SR images without a GT are ignored.

**Samples.** Files named like ``gensr sample``'s outputs, ``<base>_t<tau>_seed<n>_s<k>``
(``babyx4_t0.90_seed0_s003.png``; older names without ``_seed<n>`` too), with ``<base>`` one of the names above,
are one sample set per temperature for that GT. A set is reported as one row: the mean of each score over its
samples, the best sample (highest PSNR) and the diversity of the set: ``pixel_std`` (per-pixel std across samples,
grey levels) and the NTIRE 2021 diversity score, which is ``diversity_lpips`` with LPIPS weights (the challenge's
score) and otherwise ``diversity_pixel`` (squared-error maps, reported under its own name). ``--per-sample`` lists
every sample's scores as well. A GT with both a plain SR image and samples is ambiguous (an error): keep them in
separate folders.

The GT is mod-cropped (top-left) to a multiple of the scale, and the SR must have exactly that size.
PSNR and SSIM follow the MATLAB/BasicSR conventions of :mod:`gensr.metrics.fidelity` (RGB by default, ``--y``
for BT.601 Y, ``--round-y`` for MATLAB's integer Y, ``--crop-border`` pixels shaved per side, default 0).
LR-PSNR is always RGB over the whole LR image (the SRFlow/NTIRE convention): the SR downscaled with the
MATLAB bicubic against the ``--lr`` image when given, else against the mod-cropped GT downscaled the same way.

``--niqe`` adds NIQE (MATLAB-exact, :mod:`gensr.metrics.niqe`; ``--niqe-params`` for a model from
``gensr niqe-fit``); it needs no GT: ``gensr eval --sr DIR --niqe`` scores every image of the folder.
``--lpips [alex|vgg]`` adds LPIPS v0.1 when weights are found (``--lpips-weights`` or $GENSR_LPIPS_WEIGHTS);
without any, one note line is printed and the other scores go on.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gensr.errors import GensrError

# gensr sample's output stems: <stem>_t<temperature, 2 decimals>_s<index, 3 digits> (see gensr.cli.sample)
_SAMPLE_STEM = re.compile(r"^(?P<base>.+)_t(?P<tau>\d+\.\d+)(?:_seed(?P<seed>\d+))?_s(?P<index>\d+)$")
_BASE_KEYS = ("psnr", "ssim", "lr_psnr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sr", required=True, metavar="DIR", help="folder of super-resolved images (or samples)")
    p.add_argument("--gt", metavar="DIR", help="folder of ground-truth HR images (optional with --niqe only)")
    p.add_argument("-s", "--scale", type=int, help="SR scale factor (GT is mod-cropped to it); needed with --gt")
    p.add_argument("--y", action="store_true", help="score BT.601 Y (MATLAB rgb2ycbcr) instead of RGB")
    p.add_argument(
        "--round-y",
        action="store_true",
        help="with --y: round Y to integers as MATLAB does on uint8 (default: float Y)",
    )
    p.add_argument("--crop-border", type=int, default=0, metavar="N", help="pixels shaved per side (default 0)")
    p.add_argument("--lr", metavar="DIR", help="folder of LR inputs for LR-PSNR (default: the GT downscaled)")
    p.add_argument("--sr-suffix", default="", metavar="SUFFIX", help="SR file stem = GT stem + SUFFIX (e.g. _x4)")
    p.add_argument("--niqe", action="store_true", help="add NIQE (no-reference; works without --gt)")
    p.add_argument("--niqe-params", metavar="FILE", help="NIQE model .npz from `gensr niqe-fit` (default: MATLAB's)")
    p.add_argument(
        "--lpips",
        nargs="?",
        const="alex",
        choices=("alex", "vgg"),
        metavar="alex|vgg",
        help="add LPIPS v0.1 (default net alex) when weights are available",
    )
    p.add_argument(
        "--lpips-weights", metavar="PATH", help="LPIPS weights folder or file (default $GENSR_LPIPS_WEIGHTS)"
    )
    p.add_argument("--per-sample", action="store_true", help="also list every sample of a sample set")
    p.add_argument("--json", metavar="FILE", help="also write per-image scores, means and settings as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


@dataclass
class _Item:
    """One row: a GT with one SR file, or with the samples of one temperature (``tau`` set)."""

    name: str
    gt: Path
    lr: Path | None
    files: list[Path]
    tau: str | None = None
    indices: list[int] = field(default_factory=list)


def _index(folder: Path, what: str) -> dict[str, list[Path]]:
    """stem -> image files in ``folder`` (one level, image extensions only)."""
    from gensr.io import IMAGE_EXTENSIONS

    if not folder.exists():
        raise GensrError(f"{folder}: {what} folder does not exist")
    if not folder.is_dir():
        raise GensrError(f"{folder}: {what} path is not a folder")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    index: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts:
            index.setdefault(f.stem, []).append(f)
    if not index:
        raise GensrError(f"{folder}: no images in the {what} folder")
    return index


def _split_samples(index: dict[str, list[Path]]) -> dict[str, dict[str, dict[int, Path]]]:
    """base stem -> tau text -> sample index -> file, for the stems named like ``gensr sample`` outputs."""
    samples: dict[str, dict[str, dict[int, Path]]] = {}
    for stem, files in index.items():
        m = _SAMPLE_STEM.match(stem)
        if m is None:
            continue
        if len(files) > 1:
            raise GensrError(f"{files[0].parent}: ambiguous sample '{stem}': {', '.join(f.name for f in files)}")
        group = samples.setdefault(m["base"], {}).setdefault(m["tau"], {})
        group[int(m["index"])] = files[0]
    return samples


def _candidates(stem: str, suffix: str, scale: int) -> list[str]:
    return list(dict.fromkeys(([stem + suffix] if suffix else []) + [stem, f"{stem}x{scale}"]))


def _match(stem: str, index: dict[str, list[Path]], suffix: str, scale: int) -> Path | None:
    for c in _candidates(stem, suffix, scale):
        files = index.get(c)
        if files:
            if len(files) > 1:
                raise GensrError(f"{files[0].parent}: ambiguous match for '{stem}': {', '.join(f.name for f in files)}")
            return files[0]
    return None


def _match_samples(
    stem: str, samples: dict[str, dict[str, dict[int, Path]]], suffix: str, scale: int
) -> dict[str, dict[int, Path]] | None:
    found = [c for c in _candidates(stem, suffix, scale) if c in samples]
    if len(found) > 1:
        raise GensrError(f"ambiguous samples for '{stem}': names start with both '{found[0]}_t' and '{found[1]}_t'")
    return samples[found[0]] if found else None


def _suffix_hint(stem: str, sr_index: dict[str, list[Path]]) -> str:
    """A ``--sr-suffix`` suggestion when SR names extend the GT stem (``baby_x4`` for ``baby``)."""
    longer = sorted(s for s in sr_index if s.startswith(stem) and s != stem)
    if not longer:
        return ""
    return f"; SR names look like '{longer[0]}': try --sr-suffix {longer[0][len(stem) :]}"


def _size(a) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _fmt(x: float | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def _json_number(x: Any):
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf"
    return x


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out[k] = _json_row(v)
        elif isinstance(v, list):
            out[k] = [_json_row(x) if isinstance(x, dict) else _json_number(x) for x in v]
        else:
            out[k] = _json_number(v)
    return out


def _check_options(args: argparse.Namespace) -> None:
    if args.gt is None:
        if not args.niqe:
            raise GensrError("--gt is required (without it only --niqe, a no-reference score, can be computed)")
        for flag, given in (
            ("--lr", args.lr),
            ("--y", args.y),
            ("--round-y", args.round_y),
            ("--crop-border", args.crop_border),
            ("--sr-suffix", args.sr_suffix),
            ("--lpips", args.lpips),
            ("--per-sample", args.per_sample),
        ):
            if given:
                raise GensrError(f"{flag} needs --gt (without a GT only --niqe can be computed)")
    elif args.scale is None:
        raise GensrError("--scale is required with --gt")
    if args.scale is not None and args.scale < 1:
        raise GensrError(f"--scale must be a positive integer, got {args.scale}")
    if args.crop_border < 0:
        raise GensrError(f"--crop-border must be >= 0, got {args.crop_border}")
    if args.round_y and not args.y:
        raise GensrError("--round-y only applies with --y")
    if args.niqe_params and not args.niqe:
        raise GensrError("--niqe-params only applies with --niqe")
    if args.lpips_weights and not args.lpips:
        raise GensrError("--lpips-weights only applies with --lpips")


def _load_metrics(args: argparse.Namespace) -> tuple[Any, Any]:
    """(NIQE params or None, LPIPS model or None); prints one note when LPIPS has no weights."""
    import os

    niqe_params = None
    if args.niqe:
        from gensr.metrics.niqe import load_niqe_params

        niqe_params = load_niqe_params(args.niqe_params)
    lpips_model = None
    if args.lpips:
        from gensr.metrics.lpips import WEIGHTS_ENV

        if not (args.lpips_weights or os.environ.get(WEIGHTS_ENV)):
            print(
                f"gensr: note: LPIPS skipped: no weights (set {WEIGHTS_ENV} or --lpips-weights; "
                "they are never downloaded)",
                file=sys.stderr,
            )
        else:
            from gensr.metrics.lpips import load_lpips

            lpips_model = load_lpips(args.lpips, args.lpips_weights)
    return niqe_params, lpips_model


def _items(args: argparse.Namespace) -> list[_Item]:
    """Every GT matched with its SR file or sample sets (and LR file); GensrError for a missing match."""
    scale = args.scale
    gt_index = _index(Path(args.gt), "GT")
    sr_index = _index(Path(args.sr), "SR")
    lr_index = _index(Path(args.lr), "LR") if args.lr else None
    samples = _split_samples(sr_index)
    singles = {s: f for s, f in sr_index.items() if _SAMPLE_STEM.match(s) is None}
    items = []
    for stem in sorted(gt_index):
        gt_files = gt_index[stem]
        if len(gt_files) > 1:
            raise GensrError(
                f"{args.gt}: several GT images share the name '{stem}': {', '.join(f.name for f in gt_files)}"
            )
        sr_file = _match(stem, singles, args.sr_suffix, scale)
        sets = _match_samples(stem, samples, args.sr_suffix, scale)
        if sr_file is None and sets is None:
            tried = ", ".join(_candidates(stem, args.sr_suffix, scale))
            raise GensrError(
                f"{gt_files[0]}: no matching SR image in {args.sr} (tried stems {tried}, and samples "
                f"<stem>_t<tau>_seed<n>_s<k>)" + _suffix_hint(stem, sr_index)
            )
        if sr_file is not None and sets is not None:
            raise GensrError(
                f"{sr_file}: ambiguous: '{stem}' has both this SR image and samples "
                f"({next(iter(next(iter(sets.values())).values())).name}, ...); put them in separate folders"
            )
        lr_file = None
        if lr_index is not None:
            lr_file = _match(stem, lr_index, args.sr_suffix, scale)
            if lr_file is None:
                raise GensrError(f"{gt_files[0]}: no matching LR image in {args.lr}")
        if sr_file is not None:
            items.append(_Item(stem, gt_files[0], lr_file, [sr_file]))
            continue
        for tau in sorted(sets, key=float):
            ks = sorted(sets[tau])
            items.append(_Item(stem, gt_files[0], lr_file, [sets[tau][k] for k in ks], tau, ks))
    return items


def _reference(item: _Item, scale: int, crop_border: int):
    """(mod-cropped GT, LR reference) of one item, with the size checks of its SR files' partner."""
    from gensr.imresize import modcrop
    from gensr.io import read_array
    from gensr.metrics.fidelity import lr_consistency_target

    gt = read_array(item.gt)
    gt_mc = modcrop(gt, scale)
    if gt_mc.shape[0] == 0 or gt_mc.shape[1] == 0:
        raise GensrError(f"{item.gt}: {_size(gt)} is smaller than the scale {scale}")
    if crop_border and (gt_mc.shape[0] <= 2 * crop_border + 10 or gt_mc.shape[1] <= 2 * crop_border + 10):
        raise GensrError(f"{item.gt}: {_size(gt_mc)} is too small for --crop-border {crop_border} and SSIM")
    if item.lr is None:
        return gt_mc, lr_consistency_target(gt_mc, scale)
    lr = read_array(item.lr)
    want = (gt_mc.shape[0] // scale, gt_mc.shape[1] // scale)
    if lr.shape[:2] != want:
        raise GensrError(f"{item.lr}: LR size {_size(lr)} is not the SR size / {scale} ({want[1]}x{want[0]})")
    return gt_mc, lr


def _read_sr(f: Path, gt_mc, gt_file: Path, scale: int):
    from gensr.io import read_array

    sr = read_array(f)
    if sr.shape[:2] != gt_mc.shape[:2]:
        raise GensrError(
            f"{f}: size {_size(sr)} does not match GT {gt_file.name} mod-cropped to x{scale} ({_size(gt_mc)})"
        )
    return sr


def _score_item(item: _Item, args: argparse.Namespace, niqe_params, lpips_model) -> dict[str, Any]:
    """The row of one item: its scores, or for a sample set the means, best sample and diversity."""
    from gensr.metrics.sr_scores import image_scores, sample_set_scores

    gt_mc, lr = _reference(item, args.scale, args.crop_border)
    srs = [_read_sr(f, gt_mc, item.gt, args.scale) for f in item.files]
    opts = dict(
        crop_border=args.crop_border,
        y_channel=args.y,
        round_y=args.round_y,
        niqe_params=niqe_params,
        with_niqe=args.niqe,
        lpips_model=lpips_model,
    )
    try:
        if item.tau is None:
            return {"name": item.name, **image_scores(srs[0], gt_mc, lr, args.scale, **opts)}
        res = sample_set_scores(srs, gt_mc, lr, args.scale, **opts)
    except ValueError as exc:
        raise GensrError(f"{item.files[0]}: {exc}") from None
    pos = res["best"]["index"]
    best = {"index": item.indices[pos], "file": item.files[pos].name}
    best.update((k, v) for k, v in res["best"].items() if k != "index")
    div_key = "diversity_lpips" if lpips_model is not None else "diversity_pixel"
    row = {"name": item.name, "tau": float(item.tau), "samples": len(srs), **res["mean"], "best": best,
           "pixel_std": res["pixel_std"], div_key: res[div_key]}  # fmt: skip
    if args.per_sample:
        row["per_sample"] = [
            {"index": k, "file": f.name, **r}
            for k, f, r in zip(item.indices, item.files, res["per_sample"], strict=True)
        ]
    return row


def _means(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    from gensr.metrics.sr_scores import mean_scores

    mean = mean_scores(rows, keys)
    sets = [r for r in rows if "tau" in r]
    if sets:
        mean["best_psnr"] = mean_scores([r["best"] for r in sets], ("psnr",)).get("psnr")
        for k in ("pixel_std", "diversity_lpips", "diversity_pixel"):
            vals = [r[k] for r in sets if r.get(k) is not None]
            if vals:
                mean[k] = sum(vals) / len(vals)
    return mean


def _print_table(rows: list[dict[str, Any]], mean: dict[str, Any], keys: tuple[str, ...], per_sample: bool) -> None:
    heads = {"psnr": "PSNR", "ssim": "SSIM", "lr_psnr": "LR-PSNR", "niqe": "NIQE", "lpips": "LPIPS"}
    digits = {"psnr": 4, "ssim": 4, "lr_psnr": 4, "niqe": 4, "lpips": 4}
    any_sets = any("tau" in r for r in rows)
    div = next((k for k in ("diversity_lpips", "diversity_pixel") if any(k in r for r in rows)), None)
    extra = [
        ("best", "best PSNR"),
        ("pixel_std", "std"),
        (div, "div (LPIPS)" if div == "diversity_lpips" else "div (pixel)"),
    ]

    def label(r: dict[str, Any]) -> str:
        return f"{r['name']} t{r['tau']:.2f} x{r['samples']}" if "tau" in r else r["name"]

    lines = [(label(r), r) for r in rows]
    if per_sample:
        lines = []
        for r in rows:
            lines.append((label(r), r))
            lines += [(f"  s{s['index']:03d}", s) for s in r.get("per_sample", [])]
    width = max(4, *(len(n) for n, _ in lines))
    head = f"{'name':<{width}}" + "".join(f"  {heads[k]:>8}" for k in keys)
    if any_sets:
        head += "".join(f"  {h:>11}" for _, h in extra)
    print(head)
    for name, r in lines + [("mean", mean)]:
        cells = "".join(f"  {_fmt(r.get(k), digits[k]):>8}" for k in keys)
        if any_sets:
            best = r["best"]["psnr"] if isinstance(r.get("best"), dict) else r.get("best_psnr")
            cells += f"  {_fmt(best, 4):>11}  {_fmt(r.get('pixel_std'), 3):>11}  {_fmt(r.get(div), 3):>11}"
        print(f"{name:<{width}}{cells}")


def _settings(args: argparse.Namespace, lpips_model) -> dict[str, Any]:
    s: dict[str, Any] = {
        "sr": str(args.sr),
        "gt": str(args.gt),
        "lr": str(args.lr) if args.lr else None,
        "scale": args.scale,
        "y_channel": bool(args.y),
        "round_y": bool(args.round_y),
        "crop_border": args.crop_border,
        "sr_suffix": args.sr_suffix,
        "gt_modcrop": args.scale,
        "ssim": "MATLAB-style: 11x11 Gaussian sigma 1.5, valid, no downsampling, channel mean",
        "lr_psnr": "RGB, whole image, MATLAB bicubic downscale of SR vs "
        + ("the --lr images" if args.lr else "the mod-cropped GT downscaled the same way"),
        "inf": 'PSNR of identical images is written as the string "inf"',
    }
    if args.niqe:
        s["niqe"] = {"params": args.niqe_params or "MATLAB default model (shipped)", "convert": "BT.601 Y"}
    if args.lpips:
        s["lpips"] = {"net": args.lpips, "computed": lpips_model is not None}
    s["samples"] = (
        "files <stem>_t<tau>_seed<n>_s<k>: one row per GT and tau with the mean over samples, the best sample by PSNR, "
        "pixel_std (grey levels) and the NTIRE 2021 diversity (diversity_lpips with LPIPS, else diversity_pixel)"
    )
    return s


def _run_no_gt(args: argparse.Namespace, niqe_params) -> int:
    """``--niqe`` without ``--gt``: NIQE of every image of the SR folder."""
    from gensr.fileutil import OutputPolicy, write_json_atomic
    from gensr.io import read_array
    from gensr.metrics.niqe import niqe

    index = _index(Path(args.sr), "SR")
    files = [(stem if len(fs) == 1 else f.name, f) for stem, fs in sorted(index.items()) for f in fs]
    if args.json:
        OutputPolicy([f for _, f in files], overwrite=args.overwrite).claim(args.json)
    rows = []
    for name, f in files:
        try:
            rows.append({"name": name, "file": f.name, "niqe": niqe(read_array(f), niqe_params)})
        except ValueError as exc:
            raise GensrError(f"{f}: NIQE: {exc}") from None
    mean = _means(rows, ("niqe",))
    print("NIQE (no reference; lower is better), BT.601 Y")
    _print_table(rows, mean, ("niqe",), False)
    if args.json:
        doc = {
            "images": [_json_row(r) for r in rows],
            "mean": _json_row(mean),
            "settings": {"sr": str(args.sr), "gt": None, "niqe": args.niqe_params or "MATLAB default model (shipped)"},
        }
        write_json_atomic(args.json, doc, overwrite=args.overwrite)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, write_json_atomic

    _check_options(args)
    if args.gt is None:
        niqe_params, _ = _load_metrics(args)
        return _run_no_gt(args, niqe_params)
    items = _items(args)
    if args.json:  # checked before any work: never replaces an input or an existing file without --overwrite
        inputs = [f for it in items for f in (it.gt, it.lr, *it.files) if f is not None]
        OutputPolicy(inputs, overwrite=args.overwrite).claim(args.json)
    niqe_params, lpips_model = _load_metrics(args)
    keys = _BASE_KEYS + (("niqe",) if args.niqe else ()) + (("lpips",) if lpips_model is not None else ())
    rows = [_score_item(it, args, niqe_params, lpips_model) for it in items]
    mean = _means(rows, keys)

    channel = ("Y (rounded)" if args.round_y else "Y") if args.y else "RGB"
    print(
        f"x{args.scale}, {channel}, crop border {args.crop_border}; LR-PSNR: RGB vs "
        f"{'--lr images' if args.lr else 'GT downscaled'}"
    )
    _print_table(rows, mean, keys, args.per_sample)

    if args.json:
        doc = {
            "images": [_json_row(r) for r in rows],
            "mean": _json_row(mean),
            "settings": _settings(args, lpips_model),
        }
        taus = sorted({r["tau"] for r in rows if "tau" in r})
        if len(taus) > 1:
            doc["mean_by_tau"] = {
                f"{t:.2f}": _json_row(_means([r for r in rows if r.get("tau") == t], keys)) for t in taus
            }
        write_json_atomic(args.json, doc, overwrite=args.overwrite)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
