"""nn.load on untrusted files: truncated, corrupted, garbage, crafted and too deeply nested files all raise
one exception type (nn.ModelFileError, a ValueError) naming what is wrong; a file cannot make load allocate
more than the arrays it holds; saved files get the umask's permissions, and a failed save keeps the old file."""
import io
import json
import os

import numpy as np
import pytest

import fastconv.nn as nn
from _helpers import run_python
from nn_helpers import pool_cnn


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    nn.save(pool_cnn(rng=0, dtype=np.float32), path)
    return path


def _load_bytes(tmp_path, data, name="bad.npz"):
    path = tmp_path / name
    path.write_bytes(data)
    return nn.load(path)


def test_truncations_raise_model_file_error(saved, tmp_path):
    data = saved.read_bytes()
    for i in range(16):
        with pytest.raises(nn.ModelFileError):
            _load_bytes(tmp_path, data[: len(data) * i // 16])


def test_byte_flips_load_or_raise_model_file_error(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(60):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), 3):
            bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            _load_bytes(tmp_path, bytes(bad))
            outcomes.add("loaded")
        except nn.ModelFileError:
            outcomes.add("error")
    assert "error" in outcomes


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _arch(model):
    return np.array(json.dumps({"format": 1, "model": model}))


LINEAR = {"type": "Linear", "config": {"in_features": 3, "out_features": 2, "bias": True}}


@pytest.mark.parametrize("data, message", [
    (b"not a zip file at all", "not a readable fastconv model file"),
    (_npz(x=np.ones(3)), "no '__architecture__' entry"),
    (_npz(__architecture__=np.array("{not json"), __dtype__=np.array("float32")), "not valid JSON"),
    (_npz(__architecture__=_arch({"type": "Nope"}), __dtype__=np.array("float32")), "does not describe a model"),
    (_npz(__architecture__=_arch(LINEAR), __dtype__=np.array("float32"), weight=np.ones((2, 3), np.float32)),
     "missing ['bias']"),
    (_npz(__architecture__=_arch(LINEAR), __dtype__=np.array("float32"), weight=np.ones((3, 3), np.float32),
          bias=np.ones(2, np.float32)), "'weight' has shape (3, 3), the architecture says (2, 3)"),
    (_npz(__architecture__=np.array("[" * 5000 + "]" * 5000), __dtype__=np.array("float32")), "nests more than"),
    (_npz(__architecture__=_arch(json.loads('{"type": "Sequential", "layers": ' + '[["0", {"type": "Sequential", '
                                            '"layers": ' * 100 + '[]' + '}]]' * 100 + '}')),
          __dtype__=np.array("float32")), "nests more than"),
    (_npz(__architecture__=np.array(7), __dtype__=np.array("float32")), "must be a string"),
    (_npz(__architecture__=_arch(LINEAR), __dtype__=np.array("float32"), weight=np.array([None, 1], dtype=object)),
     "holds Python objects"),
])
def test_bad_files_name_what_is_wrong(tmp_path, data, message):
    with pytest.raises(nn.ModelFileError) as e:
        _load_bytes(tmp_path, data)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "none.npz")


CRAFTED = """
import resource, sys, numpy as np, fastconv.nn as nn
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    nn.load(sys.argv[1])
    print("loaded")
except nn.ModelFileError as e:
    print("ModelFileError", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_crafted_shapes_allocate_nothing_big(tmp_path):
    """An architecture declaring Linear(20000, 20000) (1.6 GB) with small arrays fails before allocating."""
    big = {"type": "Linear", "config": {"in_features": 20000, "out_features": 20000, "bias": True}}
    path = tmp_path / "crafted.npz"
    path.write_bytes(_npz(__architecture__=_arch(big), __dtype__=np.array("float32"),
                          weight=np.ones((2, 3), np.float32), bias=np.ones(2, np.float32)))
    r = run_python("-c", CRAFTED, str(path))
    assert r.returncode == 0, r.stderr
    word, grown_mb = r.stdout.split()
    assert word == "ModelFileError" and int(grown_mb) < 100


def test_an_array_declaring_more_than_its_bytes_is_refused(tmp_path):
    data = bytearray(_npz(__architecture__=_arch(LINEAR), __dtype__=np.array("float32"),
                          weight=np.ones((2, 3), np.float32), bias=np.ones(2, np.float32)))
    old = b"'shape': (2, 3)"
    i = bytes(data).index(old)
    data[i:i + len(old)] = b"'shape': (9, 9)"  # same length: the zip stays readable, the header lies
    path = tmp_path / "lying.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(nn.ModelFileError, match="more than its .* bytes hold|CRC|Bad"):
        nn.load(path)


def test_saved_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        nn.save(pool_cnn(rng=0, dtype=np.float32), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640
    assert isinstance(nn.load(tmp_path / "m.npz"), nn.Sequential)


def test_a_failed_save_leaves_the_old_file_untouched(saved, monkeypatch):
    """A save that fails half-way (here: the archive writer raises after writing some bytes, as a full disk
    would) leaves the previous file byte for byte and no temporary file beside it."""
    before = saved.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="No space left"):
        nn.save(pool_cnn(rng=1, dtype=np.float32), saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]
    monkeypatch.undo()
    assert isinstance(nn.load(saved), nn.Sequential)
