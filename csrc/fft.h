// fft.h — small power-of-two FFTs, vectorised across lanes: every lane of a Vec<T> carries its own
// transform (one tile of a convolution), so L transforms cost the instructions of one scalar transform
// and no shuffles are needed inside a transform. Radix-2, decimation in time, split real/imaginary
// arrays. The 2-D real transforms of n x n tiles used by fft_conv.cpp are built on them.
//
// Real input runs at half cost by the usual pairing: two real rows a, b are transformed as one complex
// row a + i·b and separated by Hermitian symmetry. A real n x n tile has n·(n/2 + 1) independent bins.
#pragma once

#include <algorithm>
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

// The 2-D real transform of an n x n tile to its n·(n/2+1) bins: bin (kr, kc), kc <= n/2, at
// out[(kc·n + kr)·ld] (real part) and [.. + 1] (imaginary), scaled by 2 (the pairing's halving is left to
// the caller, which scales the kernel instead). Row r of the tile comes from rows(r, v) (v: n vectors,
// column c at v[c]); rows from `rows` on are zero and not asked for. Bins are stored column by column, so
// that the second pass runs in place on contiguous columns: no scratch tile, which keeps a group of L
// tiles of n = 128 within the outer caches.
template <typename T, int n, typename Rows>
void rfft2(const Rows& rows_of, int rows, typename Vec<T>::type* out, long ld) {
    using V = typename Vec<T>::type;
    constexpr int h = n / 2 + 1;
    const int* rev = Twiddles<T, n>::get().rev;
    for (int r = 0; r < n; r += 2) {  // along the rows, two at a time
        if (r >= rows) {
            for (int k = 0; k < h; ++k) {
                V* o = out + (k * n + r) * ld;
                o[0] = o[1] = o[ld] = o[ld + 1] = V{};
            }
            continue;
        }
        V zr[n], zi[n], a[n], b[n] = {};  // b stays zero past the last row
        rows_of(r, a);
        if (r + 1 < rows) rows_of(r + 1, b);
        for (int c = 0; c < n; ++c) zr[rev[c]] = a[c], zi[rev[c]] = b[c];
        fft<T, n, false>(zr, zi);
        for (int k = 0; k < h; ++k) {
            const int nk = (n - k) & (n - 1);
            V* o = out + (k * n + r) * ld;
            o[0] = zr[k] + zr[nk], o[1] = zi[k] - zi[nk];
            o[ld] = zi[k] + zi[nk], o[ld + 1] = zr[nk] - zr[k];
        }
    }
    for (int k = 0; k < h; ++k) {  // along the columns, in place
        V zr[n], zi[n];
        V* col = out + k * n * ld;
        for (int r = 0; r < n; ++r) zr[rev[r]] = col[r * ld], zi[rev[r]] = col[r * ld + 1];
        fft<T, n, false>(zr, zi);
        for (int r = 0; r < n; ++r) col[r * ld] = zr[r], col[r * ld + 1] = zi[r];
    }
}

// The inverse of rfft2, unscaled (n² times the inverse DFT), for bins stored as rfft2 stores them with
// ld = 2 (overwritten: the first pass runs in place). Rows r < `rows` (rounded up to even) of the tile
// go to rows(r, v) (v: n vectors, column c at v[c]).
template <typename T, int n, typename Rows>
void irfft2(typename Vec<T>::type* bins, int rows, const Rows& rows_to) {
    using V = typename Vec<T>::type;
    constexpr int h = n / 2 + 1;
    const int* rev = Twiddles<T, n>::get().rev;
    for (int k = 0; k < h; ++k) {  // along the columns, in place
        V zr[n], zi[n];
        V* col = bins + 2 * k * n;
        for (int r = 0; r < n; ++r) zr[rev[r]] = col[2 * r], zi[rev[r]] = col[2 * r + 1];
        fft<T, n, true>(zr, zi);
        for (int r = 0; r < rows; ++r) col[2 * r] = zr[r], col[2 * r + 1] = zi[r];
    }
    for (int r = 0; r < rows; r += 2) {  // rows r, r+1 from their half spectra a, b as one row a + i·b
        V zr[n], zi[n];
        for (int k = 0; k < n; ++k) {
            const V* p = bins + 2 * ((k < h ? k : n - k) * n + r);  // (a, b)[k > n/2] = conj((a, b)[n - k])
            const V ar = p[0], ai = p[1], br = p[2], bi = p[3];
            zr[rev[k]] = k < h ? ar - bi : ar + bi;
            zi[rev[k]] = k < h ? ai + br : br - ai;
        }
        fft<T, n, true>(zr, zi);
        rows_to(r, zr);
        rows_to(r + 1, zi);
    }
}

}  // namespace fastconv
