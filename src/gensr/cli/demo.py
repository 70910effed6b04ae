"""``gensr demo``: a local web page to try the models (needs the optional Gradio extra: ``gensr[demo]``).

Upload an LR image (or pick a bundled sample) and compare bicubic, the PSNR model, ESRGAN with an alpha slider
(network interpolation PSNR <-> ESRGAN) and SRFlow samples (temperature, a "new sample" button, the std map
and each sample's LR-PSNR); a second tab generates class-conditional images with a BigGAN generator when one
is available. The page works with no network (no CDN fonts or scripts, no analytics, no share link) and runs
on the CPU in tiles with a progress bar. Uploads over ``--max-pixels`` are refused before any work.

Without Gradio the command prints one line saying how to install it and exits with status 2.
"""

from __future__ import annotations

import argparse

from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--models",
        default="default,esrgan,srflow",
        metavar="LIST",
        help="panels to show, comma-separated, each NAME or NAME=CHECKPOINT with NAME in default, esrgan, srflow "
        "(default: default,esrgan,srflow with the shipped models)",
    )
    p.add_argument(
        "--generator",
        default="biggan_cifar",
        metavar="NAME_OR_CKPT",
        help="BigGAN generator for the Generate tab; 'none' to leave it off (default biggan_cifar; a missing "
        "model leaves a note in that tab)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest input image accepted, width x height (default 1,000,000)",
    )
    p.add_argument("--tile", type=int, default=128, metavar="N", help="network tile size in LR pixels (0 = none)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    from gensr.demo.app import launch, require_gradio
    from gensr.demo.processing import DemoEngine, parse_models

    if not 1 <= args.port <= 65535:
        raise GensrError(f"--port must be in 1..65535, got {args.port}")
    if args.max_pixels < 1:
        raise GensrError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    if args.tile < 0:
        raise GensrError(f"--tile must be >= 0 (0 = whole image), got {args.tile}")
    models = parse_models(args.models)
    require_gradio()  # before loading any model: a missing extra is one line and exit status 2
    check_port_free(args.host, args.port)
    engine = DemoEngine(models, device=args.device, tile=args.tile, generator=args.generator)
    if engine.generator_note:
        from gensr.errors import note

        note(engine.generator_note)
    launch(engine, host=args.host, port=args.port, max_pixels=args.max_pixels)
    return 0


def check_port_free(host: str, port: int) -> None:
    """GensrError (one line) when ``host:port`` cannot be listened on: in use, or not an address of this machine."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise GensrError(f"--host {host}: not a known address ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server itself binds
        try:
            s.bind(address)
        except OSError as exc:
            raise GensrError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); choose another port"
            ) from None
