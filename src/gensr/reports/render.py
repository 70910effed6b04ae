"""``report.md``, the self-contained ``report.html`` and ``report.json`` of a comparison, as bytes.

The HTML embeds every picture as a base64 PNG ``data:`` URI and its style inline: it references no file and no
network resource, so it can be mailed or archived alone. Numbers are the report document's (``report.json``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np

__all__ = ["REPORT_FILES", "markdown", "html_page", "png_bytes", "report_files"]

REPORT_FILES = ("report.json", "report.md", "report.html")
# column key, heading, digits
_COLUMNS = (
    ("psnr", "Y-PSNR", 2),
    ("ssim", "SSIM", 4),
    ("lr_psnr", "LR-PSNR", 2),
    ("niqe", "NIQE", 3),
    ("lpips", "LPIPS", 4),
    ("bpd", "bits/dim", 3),
    ("best_psnr", "best Y-PSNR", 2),
    ("pixel_std", "pixel std", 2),
    ("diversity_lpips", "NTIRE div. (LPIPS)", 2),
    ("diversity_pixel", "div. (pixel maps)", 2),
)


def png_bytes(img: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) or (H, W, 1) image as PNG bytes."""
    from PIL import Image

    a = np.asarray(img)
    im = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _fmt(v: Any, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def _columns(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    present = {k for r in doc["rows"] for k in r["mean"]}
    return [c for c in _COLUMNS if c[0] in present]


def _mean_table(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(doc)
    head = ["setting"] + [c[1] for c in cols]
    body = [[r["label"]] + [_fmt(r["mean"].get(k), d) for k, _, d in cols] for r in doc["rows"]]
    return head, body


def _sweep_tables(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    rows = {r["id"]: r for r in doc["rows"]}
    cols = [c for c in _columns(doc) if c[0] != "ssim"]
    out = []
    alpha = doc["sweeps"]["alpha"]
    if alpha:
        title = f"Network interpolation {alpha['pair'][0]} -> {alpha['pair'][1]} (alpha)"
        body = [
            [f"{p['alpha']:g}"] + [_fmt(rows[p["id"]]["mean"].get(k), d) for k, _, d in cols] for p in alpha["points"]
        ]
        out.append((title, ["alpha"] + [c[1] for c in cols], body))
    for label, points in doc["sweeps"]["tau"].items():
        title = f"{label}: temperature sweep (tau > 0: means over the samples)"
        body = [[f"{p['tau']:g}"] + [_fmt(rows[p["id"]]["mean"].get(k), d) for k, _, d in cols] for p in points]
        out.append((title, ["tau"] + [c[1] for c in cols], body))
    return out


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in body]


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["settings"]
    models = ", ".join(
        f"`{m['label']}` ({m['kind']}" + (f", sha256 {m['sha256'][:12]}" if m["sha256"] else "") + ")"
        for m in s["models"]
    )
    return [
        f"- data: `{s['data_dir']}`, {len(doc['images'])} image(s), x{s['scale']}; LR: {s['lr']}",
        f"- models: {models}",
        f"- flow: taus {', '.join(f'{t:g}' for t in s['taus']) or '-'}, {s['samples']} sample(s) per tau > 0, "
        f"seed {s['seed']}; bits/dim under `{s['score_model'] or '-'}`",
        f"- NIQE model: {s['niqe']['params']}; LPIPS ({s['lpips']['net']}): "
        f"{'computed' if s['lpips']['computed'] else 'not computed'}",
    ] + [f"- {k}: {v}" for k, v in s["conventions"].items()]


def markdown(doc: dict[str, Any], command: str) -> str:
    """The Markdown report (tables of means, the sweeps, the plot link, notes)."""
    name = doc["settings"]["data_dir"].rstrip("/").split("/")[-1]
    lines = [f"# gensr compare: {name} x{doc['settings']['scale']}", "", f"Command: `{command}`", ""]
    lines += _summary_lines(doc) + ["", "## Means over the images", ""]
    lines += _md_table(*_mean_table(doc))
    for title, head, body in _sweep_tables(doc):
        lines += ["", f"## {title}", ""] + _md_table(head, body)
    lines += ["", "## Perception-distortion plot", ""]
    plot = doc.get("plot") or {}
    lines += [f"![perception-distortion]({plot['file']})" if plot.get("file") else f"Skipped: {plot.get('skipped')}"]
    crops = doc["crops"]
    if crops["windows"]:
        lines += ["", "## Crops (shown in report.html)", "", f"Chosen by: {crops['measure']}.", ""]
        lines += [
            f"- {w['image']}: x {w['x']}, y {w['y']}, {w['w']}x{w['h']} px (score {w['score']:.2f})"
            for w in crops["windows"]
        ]
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def _html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _img(png: bytes, alt: str, cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _crops_html(doc: dict[str, Any], tiles: list[list[np.ndarray]], columns: list[str]) -> str:
    parts = [f"<p>Chosen by: {html.escape(doc['crops']['measure'])}. Shown 1.5x, nearest neighbour.</p>"]
    for w, row in zip(doc["crops"]["windows"], tiles, strict=True):
        figs = "".join(
            f"<figure>{_img(png_bytes(t), c, 'crop')}<figcaption>{html.escape(c)}</figcaption></figure>"
            for t, c in zip(row, columns, strict=True)
        )
        head = f"{w['image']}: x {w['x']}, y {w['y']}, {w['w']}x{w['h']} px (score {w['score']:.2f})"
        parts.append(f"<h3>{html.escape(head)}</h3><div class='row'>{figs}</div>")
    return "".join(parts)


def _per_image_html(doc: dict[str, Any]) -> str:
    head = ["image"] + [r["label"] for r in doc["rows"] if r["kind"] != "reference"]
    body = []
    for im in doc["images"]:
        cells = [im["name"]]
        for r in doc["rows"]:
            if r["kind"] != "reference":
                v = r["per_image"][im["name"]]
                cells.append(f"{_fmt(v.get('psnr'), 2)} / {_fmt(v.get('niqe'), 2)}")
        body.append(cells)
    return "<details><summary>Per image: Y-PSNR / NIQE</summary>" + _html_table(head, body) + "</details>"


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;font-size:13px}th{background:#f2f2f2}"
    "td:first-child{text-align:left}.row{display:flex;gap:6px;overflow-x:auto}figure{margin:0}"
    "figcaption{font-size:11px;text-align:center;max-width:200px}"
    "img.crop{width:144px;image-rendering:pixelated}img.plot{max-width:100%}"
)


def html_page(doc: dict[str, Any], tiles: list[list[np.ndarray]], columns: list[str], plot: bytes | None,
              command: str) -> str:  # fmt: skip
    """The self-contained HTML report."""
    name = doc["settings"]["data_dir"].rstrip("/").split("/")[-1]
    title = f"gensr compare: {name} x{doc['settings']['scale']}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    parts.append(f"<p>Command: <code>{html.escape(command)}</code></p><ul>")
    parts += [f"<li>{html.escape(line[2:]).replace('`', '')}</li>" for line in _summary_lines(doc)]
    parts.append("</ul><h2>Means over the images</h2>" + _html_table(*_mean_table(doc)))
    for t, head, body in _sweep_tables(doc):
        parts.append(f"<h2>{html.escape(t)}</h2>" + _html_table(head, body))
    parts.append("<h2>Perception-distortion plot</h2>")
    plot_doc = doc.get("plot") or {}
    parts.append(_img(plot, "perception-distortion plot", "plot") if plot else
                 f"<p>Skipped: {html.escape(str(plot_doc.get('skipped')))}</p>")  # fmt: skip
    if tiles:
        parts.append("<h2>Where the models differ most</h2>" + _crops_html(doc, tiles, columns))
    parts.append(_per_image_html(doc))
    if doc["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"]) + "</ul>")
    return "".join(parts) + "</body></html>\n"


def report_files(result: Any, command: str) -> dict[str, bytes]:
    """File name -> bytes of every report file (the plot only when matplotlib is importable).

    ``result`` is a :class:`gensr.reports.compare.CompareResult`; its document gains the ``plot`` entry.
    """
    from gensr.reports.plot import PLOT_FILE, matplotlib_missing, perception_distortion_png

    doc = result.doc
    reason = matplotlib_missing()
    doc["plot"] = {"file": PLOT_FILE} if reason is None else {"file": None, "skipped": reason}
    plot = perception_distortion_png(doc) if reason is None else None
    files: dict[str, bytes] = {}
    if plot is not None:
        files[PLOT_FILE] = plot
    files["report.md"] = markdown(doc, command).encode("utf-8")
    files["report.html"] = html_page(doc, result.tiles, result.columns, plot, command).encode("utf-8")
    files["report.json"] = (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode("utf-8")
    return files
