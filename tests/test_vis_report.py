"""fastconv.vis.image grids, the HTML report, and the `fastconv demo` / `fastconv visualize` commands."""
import base64
import io
import re

import numpy as np
import pytest

from _helpers import run_python
from fastconv import cli
from fastconv.vis import image
from fastconv.vis.report import Report

PIL = pytest.importorskip("PIL.Image")


def test_grid_normalises_each_tile_and_lays_out_rows(tmp_path):
    tiles = np.stack([np.full((1, 4, 4), 0.0), np.arange(16.0).reshape(1, 4, 4), -np.arange(16.0).reshape(1, 4, 4)])
    g = image.grid(tiles, ncols=3, labels=["a", "b", "c"], tile_px=16, pad=2)
    assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[2] == 3
    assert g.shape[1] >= 3 * 16 and g.shape[0] > 16                # room for a label line under the tiles
    b = image.grid(tiles[1:2], tile_px=4, pad=0)
    assert b.min() == 0 and b.max() == 255                          # per-tile min-max stretches to full range
    s = image.normalize(np.array([-2.0, 0.0, 1.0]), "symmetric")
    np.testing.assert_allclose(s, [0.0, 0.5, 0.75])
    rows = image.grid(np.zeros((2, 5, 1, 3, 3)), tile_px=3, pad=1)  # (R, K, C, H, W): 2 rows of 5
    assert rows.shape[:2] == (2 * 4 + 1, 5 * 4 + 1)
    path = image.save_grid(str(tmp_path / "g.png"), tiles, labels=["x→y", "b", "c"])
    assert PIL.open(path).size == (image.grid(tiles, labels=["x→y", "b", "c"]).shape[1],
                                   image.grid(tiles, labels=["x→y", "b", "c"]).shape[0])


def _figures(html):
    return re.findall(r"<figure id='([^']+)'>.*?<img src='data:image/png;base64,([^']+)'.*?<figcaption>(.*?)"
                      r"</figcaption>", html, flags=re.S)


def test_report_embeds_figures(tmp_path):
    p = image.save_grid(str(tmp_path / "a.png"), [np.eye(4)])
    r = Report("t", "intro").section("S").figure(p, "A", "what A shows").table(["x"], [[1]])
    html = open(r.write(str(tmp_path / "index.html")), encoding="utf-8").read()
    figs = _figures(html)
    assert [(f[0], f[2]) for f in figs] == [("a", "what A shows")] and "<table>" in html


def _nonblank(b64):
    img = np.asarray(PIL.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=float)
    return img.shape[0] > 20 and img.shape[1] > 20 and img.std() > 5


EXPECTED = {"filters", "activations", "rules", "saliency", "deconvnet_2", "deconvnet_5", "occlusion",
            "class_models", "deep_dream", "neural_style", "tsne", "feature_evolution", "rf_growth", "erf",
            "invariance", "arch_filters", "arch_spectra", "arch_deconv", "adversarial"}


def test_demo_writes_a_report_with_every_figure(tmp_path, capsys):
    for module in ("sklearn", "matplotlib", "scipy"):
        pytest.importorskip(module)
    out = tmp_path / "report"
    assert cli.main(["demo", "--epochs", "2", "--fast", "--out", str(out), "--no-progress"]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    figs = _figures(html)
    assert {f[0] for f in figs} == EXPECTED
    for name, b64, caption in figs:
        assert _nonblank(b64), name
        assert (out / "figures" / f"{name}.png").is_file()
        assert len(caption) > 40, name                               # a caption saying what and how
    assert "architecture_selection: On this data the 5×5 stride 2 variant has" in html
    assert html.count("<table>") >= 3                                # receptive fields, architectures, attacks
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.npz", "epoch_002.npz"]
    # visualize: one method on a saved model
    model_path = out / "checkpoints" / "epoch_002.npz"
    for method in ("deconvnet", "occlusion"):
        png = tmp_path / f"{method}.png"
        assert cli.main(["visualize", "--model", str(model_path), "--method", method, "--layer", "5",
                         "--out", str(png)]) == 0
        assert np.asarray(PIL.open(png)).std() > 5
    assert cli.main(["visualize", "--model", str(model_path), "--method", "receptive_field"]) == 0
    assert "MaxPool2d" in capsys.readouterr().out
    assert cli.main(["visualize", "--model", str(model_path), "--method", "deconvnet", "--layer", "99",
                     "--out", str(tmp_path / "x.png")]) == 2


def test_commands_name_a_missing_option_and_exit_2(tmp_path, capsys):
    # the applications raise ValueError; only the CLI turns it into an exit code (no SystemExit in fastconv.app)
    from fastconv.app.datasets import load
    with pytest.raises(ValueError, match="--data-dir"):
        load("cifar10")
    assert cli.main(["demo", "--data", "cifar10", "--out", str(tmp_path / "r")]) == 2
    assert "--data cifar10 needs --data-dir" in capsys.readouterr().err
    assert cli.main(["train", "--data", "npz"]) == 2
    assert "--data npz needs --data-path" in capsys.readouterr().err


def test_library_never_imports_the_applications():
    code = ("import sys, fastconv, fastconv.vis, fastconv.nn, fastconv.data; "
            "print(sorted(m for m in sys.modules if m.startswith('fastconv.app') or m == 'fastconv.cli'))")
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
