"""The shipped models give bit-identical outputs across refactors (issue 9's guard): the RRDB models' Set5 x4
outputs, and the SRFlow tau-0 mean and seeded tau-0.9 samples.

``tests/golden/shipped_outputs.json`` holds, per shipped model file (by its sha256), the sha256 of the decoded
uint8 pixels of its Set5 x4 outputs (fp32, CPU, one thread), recorded on a CPU of one kernel family (torch's
``get_cpu_capability``). Float kernels of another family may round differently, so the comparison is skipped
there. When a shipped model is retrained on purpose, regenerate the entries with
``python tests/test_golden_outputs.py`` (it prints the JSON) and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "shipped_outputs.json"


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixel_hashes(name: str, lr_folder: Path) -> dict[str, str]:
    from gensr.inference.upscale import Upscaler
    from gensr.io import read_image, tensor_to_pixels

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        up = Upscaler(name, precision="fp32", device="cpu")
        out = {}
        for p in sorted(lr_folder.glob("*.png")):
            px = tensor_to_pixels(up.run(read_image(p).rgb_tensor()))
            out[p.stem] = hashlib.sha256(np.ascontiguousarray(px).tobytes()).hexdigest()
        return out
    finally:
        torch.set_num_threads(threads)


def _flow_hashes(lr_folder: Path) -> dict[str, str]:
    """The srflow tau-0 mean and two seeded tau-0.9 samples per Set5 LR, as pixel hashes."""
    from gensr.inference.flow_sampling import FlowSampler
    from gensr.io import read_image, tensor_to_pixels

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sampler = FlowSampler("srflow", device="cpu", precision="fp32")
        out = {}
        for p in sorted(lr_folder.glob("*.png")):
            x = read_image(p).rgb_tensor()
            for tau, n in ((0.0, 1), (0.9, 2)):
                srs = sampler.sample(x, temperature=tau, num_samples=n, seed=0)
                for k in range(n):
                    px = tensor_to_pixels(srs[k : k + 1])
                    out[f"{p.stem}_t{tau}_s{k}"] = hashlib.sha256(np.ascontiguousarray(px).tobytes()).hexdigest()
        return out
    finally:
        torch.set_num_threads(threads)


def test_shipped_flow_outputs_are_bit_identical(datasets_dir):
    from gensr.checkpoints.shipped import SHIPPED, shipped_dir

    golden = json.loads(GOLDEN.read_text())
    if torch.backends.cpu.get_cpu_capability() != golden["capability"]:
        pytest.skip(f"goldens were recorded on {golden['capability']} kernels, this CPU uses another family")
    entry = golden["models"]["srflow"]
    assert _file_sha(shipped_dir() / SHIPPED["srflow"]) == entry["file_sha256"], "regenerate the srflow goldens"
    assert _flow_hashes(datasets_dir / "Set5" / "LR_bicubic" / "X4") == entry["set5_x4"]


@pytest.mark.parametrize("name", ["default", "esrgan"])
def test_shipped_model_outputs_are_bit_identical(name, datasets_dir):
    from gensr.checkpoints.shipped import SHIPPED, shipped_dir

    golden = json.loads(GOLDEN.read_text())
    if torch.backends.cpu.get_cpu_capability() != golden["capability"]:
        pytest.skip(f"goldens were recorded on {golden['capability']} kernels, this CPU uses another family")
    entry = golden["models"][name]
    file_sha = _file_sha(shipped_dir() / SHIPPED[name])
    assert file_sha == entry["file_sha256"], (
        f"the shipped {name} file changed: regenerate tests/golden/shipped_outputs.json (see the module docstring)"
    )
    assert _pixel_hashes(name, datasets_dir / "Set5" / "LR_bicubic" / "X4") == entry["set5_x4"]


if __name__ == "__main__":  # regenerate: python tests/test_golden_outputs.py > tests/golden/shipped_outputs.json
    from gensr.checkpoints.shipped import SHIPPED, shipped_dir

    lr = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/Set5/LR_bicubic/X4")
    doc = {"capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "models": {}}
    for model in ("default", "esrgan"):
        doc["models"][model] = {
            "file_sha256": _file_sha(shipped_dir() / SHIPPED[model]),
            "set5_x4": _pixel_hashes(model, lr),
        }
    doc["models"]["srflow"] = {"file_sha256": _file_sha(shipped_dir() / SHIPPED["srflow"]), "set5_x4": _flow_hashes(lr)}
    print(json.dumps(doc, indent=1))
