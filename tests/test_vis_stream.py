"""Dataset-wide visualization streamed over Dask arrays and iterables of batches: every streamed result
equals the in-memory one (values and indices exactly; float tolerance only for statistics), on the threaded
scheduler and on a two-process dask.distributed cluster, also when a worker dies mid-run; the data sources
(image folders, .npy, Zarr) and `fastconv visualize --images`."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from _helpers import run_python
from fastconv import cli, data, nn, vis

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


def _assert_same_top(a, b):
    for field in a._fields:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def _batches(x, size):
    for i in range(0, len(x), size):
        yield x[i:i + size], np.zeros(min(size, len(x) - i), int)   # (x, y) pairs are read as batches too


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return data.load_digits(16).test.x                                 # (359, 1, 16, 16)


@pytest.fixture(scope="module")
def random_images():
    """2,000 images, each one also present elsewhere in the set, so that every top-k has ties to break."""
    half = np.random.default_rng(0).random((1000, 3, 16, 16), dtype=np.float32)
    return np.concatenate([half, half[::-1]])


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, shared by the module's distributed tests."""
    with vis.local_cluster(n_workers=2) as c:
        yield c


def test_top_activations_streamed_equals_in_memory_on_digits(digits):
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    for layer in ("2", "5", "7"):
        ref = vis.top_activations(model, digits, layer, k=9)
        _assert_same_top(vis.top_activations(model, da.from_array(digits, chunks=(50, 1, 16, 16)), layer), ref)
        _assert_same_top(vis.top_activations(model, _batches(digits, 37), layer), ref)
    small = vis.top_activations(model, digits, "7", batch_size=20)   # any batch size, streamed or not
    _assert_same_top(vis.top_activations(model, da.from_array(digits, chunks=(50, 1, 16, 16)), "7", batch_size=20),
                     small)
    _assert_same_top(vis.top_activations(model, _batches(digits, 37), "7", batch_size=20), small)


def test_top_activations_streamed_equals_in_memory_on_2000_random_images_with_ties(random_images):
    x = random_images
    model = nn.models.seed_cnn(3, 10, 16, rng=1)
    ref = vis.top_activations(model, x, "5", k=9, channels=[0, 5, 31])
    tied = ref.values[:, 1:] == ref.values[:, :-1]
    assert tied.sum() >= 9 and np.all(ref.indices[:, 1:][tied] > ref.indices[:, :-1][tied])   # lower index first
    lazy = da.from_array(x, chunks=(128, 3, 16, 16))
    _assert_same_top(vis.top_activations(model, lazy, "5", k=9, channels=[0, 5, 31]), ref)
    _assert_same_top(vis.top_activations(model, iter(list(x[i:i + 300] for i in range(0, 2000, 300))), "5", k=9,
                                         channels=[0, 5, 31]), ref)
    brute = vis.activations(model, x, "5").reshape(2000, 32, -1).max(axis=2)
    for c, ch in enumerate([0, 5, 31]):
        np.testing.assert_array_equal(ref.indices[c], np.argsort(-brute[:, ch], kind="stable")[:9])


def test_activation_stats_in_memory_and_streamed(digits):
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    a = vis.activations(model, digits, "4").astype(np.float64)
    stats = vis.activation_stats(model, digits, "4", batch_size=64)
    np.testing.assert_allclose(stats.mean, a.mean(axis=(0, 2, 3)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.std, a.std(axis=(0, 2, 3)), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(stats.max, a.max(axis=(0, 2, 3)))
    assert stats.count == a[:, 0].size
    for streamed in (vis.activation_stats(model, da.from_array(digits, chunks=(100, 1, 16, 16)), "4"),
                     vis.activation_stats(model, _batches(digits, 33), "4")):
        np.testing.assert_allclose(streamed.mean, stats.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(streamed.std, stats.std, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(streamed.max, stats.max)


def test_occlusion_and_codes_streamed_equal_in_memory(digits):
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    x, t = digits[:24], np.arange(24) % 10
    ref = vis.occlusion(model, x, t, window=6, stride=5, fill=0.5, layer="5")
    got = vis.occlusion(model, da.from_array(x, chunks=(7, 1, 16, 16)), t, window=6, stride=5, fill=0.5, layer="5")
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)
    pix = vis.occlusion(model, x, 3, 6, 5, per_pixel=True)
    np.testing.assert_array_equal(vis.occlusion(model, _batches(x, 5), 3, 6, 5, per_pixel=True), pix)
    with pytest.raises(ValueError, match="target"):
        vis.occlusion(model, da.from_array(x, chunks=8), t[:5], 6, 5)
    codes = vis.codes(model, digits)
    np.testing.assert_array_equal(vis.codes(model, da.from_array(digits, chunks=(60, 1, 16, 16))), codes)
    np.testing.assert_array_equal(vis.codes(model, _batches(digits, 100)), codes)
    logits = vis.codes(model, digits, layer="7", batch_size=30)
    np.testing.assert_array_equal(vis.codes(model, _batches(digits, 100), layer="7", batch_size=30), logits)


def test_progress_shows_on_long_runs(digits, capsys):
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    ref = vis.codes(model, digits)
    np.testing.assert_array_equal(vis.codes(model, da.from_array(digits, chunks=100), progress=True), ref)
    assert "100% Completed" in capsys.readouterr().out                 # Dask's progress bar


def test_bad_streamed_input_is_named():
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    with pytest.raises(TypeError, match="data: expected a float Dask array"):
        vis.top_activations(model, da.zeros((4, 1, 16, 16), dtype=np.int32, chunks=2), "5")
    with pytest.raises(ValueError, match=r"data: expected a Dask array of NCHW images \(N, C, H, W\)"):
        vis.codes(model, da.zeros((4, 16, 16), chunks=2))
    with pytest.raises(ValueError, match="channels"):
        vis.top_activations(model, da.zeros((4, 1, 16, 16), chunks=2), "5", channels=[40])
    with pytest.raises(ValueError, match="k: expected a positive int"):
        vis.top_activations(model, np.zeros((4, 1, 16, 16), np.float32), "5", k=0)


def test_the_model_is_one_key_that_every_chunk_task_reads(monkeypatch, random_images):
    """What ships the model once per distributed worker: it is one node of the graph, not a task argument."""
    from fastconv.vis import _stream
    graphs = []
    real = _stream.compute
    monkeypatch.setattr(_stream, "compute", lambda obj, progress=False: graphs.append(dict(obj.__dask_graph__()))
                        or real(obj, progress))
    model = nn.models.seed_cnn(3, 10, 16, rng=1)
    vis.top_activations(model, da.from_array(random_images, chunks=(256, 3, 16, 16)), "5", k=2)
    graph = graphs[0]
    holders = [key for key, node in graph.items() if getattr(node, "value", None) is model]
    chunk_tasks = [node for key, node in graph.items() if "_chunk_task" in str(key)]
    assert len(holders) == 1 and len(chunk_tasks) == 8
    assert all(holders[0] in node.dependencies for node in chunk_tasks)


def test_take_reads_only_the_chunks_that_hold_wanted_images(monkeypatch, random_images):
    """The winners fetched by index: in any order, repeated, from uneven chunks; one task per chunk read."""
    from fastconv.vis import _stream
    x = da.from_array(random_images, chunks=((300, 700, 1, 999),) + random_images.shape[1:])
    indices = np.array([[1999, 0, 1000], [0, 299, 300], [1000, 1000, 5]])
    graphs = []
    real = _stream.compute
    monkeypatch.setattr(_stream, "compute", lambda obj, progress=False: graphs.append(dict(obj.__dask_graph__()))
                        or real(obj, progress))
    np.testing.assert_array_equal(_stream.take(x, indices), random_images[indices])
    assert sum("take" in str(key) for key in graphs[0]) == 4   # chunks 0, 1, 2 and 3 (1999)
    np.testing.assert_array_equal(_stream.take(x, [7, 7]), random_images[[7, 7]])
    assert sum("take" in str(key) for key in graphs[1]) == 1


def test_get_num_threads_reports_what_the_kernels_use():
    env = {k: v for k, v in os.environ.items() if k != "FASTCONV_NUM_THREADS"}
    out = run_python("-c", "import fastconv; print(fastconv.get_num_threads())", env={**env, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


def test_distributed_cluster_gives_the_same_result(cluster, random_images):
    x = random_images
    model = nn.models.seed_cnn(3, 10, 16, rng=1)
    ref = vis.top_activations(model, x, "5", k=9)
    with distributed.Client(cluster):
        _assert_same_top(vis.top_activations(model, da.from_array(x, chunks=(250, 3, 16, 16)), "5", k=9), ref)
        stats = vis.activation_stats(model, da.from_array(x, chunks=(250, 3, 16, 16)), "5")
    np.testing.assert_allclose(stats.mean, vis.activation_stats(model, x, "5").mean, rtol=1e-10)


def test_local_cluster_workers_keep_the_adaptive_mmap_threshold(cluster):
    """Dask's default worker environment pins glibc's mmap threshold (MALLOC_TRIM_THRESHOLD_) and its
    workers sample their stacks; one thread per worker stays (OMP_NUM_THREADS=1)."""
    def worker_settings():
        import dask
        return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
                dask.config.get("distributed.worker.profile.enabled"))
    with distributed.Client(cluster) as client:
        env = client.run(worker_settings)
    assert len(env) == 2 and set(env.values()) == {(os.environ.get("MALLOC_TRIM_THRESHOLD_"), "1", False)}


def test_a_worker_killed_mid_run_does_not_lose_the_result(cluster, random_images):
    x = random_images
    model = nn.models.seed_cnn(3, 10, 16, rng=1)
    ref = vis.top_activations(model, x, "5", k=9)
    slow = lambda b: time.sleep(0.1) or b                              # noqa: E731 (pickled by value for workers)
    lazy = da.from_array(x, chunks=(50, 3, 16, 16)).map_blocks(slow)   # 40 chunks, ~2 s on 2 workers
    with distributed.Client(cluster) as client:
        out = {}
        run = threading.Thread(target=lambda: out.update(top=vis.top_activations(model, lazy, "5", k=9)))
        run.start()
        victim = client.run(os.getpid, workers=[sorted(client.scheduler_info()["workers"])[0]]).popitem()[1]
        deadline = time.monotonic() + 30
        while not client.run_on_scheduler(lambda dask_scheduler: any(  # wait for the first finished chunk
                ts.state == "memory" and "chunk_task" in str(ts.key) for ts in dask_scheduler.tasks.values())):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert run.is_alive()
        os.kill(victim, signal.SIGKILL)                                  # the worker dies; its nanny starts another
        run.join(120)
        assert not run.is_alive()
    _assert_same_top(out["top"], ref)


def _write_pngs(root, n, size=20):
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("cats" if i % 3 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def test_image_folder_npy_and_zarr_sources(tmp_path):
    _write_pngs(tmp_path / "photos", 30)
    folder = data.image_folder(tmp_path / "photos", 16, chunk_size=8)
    assert folder.x.shape == (30, 3, 16, 16) and folder.x.chunks[0] == (8, 8, 8, 6)
    assert folder.classes == ["cats", "dogs"] and list(np.bincount(folder.y)) == [20, 10]
    eager = data.load_images(folder.files, 16)
    np.testing.assert_array_equal(folder.x.compute(), eager)
    assert 0 <= eager.min() and eager.max() <= 1 and eager.dtype == np.float32
    assert data.load_images(tmp_path / "photos", (8, 12), channels=1).shape == (30, 1, 8, 12)
    x = (np.random.default_rng(0).random((40, 3, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    lazy = data.open_array(tmp_path / "x.npy", chunk_size=16)
    assert lazy.chunks[0] == (16, 16, 8)
    np.testing.assert_array_equal(lazy.compute(), x.astype(np.float32) / 255)
    pytest.importorskip("zarr")
    da.from_array(x.astype(np.float32), chunks=(10, 3, 8, 8)).to_zarr(str(tmp_path / "x.zarr"))
    np.testing.assert_array_equal(data.open_array(tmp_path / "x.zarr").compute(), x.astype(np.float32))
    with pytest.raises(ValueError, match="no .*images"):
        data.image_folder(tmp_path / "x.zarr", 16)


def test_cli_visualize_images_top_on_a_cluster(tmp_path, cluster):
    _write_pngs(tmp_path / "photos", 60)
    model = nn.models.seed_cnn(3, 2, 16, rng=0)
    nn.save(model, tmp_path / "m.npz")
    out = tmp_path / "top.png"
    assert cli.main(["visualize", "--model", str(tmp_path / "m.npz"), "--images", str(tmp_path / "photos"),
                     "--method", "top", "--layer", "5", "--scheduler", cluster.scheduler_address,
                     "--out", str(out)]) == 0
    html = (tmp_path / "top.html").read_text(encoding="utf-8")
    assert out.is_file() and "data:image/png;base64" in html and "over 60 images" in html
    ref = vis.top_activations(model, data.load_images(data.list_images(tmp_path / "photos")[0], 16), "5")
    assert f"{ref.values[0, 0]:.3f}" in html
    assert cli.main(["visualize", "--model", str(tmp_path / "m.npz"), "--images", str(tmp_path / "photos"),
                     "--method", "saliency"]) == 2


def test_cli_visualize_images_without_a_model_uses_the_digits_cnn(tmp_path, cluster, capsys):
    from fastconv.app.folder import digits_model
    _write_pngs(tmp_path / "photos", 20)
    out = tmp_path / "report"                                            # a directory, like --torch-model's
    assert cli.main(["visualize", "--images", str(tmp_path / "photos"), "--method", "top", "--k", "3",
                     "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    assert (out / "top.png").is_file()
    html = (out / "top.html").read_text(encoding="utf-8")
    assert "the seed CNN trained on the digits" in html and "over 20 images" in html
    files = data.list_images(tmp_path / "photos")[0]
    ref = vis.top_activations(digits_model(), data.load_images(files, 16, channels=1), "5", k=3)
    assert f"{ref.values[0, 0]:.3f}" in html
    assert cli.main(["visualize", "--method", "saliency"]) == 2          # no --model and no --images
    assert "--model FILE and --method M are needed" in capsys.readouterr().err


def test_importing_fastconv_does_not_import_dask():
    code = ("import sys, fastconv, fastconv.vis, fastconv.data, fastconv.cli, fastconv.app.folder; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'zarr'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
