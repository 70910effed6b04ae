"""The Gradio page of ``gensr demo``: layout and event wiring only (the work is in :mod:`gensr.demo.processing`).

Offline by construction: the theme uses system fonts only (no Google Fonts, no font files), analytics,
version checks, share links, server-side rendering, PWA and MCP are off, and a middleware strips any
``<script src>`` / ``<link href>`` to another host from the served HTML (Gradio 5's template has two), so the
page loads nothing from outside and works on a machine with no network. Gradio is imported only when
:func:`build_app` or :func:`launch` runs (``pip install "gensr[demo]"``); :func:`require_gradio` says how to
install it.

Element ids (stable hooks for tests and custom CSS): ``lr-input``, ``sample-pick``, ``btn-sample``,
``scale``, ``btn-upscale``, ``status``, ``sr-bicubic``, ``sr-psnr``, ``sr-esrgan``, ``alpha``,
``temperature``, ``num-samples``, ``btn-flow``, ``flow-gallery``, ``flow-std``, ``flow-lrpsnr``,
``tab-sr``, ``tab-biggan``, ``biggan-note``, ``biggan-class``, ``truncation``, ``btn-generate``,
``biggan-gallery``.
"""

from __future__ import annotations

import inspect
import os
import re
import time
from pathlib import Path
from typing import Any

from gensr.demo.processing import DEFAULT_MAX_PIXELS, MAX_SAMPLES, SAMPLES, DemoEngine, load_lr, sample_path
from gensr.errors import GensrError

__all__ = ["require_gradio", "build_app", "launch", "launch_kwargs", "strip_external_tags", "INSTALL_HINT"]

INSTALL_HINT = 'gensr demo needs Gradio: pip install "gensr[demo]" (or pip install "gradio>=5")'
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
OUT_HEIGHT = 300  # px of each result panel
CSS = """
#status, #flow-lrpsnr { font-size: 0.95em; }
.gensr-note { opacity: 0.8; }
"""
# Set before Gradio is imported: no usage analytics or version check (always), no Hugging Face Hub requests
# (unless the user set these two variables).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def require_gradio() -> Any:
    """The ``gradio`` module (imported with the offline settings); GensrError with the install line if absent."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import gradio
    except ImportError:
        raise GensrError(INSTALL_HINT) from None
    return gradio


def _kw(fn: Any, **kwargs: Any) -> dict[str, Any]:
    """``kwargs`` that ``fn`` accepts (Gradio 4, 5 and 6 differ in a few parameter names)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def _theme(gr: Any) -> Any:
    """The default theme with system fonts only (Gradio's own themes load Google Fonts or font files)."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def _fail(exc: Exception) -> Exception:
    """A GensrError as the error toast Gradio shows (one line); other exceptions pass through."""
    import gradio as gr

    return gr.Error(str(exc)) if isinstance(exc, GensrError) else exc


# ------------------------------------------------------------------------------------------------- layout


def build_app(engine: DemoEngine, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """The demo page (a ``gr.Blocks``) for a loaded :class:`DemoEngine`; not launched."""
    gr = require_gradio()
    blocks_kwargs: dict[str, Any] = {"title": "gensr demo", "analytics_enabled": False}
    if "theme" not in inspect.signature(gr.Blocks.launch).parameters:  # Gradio < 6: theme and CSS go here
        blocks_kwargs.update(theme=_theme(gr), css=CSS)
    with gr.Blocks(**_kw(gr.Blocks.__init__, **blocks_kwargs)) as app:
        tiles = f"networks in tiles of {engine.tile} LR px" if engine.tile else "networks on whole images"
        models = ", ".join(f"{k} x{v}" for k, v in engine.scales.items()) or "bicubic only"
        gr.Markdown(
            f"## gensr demo\nRuns on **{engine.device}**, {tiles}; inputs up to {max_pixels:,} pixels. Models: {models}"
        )
        with gr.Tabs():
            with gr.Tab("Super-resolution", elem_id="tab-sr"):
                _sr_tab(gr, engine, max_pixels)
            with gr.Tab("Generate (BigGAN)", elem_id="tab-biggan"):
                _biggan_tab(gr, engine)
    app.queue(**_kw(app.queue, default_concurrency_limit=1))
    return app


def _image(gr: Any, label: str, elem_id: str, **kwargs: Any) -> Any:
    """A PNG image panel without the share button (Gradio 6: ``buttons``; older: ``show_share_button``)."""
    kwargs.setdefault("buttons", ["download", "fullscreen"])
    kwargs.setdefault("show_share_button", False)
    return gr.Image(**_kw(gr.Image.__init__, label=label, elem_id=elem_id, format="png", **kwargs))


def _sr_tab(gr: Any, engine: DemoEngine, max_pixels: int) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            lr_in = _image(
                gr, "LR input (upload)", "lr-input", type="filepath", image_mode=None, sources=["upload"], height=220
            )
            with gr.Row():
                pick = gr.Dropdown(
                    list(SAMPLES), value=next(iter(SAMPLES)), label="bundled sample", elem_id="sample-pick"
                )
                load = gr.Button("Use sample", elem_id="btn-sample", size="sm")
            scale = gr.Dropdown(
                engine.scale_choices(),
                value=engine.default_scale,
                label="scale (models: their own; bicubic: any)",
                elem_id="scale",
            )
            go = gr.Button("Upscale", variant="primary", elem_id="btn-upscale")
            status = gr.Markdown("Upload an image or pick a sample.", elem_id="status")
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                out_bic = _image(gr, "bicubic (MATLAB)", "sr-bicubic", interactive=False, height=OUT_HEIGHT)
                out_psnr = _image(gr, "PSNR model (default)", "sr-psnr", interactive=False, height=OUT_HEIGHT)
                out_esr = _image(gr, "ESRGAN (interpolated)", "sr-esrgan", interactive=False, height=OUT_HEIGHT)
            alpha = gr.Slider(
                0.0,
                1.0,
                value=1.0,
                step=0.05,
                label="ESRGAN alpha: network interpolation, 0 = the PSNR model, 1 = ESRGAN",
                elem_id="alpha",
                interactive=engine.has("esrgan"),
            )
    with gr.Group(visible=engine.has("srflow")):
        gr.Markdown("### SRFlow: diverse samples")
        with gr.Row():
            tau = gr.Slider(0.0, 1.2, value=0.9, step=0.05, label="temperature", elem_id="temperature")
            num = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="samples", elem_id="num-samples")
            flow_go = gr.Button("New sample", variant="primary", elem_id="btn-flow")
        with gr.Row():
            gallery = gr.Gallery(
                **_kw(
                    gr.Gallery.__init__,
                    label="samples",
                    elem_id="flow-gallery",
                    columns=4,
                    height=OUT_HEIGHT,
                    object_fit="contain",
                    format="png",
                    scale=3,
                )
            )
            std = _image(gr, "per-pixel std across samples", "flow-std", interactive=False, scale=1, height=OUT_HEIGHT)
        readout = gr.Markdown("", elem_id="flow-lrpsnr")

    handlers = _SRHandlers(gr, engine, max_pixels)
    load.click(handlers.use_sample, [pick], [lr_in, status])
    lr_in.upload(handlers.check, [lr_in], [status])
    go.click(handlers.upscale_all, [lr_in, scale, alpha], [out_bic, out_psnr, out_esr, status])
    alpha.release(handlers.esrgan, [lr_in, scale, alpha], [out_esr, status])
    flow_go.click(handlers.flow, [lr_in, scale, tau, num], [gallery, std, readout])


def _biggan_tab(gr: Any, engine: DemoEngine) -> None:
    if engine.generator is None:
        note = engine.generator_note or "BigGAN generation is not available."
        gr.Markdown(note, elem_id="biggan-note", elem_classes=["gensr-note"])
        return
    names = engine.class_names()
    with gr.Row():
        cls = gr.Dropdown(names, value=names[0], label="class", elem_id="biggan-class")
        trunc = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="truncation", elem_id="truncation")
        num = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="images")
        go = gr.Button("Generate", variant="primary", elem_id="btn-generate")
    gallery = gr.Gallery(**_kw(gr.Gallery.__init__, label="generated", elem_id="biggan-gallery", columns=4))

    bar = gr.Progress()  # a gr.Progress default gives the handler a progress bar in the page

    def generate(choice: str, truncation: float, n: float, progress: Any = bar) -> list:
        progress(0.0, desc="BigGAN")
        try:
            return engine.generate(names.index(choice), truncation, int(n))
        except Exception as exc:  # noqa: BLE001 - the generator is optional: report, never crash the page
            raise gr.Error(f"BigGAN: {exc}") from None

    go.click(generate, [cls, trunc, num], [gallery])


# ----------------------------------------------------------------------------------------------- handlers


class _SRHandlers:
    """The super-resolution tab's event handlers: uploads checked first, GensrError shown as a toast."""

    def __init__(self, gr: Any, engine: DemoEngine, max_pixels: int) -> None:
        self.gr, self.engine, self.max_pixels = gr, engine, max_pixels
        # a gr.Progress default gives the handler a progress bar in the page (one object per handler)
        bars = [gr.Progress() for _ in range(3)]

        def upscale_all(path: str | None, scale: int, alpha: float, progress: Any = bars[0]) -> tuple:
            return self._upscale_all(path, scale, alpha, progress)

        def esrgan(path: str | None, scale: int, alpha: float, progress: Any = bars[1]) -> tuple:
            return self._esrgan(path, scale, alpha, progress)

        def flow(path: str | None, scale: int, tau: float, num: float, progress: Any = bars[2]) -> tuple:
            return self._flow(path, scale, tau, num, progress)

        self.upscale_all, self.esrgan, self.flow = upscale_all, esrgan, flow

    def _lr(self, path: str | None) -> Any:
        if not path:
            raise self.gr.Error("upload an image or pick a sample first")
        try:
            return load_lr(path, self.max_pixels)
        except GensrError as exc:
            raise _fail(exc) from None

    def use_sample(self, label: str) -> tuple[str, str]:
        path = sample_path(label)
        return str(path), f"sample **{label}**: {self.check(str(path))}"

    def check(self, path: str | None) -> str:
        """Status line right after an upload: the size, or why it is refused (header only, nothing decoded)."""
        from gensr.demo.processing import check_upload

        if not path:
            return "Upload an image or pick a sample."
        try:
            w, h = check_upload(path, self.max_pixels)
        except GensrError as exc:
            return f"**refused:** {exc}"
        return f"{w}x{h} px ({w * h:,} of at most {self.max_pixels:,}): ready"

    def _upscale_all(self, path: str | None, scale: int, alpha: float, progress: Any) -> tuple:
        lr = self._lr(path)
        h, w = lr.shape[:2]
        outs, notes = [], [f"input {w}x{h}, x{int(scale)}"]
        stages = [("bicubic", "bicubic"), ("default", "PSNR"), ("esrgan", f"ESRGAN alpha {alpha:.2f}")]
        for i, (panel, label) in enumerate(stages):
            skip = None if panel == "bicubic" else self.engine.scale_note(panel, scale)
            if skip:
                outs.append(None)
                notes.append(f"{label}: skipped ({skip})")
                continue
            start = time.perf_counter()
            try:
                img = self.engine.upscale(
                    panel, lr, scale, alpha, progress=lambda f, t, i=i: progress((i + f) / len(stages), desc=t)
                )
            except GensrError as exc:
                raise _fail(exc) from None
            outs.append(img)
            notes.append(f"{label} {img.shape[1]}x{img.shape[0]} in {time.perf_counter() - start:.1f} s")
        return (*outs, " · ".join(notes))

    def _esrgan(self, path: str | None, scale: int, alpha: float, progress: Any) -> tuple:
        lr = self._lr(path)
        skip = self.engine.scale_note("esrgan", scale)
        if skip:
            return None, f"ESRGAN: skipped ({skip})"
        start = time.perf_counter()
        try:
            img = self.engine.upscale("esrgan", lr, scale, alpha, progress=lambda f, t: progress(f, desc=t))
        except GensrError as exc:
            raise _fail(exc) from None
        return img, f"ESRGAN alpha {alpha:.2f}: {img.shape[1]}x{img.shape[0]} in {time.perf_counter() - start:.1f} s"

    def _flow(self, path: str | None, scale: int, tau: float, num: float, progress: Any) -> tuple:
        lr = self._lr(path)
        skip = self.engine.scale_note("srflow", scale)
        if skip:
            raise self.gr.Error(f"SRFlow: {skip}")
        progress(0.0, desc="SRFlow")
        try:
            res = self.engine.sample(lr, tau, int(num), progress=lambda f, t: progress(f, desc=t))
        except GensrError as exc:
            raise _fail(exc) from None
        captions = [f"#{i + 1} LR-PSNR {v:.2f} dB" for i, v in enumerate(res.lr_psnr)]
        return list(zip(res.samples, captions, strict=True)), res.std_map, res.readout()


# ------------------------------------------------------------------------------------------------- launch


def launch_kwargs(gr: Any, host: str, port: int, max_pixels: int) -> dict[str, Any]:
    """``Blocks.launch`` arguments: local only, no share link, no telemetry, no SSR/PWA/MCP, system fonts."""
    assets = Path(__file__).resolve().parent.parent / "assets"
    kwargs: dict[str, Any] = dict(
        server_name=host,
        server_port=int(port),
        share=False,
        inbrowser=False,
        show_error=True,
        quiet=True,
        allowed_paths=[str(assets)],  # the bundled samples
        max_file_size=max(16 << 20, 10 * int(max_pixels)),  # bytes; the pixel limit is checked separately
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        footer_links=[],  # Gradio 6: no "Built with Gradio" / API links
        show_api=False,  # Gradio 4/5
        theme=_theme(gr),  # Gradio 6 takes theme and CSS here (older ones in Blocks)
        css=CSS,
        app_kwargs={"middleware": [_offline_middleware()]},
    )
    return _kw(gr.Blocks.launch, **kwargs)


# <script src=...> and <link href=...> tags that load from another host (http://, https:// or //)
_EXTERNAL_TAG = re.compile(
    rb"""<(script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']?(?:https?:)?//[^>]*>(?:\s*</script\s*>)?""",
    re.IGNORECASE,
)


def strip_external_tags(html: bytes) -> bytes:
    """``html`` without the script and link tags that load from other hosts.

    Gradio 5's page template preconnects to Google Fonts and loads iframe-resizer from cdnjs (Gradio 6's does
    neither); the page works without them (they matter only when it is embedded in an iframe).
    """
    return _EXTERNAL_TAG.sub(b"", html)


class _OfflineHTML:
    """ASGI middleware: every HTML response goes out through :func:`strip_external_tags`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"start": None, "chunks": []}

        async def send_stripped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = headers.get(b"content-type", b"").startswith(b"text/html")
                if html and headers.get(b"content-encoding", b"identity") == b"identity":
                    state["start"] = message  # hold the headers until the whole body is known
                    return
            elif message["type"] == "http.response.body" and state["start"] is not None:
                state["chunks"].append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = strip_external_tags(b"".join(state["chunks"]))
                start, state["start"] = state["start"], None
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, send_stripped)


def _offline_middleware() -> Any:
    from starlette.middleware import Middleware

    return Middleware(_OfflineHTML)


def launch(engine: DemoEngine, host: str = "127.0.0.1", port: int = 7860, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Serve the demo at ``http://host:port/`` until interrupted (Ctrl-C, SIGTERM)."""
    gr = require_gradio()
    app = build_app(engine, max_pixels)
    print(f"gensr demo: serving on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    app.launch(**launch_kwargs(gr, host, port, max_pixels))
