"""What the web demo computes, with no Gradio: upload checks, the SR panels, SRFlow samples and BigGAN images.

Images are uint8 numpy arrays (H, W, 3) RGB, the kind a browser shows; the models run on float tensors in
[0, 1] inside (see :mod:`gensr.inference`). Progress callbacks take ``(fraction in [0, 1], text)``.

* **Uploads** are checked from the file header alone (:func:`check_upload`) against the demo's pixel limit
  (:data:`DEFAULT_MAX_PIXELS` of input) before anything is decoded; gray becomes RGB, 16 bits become 8,
  alpha is dropped (:func:`load_lr`).
* **Panels**: bicubic (MATLAB-exact, any integer scale), the PSNR model (``default``), ESRGAN as the network
  interpolation ``(1 - alpha) * PSNR + alpha * ESRGAN`` (alpha 0 = the PSNR model, 1 = ESRGAN) and SRFlow
  (N samples at temperature tau, their per-pixel std map and the LR-PSNR of each sample). Networks run in
  tiles of ``tile`` LR pixels, so memory stays bounded on the CPU and progress is reported per tile.
* **BigGAN**: :class:`DemoEngine` loads a class-conditional generator through
  :mod:`gensr.inference.generation` when that module and the model exist; otherwise it keeps a one-line
  note saying why, and the rest of the demo works as before.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gensr.errors import GensrError, one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TILE",
    "PANELS",
    "SAMPLES",
    "DemoEngine",
    "FlowResult",
    "parse_models",
    "sample_path",
    "check_upload",
    "load_lr",
    "bicubic",
    "colormap",
    "std_map",
    "lr_psnrs",
    "format_db",
]

DEFAULT_MAX_PIXELS = 1_000_000
"""Largest input (width x height, LR pixels) the demo accepts unless started with ``--max-pixels``."""
DEFAULT_TILE = 128
"""Tile size in LR pixels for the networks (bounded memory and per-tile progress on the CPU)."""
PANELS = ("default", "esrgan", "srflow")
"""Model panels; ``--models`` picks some of them (``name`` or ``name=checkpoint``)."""
DEFAULT_GENERATOR = "biggan_cifar"
MAX_SAMPLES = 8
SAMPLES: dict[str, str] = {
    "starfish (BSDS500 train 12003)": "sample_lr.png",
    "butterfly (General-100 im_14)": "sample_butterfly_lr.png",
    "bird (General-100 im_59)": "sample_bird_lr.png",
}
"""Bundled LR samples (label -> file in ``gensr/assets``); all from training sets, none from Set5/Set14/BSD100."""

Progress = Callable[[float, str], None]

# anchors of a dark-to-bright colour ramp for the std map (value in [0, 1] -> RGB), perceptually ordered
_RAMP_X = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_RGB = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def _no_progress(fraction: float, text: str) -> None:
    return None


# ----------------------------------------------------------------------------------------------- inputs


def parse_models(spec: str) -> dict[str, str]:
    """``"default,esrgan=ckpt.safetensors,srflow"`` -> {panel: checkpoint name or path}, in the given order.

    A bare panel name uses the shipped model of that name. GensrError for an unknown or repeated panel.
    """
    out: dict[str, str] = {}
    for item in (s.strip() for s in str(spec).split(",")):
        if not item:
            continue
        name, _, ckpt = item.partition("=")
        name, ckpt = name.strip(), ckpt.strip()
        if name not in PANELS:
            raise GensrError(f"--models: unknown panel {name!r} (choose from {', '.join(PANELS)})")
        if name in out:
            raise GensrError(f"--models: {name!r} is given twice")
        if "=" in item and not ckpt:
            raise GensrError(f"--models: {name}= needs a checkpoint name or path after '='")
        out[name] = ckpt or name
    if not out:
        raise GensrError(f"--models: no panel given (choose from {', '.join(PANELS)})")
    return out


def sample_path(label_or_file: str) -> Path:
    """The bundled sample image for a :data:`SAMPLES` label or file name."""
    name = SAMPLES.get(label_or_file, label_or_file)
    if name not in SAMPLES.values():
        raise GensrError(f"unknown sample {label_or_file!r} (choose from {', '.join(SAMPLES)})")
    return Path(__file__).resolve().parent.parent / "assets" / name


def check_upload(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only; GensrError when over ``max_pixels``."""
    from PIL import Image

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise GensrError(f"{p.name}: image is far over this demo's limit of {max_pixels:,} pixels") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise GensrError(f"{p.name}: not a readable image ({one_line(exc, 120)})") from None
    if w * h > max_pixels:
        raise GensrError(
            f"{p.name}: image is {w}x{h} = {w * h:,} pixels, over this demo's limit of {max_pixels:,} "
            "(crop or shrink it, or start the demo with a larger --max-pixels)"
        )
    return w, h


def load_lr(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An uploaded LR image as uint8 (H, W, 3) RGB, checked against ``max_pixels`` before it is decoded."""
    from gensr.io import read_image, tensor_to_pixels

    check_upload(path, max_pixels)
    img = read_image(Path(path), max_pixels=max_pixels)
    return tensor_to_pixels(img.rgb_tensor(), 8)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-exact bicubic upscale of uint8 (H, W, 3) by an integer ``scale`` -> uint8 (sH, sW, 3)."""
    from gensr.imresize import imresize
    from gensr.io.limits import check_output_size

    scale = _check_scale(scale)
    h, w = lr.shape[:2]
    check_output_size(h * scale, w * scale, f"x{scale} output of a {w}x{h} image")
    return np.asarray(imresize(np.ascontiguousarray(lr), size=(h * scale, w * scale)))


def _check_scale(scale: Any) -> int:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise GensrError(f"scale must be a positive integer, got {scale!r}") from None
    if not (s.is_integer() and 1 <= s <= 16):
        raise GensrError(f"scale must be an integer from 1 to 16, got {scale!r}")
    return int(s)


# ---------------------------------------------------------------------------------------------- metrics


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> uint8 (H, W, 3) on a dark-purple-orange-yellow ramp (0 dark, 1 bright)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    rgb = np.stack([np.interp(v, _RAMP_X, _RAMP_RGB[:, c]) for c in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def std_map(samples: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Per-pixel std across N uint8 samples (grey levels, averaged over RGB) -> (colour map, its peak).

    The map is scaled so that the peak std is the brightest colour; all dark when the samples are equal.
    """
    x = np.stack([np.asarray(s, dtype=np.float64) for s in samples])
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"expected N images (H, W, 3), got shape {x.shape}")
    s = x.std(axis=0).mean(axis=2)
    peak = float(s.max())
    return colormap(s / peak if peak > 0 else np.zeros_like(s)), peak


def lr_psnrs(samples: Sequence[np.ndarray], lr: np.ndarray, scale: int) -> list[float]:
    """LR-PSNR (dB, RGB) of each uint8 SR sample: its MATLAB-bicubic downscale against the LR input."""
    from gensr.metrics.fidelity import lr_psnr

    return [lr_psnr(np.asarray(s), lr, int(scale)) for s in samples]


def format_db(value: float) -> str:
    """``"48.31 dB"`` (``"inf dB"`` for identical images)."""
    return "inf dB" if math.isinf(value) else f"{value:.2f} dB"


@dataclass
class FlowResult:
    """SRFlow samples of one LR image: uint8 (sH, sW, 3) each, their std map and LR-PSNRs."""

    samples: list[np.ndarray]
    std_map: np.ndarray
    std_peak: float
    lr_psnr: list[float]
    pixel_std: float | None
    seed: int
    temperature: float

    def readout(self) -> str:
        """One line per sample with its LR-PSNR, then the diversity and the seed (Markdown)."""
        lines = [f"- sample {i + 1}: LR-PSNR **{format_db(v)}**" for i, v in enumerate(self.lr_psnr)]
        std = "n/a (one sample)" if self.pixel_std is None else f"{self.pixel_std:.2f} grey levels"
        lines.append(f"- mean per-pixel std: {std} (map peak {self.std_peak:.1f})")
        lines.append(f"- seed {self.seed}, temperature {self.temperature:.2f}")
        return "\n".join(lines)


def _display(img: np.ndarray, min_side: int = 128) -> np.ndarray:
    """A small image enlarged by pixel repetition (for 32 px BigGAN outputs); others unchanged."""
    k = max(1, -(-min_side // max(1, min(img.shape[:2]))))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1) if k > 1 else img


# ----------------------------------------------------------------------------------------------- engine


class DemoEngine:
    """The loaded models of one demo and the computations behind its panels (thread-safe: one at a time).

    Args:
        models: {panel: checkpoint} from :func:`parse_models` (None = every panel with its shipped model).
            ESRGAN interpolates with the ``default`` checkpoint (the shipped one when ``default`` is not given).
        device: "cpu", "cuda", ...; None picks CUDA when available.
        tile: network tile size in LR pixels (0 = whole image).
        generator: BigGAN generator name or path (None = no BigGAN tab content); a missing one is a note.
    """

    def __init__(
        self,
        models: dict[str, str] | None = None,
        *,
        device: str | None = None,
        tile: int = DEFAULT_TILE,
        generator: Any = DEFAULT_GENERATOR,
    ) -> None:
        from gensr.inference.precision import resolve_device

        self.models = dict(models) if models is not None else {p: p for p in PANELS}
        unknown = [k for k in self.models if k not in PANELS]
        if unknown:
            raise GensrError(f"unknown demo panel(s) {', '.join(unknown)} (choose from {', '.join(PANELS)})")
        if tile < 0:
            raise GensrError(f"--tile must be >= 0 (0 = whole image), got {tile}")
        self.device = resolve_device(device)
        self.tile = int(tile)
        self._lock = threading.RLock()
        self._psnr = self._upscaler(self.models["default"]) if "default" in self.models else None
        self._esrgan_alpha: float | None = None
        self._esrgan = None
        if "esrgan" in self.models:  # loads and checks the pair now, so a bad checkpoint fails at start
            self._esrgan_for(1.0)
        self._flow = None
        if "srflow" in self.models:
            from gensr.inference.flow_sampling import FlowSampler

            overlap = min(16, self.tile // 4)
            self._flow = FlowSampler(self.models["srflow"], device=self.device, tile=self.tile, tile_overlap=overlap)
        self.generator, self.generator_note = _load_generator(generator, self.device)

    # ------------------------------------------------------------------------------------ properties

    def _upscaler(self, model: str, interp_with: str | None = None, alpha: float = 0.0) -> Any:
        from gensr.inference.upscale import Upscaler

        return Upscaler(
            model,
            tile=self.tile,
            device=self.device,
            interp_with=interp_with,
            alpha=alpha,
            batch_size=1 if self.device.type == "cpu" else 4,  # one tile at a time on the CPU: finer progress
            note=lambda m: None,
        )

    def _esrgan_for(self, alpha: float) -> Any:
        """The ESRGAN panel's network at ``alpha`` (rebuilt only when alpha changes)."""
        from gensr.inference.interpolation import check_alpha

        alpha = check_alpha(alpha)
        if self._esrgan is None or self._esrgan_alpha != alpha:
            psnr_ckpt = self.models.get("default", "default")
            self._esrgan = self._upscaler(psnr_ckpt, interp_with=self.models["esrgan"], alpha=alpha)
            self._esrgan_alpha = alpha
        return self._esrgan

    @property
    def scales(self) -> dict[str, int]:
        """{panel: the x factor of its model} for the loaded panels."""
        out = {}
        if self._psnr is not None:
            out["default"] = int(self._psnr.scale)
        if self._esrgan is not None:
            out["esrgan"] = int(self._esrgan.scale)
        if self._flow is not None:
            out["srflow"] = int(self._flow.scale)
        return out

    @property
    def default_scale(self) -> int:
        """The first model's scale (4 when only bicubic runs)."""
        return next(iter(self.scales.values()), 4)

    def scale_choices(self) -> list[int]:
        """Scales offered: 2, 3, 4 (bicubic runs at any) and every model's own scale."""
        return sorted({2, 3, 4, *self.scales.values()})

    def has(self, panel: str) -> bool:
        return panel in self.scales

    def scale_note(self, panel: str, scale: int) -> str | None:
        """Why ``panel`` does not run at ``scale`` (None when it does)."""
        if not self.has(panel):
            return f"{panel} is not loaded (see --models)"
        s = self.scales[panel]
        return None if s == int(scale) else f"the {panel} model is x{s}: choose scale {s} to run it"

    # ----------------------------------------------------------------------------------- computations

    def upscale(
        self, panel: str, lr: np.ndarray, scale: int, alpha: float = 1.0, progress: Progress | None = None
    ) -> np.ndarray:
        """``panel`` "bicubic", "default" or "esrgan" (at ``alpha``) on uint8 ``lr`` -> uint8 (sH, sW, 3)."""
        from gensr.io import pixels_to_tensor, tensor_to_pixels

        scale = _check_scale(scale)
        if panel == "bicubic":
            return bicubic(lr, scale)
        note = self.scale_note(panel, scale) if panel in ("default", "esrgan") else f"unknown panel {panel!r}"
        if note:
            raise GensrError(note)
        report = progress or _no_progress
        label = "PSNR model" if panel == "default" else f"ESRGAN (alpha {alpha:.2f})"
        with self._lock:
            net = self._psnr if panel == "default" else self._esrgan_for(alpha)
            out = net.run(
                pixels_to_tensor(np.ascontiguousarray(lr)),
                progress=lambda done, total: report(done / total, f"{label}: tile {done}/{total}"),
            )
        return tensor_to_pixels(out, 8)

    def sample(
        self,
        lr: np.ndarray,
        temperature: float,
        num: int,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> FlowResult:
        """``num`` SRFlow samples of uint8 ``lr`` at ``temperature`` (new random seed when None)."""
        from gensr.inference.flow_sampling import check_temperature, resolve_seed
        from gensr.io import pixels_to_tensor, tensor_to_pixels
        from gensr.metrics.diversity import pixel_std

        if self._flow is None:
            raise GensrError("srflow is not loaded (see --models)")
        if isinstance(num, bool) or not float(num).is_integer() or not 1 <= int(num) <= MAX_SAMPLES:
            raise GensrError(f"number of samples must be an integer from 1 to {MAX_SAMPLES}, got {num!r}")
        tau, seed, report = check_temperature(temperature), resolve_seed(seed), progress or _no_progress
        with self._lock:
            out = self._flow.sample(
                pixels_to_tensor(np.ascontiguousarray(lr)),
                temperature=tau,
                num_samples=int(num),
                seed=seed,
                progress=lambda done, total: report(done / total, f"SRFlow: batch {done}/{total}"),
            )
        samples = [tensor_to_pixels(out[i], 8) for i in range(out.shape[0])]
        smap, peak = std_map(samples)
        return FlowResult(
            samples=samples,
            std_map=smap,
            std_peak=peak,
            lr_psnr=lr_psnrs(samples, lr, self._flow.scale),
            pixel_std=pixel_std(samples) if len(samples) > 1 else None,
            seed=seed,
            temperature=tau,
        )

    # ------------------------------------------------------------------------------------------ BigGAN

    def class_names(self) -> list[str]:
        """Names of the generator's classes (CIFAR-10's for a 10-class model, else "class i")."""
        if self.generator is None:
            return []
        n = int(self.generator.n_classes)
        if n == 10:
            try:
                from gensr.data.class_datasets import CIFAR10_CLASSES

                return [f"{i}: {name}" for i, name in enumerate(CIFAR10_CLASSES)]
            except (ImportError, AttributeError):
                pass
        return [f"{i}: class {i}" for i in range(n)]

    def generate(self, class_index: int, truncation: float, num: int, seed: int | None = None) -> list[np.ndarray]:
        """``num`` images of one class from the BigGAN generator -> uint8 (H, W, 3) each (small ones enlarged)."""
        from gensr.inference.flow_sampling import resolve_seed

        if self.generator is None:
            raise GensrError(self.generator_note or "no BigGAN generator is loaded")
        n = int(self.generator.n_classes)
        if not 0 <= int(class_index) < n:
            raise GensrError(f"class must be in 0..{n - 1}, got {class_index}")
        from gensr.inference.generation import generate

        deep = "deep" in type(self.generator).__name__.lower()  # BigGAN-deep ports take 'scale' truncation only
        with self._lock:
            images, _ = generate(
                self.generator,
                classes=[int(class_index)],
                num=int(num),
                truncation=min(float(truncation), 1.0) if deep else float(truncation),
                truncation_mode="scale" if deep else "resample",
                seed=resolve_seed(seed),
            )
        return [_display(np.asarray(im)) for im in images]


def _load_generator(spec: Any, device: Any) -> tuple[Any, str | None]:
    """(generator, None) or (None, a one-line note why BigGAN is unavailable); never raises."""
    if spec is None or (isinstance(spec, str) and spec.lower() in ("", "none", "off")):
        return None, "BigGAN generation is off (start the demo with --generator NAME_OR_CKPT)."
    try:
        from gensr.inference import generation
    except Exception as exc:  # noqa: BLE001 - an unfinished or broken module must not stop the demo
        return None, f"BigGAN generation is not available in this gensr ({one_line(exc, 120)})."
    try:
        return generation.load_generator(spec, device), None
    except Exception as exc:  # noqa: BLE001 - a missing model is a note, not a crash
        return None, f"BigGAN generator {spec}: not available ({one_line(exc, 160)})."
