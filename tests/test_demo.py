"""The web demo without a browser: upload checks (header only), the SR panels, SRFlow samples and their readout,
the optional BigGAN tab, the ``gensr demo`` command without Gradio, and (with Gradio) a served page that
references no external URL. The end-to-end browser test is ``test_demo_browser.py``."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import urllib.request
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gensr.cli import main
from gensr.demo.processing import (
    SAMPLES,
    DemoEngine,
    bicubic,
    check_upload,
    colormap,
    load_lr,
    lr_psnrs,
    parse_models,
    sample_path,
    std_map,
)
from gensr.errors import GensrError

REPO = Path(__file__).resolve().parent.parent


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _lr(h: int = 20, w: int = 24) -> np.ndarray:
    """An h x w uint8 crop of a natural LR image (the bundled bird sample; the small shipped models are trained
    on natural images: on synthetic patterns SRFlow's samples are far from LR-consistent)."""
    img = np.asarray(Image.open(sample_path("sample_bird_lr.png")).convert("RGB"))
    return np.ascontiguousarray(img[20 : 20 + h, 30 : 30 + w])


@pytest.fixture(scope="module")
def engine() -> DemoEngine:
    """All three shipped panels, 16-px tiles (so a 24x20 image takes several tiles), no BigGAN."""
    return DemoEngine(device="cpu", tile=16, generator=None)


# ------------------------------------------------------------------------------------------------ inputs


def test_parse_models():
    assert parse_models("default,esrgan,srflow") == {"default": "default", "esrgan": "esrgan", "srflow": "srflow"}
    assert parse_models(" srflow , esrgan=/x/e.safetensors ") == {"srflow": "srflow", "esrgan": "/x/e.safetensors"}
    for bad, msg in [("default,gan", "unknown panel 'gan'"), ("srflow,srflow", "given twice"), (" , ", "no panel")]:
        with pytest.raises(GensrError, match=msg):
            parse_models(bad)
    with pytest.raises(GensrError, match="needs a checkpoint"):
        parse_models("esrgan=")


def test_bundled_samples_exist_and_are_small():
    for label in SAMPLES:
        p = sample_path(label)
        assert p.is_file() and p.stat().st_size < 50_000, p
        w, h = check_upload(p)
        assert 40 <= w <= 200 and 40 <= h <= 200
    with pytest.raises(GensrError, match="unknown sample"):
        sample_path("Set5 baby")


def _png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` but whose data is that of a 2x2 image (undecodable)."""
    Image.new("RGB", (2, 2)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_oversized_upload_is_refused_from_the_header_before_decoding(tmp_path):
    ok = _png(tmp_path / "ok.png", _lr(20, 30))
    assert check_upload(ok, max_pixels=600) == (30, 20)
    with pytest.raises(GensrError, match=r"30x20 = 600 pixels, over this demo's limit of 599"):
        check_upload(ok, max_pixels=599)
    # the header says 5000x4000; decoding it would fail, so the refusal proves only the header was read
    bomb = _png_with_header_size(tmp_path / "bomb.png", 5000, 4000)
    for fn in (check_upload, load_lr):
        with pytest.raises(GensrError, match=r"5000x4000 = 20,000,000 pixels, over this demo's limit of 1,000,000"):
            fn(bomb)
    (tmp_path / "text.png").write_bytes(b"hello, not an image")
    with pytest.raises(GensrError, match="text.png: not a readable image"):
        check_upload(tmp_path / "text.png")


def test_load_lr_gives_8_bit_rgb_for_gray_16_bit_and_alpha(tmp_path):
    g16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = load_lr(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.abs(out[..., 0].astype(int) - np.rint(g16 / 257.0).astype(int)).max() <= 1
    rgba = np.dstack([_lr(8, 9), np.full((8, 9), 7, np.uint8)])
    assert np.array_equal(load_lr(_png(tmp_path / "rgba.png", rgba)), rgba[..., :3])


def test_bicubic_any_integer_scale():
    lr = _lr()
    from gensr.imresize import imresize

    out = bicubic(lr, 3)
    assert out.shape == (60, 72, 3) and out.dtype == np.uint8
    assert np.array_equal(out, imresize(lr, size=(60, 72)))
    with pytest.raises(GensrError, match="scale"):
        bicubic(lr, 2.5)


# ----------------------------------------------------------------------------------------------- metrics


def test_colormap_and_std_map():
    ramp = colormap(np.linspace(0, 1, 11)[None, :])[0]
    assert tuple(ramp[0]) == (0, 0, 4) and tuple(ramp[-1]) == (252, 255, 164)
    assert np.all(np.diff(ramp.astype(int).sum(axis=1)) > 0)  # brighter as the value grows
    a = np.zeros((4, 5, 3), np.uint8)
    smap, peak = std_map([a, a, a])
    assert peak == 0 and smap.shape == (4, 5, 3) and np.all(smap == colormap(np.zeros((1, 1)))[0, 0])
    b = a.copy()
    b[1, 2] = 40  # one pixel differs: std of (0, 40) is 20 there and 0 elsewhere
    smap, peak = std_map([a, b])
    assert peak == pytest.approx(20.0) and tuple(smap[1, 2]) == (252, 255, 164) and tuple(smap[0, 0]) == (0, 0, 4)


def test_lr_psnrs_rank_consistent_above_inconsistent():
    lr = _lr(16, 16)
    sr = bicubic(lr, 4)
    noisy = np.clip(sr.astype(int) + np.random.default_rng(0).integers(-60, 60, sr.shape), 0, 255).astype(np.uint8)
    good, bad = lr_psnrs([sr, noisy], lr, 4)
    assert good > 35 and bad < good - 5


# ------------------------------------------------------------------------------------------------ engine


def test_engine_panels_scales_and_tiled_progress(engine):
    lr = _lr()
    assert engine.scales == {"default": 4, "esrgan": 4, "srflow": 4} and engine.default_scale == 4
    assert engine.scale_choices() == [2, 3, 4]
    seen = []
    psnr = engine.upscale("default", lr, 4, progress=lambda f, t: seen.append((f, t)))
    assert psnr.shape == (80, 96, 3) and psnr.dtype == np.uint8
    assert len(seen) > 1 and seen[-1][0] == pytest.approx(1.0) and "tile" in seen[-1][1]
    # network interpolation: alpha 0 is exactly the PSNR model, alpha 1 is ESRGAN (different)
    assert np.array_equal(engine.upscale("esrgan", lr, 4, alpha=0.0), psnr)
    esr = engine.upscale("esrgan", lr, 4, alpha=1.0)
    assert esr.shape == psnr.shape and np.abs(esr.astype(int) - psnr.astype(int)).mean() > 0.5
    assert engine.upscale("bicubic", lr, 2).shape == (40, 48, 3)
    assert "choose scale 4" in engine.scale_note("default", 2)
    with pytest.raises(GensrError, match="x4: choose scale 4"):
        engine.upscale("esrgan", lr, 3)
    with pytest.raises(GensrError, match="alpha"):
        engine.upscale("esrgan", lr, 4, alpha=1.5)


def test_engine_flow_samples_std_map_and_lr_psnr(engine):
    lr = _lr()
    res = engine.sample(lr, 0.9, 3, seed=5)
    assert len(res.samples) == 3 and all(s.shape == (80, 96, 3) for s in res.samples)
    assert res.std_map.shape == (80, 96, 3) and res.std_peak > 0 and res.pixel_std > 0
    assert len(res.lr_psnr) == 3 and all(np.isfinite(v) and v > 25 for v in res.lr_psnr)
    assert res.lr_psnr == lr_psnrs(res.samples, lr, 4)
    text = res.readout()
    assert len(re.findall(r"sample \d: LR-PSNR \*\*\d+\.\d\d dB\*\*", text)) == 3 and "seed 5" in text
    again = engine.sample(lr, 0.9, 2, seed=5)  # sample i depends on the seed and i only
    assert np.array_equal(again.samples[1], res.samples[1])
    mean = engine.sample(lr, 0.0, 2, seed=1)  # temperature 0: the deterministic mean, all samples equal
    assert mean.std_peak == 0 and mean.pixel_std == 0
    one = engine.sample(lr, 0.5, 1, seed=1)
    assert one.pixel_std is None and "n/a" in one.readout()
    with pytest.raises(GensrError, match="from 1 to 8"):
        engine.sample(lr, 0.9, 9)


def test_engine_with_some_panels_only():
    eng = DemoEngine({"default": "default"}, device="cpu", tile=0, generator=None)
    assert eng.scales == {"default": 4} and not eng.has("esrgan") and not eng.has("srflow")
    with pytest.raises(GensrError, match="srflow is not loaded"):
        eng.sample(_lr(), 0.9, 1)
    with pytest.raises(GensrError, match="no such checkpoint"):
        DemoEngine({"esrgan": "/nonexistent/e.safetensors"}, device="cpu", generator=None)


def test_biggan_tab_degrades_to_a_note_and_works_with_a_generator():
    for spec, expected in [(None, "off"), ("/nonexistent/g.safetensors", "not available")]:
        eng = DemoEngine({}, device="cpu", generator=spec)
        assert eng.generator is None and expected in eng.generator_note and "\n" not in eng.generator_note
        with pytest.raises(GensrError):
            eng.generate(0, 1.0, 1)
    generation = pytest.importorskip("gensr.inference.generation", reason="gensr.inference.generation not present")
    helpers = pytest.importorskip("biggan_helpers", reason="tests/biggan_helpers.py not present")
    assert hasattr(generation, "generate")
    eng = DemoEngine({}, device="cpu", generator=helpers.tiny_generator(10))
    assert eng.generator_note is None and len(eng.class_names()) == 10
    images = eng.generate(3, 0.8, 2, seed=1)
    assert len(images) == 2 and images[0].shape == (128, 128, 3) and images[0].dtype == np.uint8
    assert np.array_equal(images[0], eng.generate(3, 0.8, 1, seed=1)[0])
    with pytest.raises(GensrError, match="class must be in 0..9"):
        eng.generate(10, 0.8, 1)


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_without_gradio_says_how_to_install_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    assert main(["demo", "--port", "7860"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "gensr[demo]"' in err


def test_cli_refuses_bad_options_in_one_line(capsys):
    cases = [
        (["--models", "bogus"], "unknown panel"),
        (["--max-pixels", "0"], "--max-pixels"),
        (["--port", "0"], "1.."),
    ]
    for args, msg in cases:
        assert main(["demo", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err


def test_cli_refuses_a_port_in_use_before_loading_models(capsys):
    pytest.importorskip("gradio", reason="Gradio not installed (the install line comes first without it)")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_demo_package_and_command_import_neither_torch_nor_gradio():
    code = (
        "import sys, gensr.demo, gensr.cli.demo; "
        "bad = [m for m in ('torch', 'gradio') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------- served page (Gradio)


class _Resources(HTMLParser):
    """URLs a browser would load from a page: scripts, stylesheets, icons, images, frames, CSS url()/@import."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel", "") not in ("canonical", "alternate"):
            self.urls.append(a["href"])
        self.urls += css_urls(a.get("style") or "")
        self._style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._style:
            self.urls += css_urls(data)


def css_urls(css: str) -> list[str]:
    found = re.findall(r"""url\(\s*['"]?([^'")]+)""", css) + re.findall(r"""@import\s+['"]([^'"]+)""", css)
    return [u for u in found if not u.startswith("data:")]


def external(urls: list[str], origin: str) -> list[str]:
    """The http(s) URLs of ``urls`` that are not on ``origin`` (protocol-relative ones count as external)."""
    return [u for u in urls if (u.startswith(("http:", "https:")) and not u.startswith(origin)) or u.startswith("//")]


def page_external_urls(origin: str) -> list[str]:
    """External URLs the page at ``origin`` would load: its HTML, its same-origin CSS and the Gradio config."""
    html = urllib.request.urlopen(origin + "/", timeout=30).read().decode()
    parser = _Resources()
    parser.feed(html)
    urls = list(parser.urls)
    config = json.loads(urllib.request.urlopen(origin + "/config", timeout=30).read().decode())
    urls += list(config.get("stylesheets") or [])
    for key in ("css", "head", "js"):
        urls += css_urls(str(config.get(key) or "")) + re.findall(r"""src=['"]([^'"]+)""", str(config.get(key) or ""))
    css_files = [u for u in parser.urls if u.split("?")[0].endswith(".css")] + ["/theme.css"]
    for u in css_files:
        if not u.startswith(("http:", "https:", "//")):
            url = origin + "/" + u.lstrip("./")
            urls += css_urls(urllib.request.urlopen(url, timeout=30).read().decode(errors="replace"))
    return external(urls, origin)


def test_resource_scanner_catches_cdn_fonts_and_scripts():
    parser = _Resources()
    parser.feed(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Source+Sans+Pro">'
        '<script src="https://cdn.example.org/x.js"></script><script src="./assets/a.js"></script>'
        "<style>@import 'https://fonts.example/f.css'; a { background: url(//cdn.example/i.png) }</style>"
        '<meta property="og:image" content="https://example.org/i.jpg"><a href="https://gradio.app">x</a>'
    )
    assert len(external(parser.urls, "http://127.0.0.1:1")) == 4


def test_served_html_is_stripped_of_tags_that_load_from_other_hosts():
    from gensr.demo.app import strip_external_tags

    html = (
        b'<head><link rel="preconnect" href="https://fonts.googleapis.com" />\n<link\n rel="preconnect"\n'
        b' href="https://fonts.gstatic.com" crossorigin="anonymous"\n/>\n<script\n src="https://cdnjs.example/'
        b'x.min.js"\n async\n></script><SCRIPT SRC=//cdn.example/y.js></SCRIPT>'
        b'<script>window.cfg = {"u": "https://example.org"};</script><link rel="stylesheet" href="./assets/a.css">'
        b'<script type="module" src="./assets/a.js"></script><meta content="https://example.org/i.jpg"></head>'
    )
    out = strip_external_tags(html)
    parser = _Resources()
    parser.feed(out.decode())
    assert external(parser.urls, "http://127.0.0.1:1") == [] and parser.urls == ["./assets/a.css", "./assets/a.js"]
    assert b'window.cfg = {"u": "https://example.org"}' in out and b"googleapis" not in out and b"<meta" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    """The demo page served in this process: bicubic only (no SR model loads) plus, when the generation
    module is present, a tiny random 10-class BigGAN generator in the Generate tab. Yields the base URL."""
    gr = pytest.importorskip("gradio", reason="Gradio not installed (pip install -e '.[demo]')")
    from gensr.demo.app import build_app, launch_kwargs

    try:
        import gensr.inference.generation  # noqa: F401
        from biggan_helpers import tiny_generator

        generator = tiny_generator(10)
    except ImportError:
        generator = None
    app = build_app(DemoEngine({}, device="cpu", generator=generator))
    port = _free_port()
    app.launch(**launch_kwargs(gr, "127.0.0.1", port, 10_000), prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}", generator is not None
    finally:
        app.close()


def test_served_page_loads_nothing_from_outside(served):
    origin, _ = served
    assert page_external_urls(origin) == []
    config = json.loads(urllib.request.urlopen(origin + "/config", timeout=30).read().decode())
    assert config.get("analytics_enabled") is False
    assert "fonts.googleapis" not in json.dumps(config) and "fonts.gstatic" not in json.dumps(config)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pandas deprecations inside Gradio
def test_biggan_tab_generates_through_the_served_page(served):
    origin, has_generator = served
    if not has_generator:
        pytest.skip("gensr.inference.generation or tests/biggan_helpers.py not present")
    client_mod = pytest.importorskip("gradio_client", reason="gradio_client not installed")
    client = client_mod.Client(origin, verbose=False)
    gallery = client.predict("3: cat", 0.7, 2, api_name="/generate")
    assert len(gallery) == 2
    first = gallery[0]["image"] if isinstance(gallery[0], dict) else gallery[0]
    path = first["path"] if isinstance(first, dict) else first
    assert Image.open(path).size == (128, 128)
