"""SR datasets. Every sample is a dict ``{"lr": (3, h, w), "hr": (3, s*h, s*w), "name": str}``, float32 in [0, 1].

Training datasets are indexed by a *global sample number*: the crop and augmentation of sample ``i`` come from
``numpy.random.default_rng((seed, i))``. With :class:`ResumableSampler` the data order depends only on the seed and
the iteration, so a resumed run sees exactly the batches an uninterrupted run would have seen, with any number of
workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from gensr.data.augment import dihedral, random_aligned_crop
from gensr.errors import GensrError
from gensr.imresize import imresize, modcrop


def find_images(folders: Sequence[str | os.PathLike], recursive: bool = True, where: str = "data") -> list[Path]:
    """All image files under ``folders`` (sorted); GensrError (naming ``where``, the config key) for a missing
    folder or no images at all."""
    from gensr.io import IMAGE_EXTENSIONS

    files: list[Path] = []
    for folder in folders:
        d = Path(folder).expanduser()
        if not d.is_dir():
            raise GensrError(f"{d}: data folder not found ({where})")
        pattern = "**/*" if recursive else "*"
        files += sorted(p for p in d.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise GensrError(f"{', '.join(str(f) for f in folders)}: no images found ({where})")
    return files


def load_rgb_uint8(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (gray is replicated; alpha dropped)."""
    from gensr.io import read_array, rescale_pixels

    arr = rescale_pixels(read_array(path), 8)  # 16-bit training data: brought to 8 bits, as the MATLAB pipeline uses
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class SRTrainDataset(Dataset):
    """Random aligned patches from HR images (LR made once with the MATLAB bicubic) or paired folders.

    Args:
        hr_dirs: folders of HR images (searched recursively).
        scale: SR factor.
        patch_size: HR patch side (must be a multiple of ``scale``).
        lr_dirs: optional folders of LR images paired with the HR images by file stem (``name`` or
            ``name{suffix}``); if None the LR is made with the MATLAB-exact bicubic (uint8, symmetric).
        augment: "dihedral" (a random one of the 8 flips/rotations), "hflip" (horizontal flips) or "none".
        seed: base seed of the per-sample random streams.
        length: nominal length (number of distinct sample numbers); any index is valid.
    """

    def __init__(
        self,
        hr_dirs: Sequence[str | os.PathLike],
        scale: int,
        patch_size: int,
        lr_dirs: Sequence[str | os.PathLike] | None = None,
        lr_suffix: str = "",
        augment: str = "dihedral",
        seed: int = 0,
        length: int = 10**9,
        where: str = "data.train",
    ) -> None:
        if patch_size % scale:
            raise GensrError(f"{where}.patch_size {patch_size} is not a multiple of the scale {scale}")
        self.scale, self.lr_patch, self.augment, self.seed, self.length = (
            scale,
            patch_size // scale,
            augment,
            seed,
            length,
        )
        hr_files = find_images(hr_dirs, where=f"{where}.hr_dirs")
        lr_index = _index_by_stem(find_images(lr_dirs, where=f"{where}.lr_dirs"), lr_suffix, scale) if lr_dirs else None
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.names: list[str] = []
        for path in hr_files:
            hr = modcrop(load_rgb_uint8(path), scale)
            if lr_index is None:
                lr = imresize(hr, 1.0 / scale)
            else:
                if path.stem not in lr_index:
                    raise GensrError(f"{path}: no LR image with a matching name in {', '.join(map(str, lr_dirs))}")
                lr = load_rgb_uint8(lr_index[path.stem])
                if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                    raise GensrError(f"{lr_index[path.stem]}: size {lr.shape[1]}x{lr.shape[0]} is not HR/{scale}")
            if min(lr.shape[:2]) < self.lr_patch:
                continue  # too small for a patch
            self.pairs.append((lr, hr))
            self.names.append(path.stem)
        if not self.pairs:
            raise GensrError(
                f"{', '.join(map(str, hr_dirs))}: no image is large enough for {patch_size}px patches ({where})"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        rng = np.random.default_rng((self.seed, int(index)))
        k = int(rng.integers(len(self.pairs)))
        lr, hr = random_aligned_crop(*self.pairs[k], self.lr_patch, self.scale, rng)
        if self.augment != "none":
            code = int(rng.integers(8 if self.augment == "dihedral" else 2))
            lr, hr = dihedral(lr, code), dihedral(hr, code)
        return {"lr": to_tensor(lr), "hr": to_tensor(hr), "name": self.names[k]}


class SRValDataset(Dataset):
    """Whole validation images: HR mod-cropped to the scale, LR from ``lr_dir`` or the MATLAB bicubic."""

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        scale: int,
        lr_dir: str | os.PathLike | None = None,
        lr_suffix: str = "",
    ) -> None:
        self.scale = scale
        self.hr_files = find_images([hr_dir], recursive=False, where="val.hr_dir")
        lr_files = find_images([lr_dir], recursive=False, where="val.lr_dir") if lr_dir else None
        self.lr_index = _index_by_stem(lr_files, lr_suffix, scale) if lr_files else None

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.hr_files[index]
        hr = modcrop(load_rgb_uint8(path), self.scale)
        if self.lr_index is not None and path.stem in self.lr_index:
            lr = load_rgb_uint8(self.lr_index[path.stem])
        else:
            lr = imresize(hr, 1.0 / self.scale)
        return {"lr": to_tensor(lr), "hr": to_tensor(hr), "name": path.stem}


def _index_by_stem(files: list[Path], suffix: str, scale: int) -> dict[str, Path]:
    """Map an HR stem to its LR file: LR stems ``name``, ``name{suffix}`` or ``name x{scale}`` (Set5 style)."""
    index: dict[str, Path] = {}
    for f in files:
        stem = f.stem
        for tail in (suffix, f"x{scale}", f"_x{scale}"):
            if tail and stem.endswith(tail):
                index.setdefault(stem[: -len(tail)], f)
        index[stem] = f
    return index


class ResumableSampler(Sampler[int]):
    """Yields global sample numbers ``start, start+1, ...`` for this rank's share of each global batch.

    Sample numbers are the dataset indices, so sample ``i`` is identical whatever the worker count or restart point.
    """

    def __init__(self, batch_size: int, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.batch_size, self.start, self.rank, self.world = batch_size, start_batch, rank, world_size

    def __iter__(self) -> Iterator[int]:
        it = self.start
        global_batch = self.batch_size * self.world
        while True:
            base = it * global_batch + self.rank * self.batch_size
            yield from range(base, base + self.batch_size)
            it += 1

    def __len__(self) -> int:  # effectively infinite
        return 2**62
