"""The GAN-vs-flow comparison behind ``gensr compare``: every model on a folder of HR images, one report.

Inputs: ``DATA_DIR/HR`` (ground truth) and optionally ``DATA_DIR/LR`` (names ``<stem>`` or ``<stem>x<scale>``,
one LR per HR and no other); without ``LR/`` each LR is the MATLAB-exact bicubic ``imresize(modcrop(HR), 1/s)``
(uint8). The HR is mod-cropped (top-left) to the scale. Gray images run as RGB and are averaged back to gray,
as ``gensr upscale`` does; 16-bit images are brought to 8 bits.

Settings (one row of the report each; all outputs clamped and rounded to uint8 before scoring):

* ``hr``: the GT itself (NIQE and bits/dim only: the reference the models are measured against);
* every model of ``models``: ``bicubic`` (MATLAB ``imresize(lr, s)``), an SR network (kind ``sr``), or for a
  flow (kind ``flow-sr``) one row per temperature ``tau`` of ``taus``: tau 0 is the deterministic mean (one
  output), tau > 0 draws ``samples`` samples with ``seed`` (the same seed for every image and tau, so sample i
  is exactly what ``gensr sample --seed SEED -t TAU`` writes);
* the network interpolation ``(1 - alpha) * A + alpha * B`` of the pair ``interp`` (PSNR model A, GAN B, both
  in ``models``) for every ``alpha`` strictly between 0 and 1 (alpha 0 and 1 are A and B themselves).

Scores per image (:mod:`gensr.metrics.sr_scores`): Y-PSNR and SSIM (BT.601 float Y, ``scale`` pixels shaved per
side), LR-PSNR (RGB, the SR downscaled by MATLAB bicubic against the LR), NIQE (MATLAB-exact, BT.601 Y; images
smaller than one NIQE block have none), LPIPS when weights are given, and ``bpd``: bits/dim of the output under
the first flow of ``models`` given the LR (:func:`gensr.inference.latent.score_image`, one dequantisation draw
with ``seed``; for a sample set, of its first sample). A sample set reports the mean of every score over its
samples, the best sample by Y-PSNR, ``pixel_std`` and the NTIRE diversity (``diversity_lpips`` with LPIPS,
else ``diversity_pixel``). Means are over the images (images without a score, e.g. no NIQE, are left out).

Cache: every (image, setting) result is a JSON file under ``REPORT_DIR/.cache`` (with the outputs the crops
need, as PNG / .npy), written atomically and keyed by everything that determines it (file hashes of the image,
models, NIQE model, the settings, the device type, :data:`CACHE_VERSION` and a hash of the gensr sources that
compute it, :func:`code_fingerprint`): a run that was stopped continues where it stopped, and
the report it writes is the same as an uninterrupted run's. Stale entries are never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gensr.errors import GensrError

__all__ = [
    "CACHE_DIR",
    "CACHE_VERSION",
    "DEFAULT_ALPHAS",
    "DEFAULT_MODELS",
    "DEFAULT_TAUS",
    "FORMAT",
    "MAX_TAU",
    "CompareOptions",
    "Comparison",
    "parse_float_list",
]

FORMAT = "gensr-compare-1"
CACHE_VERSION = 1
CACHE_DIR = ".cache"
DEFAULT_MODELS = ("bicubic", "default", "esrgan", "srflow")
DEFAULT_INTERP = ("default", "esrgan")
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_TAUS = (0.0, 0.5, 0.7, 0.9)
DEFAULT_SAMPLES = 10
DEFAULT_CROPS = 4
MAX_TAU = 2.0  # above 1 the flow is sampled hotter than its prior; beyond 2 its inverse breaks down
DISPLAY_SAMPLES = 3
SR_KINDS = ("sr", "flow-sr")


@dataclass(frozen=True)
class CompareOptions:
    """What ``gensr compare`` was asked (see the module docstring). ``alphas`` None = :data:`DEFAULT_ALPHAS`
    when both models of ``interp`` are in ``models``, else no sweep; ``()`` = no sweep."""

    data_dir: Path
    scale: int
    models: tuple[str, ...] = DEFAULT_MODELS
    alphas: tuple[float, ...] | None = None
    interp: tuple[str, str] = DEFAULT_INTERP
    taus: tuple[float, ...] = DEFAULT_TAUS
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    niqe_params: str | None = None
    lpips_weights: str | None = None
    lpips_net: str = "alex"
    crops: int = DEFAULT_CROPS
    device: str | None = None
    batch_size: int = 4


@dataclass
class ImageInput:
    """One test image: mod-cropped HR and its LR, uint8 (H, W, C), C = 1 or 3."""

    name: str
    hr_path: Path
    lr_path: Path | None
    hr: np.ndarray
    lr: np.ndarray
    sha256: str


@dataclass
class ModelInput:
    label: str
    source: str
    kind: str  # bicubic | sr | flow-sr
    path: Path | None = None
    sha256: str | None = None
    net: Any = None


@dataclass(frozen=True)
class Setting:
    """One row of the report."""

    id: str
    label: str
    model: str
    kind: str  # reference | sr | flow | interp
    alpha: float | None = None
    tau: float | None = None
    samples: int = 1
    display: bool = False  # outputs kept for the crops

    @property
    def stochastic(self) -> bool:
        return self.kind == "flow" and self.samples > 1


# -------------------------------------------------------------------------------------------- options


def parse_float_list(text: str, flag: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); ``""`` or ``"none"`` -> (); GensrError naming ``flag`` otherwise."""
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise GensrError(f"{flag}: {part.strip()!r} is not a number (expected a comma-separated list)") from None
        if not math.isfinite(v):
            raise GensrError(f"{flag}: {part.strip()} is not a finite number")
        out.append(v)
    return tuple(out)


def _check_options(o: CompareOptions) -> None:
    if o.scale < 1:
        raise GensrError(f"--scale must be a positive integer, got {o.scale}")
    if o.samples < 1:
        raise GensrError(f"--samples must be >= 1, got {o.samples}")
    if o.seed < 0:
        raise GensrError(f"--seed must be >= 0, got {o.seed}")
    if o.crops < 0:
        raise GensrError(f"--crops must be >= 0, got {o.crops}")
    if o.batch_size < 1:
        raise GensrError(f"--batch-size must be >= 1, got {o.batch_size}")
    if not o.models:
        raise GensrError("--models: no model given")
    for a in o.alphas or ():
        if not 0.0 <= a <= 1.0:
            raise GensrError(f"--alphas: {a:g} is outside [0, 1] (0 = {o.interp[0]}, 1 = {o.interp[1]})")
    for t in o.taus:
        if not 0.0 <= t <= MAX_TAU:
            raise GensrError(f"--taus: {t:g} is outside [0, {MAX_TAU:g}] (0 = the flow's mean, 0.9 its default)")


def code_fingerprint() -> str:
    """sha256 (16 hex digits) of the gensr sources that decide a result (models, layers, inference, metrics, io,
    resize, checkpoints, this module): a cache entry made by other code is never reused."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    files = [root / "imresize.py", Path(__file__).resolve()]
    for sub in ("models", "nn", "inference", "metrics", "io", "checkpoints"):
        files += sorted((root / sub).glob("*.py"))
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- inputs


def _image_files(folder: Path) -> dict[str, Path]:
    from gensr.io import IMAGE_EXTENSIONS

    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS:
            if f.stem in files:
                raise GensrError(f"{folder}: two images are named '{f.stem}': {files[f.stem].name}, {f.name}")
            files[f.stem] = f
    if not files:
        raise GensrError(f"{folder}: no images in the folder")
    return files


def _pair_lr(hr: dict[str, Path], lr_dir: Path, scale: int) -> dict[str, Path]:
    """HR stem -> LR file (``<stem>`` or ``<stem>x<scale>``); one GensrError line for any mismatch."""
    lr = _image_files(lr_dir)
    pairs, used = {}, set()
    for stem in hr:
        hits = [c for c in (stem, f"{stem}x{scale}") if c in lr]
        if len(hits) > 1:
            raise GensrError(f"{lr_dir}: both {lr[hits[0]].name} and {lr[hits[1]].name} match HR '{stem}'")
        if hits:
            pairs[stem] = lr[hits[0]]
            used.add(hits[0])
    no_lr = [s for s in hr if s not in pairs]
    no_hr = [s for s in lr if s not in used]
    if no_lr or no_hr:
        parts = ([f"no LR for HR {', '.join(no_lr[:5])}"] if no_lr else []) + (
            [f"no HR for LR {', '.join(no_hr[:5])}"] if no_hr else []
        )
        raise GensrError(
            f"{lr_dir}: HR and LR names do not match ({'; '.join(parts)}; LR names: <stem> or <stem>x{scale})"
        )
    return pairs


def load_images(data_dir: Path, scale: int) -> list[ImageInput]:
    """The images of ``data_dir`` (HR/, optional LR/), read and checked (sizes, names) before any work."""
    from gensr.imresize import imresize, modcrop
    from gensr.io import read_array, rescale_pixels

    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise GensrError(f"{data_dir}: no such folder (DATA_DIR must hold HR/ and optionally LR/)")
    hr_dir, lr_dir = data_dir / "HR", data_dir / "LR"
    if not hr_dir.is_dir():
        raise GensrError(f"{data_dir}: no HR/ folder (DATA_DIR must hold HR/ with the ground truth, optionally LR/)")
    hr_files = _image_files(hr_dir)
    lr_files = _pair_lr(hr_files, lr_dir, scale) if lr_dir.is_dir() else {}
    images = []
    for stem, f in hr_files.items():
        hr = modcrop(rescale_pixels(read_array(f), 8), scale)
        if hr.shape[0] < scale or hr.shape[1] < scale or hr.shape[0] < 11 + 2 * scale or hr.shape[1] < 11 + 2 * scale:
            raise GensrError(f"{f}: {hr.shape[1]}x{hr.shape[0]} after the mod-crop is too small for x{scale} and SSIM")
        lr_path = lr_files.get(stem)
        if lr_path is None:
            lr = imresize(hr, 1.0 / scale)
        else:
            lr = rescale_pixels(read_array(lr_path), 8)
            want = (hr.shape[0] // scale, hr.shape[1] // scale, hr.shape[2])
            if lr.shape != want:
                raise GensrError(
                    f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]}x{lr.shape[2]}, expected {want[1]}x{want[0]}x"
                    f"{want[2]} (HR {f.name} mod-cropped to x{scale}, divided by {scale})"
                )
        sha = _sha256(f) + ("" if lr_path is None else "+" + _sha256(lr_path))
        images.append(ImageInput(stem, f, lr_path, hr, lr, sha))
    return images


def model_kind(net: Any) -> str | None:
    """The kind a network declares (``net.kind``: sr, flow-sr, generator, ...); None when it declares none."""
    kind = getattr(net, "kind", None)
    return None if kind is None else str(kind)


def load_models(names: Sequence[str], scale: int) -> list[ModelInput]:
    """Load every model of ``--models`` and check its kind and scale (before any work)."""
    from gensr.checkpoints.loader import load_model
    from gensr.checkpoints.shipped import SHIPPED, resolve_model_path
    from gensr.inference.upscale import model_scale

    models: list[ModelInput] = []
    for name in names:
        if name == "bicubic":
            models.append(ModelInput("bicubic", "bicubic", "bicubic"))
            continue
        path = resolve_model_path(name)
        net = load_model(name)
        kind = model_kind(net)
        if kind not in SR_KINDS:
            raise GensrError(
                f"{name}: is a {type(net).__name__} (kind {kind or 'unknown'}), not an SR model; "
                "gensr compare takes SR models of kind sr or flow-sr"
            )
        declared = model_scale(net)
        if declared != scale:
            raise GensrError(f"{name}: an x{declared} model, but --scale is {scale}")
        label = name if name in SHIPPED else path.stem
        models.append(ModelInput(label, name, kind, path, _sha256(path), net))
    labels = [m.label for m in models]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise GensrError(f"--models: '{dupes[0]}' is given twice (model labels must be unique)")
    return models


def _find(models: list[ModelInput], name: str) -> ModelInput | None:
    return next((m for m in models if name in (m.label, m.source)), None)


def _interp_pair(o: CompareOptions, models: list[ModelInput]) -> tuple[ModelInput, ModelInput] | None:
    """The (A, B) models of the alpha sweep, or None when there is no sweep."""
    a, b = (_find(models, n) for n in o.interp)
    if o.alphas == ():
        return None
    if a is None or b is None:
        if o.alphas is None:
            return None
        missing = o.interp[0] if a is None else o.interp[1]
        raise GensrError(f"--alphas: the interpolation pair needs '{missing}' in --models (see --interp)")
    for m in (a, b):
        if m.kind != "sr":
            raise GensrError(f"--interp: {m.source} is not an SR network (kind {m.kind}); both must be RRDB-type nets")
    from gensr.models.registry import arch_of, model_config_dict

    if arch_of(a.net) != arch_of(b.net) or model_config_dict(a.net) != model_config_dict(b.net):
        raise GensrError(f"--interp: {a.source} and {b.source} differ in architecture or config; cannot blend them")
    return a, b


def plan_settings(o: CompareOptions, models: list[ModelInput]) -> tuple[list[Setting], dict[str, Any]]:
    """The report's rows, and the sweeps: ``alpha`` (pair and [alpha, setting id]) and ``tau`` per flow."""
    settings = [Setting("hr", "HR (ground truth)", "", "reference")]
    flows = [m for m in models if m.kind == "flow-sr"]
    taus = sorted(set(o.taus))
    display_tau = _display_tau(flows[0], taus) if flows else None
    sweeps: dict[str, Any] = {"alpha": None, "tau": {}, "display_tau": display_tau}
    for m in models:
        if m.kind != "flow-sr":
            settings.append(Setting(m.label, m.label, m.label, "sr", display=True))
            continue
        points = []
        for t in taus:
            show = m is flows[0] and (t == 0 or t == display_tau)
            st = Setting(f"{m.label}@tau={t:.2f}", f"{m.label} tau {t:.2f}", m.label, "flow", tau=t,
                         samples=1 if t == 0 else o.samples, display=show)  # fmt: skip
            settings.append(st)
            points.append({"tau": t, "id": st.id})
        sweeps["tau"][m.label] = points
    pair = _interp_pair(o, models)
    if pair is not None:
        a, b = pair
        points = []
        for alpha in sorted(set(o.alphas if o.alphas is not None else DEFAULT_ALPHAS)):
            if alpha in (0.0, 1.0):
                points.append({"alpha": alpha, "id": (a if alpha == 0.0 else b).label})
                continue
            st = Setting(f"{a.label}~{b.label}@alpha={alpha:.2f}", f"{a.label}/{b.label} alpha {alpha:.2f}", "",
                         "interp", alpha=alpha)  # fmt: skip
            settings.append(st)
            points.append({"alpha": alpha, "id": st.id})
        sweeps["alpha"] = {"pair": [a.label, b.label], "points": points}
    return settings, sweeps


def _display_tau(flow: ModelInput, taus: list[float]) -> float | None:
    """The temperature whose samples the crops show: the model's default if listed, else the largest in (0, 1]."""
    hot = [t for t in taus if t > 0]
    heat = float(getattr(getattr(flow.net, "config", None), "heat", 0.9))
    if heat in hot:
        return heat
    inside = [t for t in hot if t <= 1.0]
    return max(inside) if inside else (min(hot) if hot else None)


# ---------------------------------------------------------------------------------------------- JSON


def _jsonable(x: Any) -> Any:
    """NaN -> None, inf -> "inf", numpy scalars -> Python, tuples -> lists, recursively."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def _num(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, str):
        return math.inf if x == "inf" else -math.inf
    return float(x)


def mean_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over images of the scores of one setting (JSON values; None entries left out)."""
    out: dict[str, Any] = {}
    keys = ["psnr", "ssim", "lr_psnr", "niqe", "lpips", "bpd", "pixel_std", "diversity_lpips", "diversity_pixel"]
    for k in keys + ["best_psnr"]:
        vals = [_num(r["best"]["psnr"] if k == "best_psnr" else r.get(k)) for r in rows if k in r or
                (k == "best_psnr" and "best" in r)]  # fmt: skip
        vals = [v for v in vals if v is not None]
        if vals:
            out[k] = _jsonable(float(np.mean(vals)))
            if len(vals) < len(rows):
                out[f"{k}_images"] = len(vals)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


# ------------------------------------------------------------------------------------------ comparison


@dataclass
class CompareResult:
    """What the renderers need: the report document, the crops' tiles and their column labels."""

    doc: dict[str, Any]
    tiles: list[list[np.ndarray]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    computed: int = 0
    cached: int = 0


class Comparison:
    """Everything ``gensr compare`` computes; inputs are read and checked in the constructor."""

    def __init__(self, options: CompareOptions, report_dir: Path) -> None:
        _check_options(options)
        self.o = options
        self.cache = Path(report_dir) / CACHE_DIR
        self.images = load_images(options.data_dir, options.scale)
        self.models = load_models(options.models, options.scale)
        self.settings, self.sweeps = plan_settings(options, self.models)
        self.notes: list[str] = []
        self._load_metrics()
        from gensr.inference.precision import resolve_device

        self.device = resolve_device(options.device)
        flows = [m for m in self.models if m.kind == "flow-sr"]
        self.score_model = flows[0] if flows else None
        if self.score_model is None:
            self.notes.append("bits/dim not computed: no flow (kind flow-sr) in --models")
        if not flows and self.o.taus != DEFAULT_TAUS:
            self.notes.append("--taus ignored: no flow in --models")
        self._engines: dict[str, Any] = {}
        self.computed = self.cached = 0
        self.code = code_fingerprint()

    def _load_metrics(self) -> None:
        import os

        from gensr.metrics.lpips import WEIGHTS_ENV
        from gensr.metrics.niqe import load_niqe_params

        self.niqe_params = load_niqe_params(self.o.niqe_params)
        self.niqe_key = "shipped" if self.o.niqe_params is None else _sha256(Path(self.o.niqe_params).expanduser())
        self.lpips = None
        self.lpips_key = None
        if self.o.lpips_weights or os.environ.get(WEIGHTS_ENV):
            from gensr.metrics.lpips import load_lpips, resolve_lpips_files

            files = resolve_lpips_files(self.o.lpips_net, self.o.lpips_weights)
            self.lpips = load_lpips(self.o.lpips_net, self.o.lpips_weights)
            self.lpips_key = [self.o.lpips_net] + [f"{p.name}:{p.stat().st_size}" for p in files]
        else:
            self.notes.append(
                f"LPIPS not computed: no weights (set {WEIGHTS_ENV} or --lpips-weights); the NTIRE diversity is "
                "reported as diversity_pixel (squared-error maps), not the challenge's LPIPS score"
            )
        block = self.niqe_params.block_size
        small = [im.name for im in self.images if min(im.hr.shape[:2]) < block]
        if small:
            self.notes.append(f"NIQE undefined (smaller than one {block}x{block} block) for: {', '.join(small)}")

    def input_files(self) -> list[Path]:
        """Every file the comparison reads (for the output policy)."""
        files = [im.hr_path for im in self.images] + [im.lr_path for im in self.images if im.lr_path]
        files += [m.path for m in self.models if m.path is not None]
        return files + ([Path(self.o.niqe_params).expanduser()] if self.o.niqe_params else [])

    # ---------------------------------------------------------------------------------------- engines

    def _engine(self, st: Setting) -> Any:
        """The Upscaler / FlowSampler of a setting, built once."""
        key = st.model or st.id
        if key in self._engines:
            return self._engines[key]
        from gensr.inference.flow_sampling import FlowSampler
        from gensr.inference.upscale import Upscaler

        dev, note = self.device, (lambda msg: None)
        if st.kind == "interp":
            eng = Upscaler(self._blend(st.alpha), device=dev, precision="fp32", note=note)
        elif st.kind == "flow":
            eng = FlowSampler(_find(self.models, st.model).net, device=dev, batch_size=self.o.batch_size)
        elif st.model == "bicubic":
            eng = Upscaler("bicubic", scale=self.o.scale, note=note)
        else:
            eng = Upscaler(_find(self.models, st.model).net, device=dev, precision="fp32", note=note)
        self._engines[key] = eng
        return eng

    def _blend(self, alpha: float) -> Any:
        import copy

        from gensr.checkpoints.loader import load_state_dict_strict
        from gensr.inference.interpolation import interpolate_state_dicts

        a, b = (_find(self.models, n) for n in self.sweeps["alpha"]["pair"])
        sd_a = {k: v.detach().cpu().contiguous() for k, v in a.net.state_dict().items()}
        sd_b = {k: v.detach().cpu().contiguous() for k, v in b.net.state_dict().items()}
        net = copy.deepcopy(a.net).cpu()
        load_state_dict_strict(net, interpolate_state_dicts(sd_a, sd_b, alpha, (a.source, b.source)), "interpolation")
        return net.eval()

    # ---------------------------------------------------------------------------------------- compute

    def _outputs(self, st: Setting, im: ImageInput) -> list[np.ndarray]:
        """uint8 (H, W, C) outputs of a setting for one image: one, or the samples (gray averaged back)."""
        from gensr.io import pixels_to_tensor, tensor_to_pixels

        x = pixels_to_tensor(im.lr)
        eng = self._engine(st)
        if st.kind == "flow":
            out = eng.sample(x, temperature=st.tau, num_samples=st.samples, seed=self.o.seed)
            if im.lr.shape[2] == 1:
                out = out.mean(dim=1, keepdim=True)
            return [tensor_to_pixels(o) for o in out]
        return [tensor_to_pixels(eng.run(x))]

    def _bpd(self, out: np.ndarray, im: ImageInput) -> float | None:
        """Bits/dim of ``out`` given the LR under the first flow of ``--models`` (None without a flow)."""
        if self.score_model is None:
            return None
        from gensr.inference.latent import score_image
        from gensr.io import pixels_to_tensor
        from gensr.metrics.sr_scores import rgb

        net = self._engine(Setting("", "", self.score_model.label, "flow")).model
        res = score_image(pixels_to_tensor(rgb(out)), pixels_to_tensor(rgb(im.lr)), net, seed=self.o.seed)
        return res["bpd"]

    def _compute(self, st: Setting, im: ImageInput) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(scores, artifacts to cache: suffix -> array) of one setting on one image."""
        from gensr.metrics.niqe import niqe
        from gensr.metrics.sr_scores import image_scores, sample_set_scores

        s = self.o.scale
        with_niqe = min(im.hr.shape[:2]) >= self.niqe_params.block_size
        kw = dict(crop_border=s, y_channel=True, niqe_params=self.niqe_params, with_niqe=with_niqe,
                  lpips_model=self.lpips)  # fmt: skip
        if st.kind == "reference":
            res: dict[str, Any] = {"niqe": niqe(im.hr, self.niqe_params)} if with_niqe else {}
            outs = [im.hr]
        else:
            try:
                outs = self._outputs(st, im)
            except GensrError as exc:  # a model failure (e.g. a flow sample that stays broken): recorded, not fatal
                if st.kind != "flow":
                    raise
                return {"failed": str(exc)}, {}
            try:
                if st.stochastic:
                    r = sample_set_scores(outs, im.hr, im.lr, s, **kw)
                    div = "diversity_lpips" if self.lpips is not None else "diversity_pixel"
                    res = {**r["mean"], "num_samples": r["num_samples"], "best": r["best"],
                           "pixel_std": r["pixel_std"], div: r[div], "per_sample": r["per_sample"]}  # fmt: skip
                else:
                    res = image_scores(outs[0], im.hr, im.lr, s, **kw)
            except ValueError as exc:
                raise GensrError(f"{im.hr_path}: {st.label}: {exc}") from None
        bpd = self._bpd(outs[0], im)
        if bpd is not None:
            res["bpd"] = bpd
        artifacts: dict[str, np.ndarray] = {}
        if st.display and st.stochastic:
            for i, o in enumerate(outs[:DISPLAY_SAMPLES]):
                artifacts[f".s{i}.png"] = o
            artifacts[".std.npy"] = np.stack(outs).astype(np.float64).std(axis=0).mean(axis=2).astype(np.float32)
        elif st.display:
            artifacts[".out.png"] = outs[0]
        return res, artifacts

    # ------------------------------------------------------------------------------------------ cache

    def _key(self, st: Setting, im: ImageInput) -> dict[str, Any]:
        m = _find(self.models, st.model) if st.model else None
        pair = self.sweeps["alpha"]["pair"] if st.kind == "interp" else []
        return _jsonable({
            "v": CACHE_VERSION, "code": self.code, "image": im.name, "image_sha256": im.sha256, "scale": self.o.scale,
            "setting": st.id, "kind": st.kind, "model_sha256": m.sha256 if m else None,
            "pair_sha256": [_find(self.models, n).sha256 for n in pair], "alpha": st.alpha, "tau": st.tau,
            "samples": st.samples, "seed": self.o.seed, "niqe": self.niqe_key, "lpips": self.lpips_key,
            "score_model": self.score_model.sha256 if self.score_model else None, "device": self.device.type,
        })  # fmt: skip

    def _base(self, st: Setting, im: ImageInput) -> tuple[Path, dict[str, Any]]:
        key = self._key(st, im)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache / f"{_slug(im.name)}__{_slug(st.id)}__{digest}", key

    def _read_cache(self, base: Path, key: dict[str, Any], st: Setting) -> dict[str, Any] | None:
        f = base.with_name(base.name + ".json")
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or "result" not in doc:
            return None
        needed = [".s0.png", ".std.npy"] if st.stochastic else [".out.png"]
        if (
            st.display
            and "failed" not in doc["result"]
            and not all(base.with_name(base.name + x).is_file() for x in needed)
        ):
            return None
        return doc["result"]

    def _write_artifact(self, base: Path, suffix: str, arr: np.ndarray) -> None:
        from gensr.fileutil import write_bytes_atomic
        from gensr.io import write_image

        path = base.with_name(base.name + suffix)
        if suffix.endswith(".png"):
            write_image(path, arr, overwrite=True)
        else:
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            write_bytes_atomic(path, buf.getvalue(), overwrite=True)

    def _artifact(self, st: Setting, im: ImageInput, suffix: str) -> np.ndarray:
        from gensr.io import read_array

        base, _ = self._base(st, im)
        path = base.with_name(base.name + suffix)
        if suffix.endswith(".png"):
            return read_array(path)
        with open(path, "rb") as f:
            return np.load(f, allow_pickle=False)

    def item(self, st: Setting, im: ImageInput) -> dict[str, Any]:
        """The scores of one setting on one image, from the cache when a valid entry exists."""
        from gensr.fileutil import write_json_atomic

        base, key = self._base(st, im)
        hit = self._read_cache(base, key, st)
        if hit is not None:
            self.cached += 1
            return hit
        res, artifacts = self._compute(st, im)
        for suffix, arr in artifacts.items():
            self._write_artifact(base, suffix, arr)
        res = json.loads(json.dumps(_jsonable(res), allow_nan=False))
        doc = {"key": key, "artifacts": sorted(artifacts), "result": res}
        write_json_atomic(base.with_name(base.name + ".json"), doc, overwrite=True)
        self.computed += 1
        return res

    # ----------------------------------------------------------------------------------------- report

    def run(self, progress: Callable[[int, int, str], None] | None = None) -> CompareResult:
        """Compute (or read from the cache) every (image, setting), then the report document and crops."""
        from gensr.fileutil import ensure_writable_dir

        ensure_writable_dir(self.cache)
        results: dict[tuple[str, str], dict[str, Any]] = {}
        total, done = len(self.images) * len(self.settings), 0
        for im in self.images:
            for st in self.settings:
                results[(im.name, st.id)] = self.item(st, im)
                done += 1
                if progress is not None:
                    progress(done, total, f"{im.name}: {st.label}")
        self._results = results
        doc = self._document(results)
        crops, tiles, columns = self._crops()
        doc["crops"] = {"columns": columns, "windows": crops, "measure": self._crop_measure()}
        return CompareResult(doc, tiles, columns, self.computed, self.cached)

    def _document(self, results: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        rows = []
        for st in self.settings:
            per = {im.name: results[(im.name, st.id)] for im in self.images}
            rows.append({
                "id": st.id, "label": st.label, "kind": st.kind, "model": st.model or None, "alpha": st.alpha,
                "tau": st.tau, "samples": st.samples, "mean": mean_row(list(per.values())), "per_image": per,
            })  # fmt: skip
        images = [
            {"name": im.name, "hr": str(im.hr_path), "lr": str(im.lr_path) if im.lr_path else None,
             "width": int(im.hr.shape[1]), "height": int(im.hr.shape[0]), "channels": int(im.hr.shape[2])}
            for im in self.images
        ]  # fmt: skip
        failed = [f"{r['label']} failed on {name} (left out of its means): {v['failed']}"
                  for r in rows for name, v in r["per_image"].items() if "failed" in v]  # fmt: skip
        return _jsonable({
            "format": FORMAT, "settings": self._settings_doc(), "images": images, "rows": rows,
            "sweeps": self.sweeps, "notes": self.notes + failed,
        })  # fmt: skip

    def _settings_doc(self) -> dict[str, Any]:
        o = self.o
        return {
            "data_dir": str(Path(o.data_dir).expanduser()),
            "scale": o.scale,
            "models": [{"label": m.label, "source": m.source, "kind": m.kind, "sha256": m.sha256} for m in self.models],
            "taus": sorted(set(o.taus)) if any(m.kind == "flow-sr" for m in self.models) else [],
            "samples": o.samples,
            "seed": o.seed,
            "lr": "DATA_DIR/LR" if any(im.lr_path for im in self.images) else "MATLAB bicubic of the mod-cropped HR",
            "niqe": {"params": o.niqe_params or "MATLAB default model (shipped)", "sha256": self.niqe_key},
            "lpips": {"net": o.lpips_net, "computed": self.lpips is not None},
            "score_model": self.score_model.label if self.score_model else None,
            "device": self.device.type,
            "code": self.code,
            "conventions": {
                "psnr": f"BT.601 Y (float), {o.scale} px shaved per side; outputs rounded to uint8",
                "ssim": "MATLAB-style on the same Y: 11x11 Gaussian sigma 1.5, valid",
                "lr_psnr": "RGB, whole image: MATLAB bicubic downscale of the output vs the LR",
                "niqe": "MATLAB niqe on BT.601 Y (lower = more natural)",
                "bpd": "bits/dim under the score model given the LR, one dequantisation draw (seed); "
                "sample sets: of sample 0",
                "samples": "mean of each score over the samples; best = highest Y-PSNR; pixel_std in grey levels",
            },
        }

    def _crop_measure(self) -> str:
        return (
            "mean over the window of |GAN - flow mean| (grey levels, mean over channels) + the flow samples' "
            "per-pixel std; without those, the std across the outputs shown"
        )

    def _crops(self) -> tuple[list[dict[str, Any]], list[list[np.ndarray]], list[str]]:
        """The crop windows, their tiles (one list per crop, in column order) and the column labels."""
        from gensr.reports.crops import CROP_LR, STD_GAIN, choose_crops, score_map, spread_map, std_tile, tile

        if self.o.crops == 0:
            return [], [], []
        det = [st for st in self.settings if st.kind == "sr" and st.display]
        flow_shown = [st for st in self.settings if st.kind == "flow" and st.display]
        mean_st = next((st for st in flow_shown if not st.stochastic), None)
        samp_st = next((st for st in flow_shown if st.stochastic), None)
        pair = self.sweeps["alpha"]["pair"] if self.sweeps["alpha"] else None
        gan = next((st for st in det if pair and st.model == pair[1]), None)
        if gan is None:
            gan = next((st for st in reversed(det) if st.model != "bicubic"), None)
        n_samples = min(samp_st.samples, DISPLAY_SAMPLES) if samp_st else 0
        columns = [st.label for st in det] + ([mean_st.label + " (mean)"] if mean_st else [])
        columns += [f"{samp_st.label} sample {i}" for i in range(n_samples)]
        columns += [f"sample std x{STD_GAIN:g}"] if samp_st else []
        columns.append("HR")

        def shown(im: ImageInput) -> list[np.ndarray]:
            outs = [self._artifact(st, im, ".out.png") for st in det]
            outs += [self._artifact(mean_st, im, ".out.png")] if mean_st else []
            return outs + [self._artifact(samp_st, im, f".s{i}.png") for i in range(n_samples)]

        maps = {}
        shown_settings = det + [x for x in (mean_st, samp_st) if x is not None]
        for im in self.images:
            if any("failed" in self._results[(im.name, st.id)] for st in shown_settings):
                continue
            g = self._artifact(gan, im, ".out.png") if gan else None
            fm = self._artifact(mean_st, im, ".out.png") if mean_st else None
            std = self._artifact(samp_st, im, ".std.npy") if samp_st else None
            m = score_map(g, fm, std)
            maps[im.name] = m if m is not None else spread_map(shown(im))
        maps = {k: v for k, v in maps.items() if v is not None}
        if not maps:
            return [], [], []
        windows = choose_crops(maps, CROP_LR * self.o.scale, self.o.crops)
        by_name = {im.name: im for im in self.images}
        tiles = []
        for w in windows:
            im = by_name[w["image"]]
            row = [tile(o, w) for o in shown(im)]
            row += [std_tile(self._artifact(samp_st, im, ".std.npy"), w)] if samp_st else []
            tiles.append(row + [tile(im.hr, w)])
        return _jsonable(windows), tiles, columns
