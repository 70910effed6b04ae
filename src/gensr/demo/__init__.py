"""The web demo behind ``gensr demo``: upscale, interpolate PSNR <-> ESRGAN, sample SRFlow, generate with BigGAN.

* :mod:`gensr.demo.processing` -- everything the demo computes, as plain functions and one
  :class:`~gensr.demo.processing.DemoEngine` over uint8 numpy images; it imports torch but not Gradio, so it
  is tested without a browser or a web server.
* :mod:`gensr.demo.app` -- the Gradio page (layout and event wiring only) and :func:`~gensr.demo.app.launch`;
  Gradio is an optional extra (``pip install "gensr[demo]"``) imported only there.

The demo sits at the top layer, beside :mod:`gensr.cli`: it uses ``inference``, ``metrics`` and ``io``.
Importing this package imports neither torch nor Gradio.
"""

from __future__ import annotations
