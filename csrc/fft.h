// fft.h — small power-of-two FFTs, vectorised across lanes: every lane of a Vec<T> carries its own
// transform (one tile of a convolution), so L transforms cost the instructions of one scalar transform
// and no shuffles are needed inside a transform. Radix-2, decimation in time, split real/imaginary
// arrays. The 2-D real transforms of n x n tiles used by fft_conv.cpp are built on them.
//
// Real input runs at half cost by the usual pairing: two real rows a, b are transformed as one complex
// row a + i·b and separated by Hermitian symmetry. A real n x n tile has n·(n/2 + 1) independent bins.
#pragma once

#include <cmath>

#include "simd.h"

namespace fastconv {

// exp(-2πi j / n) for j < n/2, and the bit-reversal permutation of 0 .. n-1.
template <typename T, int n>
struct Twiddles {
    T cos_[n / 2], sin_[n / 2];
    int rev[n];
    Twiddles() {
        for (int j = 0; j < n / 2; ++j) {
            const double angle = -2 * M_PI * j / n;  // computed in double: the table's error is T's rounding only
            cos_[j] = T(std::cos(angle)), sin_[j] = T(std::sin(angle));
        }
        for (int i = 0, bits = __builtin_ctz(n); i < n; ++i) {
            int r = 0;
            for (int k = 0; k < bits; ++k) r |= ((i >> k) & 1) << (bits - 1 - k);
            rev[i] = r;
        }
    }
    static const Twiddles& get() {
        static const Twiddles t;
        return t;
    }
};

// In place: (re, im), given in bit-reversed order, := its DFT (inverse: with exp(+2πi..), unscaled).
template <typename T, int n, bool inverse>
inline void fft(typename Vec<T>::type* re, typename Vec<T>::type* im) {
    using V = typename Vec<T>::type;
    const Twiddles<T, n>& tw = Twiddles<T, n>::get();
    for (int k = 0; k < n; k += 2) {  // the first stage's twiddles are all 1
        const V ar = re[k], ai = im[k], br = re[k + 1], bi = im[k + 1];
        re[k] = ar + br, im[k] = ai + bi, re[k + 1] = ar - br, im[k + 1] = ai - bi;
    }
    for (int half = 2; half < n; half *= 2) {
        const int step = n / (2 * half);
        for (int j = 0; j < half; ++j) {
            const V wr = broadcast<V>(tw.cos_[j * step]);
            const V wi = broadcast<V>(inverse ? -tw.sin_[j * step] : tw.sin_[j * step]);
#pragma GCC unroll 4
            for (int k = j; k < n; k += 2 * half) {
                const V xr = re[k + half], xi = im[k + half];
                const V tr = wr * xr - wi * xi, ti = wr * xi + wi * xr;
                re[k + half] = re[k] - tr, im[k + half] = im[k] - ti;
                re[k] += tr, im[k] += ti;
            }
        }
    }
}

// The 2-D real transform of an n x n tile x (real, row r column c at x[r·n + c]) to its n·(n/2+1) bins:
// bin (kr, kc), kc <= n/2, at out[(kr·(n/2+1) + kc)·ld] (real part) and [.. + 1] (imaginary), scaled by
// 2 (the pairing's halving is left to the caller, which scales the kernel instead). Rows past `rows`
// are zero and skipped. f: scratch of 2·n·(n/2+1) vectors.
template <typename T, int n>
void rfft2(const typename Vec<T>::type* x, int rows, typename Vec<T>::type* out, long ld, typename Vec<T>::type* f) {
    using V = typename Vec<T>::type;
    constexpr int h = n / 2 + 1;
    const int* rev = Twiddles<T, n>::get().rev;
    V *fr = f, *fi = f + n * h;
    for (int r = 0; r < n; r += 2) {  // along the rows, two at a time
        if (r >= rows) {
            for (int k = 0; k < 2 * h; ++k) fr[r * h + k] = V{}, fi[r * h + k] = V{};
            continue;
        }
        V zr[n], zi[n];
        for (int c = 0; c < n; ++c) zr[rev[c]] = x[r * n + c], zi[rev[c]] = x[(r + 1) * n + c];
        fft<T, n, false>(zr, zi);
        for (int k = 0; k < h; ++k) {
            const int nk = (n - k) & (n - 1);
            fr[r * h + k] = zr[k] + zr[nk], fi[r * h + k] = zi[k] - zi[nk];
            fr[(r + 1) * h + k] = zi[k] + zi[nk], fi[(r + 1) * h + k] = zr[nk] - zr[k];
        }
    }
    for (int k = 0; k < h; ++k) {  // along the columns
        V zr[n], zi[n];
        for (int r = 0; r < n; ++r) zr[rev[r]] = fr[r * h + k], zi[rev[r]] = fi[r * h + k];
        fft<T, n, false>(zr, zi);
        for (int r = 0; r < n; ++r) out[(r * h + k) * ld] = zr[r], out[(r * h + k) * ld + 1] = zi[r];
    }
}

// The inverse of rfft2 for bins in (re, im) pairs at bins[2·e], e = kr·(n/2+1) + kc, unscaled (n² times
// the inverse DFT): rows r < `rows` of x (rounded up to even) are written. f: as rfft2's.
template <typename T, int n>
void irfft2(const typename Vec<T>::type* bins, typename Vec<T>::type* x, int rows, typename Vec<T>::type* f) {
    using V = typename Vec<T>::type;
    constexpr int h = n / 2 + 1;
    const int* rev = Twiddles<T, n>::get().rev;
    V *fr = f, *fi = f + n * h;
    for (int k = 0; k < h; ++k) {  // along the columns
        V zr[n], zi[n];
        for (int r = 0; r < n; ++r) zr[rev[r]] = bins[2 * (r * h + k)], zi[rev[r]] = bins[2 * (r * h + k) + 1];
        fft<T, n, true>(zr, zi);
        for (int r = 0; r < rows; ++r) fr[r * h + k] = zr[r], fi[r * h + k] = zi[r];
    }
    for (int r = 0; r < rows; r += 2) {  // rows r, r+1 from their half spectra a, b as one row a + i·b
        V zr[n], zi[n];
        const V *ar = fr + r * h, *ai = fi + r * h, *br = ar + h, *bi = ai + h;
        for (int k = 0; k < h; ++k) zr[rev[k]] = ar[k] - bi[k], zi[rev[k]] = ai[k] + br[k];
        for (int k = h; k < n; ++k)  // a[k] = conj(a[n-k]), b likewise
            zr[rev[k]] = ar[n - k] + bi[n - k], zi[rev[k]] = br[n - k] - ai[n - k];
        fft<T, n, true>(zr, zi);
        for (int c = 0; c < n; ++c) x[r * n + c] = zr[c], x[(r + 1) * n + c] = zi[c];
    }
}

}  // namespace fastconv
