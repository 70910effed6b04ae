"""``gensr compare DATA_DIR -s 4 -o REPORT_DIR``: the GAN-vs-flow comparison report of several SR models.

DATA_DIR holds ``HR/`` and optionally ``LR/``; every model of ``--models`` (shipped names or checkpoint files;
only SR models, kind sr or flow-sr) runs on every image, the flow at every ``--taus`` temperature, and the
PSNR/GAN pair of ``--interp`` blended at every ``--alphas`` value. Writes ``report.json``, ``report.md``,
``report.html`` (self-contained) and, with matplotlib, ``pd_plot.png`` into REPORT_DIR; see
:mod:`gensr.reports.compare` for what is measured and how.

Defaults (chosen so that Set5 x4 with the shipped models takes minutes on one CPU thread): ``--models
bicubic,default,esrgan,srflow``, ``--alphas 0,0.25,0.5,0.75,1`` (when the pair is present), ``--taus
0,0.5,0.7,0.9`` (each in [0, 2]: above 1 samples hotter than the prior), ``--samples 10``, ``--seed 0``,
``--crops 4``.

Resumable: results are cached per (image, setting) under ``REPORT_DIR/.cache``; run the same command again
after an interruption. The report files are claimed before any work (existing ones need ``--overwrite``) and
written only when everything is computed, each atomically.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with HR/ (ground truth) and optionally LR/")
    p.add_argument("-s", "--scale", type=int, required=True, help="SR scale factor")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for the report files")
    p.add_argument(
        "--models",
        default="bicubic,default,esrgan,srflow",
        metavar="LIST",
        help="comma-separated shipped names, 'bicubic' or checkpoint files (default bicubic,default,esrgan,srflow)",
    )
    p.add_argument(
        "--alphas",
        default=None,
        metavar="LIST",
        help="network-interpolation alphas in [0, 1] between the --interp pair (default 0,0.25,0.5,0.75,1 when "
        "both are in --models; 'none' = no sweep)",
    )
    p.add_argument(
        "--interp", default="default,esrgan", metavar="A,B", help="PSNR model A and GAN B of the alpha sweep"
    )
    p.add_argument(
        "--taus",
        default="0,0.5,0.7,0.9",
        metavar="LIST",
        help="flow temperatures in [0, 2]; 0 = the deterministic mean (default 0,0.5,0.7,0.9)",
    )
    p.add_argument("--samples", type=int, default=10, metavar="N", help="flow samples per image and tau > 0 (10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the flow samples and of bits/dim (default 0)")
    p.add_argument("--niqe-params", metavar="FILE", help="NIQE model .npz from `gensr niqe-fit` (default: MATLAB's)")
    p.add_argument(
        "--lpips-weights", metavar="PATH", help="LPIPS weights folder or file (default $GENSR_LPIPS_WEIGHTS)"
    )
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    p.add_argument("--crops", type=int, default=4, metavar="N", help="side-by-side crops in report.html (default 4)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="flow decoder passes per forward (4)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing report files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")


def _options(args: argparse.Namespace):
    from gensr.reports.compare import CompareOptions, parse_float_list

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    interp = tuple(m.strip() for m in args.interp.split(","))
    if len(interp) != 2 or not all(interp):
        raise GensrError(f"--interp: expected two model names A,B, got {args.interp!r}")
    return CompareOptions(
        data_dir=Path(args.data_dir),
        scale=args.scale,
        models=models,
        alphas=None if args.alphas is None else parse_float_list(args.alphas, "--alphas"),
        interp=(interp[0], interp[1]),
        taus=parse_float_list(args.taus, "--taus"),
        samples=args.samples,
        seed=args.seed,
        niqe_params=args.niqe_params,
        lpips_weights=args.lpips_weights,
        lpips_net=args.lpips_net,
        crops=args.crops,
        device=args.device,
        batch_size=args.batch_size,
    )


def _command(args: argparse.Namespace) -> str:
    """The command line that regenerates this report (as typed, without --overwrite/--quiet)."""
    argv = [a for a in sys.argv[1:] if a not in ("--overwrite", "-q", "--quiet")]
    if not argv or argv[0] != "compare":
        argv = ["compare", args.data_dir, "-s", str(args.scale), "--models", args.models, "-o", args.output]
    return "gensr " + " ".join(shlex.quote(a) for a in argv)


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, ensure_writable_dir
    from gensr.reports.compare import Comparison
    from gensr.reports.plot import PLOT_FILE, matplotlib_missing
    from gensr.reports.render import REPORT_FILES, report_files

    start = time.perf_counter()
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise GensrError(f"{out}: output path exists and is not a folder")
    comparison = Comparison(_options(args), out)  # every input read and checked here
    policy = OutputPolicy(comparison.input_files(), overwrite=args.overwrite)
    names = list(REPORT_FILES) + ([PLOT_FILE] if matplotlib_missing() is None else [])
    for name in names:  # claimed before any work: nothing is replaced without --overwrite
        policy.claim(out / name)
    ensure_writable_dir(out)
    result = comparison.run(progress=_progress_bar(len(comparison.images) * len(comparison.settings), args.quiet))
    files = report_files(result, _command(args))
    for name in sorted(files, key=lambda n: n == "report.json"):  # report.json last: it marks a finished report
        policy.write_bytes(out / name, files[name])
    if not args.quiet:
        print(
            f"wrote {', '.join(sorted(files))} to {out} ({result.computed} item(s) computed, {result.cached} from "
            f"the cache; {time.perf_counter() - start:.1f} s)",
            file=sys.stderr,
        )
    return 0


def _progress_bar(total: int, quiet: bool):
    """A ``progress(done, total, text)`` callback drawing a tqdm bar on a terminal; None elsewhere."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="item", desc="compare", dynamic_ncols=True, leave=False, file=sys.stderr)

    def progress(done: int, total: int, text: str) -> None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["compare", *sys.argv[1:]]))
