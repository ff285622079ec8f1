"""Arrays to pictures: labelled PNG grids (Pillow) and plots (matplotlib, Agg). All image I/O of
fastconv.vis lives here.

A tile is (C, H, W) with C = 1 (grey, or a colormap) or C = 3 (RGB), or (H, W). Each tile is normalised
on its own by default ('tile'), so a weak map is as visible as a strong one; 'global' shares one scale
over the grid (to compare magnitudes), None expects values already in [0, 1].
  mode 'minmax'    (a − min) / (max − min)
  mode 'symmetric' 0.5 + a / (2·max|a|)      zero is mid-grey: signed maps (gradients, projections)
  mode 'abs'       |a| / max|a|
Small tiles are enlarged by an integer factor (nearest neighbour) to about `tile_px` pixels.
"""
from __future__ import annotations

import os

import numpy as np

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def normalize(a, mode="minmax", lo=None, hi=None):
    """a scaled to [0, 1] (see the module docstring); lo/hi override the min/max (or max|a|)."""
    a = np.asarray(a, dtype=np.float64)
    if mode == "minmax":
        lo = a.min() if lo is None else lo
        hi = a.max() if hi is None else hi
        return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a)
    m = np.abs(a).max() if hi is None else hi
    if mode == "symmetric":
        return np.clip(0.5 + a / (2 * m), 0, 1) if m > 0 else np.full_like(a, 0.5)
    if mode == "abs":
        return np.clip(np.abs(a) / m, 0, 1) if m > 0 else np.zeros_like(a)
    raise ValueError(f"mode: expected 'minmax', 'symmetric' or 'abs', got {mode!r}")


def colorize(a, cmap="viridis"):
    """(H, W) in [0, 1] -> (3, H, W) through a matplotlib colormap."""
    from matplotlib import colormaps
    return np.moveaxis(colormaps[cmap](np.clip(a, 0, 1))[..., :3], -1, 0)


def overlay(image, heat, alpha=0.55, cmap="jet", mode="minmax"):
    """A (3, H, W) tile: the image (C, H, W) in grey/colour under the normalised heat map (H, W)."""
    img = np.moveaxis(_rgb(normalize(image, "minmax"), None), -1, 0)
    return (1 - alpha) * img + alpha * colorize(normalize(heat, mode), cmap)


def gray(a, mode="minmax"):
    """A (3, H, W) grey tile of a (C, H, W) or (H, W) array (colour images stay colour), normalised."""
    return np.moveaxis(_rgb(normalize(a, mode), None), -1, 0)


def _rgb(t, cmap):
    """(C, H, W) or (H, W) in [0, 1] -> (H, W, 3)."""
    t = np.asarray(t)
    if t.ndim == 3 and t.shape[0] == 3:
        return np.moveaxis(t, 0, -1)
    if t.ndim == 3:
        t = t[0] if t.shape[0] == 1 else t.mean(axis=0)
    if cmap:
        return np.moveaxis(colorize(t, cmap), 0, -1)
    return np.repeat(t[..., None], 3, axis=-1)


def _font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def grid(tiles, ncols=None, labels=None, row_labels=None, title=None, normalize_by="tile", mode="minmax",
         cmap=None, tile_px=72, pad=6, font_size=12):
    """A labelled grid of tiles as a uint8 (H, W, 3) image. tiles: a sequence/array of tiles (see module
    docstring), or an (R, K, ...) array laid out as R rows of K (then ncols = K). labels: one string per
    tile (under it); row_labels: one per row (left of it); title: a line above the grid."""
    from PIL import Image, ImageDraw
    if isinstance(tiles, np.ndarray) and tiles.ndim >= 5:   # (R, K, C, H, W): rows of tiles
        ncols = tiles.shape[1] if ncols is None else ncols
        tiles = [t for row in tiles for t in row]
    tiles = [np.asarray(t) for t in tiles]
    if not tiles:
        raise ValueError("grid: no tiles")
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(len(tiles))))
    nrows = int(np.ceil(len(tiles) / ncols))
    if normalize_by == "global":
        allv = np.concatenate([np.asarray(t, float).ravel() for t in tiles])
        lo, hi = allv.min(), (np.abs(allv).max() if mode != "minmax" else allv.max())
        imgs = [normalize(t, mode, lo if mode == "minmax" else None, hi) for t in tiles]
    elif normalize_by == "tile":
        imgs = [normalize(t, mode) for t in tiles]
    elif normalize_by is None:
        imgs = [np.clip(np.asarray(t, float), 0, 1) for t in tiles]
    else:
        raise ValueError(f"normalize_by: expected 'tile', 'global' or None, got {normalize_by!r}")
    imgs = [_rgb(t, cmap) for t in imgs]
    imgs = [_enlarge(i, max(1, int(round(tile_px / max(i.shape[:2]))))) for i in imgs]
    th = max(i.shape[0] for i in imgs)
    tw = max(i.shape[1] for i in imgs)
    labels = None if labels is None else [_ascii(s) for s in labels]
    row_labels = None if row_labels is None else [_ascii(s) for s in row_labels]
    title = _ascii(title) if title else title
    font = _font(font_size)
    line = font_size + 4
    label_h = line if labels is not None else 0
    if labels is not None and max(len(str(s)) for s in labels) * font_size * 0.6 > tw:
        tw = int(max(len(str(s)) for s in labels) * font_size * 0.6)   # room for the labels
    left = 0 if row_labels is None else int(max(len(str(s)) for s in row_labels) * font_size * 0.6) + pad
    top = line + pad if title else 0
    W = left + pad + ncols * (tw + pad)
    H = top + pad + nrows * (th + label_h + pad)
    canvas = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill=TEXT, font=font)
    for k, img in enumerate(imgs):
        r, c = divmod(k, ncols)
        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        x0 = left + pad + c * (tw + pad) + (tw - u8.shape[1]) // 2
        y0 = top + pad + r * (th + label_h + pad)
        canvas.paste(Image.fromarray(u8), (x0, y0))
        if labels is not None:
            text = str(labels[k])
            tx = left + pad + c * (tw + pad) + max(0, (tw - draw.textlength(text, font=font)) // 2)
            draw.text((tx, y0 + th + 1), text, fill=TEXT, font=font)
    if row_labels is not None:
        for r, text in enumerate(row_labels):
            y = top + pad + r * (th + label_h + pad) + th // 2 - font_size // 2
            draw.text((pad, y), str(text), fill=TEXT, font=font)
    return np.asarray(canvas)


def _enlarge(img, factor):
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1) if factor > 1 else img


_GLYPHS = {"→": "->", "×": "x", "‖": "|", "½": "1/2", "σ": "sigma", "Σ": "sum", "∂": "d", "−": "-"}


def _ascii(text):
    """The bundled bitmap font lacks some symbols: spell them in ASCII."""
    text = str(text)
    for k, v in _GLYPHS.items():
        text = text.replace(k, v)
    return text


def save_png(path, image):
    """Write a uint8 (H, W, 3) or (H, W) array as a PNG; returns path."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.asarray(image)).save(path, optimize=True)
    return path


def save_grid(path, tiles, **kw):
    """grid(tiles, **kw) written to path (PNG); returns path."""
    return save_png(path, grid(tiles, **kw))


def save_top_grid(path, top, layer, **kw):
    """Save the figure of a TopActivations: per channel, its k projections (symmetric scale) | k patches."""
    k = top.patches.shape[1]
    tiles = np.concatenate([top.projections, top.patches], axis=1)
    tiles = [normalize(t, "symmetric") if j < k else normalize(t) for row in tiles for j, t in enumerate(row)]
    return save_grid(path, tiles, ncols=2 * k, normalize_by=None,
                       row_labels=[f"ch {ch} ({v:.1f})" for ch, v in zip(top.channels, top.values[:, 0])],
                       title=f"layer '{layer}': {k} deconvnet projections | the {k} input patches", **kw)


def _figure(ncols, nrows, w=3.2, h=2.6):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return plt, fig, axes


def save_plots(path, panels, ncols=3, title=None):
    """Line plots: panels is a list of dicts with x, series {label: y (M,) or (N, M) → mean ± std band},
    and optional title, xlabel, ylabel, ylim, logy. Returns path."""
    nrows = int(np.ceil(len(panels) / ncols))
    plt, fig, axes = _figure(min(ncols, len(panels)), nrows)
    for ax, panel in zip(axes.ravel(), panels):
        for label, y in panel["series"].items():
            y = np.asarray(y, float)
            if y.ndim == 2:
                mean, std = y.mean(axis=0), y.std(axis=0)
                ax.plot(panel["x"], mean, marker="o", ms=3, label=label)
                ax.fill_between(panel["x"], mean - std, mean + std, alpha=0.15)
            else:
                ax.plot(panel["x"], y, marker="o", ms=3, label=label)
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", ""), fontsize=9)
        ax.set_ylabel(panel.get("ylabel", ""), fontsize=9)
        if panel.get("ylim"):
            ax.set_ylim(*panel["ylim"])
        if panel.get("logy"):
            ax.set_yscale("log")
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(panel["series"]) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save_fig(plt, fig, path)


def _save_fig(plt, fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_scatter(path, points, labels, thumbnails=None, class_names=None, title=None, thumb_every=8):
    """2-D points (N, 2) coloured by integer label; with thumbnails (N, C, h, w), every `thumb_every`-th
    point drawn as its image. Returns path."""
    plt, fig, axes = _figure(1, 1, 6.5, 5.5)
    ax = axes[0, 0]
    labels = np.asarray(labels)
    cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
    for c in np.unique(labels):
        m = labels == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(points[m, 0], points[m, 1], s=8, color=cmap(c % cmap.N), label=name, alpha=0.8)
    if thumbnails is not None:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        for n in range(0, len(points), thumb_every):
            img = _rgb(normalize(thumbnails[n]), None)
            box = OffsetImage(img, zoom=1.0, cmap="gray")
            ax.add_artist(AnnotationBbox(box, points[n], frameon=True, pad=0.05,
                                         bboxprops=dict(edgecolor=cmap(int(labels[n]) % cmap.N), lw=1)))
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save_fig(plt, fig, path)
