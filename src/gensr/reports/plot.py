"""The perception-distortion plot of a comparison report (matplotlib, an optional dependency: ``gensr[plot]``).

Left panel: mean Y-PSNR (distortion, up = better) against mean NIQE (perception, left = more natural) of every
setting: one curve for the network-interpolation sweep (alpha), one per flow for the temperature sweep (tau),
single points for the other models, and the NIQE of the ground truth as a dashed vertical line. Right panel:
mean LR-PSNR against tau for each flow (the mean over samples at tau > 0), with the other models as horizontal
lines and the NTIRE 2021 bar of 45 dB. Drawn with ``matplotlib.figure.Figure`` and the Agg canvas: no pyplot
state, no display needed.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["PLOT_FILE", "matplotlib_missing", "perception_distortion_png"]

PLOT_FILE = "pd_plot.png"
NTIRE_LR_PSNR = 45.0


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else why not (one line)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"matplotlib is not installed ({exc.name or 'matplotlib'}); pip install 'gensr[plot]'"
    return None


def _point(rows: dict[str, dict[str, Any]], sid: str, key: str) -> float | None:
    v = rows[sid]["mean"].get(key)
    return None if v is None or isinstance(v, str) else float(v)


def _curve(ax, rows, points, key_x, key_y, fmt, label, tag) -> None:
    pts = [(p[tag] if key_x == tag else _point(rows, p["id"], key_x), _point(rows, p["id"], key_y), p[tag])
           for p in points]  # fmt: skip
    pts = [p for p in pts if p[0] is not None and p[1] is not None]
    if not pts:
        return
    ax.plot([p[0] for p in pts], [p[1] for p in pts], fmt, label=label)
    for x, y, t in pts:
        ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def perception_distortion_png(doc: dict[str, Any]) -> bytes:
    """The plot of a report document (``report.json``'s content) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = {r["id"]: r for r in doc["rows"]}
    sweeps = doc["sweeps"]
    fig = Figure(figsize=(11, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2)
    swept = {p["id"] for p in (sweeps["alpha"] or {}).get("points", [])}
    swept |= {p["id"] for pts in sweeps["tau"].values() for p in pts}
    if sweeps["alpha"]:
        a, b = sweeps["alpha"]["pair"]
        _curve(ax, rows, sweeps["alpha"]["points"], "niqe", "psnr", "o-", f"{a} -> {b} (alpha)", "alpha")
    for label, pts in sweeps["tau"].items():
        _curve(ax, rows, pts, "niqe", "psnr", "s-", f"{label} (tau, mean over samples)", "tau")
        _curve(bx, rows, pts, "tau", "lr_psnr", "s-", f"{label} samples", "tau")
    for r in doc["rows"]:
        if r["kind"] == "sr" and r["id"] not in swept:
            x, y = _point(rows, r["id"], "niqe"), _point(rows, r["id"], "psnr")
            if x is not None and y is not None:
                ax.plot([x], [y], "^", label=r["label"])
        if r["kind"] == "sr":
            y = _point(rows, r["id"], "lr_psnr")
            if y is not None:
                bx.axhline(y, linestyle=":", linewidth=1, color=f"C{len(bx.lines) % 10}", label=r["label"])
    hr = _point(rows, "hr", "niqe")
    if hr is not None:
        ax.axvline(hr, linestyle="--", color="gray", linewidth=1, label=f"HR NIQE {hr:.2f}")
    bx.axhline(NTIRE_LR_PSNR, linestyle="--", color="gray", linewidth=1, label="NTIRE bar 45 dB")
    ax.set_xlabel("NIQE (lower = more natural)")
    ax.set_ylabel("Y-PSNR (dB)")
    ax.set_title("perception-distortion")
    bx.set_xlabel("temperature tau")
    bx.set_ylabel("LR-PSNR (dB, RGB)")
    bx.set_title("LR consistency")
    for axis in (ax, bx):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    name = doc["settings"]["data_dir"].rstrip("/").split("/")[-1]
    fig.suptitle(f"{name} x{doc['settings']['scale']}: means over {len(doc['images'])} image(s)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
