"""End to end: ``python -m gensr demo`` in a subprocess, driven in headless Chromium through Playwright.

Loads the bundled sample, uploads an oversized image (refused with a message), then an LR image; clicks
Upscale and checks the three result panels (bicubic, PSNR model, ESRGAN) at 4x the input size and the PSNR
panel's pixels against the same model run here; draws SRFlow samples and checks the gallery, the std map and
one LR-PSNR readout per sample; saves a screenshot to the test's tmp folder and, when
``GENSR_DEMO_SCREENSHOT=path.png`` is set, there too; releases the ESRGAN alpha slider at 0 (the panel must
then equal the PSNR panel); finds the BigGAN tab (its controls or its one-line note); and checks that the page
requested nothing but the local server (no CDN fonts or scripts).

Skips with the reason when Gradio, the Playwright package or a Chromium binary is missing (``make test``
installs all three where it can: the ``demo`` extra, ``playwright`` from PyPI -- its own browser download is
never used -- and Debian's ``chromium``). ``GENSR_CHROMIUM`` names another Chromium binary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="Gradio is not installed (pip install -e '.[demo]'; `make test` does it)")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Playwright package is not installed (pip install playwright; `make test`)"
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "src" / "gensr" / "assets" / "sample_butterfly_lr.png"  # 120x100
# Chromium on a machine with no network: no background requests, no updates, no sync, fresh profile
# (Playwright gives every launch a new empty profile folder).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_PIXELS = 1_000_000  # the demo's default limit (no --max-pixels given)
SERVER_START_S = 180


def chromium_binary() -> str | None:
    """$GENSR_CHROMIUM, Debian's /usr/bin/chromium, or a chromium/chrome on PATH."""
    env = os.environ.get("GENSR_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m gensr demo`` on a free port; yields its base URL and stops it (SIGTERM, then kill)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    cmd = [sys.executable, "-m", "gensr", "demo", "--port", str(port), "--tile", "64", "--device", "cpu"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gensr demo exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if urllib.request.urlopen(url + "/", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gensr demo did not serve within {SERVER_START_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    exe = chromium_binary()
    if exe is None:
        pytest.skip("no Chromium binary (Debian: apt-get install chromium; or set GENSR_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def _wait_text(page, selector: str, pattern: str, timeout_s: float) -> str:
    """The inner text of ``selector`` once it matches the regex ``pattern``."""
    page.wait_for_function(
        "([sel, pat]) => { const e = document.querySelector(sel); return e && new RegExp(pat).test(e.innerText); }",
        arg=[selector, pattern],
        timeout=timeout_s * 1000,
    )
    return page.inner_text(selector)


def _wait_images(page, selector: str, count: int, timeout_s: float) -> list[list]:
    """[naturalWidth, naturalHeight, src] of the ``count`` images under ``selector`` once all have loaded."""
    page.wait_for_function(
        "([sel, n]) => { const im = [...document.querySelectorAll(sel)];"
        " return im.length >= n && im.every(i => i.complete && i.naturalWidth > 0); }",
        arg=[selector, count],
        timeout=timeout_s * 1000,
    )
    return page.evaluate(
        "(sel) => [...document.querySelectorAll(sel)].map(i => [i.naturalWidth, i.naturalHeight, i.src])", selector
    )


def test_demo_in_a_browser(browser, server, tmp_path):
    big = tmp_path / "too_big.png"
    Image.new("RGB", (1100, 1000), (90, 120, 150)).save(big)  # 1,100,000 px: over the limit, a few KB of PNG
    lr_file = tmp_path / "upload.png"
    shutil.copyfile(SAMPLE, lr_file)
    lr = np.asarray(Image.open(lr_file).convert("RGB"))
    h, w = lr.shape[:2]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server + "/")
    page.wait_for_selector("#btn-upscale", timeout=60_000)
    page.click("#btn-sample")  # the bundled sample selected by default (starfish, 120x80)
    assert "120x80 px" in _wait_text(page, "#status", "sample .*ready", 60)
    _wait_images(page, "#lr-input img", 1, 30)

    _upload(page, big)
    refusal = _wait_text(page, "#status", "refused", 30)
    assert "1100x1000 = 1,100,000 pixels" in refusal and f"limit of {MAX_PIXELS:,}" in refusal
    _upload(page, lr_file)
    assert f"{w}x{h} px" in _wait_text(page, "#status", "ready", 30)
    page.click("#btn-upscale")
    status = _wait_text(page, "#status", "ESRGAN alpha 1.00", 180)
    for panel in ("sr-bicubic", "sr-psnr", "sr-esrgan"):
        (nw, nh, _), *_ = _wait_images(page, f"#{panel} img", 1, 60)
        assert (nw, nh) == (4 * w, 4 * h), (panel, nw, nh, status)
    _check_psnr_panel_pixels(page, lr)

    page.click("#btn-flow")
    readout = _wait_text(page, "#flow-lrpsnr", r"(LR-PSNR[^\n]*dB[\s\S]*){4}", 300)
    values = [float(v) for v in re.findall(r"LR-PSNR\s+([\d.]+) dB", readout)]
    assert len(values) == 4 and all(v > 30 for v in values), readout
    shots = _wait_images(page, "#flow-gallery img", 4, 60)
    assert all((nw, nh) == (4 * w, 4 * h) for nw, nh, _ in shots[:4]), shots
    assert _wait_images(page, "#flow-std img", 1, 60)[0][:2] == [4 * w, 4 * h]

    _screenshot(page, tmp_path / "demo.png")

    # ESRGAN alpha slider, released at its left end: alpha 0 is the PSNR model exactly
    slider = page.locator("#alpha input[type=range]")
    box = slider.bounding_box()
    before = page.evaluate("() => document.querySelector('#sr-esrgan img').src")
    slider.click(position={"x": 1, "y": box["height"] / 2})
    _wait_text(page, "#status", "ESRGAN alpha 0.00", 120)
    page.wait_for_function("(old) => document.querySelector('#sr-esrgan img').src !== old", arg=before, timeout=30_000)
    esr = page.evaluate("() => document.querySelector('#sr-esrgan img').src")
    psnr = page.evaluate("() => document.querySelector('#sr-psnr img').src")
    assert np.array_equal(_fetch_image(esr), _fetch_image(psnr))

    page.get_by_role("tab", name="Generate (BigGAN)").click()
    page.wait_for_selector("#biggan-note, #btn-generate", state="visible", timeout=30_000)
    if page.locator("#biggan-note").count():
        assert "BigGAN" in page.inner_text("#biggan-note")

    outside = [u for u in requests if not u.startswith((server, "data:", "blob:"))]
    assert outside == [], f"the page requested other hosts: {outside[:5]}"


def _upload(page, path: Path) -> None:
    """Remove the image shown in the input panel (if any), then upload ``path`` into it."""
    clear = page.locator("#lr-input button[aria-label='Remove Image'], #lr-input button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#lr-input input[type=file]").set_input_files(str(path))


def _fetch_image(url: str) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(url, timeout=30).read())).convert("RGB"))


def _check_psnr_panel_pixels(page, lr: np.ndarray) -> None:
    """The PSNR panel shows the shipped default model's output (same tiles here; +-1 for thread-count rounding)."""
    from gensr.demo.processing import DemoEngine

    shown = _fetch_image(page.evaluate("() => document.querySelector('#sr-psnr img').src"))
    expected = DemoEngine({"default": "default"}, device="cpu", tile=64, generator=None).upscale("default", lr, 4)
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    extra = os.environ.get("GENSR_DEMO_SCREENSHOT")
    if extra:
        Path(extra).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, extra)
