// border_products.h — what padding contributes when a weight or a gradient is NaN or ±Inf.
//
// The reference (and PyTorch) define the forward and the weight gradient on the zero-padded input, so
// a non-finite factor meeting the padding gives 0 × NaN = NaN there; the input gradient is a scatter of
// real contributions, so the padding of dy contributes nothing. Kernels that skip padded taps (implicit
// GEMM, depthwise: forward and weight gradient) or compute the input gradient as a forward conv of the
// zero-padded dy (implicit GEMM, lane weights) agree with that for finite values only. The registry runs
// these repairs after them: each first looks for a non-finite weight (or, for the weight gradient, a
// non-finite dw entry, which any non-finite dy beside real input leaves), which costs one pass over the
// weights — nothing next to the kernel — and only then touches the outputs near the borders.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "conv2d.h"
#include "simd.h"
#include "tiled_conv.h"

namespace fastconv {

// Whether every element of p[0..n) is finite, in whole vectors: v - v is 0 for every finite v and NaN for
// NaN and ±Inf. The repairs below and the Winograd fallback (registry.cpp) ask it first, so that finite
// data, the usual case, costs one vectorised pass over the weights (or the output).
template <typename T>
bool all_finite(const T* p, long n) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    V acc{};
    long i = 0;
    for (; i + L <= n; i += L) {
        const V v = load<V>(p + i);
        acc += v - v;
    }
    T sum = 0;
    for (int l = 0; l < L; ++l) sum += acc[l];
    for (; i < n; ++i) sum += p[i] - p[i];
    return sum == 0;
}

// Whether tap a of an output row i reads padding: i*s + a*d - p outside [0, n).
inline bool pads(long i, long a, long s, long d, long p, long n) {
    const long h = i * s + a * d - p;
    return h < 0 || h >= n;
}

// Forward: y[n, o, i, j] is NaN wherever a non-finite w[o, c, a, b] meets the padding.
template <typename T>
void forward_border_products(const T* w, T* y, const ConvShape& s) {
    if (all_finite(w, s.C_out * s.K())) return;
    const long kk = s.kH * s.kW, HWo = s.HW_out();
    for (long o = 0; o < s.C_out; ++o)
        for (long k = 0; k < s.C_g() * kk; ++k) {
            if (std::isfinite(w[o * s.K() + k])) continue;
            const long a = k % kk / s.kW, b = k % s.kW;
            for (long i = 0; i < s.H_out; ++i) {
                const bool row = pads(i, a, s.sh, s.dil_h, s.ph, s.H);
                for (long j = 0; j < s.W_out; ++j)
                    if (row || pads(j, b, s.sw, s.dil_w, s.pw, s.W))
                        for (long n = 0; n < s.N; ++n) y[(n * s.C_out + o) * HWo + i * s.W_out + j] = NAN;
            }
        }
}

// Weight gradient: dw[o, c, a, b] is NaN wherever a non-finite dy[n, o, i, j] meets the padding. A
// non-finite dy beside a real input already made some dw[o] entry non-finite, so only such channels,
// and those with windows wholly in the padding, are searched.
template <typename T>
void weight_grad_border_products(const T* dy, T* dw, const ConvShape& s) {
    const long HWo = s.HW_out();
    bool blind = false;  // some output row or column whose window reads nothing but padding
    for (long i = 0; i < s.H_out && !blind; ++i) {
        blind = true;
        for (long a = 0; a < s.kH; ++a) blind &= pads(i, a, s.sh, s.dil_h, s.ph, s.H);
    }
    for (long j = 0; j < s.W_out && !blind; ++j) {
        blind = true;
        for (long b = 0; b < s.kW; ++b) blind &= pads(j, b, s.sw, s.dil_w, s.pw, s.W);
    }
    for (long o = 0; o < s.C_out; ++o) {
        T* dwo = dw + o * s.K();
        if (!blind && all_finite(dwo, s.K())) continue;
        for (long n = 0; n < s.N; ++n)
            for (long p = 0; p < HWo; ++p) {
                if (std::isfinite(dy[(n * s.C_out + o) * HWo + p])) continue;
                const long i = p / s.W_out, j = p % s.W_out;
                for (long a = 0; a < s.kH; ++a)
                    for (long b = 0; b < s.kW; ++b)
                        if (pads(i, a, s.sh, s.dil_h, s.ph, s.H) || pads(j, b, s.sw, s.dil_w, s.pw, s.W))
                            for (long c = 0; c < s.C_g(); ++c) dwo[(c * s.kH + a) * s.kW + b] = NAN;
            }
    }
}

// Input gradient: where a non-finite weight tap would read dy's padding, dx is recomputed from the real
// contributions alone: dx[n, c, h, x] = Σ w(i, j)[o, c, a, b] · dy[n, o, i, j] over the (o, a, b) whose
// (i, j) = ((h + ph - a*dh) / sh, (x + pw - b*dw) / sw) is a whole position inside dy. `weight(i, j)`
// points at the kernels (C_out, C_g, kH, kW) output position (i, j) uses; `nonfinite(c, a, b)` says
// whether any of them has a non-finite tap (c, a, b).
template <typename T, typename Weight, typename Nonfinite>
void input_grad_border_products(const T* dy, T* dx, const ConvShape& s, Weight weight, Nonfinite nonfinite) {
    const long C_g = s.C_g(), M = s.M_g(), HWo = s.HW_out();
    auto tap_row = [&](long h, long a, long& i) {  // the dy row tap a of dx row h reads, if it exists
        const long t = h + s.ph - a * s.dil_h;
        i = t / s.sh;
        return t >= 0 && t % s.sh == 0 && i < s.H_out;
    };
    auto tap_col = [&](long x, long b, long& j) {
        const long t = x + s.pw - b * s.dil_w;
        j = t / s.sw;
        return t >= 0 && t % s.sw == 0 && j < s.W_out;
    };
    for (long c = 0; c < s.C_in; ++c) {
        const long g = c / C_g, cg = c % C_g;
        for (long h = 0; h < s.H; ++h)
            for (long x = 0; x < s.W; ++x) {
                bool redo = false;
                for (long a = 0, i, j; a < s.kH && !redo; ++a)
                    for (long b = 0; b < s.kW && !redo; ++b)
                        redo = nonfinite(cg, a, b) && !(tap_row(h, a, i) && tap_col(x, b, j));
                if (!redo) continue;
                for (long n = 0; n < s.N; ++n) {
                    T acc = 0;
                    for (long a = 0, i, j; a < s.kH; ++a)
                        for (long b = 0; b < s.kW; ++b) {
                            if (!tap_row(h, a, i) || !tap_col(x, b, j)) continue;
                            const T* wk = weight(i, j);
                            for (long o = g * M; o < (g + 1) * M; ++o)
                                acc += wk[((o * C_g + cg) * s.kH + a) * s.kW + b] * dy[(n * s.C_out + o) * HWo + i * s.W_out + j];
                        }
                    dx[((n * s.C_in + c) * s.H + h) * s.W + x] = acc;
                }
            }
    }
}

// Whether each tap (c, a, b), c < C_g, is non-finite in any of `count` kernels (C_out, C_g, kH, kW).
template <typename T>
std::vector<char> nonfinite_taps(const T* w, long count, const ConvShape& s) {
    const long K = s.K();
    std::vector<char> bad(K + 1, 0);  // bad[K]: any at all
    if (all_finite(w, count * s.C_out * K)) return bad;
    for (long m = 0; m < count * s.C_out; ++m)
        for (long k = 0; k < K; ++k)
            if (!std::isfinite(w[m * K + k])) bad[k] = bad[K] = 1;
    return bad;
}

template <typename T>
void input_grad_border_products(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const std::vector<char> bad = nonfinite_taps(w, 1, s);
    if (!bad[s.K()]) return;
    input_grad_border_products(dy, dx, s, [&](long, long) { return w; },
                               [&](long c, long a, long b) { return bad[(c * s.kH + a) * s.kW + b] != 0; });
}

// The tiled op's: output position (i, j) uses kernel w[i % T_h, j % T_w] (no dilation, no groups).
template <typename T>
void tiled_input_grad_border_products(const T* dy, const T* w, T* dx, const TiledShape& t) {
    const ConvShape s = dense_shape(t);
    const std::vector<char> bad = nonfinite_taps(w, t.T_h * t.T_w, s);
    if (!bad[s.K()]) return;
    const long size = t.C_out * s.K();
    input_grad_border_products(dy, dx, s, [&](long i, long j) { return w + (i % t.T_h * t.T_w + j % t.T_w) * size; },
                               [&](long c, long a, long b) { return bad[(c * s.kH + a) * s.kW + b] != 0; });
}

}  // namespace fastconv
