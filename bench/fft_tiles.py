"""fastconv's FFT convolution against pocketfft (scipy.fft) on the same tiles, one thread, float32:
whether a well-kept FFT library would be faster than the transforms written for fastconv (issue 15).

For the F1 row (a 1024x1024 plane, 31x31 kernel, 'valid') and each tile size n, pocketfft transforms
the overlap-save tiles as one batch (rfft2, product with the kernel's spectrum, irfft2: the FFT work
alone, no gather or scatter), and fastconv runs the whole convolution with that tile forced. Both are
checked against the direct result first; times are medians of 7 calls in one process.

    python bench/fft_tiles.py
"""
from __future__ import annotations

import statistics
import time

import numpy as np

import fastconv as fc
from fastconv.benchmark.shapes import PLANE_SHAPES


def _median_time(fn, calls=7):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    from scipy import fft

    fc.set_num_threads(1)
    s = PLANE_SHAPES["F1"]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(s.x_shape).astype(np.float32), rng.standard_normal(s.w_shape).astype(np.float32)
    exact = fc.conv2d(x, w, algorithm="direct")
    H_out = exact.shape[-1]
    for n in (64, 128):
        m = n - s.k + 1
        grid = -(-H_out // m)
        padded = np.zeros((grid * m + s.k - 1,) * 2, np.float32)
        padded[:s.H, :s.W] = x[0, 0]
        tiles = np.lib.stride_tricks.sliding_window_view(padded, (n, n))[::m, ::m][:grid, :grid].reshape(-1, n, n)
        tiles = np.ascontiguousarray(tiles) if tiles.shape[-1] == n else None
        spectrum = np.conj(fft.rfft2(w[0, 0], s=(n, n)))

        def pocketfft(tiles=tiles, spectrum=spectrum, n=n):
            return fft.irfft2(fft.rfft2(tiles, workers=1) * spectrum, s=(n, n), workers=1)

        out = pocketfft()[:, :m, :m].reshape(grid, grid, m, m).transpose(0, 2, 1, 3).reshape(grid * m, grid * m)
        assert np.abs(out[:H_out, :H_out] - exact[0, 0]).max() <= 1e-4 * np.abs(exact).max()
        with fc.use_kernel(f"conv2d__fft_t{n}"):
            assert np.abs(fc.conv2d(x, w) - exact).max() <= 1e-4 * np.abs(exact).max()
            ours = _median_time(lambda: fc.conv2d(x, w))
        theirs = _median_time(pocketfft)
        print(f"F1, {n}x{n} tiles ({len(tiles)}): pocketfft transforms {theirs * 1e3:.1f} ms, "
              f"fastconv whole convolution {ours * 1e3:.1f} ms ({theirs / ours:.2f}x)")


if __name__ == "__main__":
    main()
