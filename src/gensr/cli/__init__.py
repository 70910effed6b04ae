"""The ``gensr`` command line: one module per sub-command, imported only when that command runs.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. User mistakes are raised as
:class:`gensr.errors.GensrError` and printed here as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line help). Kept as data so `gensr --help` does not import torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "upscale": ("gensr.cli.upscale", "super-resolve images with an RRDB/ESRGAN model or bicubic"),
    "degrade": ("gensr.cli.degrade", "make LR images with the MATLAB-exact bicubic (mod-crops HR first)"),
    "eval": ("gensr.cli.evaluate", "score SR images or sample sets: PSNR, SSIM, LR-PSNR, NIQE, LPIPS, diversity"),
    "compare": (
        "gensr.cli.compare",
        "compare SR models (bicubic, PSNR, ESRGAN, SRFlow samples) on HR images: report with crops and P-D plot",
    ),
    "train": ("gensr.cli.train", "train a model from a YAML config"),
    "info": ("gensr.cli.info", "print a checkpoint's detected layout and hyper-parameters"),
    "convert": ("gensr.cli.convert", "convert a supported checkpoint to the gensr safetensors layout"),
    "interpolate": (
        "gensr.cli.interpolate",
        "blend two checkpoints of one architecture (network interpolation)",
    ),
    "sample": ("gensr.cli.sample", "draw diverse SR samples from an SRFlow model"),
    "encode": ("gensr.cli.encode", "encode an HR image with its LR into SRFlow latents"),
    "decode": ("gensr.cli.decode", "decode SRFlow latents (from `gensr encode`) back to an image"),
    "score": ("gensr.cli.score", "bits/dim of SR images under an SRFlow model"),
    "manipulate": ("gensr.cli.manipulate", "SRFlow latent editing: normalise, resample, transfer, restore"),
    "niqe-fit": ("gensr.cli.niqe_fit", "fit a NIQE model on a folder of pristine images (MATLAB fitniqe)"),
    "generate": ("gensr.cli.generate", "class-conditional images from a BigGAN generator (truncation, interpolation)"),
    "fid": ("gensr.cli.fid", "FID (and --is Inception Score) of generated images with the TF Inception weights"),
    "demo": ("gensr.cli.demo", "local web demo (Gradio, optional extra gensr[demo]): upscale, ESRGAN alpha, SRFlow"),
}


def add_model_config_argument(p: argparse.ArgumentParser) -> None:
    """``--model-config YAML``: what an official checkpoint's weights cannot tell (every command that loads one)."""
    p.add_argument(
        "--model-config",
        default=None,
        metavar="YAML",
        help="an official checkpoint's training YAML (or a YAML of gensr config fields), for what its weights "
        "cannot tell (e.g. which RRDB blocks an SRFlow model taps); fields the weights show must agree",
    )


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module exists in this installation."""
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser(load_command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``load_command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="gensr", description="Generative image super-resolution toolkit.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == load_command:
            importlib.import_module(module).add_arguments(p)
    return parser


class _VersionAction(argparse.Action):
    """``--version``, with the version looked up only when asked (importlib.metadata costs ~45 ms per start)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"gensr {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gensr")
    except PackageNotFoundError:
        return "unknown"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that the same clean-up runs (temporary files removed, a
    training checkpoint saved)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def as_flags(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """``message`` with parameter names replaced by the command's flags: a leading name (library errors name
    parameters: ``tile_overlap must ...`` -> ``--tile-overlap must ...``) and names quoted in backticks anywhere
    (``use `outscale` to resize`` -> ``use --outscale to resize``). Only the CLI knows flags."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None or command not in sub.choices:
        return message
    flags = {
        a.dest: next((o for o in a.option_strings if o.startswith("--")), a.option_strings[0])
        for a in sub.choices[command]._actions
        if a.option_strings and a.dest != "help"
    }
    import re

    message = re.sub(r"`(\w+)`", lambda m: flags.get(m.group(1), m.group(1)), message)
    head = message.split(" ", 1)[0].rstrip(":,")
    if head in flags:
        return flags[head] + message[len(head) :]
    return message


def _handle_termination_signals() -> None:
    import signal

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, raise_terminated)


def _let_gensr_limit_decide() -> None:
    """The command line is the application, so it (never the library) sets Pillow's process-wide
    decompression-bomb guard: raised to at least gensr's pixel limit (:func:`gensr.io.limits.max_pixels_limit`),
    which gensr checks on every image header before decoding, so that Pillow (which refuses images over twice
    ``Image.MAX_IMAGE_PIXELS``, TIFF files also when decoding) never refuses an image gensr accepts. Only ever
    raised; a bad ``$GENSR_MAX_PIXELS`` is reported by the first image read."""
    from PIL import Image

    from gensr.errors import GensrError
    from gensr.io.limits import max_pixels_limit

    try:
        limit = max_pixels_limit()
    except GensrError:
        return
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that a command whose module names a trailing list positional in
    ``INTERMIXED`` (``gensr train CONFIG --resume key=value ...``) takes the words after its options too."""
    args, extra = parser.parse_known_args(argv)
    dest = getattr(importlib.import_module(_available()[args.command][0]), "INTERMIXED", None) if args.command else None
    if extra and dest and not any(word.startswith("-") for word in extra):
        setattr(args, dest, [*getattr(args, dest), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gensr`` console script. Returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _handle_termination_signals()
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load_command=command)
    args = _parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    from gensr.errors import GensrError

    module = importlib.import_module(_available()[args.command][0])
    try:
        _let_gensr_limit_decide()
        return int(module.run(args) or 0)
    except GensrError as exc:
        print(f"gensr: error: {as_flags(str(exc), parser, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            import signal

            print(f"gensr: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
            return 128 + exc.signum
        print("gensr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
