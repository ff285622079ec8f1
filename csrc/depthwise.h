// depthwise.h — helpers shared by the depthwise kernels (depthwise.cpp: forward and input gradient;
// depthwise_wgrad.cpp: weight gradient): planes copied into zero-padded buffers, their row strides.
#pragma once

#include <algorithm>
#include <cstring>

#include "direct.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv::depthwise {

// Σ a[i]·b[i·step] in vector lanes when step is 1 (a plain loop would stay scalar: reassociation is
// not allowed), in order otherwise.
template <typename T>
T dot(const T* a, const T* b, long n, long step) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    V acc = {};
    long i = 0;
    if (step == 1)
        for (; i + L <= n; i += L) acc += load<V>(a + i) * load<V>(b + i);
    T s = 0;
    for (int l = 0; l < L; ++l) s += acc[l];
    for (; i < n; ++i) s += a[i] * b[i * step];
    return s;
}

// dst (Hp x Wp)[i][j] = src (H x W)[i - top][j - left], zero where that is outside src (top/left may
// be negative: then src is cropped).
template <typename T>
void pad_plane(const T* src, long H, long W, long top, long left, long Hp, long Wp, T* dst) {
    const long lo = std::clamp(left, 0L, Wp), hi = std::clamp(left + W, lo, Wp);
    for (long i = 0; i < Hp; ++i) {
        T* d = dst + i * Wp;
        const long si = i - top;
        if (si < 0 || si >= H) {
            std::fill(d, d + Wp, T(0));
            continue;
        }
        std::fill(d, d + lo, T(0));
        if (hi > lo) std::memcpy(d + lo, src + si * W + (lo - left), (hi - lo) * sizeof(T));
        std::fill(d + hi, d + Wp, T(0));
    }
}

// The part of pad_plane that depends on src: rows and columns of dst that src covers. With a buffer that
// pad_plane (or a zero fill) has prepared once, refilling it for another plane of the same shape needs
// only this. Inline vector copies: rows are short, and a libc call per row costs more than the copy.
template <typename T>
void refill_plane(const T* src, long H, long W, long top, long left, long Hp, long Wp, T* dst) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    const long lo = std::clamp(left, 0L, Wp), hi = std::clamp(left + W, lo, Wp), n = hi - lo;
    const long i0 = std::clamp(top, 0L, Hp), i1 = std::clamp(top + H, i0, Hp);
    for (long i = i0; i < i1; ++i) {
        T* d = dst + i * Wp + lo;
        const T* r = src + (i - top) * W + (lo - left);
        long j = 0;
        for (; j + L <= n; j += L) store(d + j, load<V>(r + j));
        for (; j < n; ++j) d[j] = r[j];
    }
}

// Row stride of a padded plane whose rows are read in whole vectors (direct.h, wgrad_rows): the span of
// the windows, widened to padded_width and aligned_width, in whole vectors so that rows stay aligned.
template <typename T>
long vector_stride(long span_w, long W_out, long kW, long dil_w) {
    const long w = std::max({span_w, direct::padded_width<T>(W_out, kW, dil_w), direct::aligned_width<T>(W_out)});
    return round_up(w, Vec<T>::lanes);
}

// Rows/columns of x (padded) that the forward windows span.
inline long span(long out, long s, long k, long d) { return (out - 1) * s + (k - 1) * d + 1; }

}  // namespace fastconv::depthwise
