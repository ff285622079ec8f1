// border_products.h — padded positions contribute nothing, also when a weight or a gradient is NaN or ±Inf.
//
// The reference (and PyTorch's oneDNN path) sum real products only: a tap that lands in the padding adds
// nothing, not 0 × w, which is NaN for a NaN or infinite w. The kernels multiply zero padding somewhere
// (im2col, gathered columns, padded plane or row copies, the input gradient as a forward conv of the
// zero-padded dy), so they agree for finite values only. The registry runs these repairs after them: each
// first asks one vectorised all_finite pass, so finite data pays nothing more, and only then recomputes,
// from real products, the outputs where a non-finite value met the padding. The pass reads the smaller of
// the factor that may be non-finite (w, or dy for the weight gradient) and the kernel's output: either
// answers, since a non-finite factor that met the padding left NaN in the output (0 × NaN), and a
// non-finite output with finite factors needs no repair.
//
// One repair per op for the dense, tiled and unshared convs, told by a KernelGrid which kernel and bias
// element each output position uses.
#pragma once

#include <cmath>
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

// Which kernel and bias element output position (i, j) uses: the dense ops have one kernel (C_out, C_g,
// kH, kW) and bias b[o]; the tiled op cycles T_h x T_w such kernels, stored one after another, over the
// output (the unshared op's grid is the output itself), with bias b[o*b_o + i*b_i + j*b_j].
struct KernelGrid {
    ConvShape s;
    long T_h = 1, T_w = 1, b_o = 1, b_i = 0, b_j = 0;

    long count() const { return T_h * T_w; }
    long kernel(long i, long j) const { return i % T_h * T_w + j % T_w; }
    long bias(long o, long i, long j) const { return o * b_o + i * b_i + j * b_j; }
};
inline KernelGrid kernel_grid(const ConvShape& s) { return {s}; }
inline KernelGrid kernel_grid(const TiledShape& t) { return {dense_shape(t), t.T_h, t.T_w, t.b_o, t.b_i, t.b_j}; }

// Whether tap (a, b) of output position (i, j) reads padding, and the input position (h, v) it reads.
inline bool pads(const ConvShape& s, long i, long j, long a, long b, long& h, long& v) {
    h = i * s.sh + a * s.dil_h - s.ph;
    v = j * s.sw + b * s.dil_w - s.pw;
    return h < 0 || h >= s.H || v < 0 || v >= s.W;
}
inline bool pads(const ConvShape& s, long i, long j, long a, long b) {
    long h, v;
    return pads(s, i, j, a, b, h, v);
}

// Forward: y[n, o, i, j] = b(o, i, j) + Σ over real taps of w(i, j)[o, c, a, b] · x[n, c, h, v] wherever a
// non-finite tap of kernel w(i, j)[o] reads padding there.
template <typename T>
void forward_border_products(const T* x, const T* w, const T* b, T* y, const KernelGrid& grid) {
    const ConvShape& s = grid.s;
    const long K = s.K(), C_g = s.C_g(), kk = s.kH * s.kW, HWo = s.HW_out();
    const long nw = grid.count() * s.C_out * K, ny = s.N * s.C_out * HWo;
    if ((ny < nw && all_finite(y, ny)) || all_finite(w, nw)) return;
    for (long i = 0; i < s.H_out; ++i)
        for (long j = 0; j < s.W_out; ++j) {
            if (!pads(s, i, j, 0, 0) && !pads(s, i, j, s.kH - 1, s.kW - 1)) continue;  // no tap reads padding
            const T* wk = w + grid.kernel(i, j) * s.C_out * K;
            for (long o = 0; o < s.C_out; ++o) {
                const T* wo = wk + o * K;
                bool redo = false;
                for (long k = 0; k < K && !redo; ++k)
                    redo = !std::isfinite(wo[k]) && pads(s, i, j, k % kk / s.kW, k % s.kW);
                if (!redo) continue;
                const long c0 = o / s.M_g() * C_g;
                for (long n = 0; n < s.N; ++n) {
                    T acc = b ? b[grid.bias(o, i, j)] : T(0);
                    for (long k = 0, h, v; k < K; ++k)
                        if (!pads(s, i, j, k % kk / s.kW, k % s.kW, h, v))
                            acc += wo[k] * x[((n * s.C_in + c0 + k / kk) * s.H + h) * s.W + v];
                    y[(n * s.C_out + o) * HWo + i * s.W_out + j] = acc;
                }
            }
        }
}

// Weight gradient: dw(t)[o, c, a, b] = Σ over the real products dy[n, o, i, j] · x[n, c, h, v] of the
// positions (i, j) that use kernel t, wherever a non-finite dy[n, o, i, j] of such a position meets the
// padding at tap (a, b).
template <typename T>
void weight_grad_border_products(const T* x, const T* dy, T* dw, const KernelGrid& grid) {
    const ConvShape& s = grid.s;
    const long K = s.K(), C_g = s.C_g(), kk = s.kH * s.kW, HWo = s.HW_out();
    const long ndw = grid.count() * s.C_out * K, ndy = s.N * s.C_out * HWo;
    if ((ndy < ndw && all_finite(dy, ndy)) || all_finite(dw, ndw)) return;
    std::vector<char> redo(grid.count() * s.C_out * kk, 0);  // per (kernel, o, a, b), for every c
    for (long n = 0; n < s.N; ++n)
        for (long o = 0; o < s.C_out; ++o)
            for (long p = 0; p < HWo; ++p) {
                if (std::isfinite(dy[(n * s.C_out + o) * HWo + p])) continue;
                const long i = p / s.W_out, j = p % s.W_out;
                for (long ab = 0; ab < kk; ++ab)
                    if (pads(s, i, j, ab / s.kW, ab % s.kW)) redo[(grid.kernel(i, j) * s.C_out + o) * kk + ab] = 1;
            }
    auto entry = [&](long e, long c) -> T& { return dw[(e / kk * C_g + c) * kk + e % kk]; };
    for (long e = 0; e < grid.count() * s.C_out * kk; ++e)
        for (long c = 0; c < C_g && redo[e]; ++c) entry(e, c) = 0;
    for (long i = 0; i < s.H_out; ++i)
        for (long j = 0; j < s.W_out; ++j)
            for (long o = 0; o < s.C_out; ++o)
                for (long ab = 0, h, v; ab < kk; ++ab) {
                    const long e = (grid.kernel(i, j) * s.C_out + o) * kk + ab;
                    if (!redo[e] || pads(s, i, j, ab / s.kW, ab % s.kW, h, v)) continue;
                    const long c0 = o / s.M_g() * C_g;
                    for (long c = 0; c < C_g; ++c)
                        for (long n = 0; n < s.N; ++n)
                            entry(e, c) += dy[(n * s.C_out + o) * HWo + i * s.W_out + j] *
                                           x[((n * s.C_in + c0 + c) * s.H + h) * s.W + v];
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

// Input gradient: where a non-finite weight tap would read dy's padding, dx is recomputed from the real
// contributions alone: dx[n, c, h, x] = Σ w(i, j)[o, c, a, b] · dy[n, o, i, j] over the (o, a, b) whose
// (i, j) = ((h + ph - a*dh) / sh, (x + pw - b*dw) / sw) is a whole position inside dy.
template <typename T>
void input_grad_border_products(const T* dy, const T* w, T* dx, const KernelGrid& grid) {
    const ConvShape& s = grid.s;
    const std::vector<char> bad = nonfinite_taps(w, grid.count(), s);
    if (!bad[s.K()]) return;
    auto nonfinite = [&](long c, long a, long b) { return bad[(c * s.kH + a) * s.kW + b] != 0; };
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
                            const T* wk = w + grid.kernel(i, j) * s.C_out * s.K();
                            for (long o = g * M; o < (g + 1) * M; ++o)
                                acc += wk[((o * C_g + cg) * s.kH + a) * s.kW + b] *
                                       dy[(n * s.C_out + o) * HWo + i * s.W_out + j];
                        }
                    dx[((n * s.C_in + c) * s.H + h) * s.W + x] = acc;
                }
            }
    }
}

}  // namespace fastconv
