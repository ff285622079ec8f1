"""`fastconv visualize --images DIR`: a dataset-scale visualization of a folder of photos on a Dask cluster —
the top-k deconvnet projections and input patches of every channel of a layer (Zeiler & Fergus, Fig. 2),
written as a PNG and an HTML page."""
from __future__ import annotations

import contextlib
import os
import time

from .. import nn
from ..vis import features, local_cluster, receptive
from ..vis import image as I
from ..vis.report import Report


def digits_model(epochs=4, seed=0):
    """The model a photo folder is shown to when no model is given: the demo's seed CNN trained for a few
    seconds on the bundled digits (grey 16×16 input). Its units detect strokes, edges and blobs, so the figure
    shows which photo patches excite them; pass a model of your own for anything more."""
    from .datasets import load
    split, _ = load("digits", image_size=16)
    model = nn.models.seed_cnn(1, split.num_classes, (16, 16), rng=seed)
    nn.fit(model, split.train, None, epochs=epochs, batch_size=32, optimizer=nn.Adam(model, lr=2e-3), seed=seed,
           progress=False)
    return model


def run_folder(model_path, images, out, layer=None, k=9, scheduler=None, chunk_size=256, progress=True):
    """top_activations of `layer` over every image under `images`, on the Dask cluster at `scheduler` (an
    address) or, without one, a local cluster of one single-threaded worker process per core. `model_path`
    None: `digits_model()`. Writes the figure to `out` and the page beside it (same name, .html), or, where
    `out` is a directory or has no extension, top.png and top.html in that directory; returns both paths."""
    from distributed import Client
    out = os.fspath(out)
    if os.path.isdir(out) or not os.path.splitext(out)[1]:
        out = os.path.join(out, "top.png")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)

    from .. import data
    model = nn.load(model_path) if model_path else digits_model()
    model_name = os.path.basename(os.fspath(model_path)) if model_path else "the seed CNN trained on the digits"
    C, H, W = receptive.infer_input_shape(model)
    if C not in (1, 3):
        raise ValueError(f"--images: the model takes {C}-channel images; photos give 1 (grey) or 3 (RGB)")
    folder = data.image_folder(images, (H, W), channels=C, chunk_size=chunk_size)
    if layer is None:
        layer = next(name for name, lay in reversed(model.named_layers()) if isinstance(lay, nn.MaxPool2d))
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        cluster = None if scheduler else stack.enter_context(local_cluster())
        client = stack.enter_context(Client(scheduler or cluster))
        top = features.top_activations(model, folder.x, layer, k=k, progress=progress)
        where = scheduler or f"a local cluster of {len(client.scheduler_info()['workers'])} worker processes"
    seconds = time.perf_counter() - start
    png = I.save_top_grid(out, top, layer, tile_px=48, pad=3)
    rf = receptive.receptive_field(model, layer, input_size=(H, W))[-1]
    rep = Report(f"top activations of layer '{layer}' over {len(folder.files)} images",
                 f"model {model_name}, images under {os.fspath(images)} resized to "
                 f"{H}×{W} ({len(folder.classes)} class folder(s)); computed on {where} in {seconds:.1f} s.")
    rep.figure(png, f"Deconvnet: top {top.patches.shape[1]} activations of layer '{layer}'",
               f"top_activations over every image: for each channel the strongest activations (one per image, "
               f"ties to the first file), left their deconvnet projections, right the input patches under the "
               f"{rf['size'][0]}×{rf['size'][1]} receptive field. Row label: the channel and its strongest activation.")
    rep.table(["channel", "top value", "image"],
              [(int(ch), f"{v:.3f}", os.path.relpath(folder.files[i], images))
               for ch, v, i in zip(top.channels, top.values[:, 0], top.indices[:, 0])],
              caption="The strongest image of each channel.")
    return png, rep.write(os.path.splitext(out)[0] + ".html")
