"""Super-resolve images with a feed-forward SR network (RRDBNet/ESRGAN) or MATLAB bicubic.

:class:`Upscaler` holds one loaded model and its precision runner, so a folder of images loads it once;
:func:`upscale` is the one-call form. Everything here speaks float tensors in [0, 1]; files, bit depths,
alpha and gray are decided by :mod:`gensr.io` and :mod:`gensr.cli.upscale`.

* Tiling (``tile`` > 0): see :mod:`gensr.inference.tiling`; the image and the output stay in CPU memory.
  On a CUDA out-of-memory error the image is retried with smaller tiles (512, then halving down to 64 px)
  and a note is printed; the smaller tile is kept for the following images. On the CPU, where running out
  of memory kills the process instead of raising, an image whose whole-image forward would need more than
  half the available memory is tiled at 256 px (with a note).
* Precision: see :mod:`gensr.inference.precision` (``auto``: bf16 on CUDA, and on CPUs with native bf16 for
  RRDBNet; fp32 recompute on NaN/inf).
* ``outscale``: the network output (or the bicubic upscale) is resized to ``round(outscale * H)`` x
  ``round(outscale * W)`` with MATLAB bicubic (antialiased when shrinking). Real-ESRGAN uses cv2's LANCZOS4
  here, so its ``--outscale`` results differ slightly from ours.
* Alpha: upscaled on its own, by MATLAB bicubic (default) or by the network (alpha replicated to three
  channels, output averaged), then clamped to [0, 1].
* Gray: replicated to RGB for the network; the gray result is the plain average of the three output
  channels (not BT.601 luma: the input channels are equal, so the net's output channels nearly are too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gensr.errors import GensrError, note
from gensr.inference.bicubic import check_upscale_args, output_size
from gensr.inference.precision import PrecisionRunner, resolve_device
from gensr.inference.tiling import tile_count, tiled_forward
from gensr.system import available_memory

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

__all__ = ["Upscaler", "upscale", "model_scale", "BICUBIC"]

BICUBIC = "bicubic"
ALPHA_UPSAMPLERS = ("bicubic", "model")
_MIN_OOM_TILE = 64
AUTO_TILE = 256  # tile size when a whole-image CPU forward would not fit in memory


def model_scale(model: nn.Module) -> int | None:
    """The upscaling factor a model declares (``model.scale`` or ``model.config.scale``), else None."""
    for owner in (model, getattr(model, "config", None)):
        s = getattr(owner, "scale", None)
        if isinstance(s, int) and not isinstance(s, bool):
            return s
    return None


def _load_network(
    model: str | os.PathLike, interp_with: str | os.PathLike | None, alpha: float, config: Any = None
) -> nn.Module:
    if interp_with is not None:
        if config is not None:
            raise GensrError("a model config applies to one checkpoint; convert each with it first, then interpolate")
        from gensr.inference.interpolation import interpolate_models

        net = interpolate_models(model, interp_with, alpha)
    else:
        from gensr.checkpoints.loader import load_model

        net = load_model(model, config=config)
    kind = getattr(net, "kind", None)  # every registered architecture declares what it is
    if kind == "flow-sr":
        raise GensrError(f"{model}: an SRFlow model samples SR images; use `gensr sample` instead of upscale")
    if kind != "sr":
        hint = "; use `gensr generate`" if kind == "generator" else ""
        raise GensrError(f"{model}: is a {type(net).__name__} (kind {kind}), not a super-resolution network{hint}")
    return net


class Upscaler:
    """A loaded model ready to upscale images one after another.

    Args:
        model: a shipped name ("default", "esrgan", ...), a checkpoint path, an ``nn.Module`` (moved to
            ``device`` and put in eval mode in place), or "bicubic".
        scale: the factor for "bicubic" (default 4). For a network it must match the network's own scale
            (use ``outscale`` for other output sizes); needed only for a module that declares no scale.
        tile, tile_overlap, batch_size: tiled inference (``tile`` 0 = whole image at once); the overlap
            defaults to 32 LR px, or ``tile // 4`` for tiles under 128 px.
        precision: "auto", "fp32", "bf16" or "fp16".
        device: "cpu", "cuda", "cuda:1", ...; None picks CUDA when available.
        interp_with, alpha: blend ``model`` with this second checkpoint, (1 - alpha) * model + alpha * other.
        model_config: for an official checkpoint, what its weights cannot tell (its training YAML's path or a
            dict of gensr config fields; see :func:`gensr.checkpoints.loader.load_model`).
        note: where one-line notes go (default: stderr).
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "default",
        *,
        scale: int | None = None,
        tile: int = 0,
        tile_overlap: int | None = None,
        precision: str = "auto",
        device: str | torch.device | None = None,
        interp_with: str | os.PathLike | None = None,
        alpha: float = 0.8,
        batch_size: int = 4,
        model_config: Any = None,
        note: Callable[[str], None] = note,
    ) -> None:
        tile_overlap = check_upscale_args(tile, tile_overlap, batch_size, scale)
        self.tile, self.tile_overlap, self.batch_size = int(tile), int(tile_overlap), int(batch_size)
        self.note = note
        self.device = resolve_device(device)
        self.runner: PrecisionRunner | None = None
        self.align = 1
        self.bicubic = isinstance(model, str) and model == BICUBIC
        if self.bicubic:
            if interp_with is not None:
                raise GensrError("interp_with needs a network `model`, not bicubic")
            self.scale: int | None = int(scale) if scale is not None else 4
            return
        if isinstance(model, nn.Module):
            if interp_with is not None:
                raise GensrError("interp_with needs a checkpoint name or path as model, not a module")
            net = model
        else:
            net = _load_network(model, interp_with, alpha, model_config)
        declared = model_scale(net)
        if scale is not None and declared is not None and int(scale) != declared:
            raise GensrError(
                f"scale {scale} does not match the model's scale x{declared}; use `outscale` to resize its output"
            )
        self.scale = declared if declared is not None else (int(scale) if scale is not None else None)
        # models that pixel-unshuffle their input (RRDBNet x2/x1) need tiles on that grid
        self.align = int(getattr(getattr(net, "config", None), "unshuffle", 1) or 1)
        self.runner = PrecisionRunner(net, self.device, precision, note=note)

    @property
    def precision(self) -> str:
        """The precision the network runs in ('fp32' for bicubic)."""
        return self.runner.precision if self.runner is not None else "fp32"

    def tiles_for(self, height: int, width: int) -> int:
        """How many tiles an ``height`` x ``width`` LR image takes (1 without tiling or for bicubic)."""
        tile = self._cpu_tile(height, width, announce=False)
        if self.bicubic or tile <= 0:
            return 1
        return tile_count(height, width, tile, self.tile_overlap, self.align)

    # ------------------------------------------------------------------------------------------- core

    def _cpu_tile(self, height: int, width: int, announce: bool = True) -> int:
        """``self.tile``, or :data:`AUTO_TILE` when a whole-image CPU forward would not fit in memory.

        The estimate is 6 float32 feature maps of ``nf`` channels at the output size (the measured peak of
        the x4 RRDBNet is ~5.3), against half the available memory.
        """
        if 0 < self.tile < max(height, width) or self.device.type != "cpu":
            return self.tile
        nf = getattr(getattr(self.runner.model, "config", None), "nf", 64) if self.runner else 64
        s = self.scale or 4
        need = 6 * 4 * int(nf) * (s * height) * (s * width)
        available = available_memory()
        if available is None or need <= available // 2 or max(height, width) <= AUTO_TILE:
            return self.tile
        if announce:
            self.note(
                f"a {width}x{height} image needs ~{need / 2**30:.0f} GiB without tiling "
                f"({available / 2**30:.0f} GiB available); using --tile {AUTO_TILE}"
            )
        return AUTO_TILE

    def _network(self, x: torch.Tensor, progress: Callable[[int, int], None] | None) -> torch.Tensor:
        """Unclamped network output for (1, C, H, W) ``x``, with automatic CPU tiling and the CUDA OOM retry."""
        assert self.runner is not None
        tile = self._cpu_tile(*x.shape[-2:])
        while True:
            try:
                return tiled_forward(
                    self.runner,
                    x,
                    self.scale,
                    tile,
                    self.tile_overlap,
                    batch_size=self.batch_size,
                    device=self.device,
                    progress=progress,
                    align=self.align,
                )
            except torch.OutOfMemoryError:
                if self.device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                self._shrink_after_oom(max(x.shape[-2:]))
                tile = self.tile

    def _shrink_after_oom(self, longest: int) -> None:
        """Next try after a CUDA OOM: tiles of 512 px, then batch size 1, then halve the tiles to 64 px."""
        tiled = 0 < self.tile < longest
        if tiled and self.batch_size > 1:
            self.batch_size = 1
        else:
            current = self.tile if tiled else longest
            smaller = min(512, current // 2)
            if smaller < _MIN_OOM_TILE:
                raise GensrError(
                    f"out of GPU memory even with {current}-px tiles at batch size 1; try --device cpu"
                ) from None
            self.tile = smaller
            self.tile_overlap = min(self.tile_overlap, smaller // 4)
        self.note(
            f"out of GPU memory; retrying with tile {self.tile}, tile_overlap {self.tile_overlap}, "
            f"batch_size {self.batch_size}"
        )

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        from gensr.imresize import imresize

        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return imresize(x.float(), size=size)

    def run(
        self,
        x: torch.Tensor,
        outscale: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        lr_consistency: int = 0,
    ) -> torch.Tensor:
        """Upscale (1, C, H, W) float ``x`` in [0, 1] (C = 3; 1 is replicated and averaged back).

        ``lr_consistency`` > 0 back-projects the LR residual into the x``scale`` output that many times before
        any ``outscale`` resize (:mod:`gensr.inference.consistency`; off by default).
        Returns a (1, C, H', W') float32 CPU tensor clamped to [0, 1], H' = scale * H or round(outscale * H).
        """
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            raise GensrError(f"expected a (1, 3, H, W) or (1, 1, H, W) image tensor, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise GensrError(f"expected a float image tensor in [0, 1], got {x.dtype}")
        if lr_consistency < 0:
            raise GensrError(f"lr_consistency must be >= 0, got {lr_consistency}")
        h, w = x.shape[-2:]
        target = output_size(h, w, self.scale, outscale)
        gray = x.shape[1] == 1
        x = x.detach().float().cpu()
        if self.bicubic and not lr_consistency:
            size = target or (h * self.scale, w * self.scale)
            return self._resize(x, size).clamp_(0.0, 1.0)  # one resize straight to the final size
        if self.bicubic:
            out = self._resize(x, (h * self.scale, w * self.scale))
        else:
            out = self._network(x.expand(1, 3, h, w) if gray else x, progress)
            if gray:
                out = out.mean(dim=1, keepdim=True)
        if lr_consistency:
            from gensr.inference.consistency import enforce_lr_consistency

            out = enforce_lr_consistency(out.clamp(0.0, 1.0), x, self.scale, lr_consistency)
        if target is not None:
            out = self._resize(out, target)
        return out.clamp_(0.0, 1.0)

    def run_alpha(
        self,
        alpha: torch.Tensor,
        size: tuple[int, int],
        upsampler: str = "bicubic",
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Upscale a (1, 1, H, W) alpha channel to ``size`` (the RGB output's size); clamped to [0, 1]."""
        if upsampler not in ALPHA_UPSAMPLERS:
            raise GensrError(f"alpha_upsampler must be one of {', '.join(ALPHA_UPSAMPLERS)}, got {upsampler!r}")
        a = alpha.detach().float().cpu()
        if upsampler == "model" and not self.bicubic:
            a = self._network(a.expand(1, 3, *a.shape[-2:]), progress).mean(dim=1, keepdim=True)
        return self._resize(a, tuple(size)).clamp_(0.0, 1.0)


def upscale(
    image: torch.Tensor | str | os.PathLike | np.ndarray | PILImage,
    model: str | os.PathLike | nn.Module = "default",
    *,
    outscale: float | None = None,
    lr_consistency: int = 0,
    **options: Any,
) -> torch.Tensor:
    """Super-resolve one image and return it in the kind it came in.

    ``image`` is one of: a (1, 3, H, W) or (3, H, W) float tensor in [0, 1] (a 1-channel tensor gives a
    1-channel result) -> a float32 CPU tensor of the same rank, clamped to [0, 1]; an (H, W, 3) or (H, W)
    uint8 / uint16 numpy array (float arrays are taken as [0, 1]) -> an array of the same dtype and layout; a
    PIL image -> a PIL image (RGB, or L for gray); an image path (read with :func:`gensr.io.read_image`) -> a
    (1, C, sH, sW) tensor. Alpha is ignored here: use ``gensr upscale`` or :class:`Upscaler` for alpha; write
    a tensor to a file with :func:`gensr.io.write_image`. ``model`` is "default", a shipped name, a
    checkpoint path, an ``nn.Module`` or "bicubic" (MATLAB bicubic by ``scale``, default 4). ``outscale``
    resizes the result to ``round(outscale * H)`` with MATLAB bicubic (Real-ESRGAN uses LANCZOS4 there).
    ``lr_consistency`` > 0: that many back-projection passes (see :meth:`Upscaler.run`). ``options``: the
    keyword arguments of :class:`Upscaler` (``scale``, ``tile``, ``tile_overlap``, ``precision``, ``device``,
    ``interp_with``, ``alpha``, ``batch_size``, ``model_config``).
    """
    restore: Callable[[torch.Tensor], Any] | None = None
    if isinstance(image, (str, os.PathLike)):
        from gensr.io import read_image

        image = read_image(Path(image)).rgb_tensor()
    elif not isinstance(image, torch.Tensor):
        image, restore = _from_array_or_pil(image)
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    out = Upscaler(model, **options).run(x, outscale=outscale, lr_consistency=lr_consistency)
    if restore is not None:
        return restore(out)
    return out.squeeze(0) if squeeze else out


def _from_array_or_pil(image: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """A (1, C, H, W) float tensor from a numpy array or PIL image, and the function that turns the result
    back into that kind (same dtype for arrays, same 2-D/3-D layout; RGB or L for PIL)."""
    import numpy as np

    from gensr.io import pixels_to_tensor, tensor_to_pixels

    pil = type(image).__module__.startswith("PIL.")
    if pil:
        mode = "L" if image.mode in ("L", "I;16", "1") else "RGB"
        arr = np.asarray(image.convert(mode))
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise GensrError(f"image must be a tensor, numpy array, PIL image or path, got {type(image).__name__}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise GensrError(f"image array must be (H, W), (H, W, 1) or (H, W, 3), got shape {arr.shape}")
    dtype, squeeze2d = arr.dtype, arr.ndim == 2
    if np.issubdtype(dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(arr.reshape(*arr.shape[:2], -1).transpose(2, 0, 1))).float()
        x = x.unsqueeze(0)
    elif dtype in (np.uint8, np.uint16):
        x = pixels_to_tensor(arr)
    else:
        raise GensrError(f"image array must be uint8, uint16 or float in [0, 1], got {dtype}")

    def restore(out: torch.Tensor) -> Any:
        if np.issubdtype(dtype, np.floating):
            res = out[0].permute(1, 2, 0).numpy().astype(dtype)
        else:
            res = tensor_to_pixels(out, 16 if dtype == np.uint16 else 8)
        if squeeze2d:
            res = res[:, :, 0]
        if pil:
            from PIL import Image

            return Image.fromarray(res if res.ndim == 2 else (res[:, :, 0] if res.shape[2] == 1 else res))
        return res

    return x, restore
