// depthwise_wgrad.cpp — the weight gradient of depthwise convolution (one input channel per group):
// dw[o, a, b] = Σ_n Σ_{i,j} dy[n, o, i, j] · xpad[n, o / M_g, i*sh + a*dil_h, j*sw + b*dil_w], one task per
// output channel; its forward and input gradient are in depthwise.cpp.
#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "depthwise.h"
#include "direct.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {

using namespace depthwise;

namespace {

// acc[t] (vectors) += Σ_{i < H_out, j < W_out} dy[i][j] · xp[i·Wp + off[t] + j] for the NT taps off[0:NT):
// dy rows (stride W_out) are vectorised along j, every tap keeps its own vector accumulator in a
// register, and the lane sums are left to the caller. The last, partial, vector of a row loads dy
// through a zero-filled copy and drops its dead lanes with a select (x there may be inf or NaN, which a
// product with zero would not hide). xp must be readable whole vectors past W_out: Wp >= padded_width.
template <typename T, int NT>
void wgrad_taps(const T* xp, long Wp, const long* off, const T* dy, long H_out, long W_out,
                typename Vec<T>::type* accv) {
    using V = typename Vec<T>::type;
    using VI = typename Vec<T>::itype;
    using I = typename Vec<T>::int_t;
    constexpr int L = Vec<T>::lanes;
    V acc[NT];
    long o[NT];
#pragma GCC unroll 32
    for (int t = 0; t < NT; ++t) acc[t] = accv[t], o[t] = off[t];
    const long full = W_out / L * L, rest = W_out - full;
    VI live = {};
    for (int l = 0; l < L; ++l) live[l] = l < rest ? I(-1) : I(0);
    for (long i = 0; i < H_out; ++i) {
        const T* d = dy + i * W_out;
        const T* xr = xp + i * Wp;
        for (long j = 0; j < full; j += L) {
            const V dv = load<V>(d + j);
#pragma GCC unroll 32
            for (int t = 0; t < NT; ++t) acc[t] += dv * load<V>(xr + o[t] + j);
        }
        if (rest) {
            T tmp[L] = {};
            std::copy(d + full, d + W_out, tmp);
            const V dv = load<V>(tmp);
#pragma GCC unroll 32
            for (int t = 0; t < NT; ++t) {
                const V p = dv * load<V>(xr + o[t] + full);
                acc[t] += live ? p : V{};
            }
        }
    }
#pragma GCC unroll 32
    for (int t = 0; t < NT; ++t) accv[t] = acc[t];
}

// The same sums for a whole KH x KW kernel, walking the rows t of xp instead: the KW shifted x vectors of
// row t are loaded once and each feeds the KH dy rows t - a·dil_h that take it (an unaligned load serves KH
// FMAs instead of one). accv holds KH·KW vectors in row-major tap order. ALIGNED (dil_w = 1, vector-aligned
// rows of at least direct::aligned_width): the shifted vectors come from two aligned ones by shift_lanes,
// as in direct.h. UNPADDED (dil_w = 1): xp is the plane x itself, H rows of Wp = W_out columns (whole
// vectors), with `top` zero rows above it and (KW - 1) / 2 zero columns either side (direct.h's
// unpadded layout): rows outside it are skipped and the columns past its edges are zero vectors.
template <typename T, int KH, int KW, bool ALIGNED, bool UNPADDED = false>
void wgrad_rows(const T* xp, long Wp, long dil_h, long dil_w, const T* dy, long H_out, long W_out,
                typename Vec<T>::type* accv, long top = 0, long H = 0) {
    using V = typename Vec<T>::type;
    using VI = typename Vec<T>::itype;
    using I = typename Vec<T>::int_t;
    constexpr int L = Vec<T>::lanes;
    V acc[KH][KW];
#pragma GCC unroll 8
    for (int a = 0; a < KH; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < KW; ++b) acc[a][b] = accv[a * KW + b];
    const long full = W_out / L * L, rest = W_out - full;
    VI live = {};
    for (int l = 0; l < L; ++l) live[l] = l < rest ? I(-1) : I(0);
    const long rows = H_out + (KH - 1) * dil_h;
    for (long t = 0; t < rows; ++t) {
        if (UNPADDED && (t < top || t - top >= H)) continue;
        const T* xr = xp + (UNPADDED ? t - top : t) * Wp;
        bool ok[KH];
#pragma GCC unroll 8
        for (int a = 0; a < KH; ++a) ok[a] = t - a * dil_h >= 0 && t - a * dil_h < H_out;
        V next{}, cur{}, prev{};
        if constexpr (ALIGNED) next = load<V>(xr);
        if constexpr (UNPADDED) cur = load<V>(xr);
        // x vectors at (padded) columns j + b*dil_w, b < KW.
        auto shifted = [&](long j, V* xv) {
            if constexpr (UNPADDED) {
                next = j + L < Wp ? load<V>(xr + j + L) : V{};
                direct::for_each_tap(std::make_integer_sequence<int, KW>{}, [&](auto b) {
                    constexpr int S = L - (KW - 1) / 2 + b();
                    if constexpr (S < L)
                        xv[b()] = shift_lanes<S, T>(prev, cur);
                    else
                        xv[b()] = shift_lanes<S - L, T>(cur, next);
                });
                prev = cur, cur = next;
            } else if constexpr (ALIGNED) {
                const V cur = next;
                next = load<V>(xr + j + L);
                direct::for_each_tap(std::make_integer_sequence<int, KW>{},
                                     [&](auto b) { xv[b()] = shift_lanes<b(), T>(cur, next); });
            } else {
#pragma GCC unroll 8
                for (int b = 0; b < KW; ++b) xv[b] = load<V>(xr + j + b * dil_w);
            }
        };
        for (long j = 0; j < full; j += L) {
            V xv[KW];
            shifted(j, xv);
#pragma GCC unroll 8
            for (int a = 0; a < KH; ++a) {
                if (!ok[a]) continue;
                const V d = load<V>(dy + (t - a * dil_h) * W_out + j);
#pragma GCC unroll 8
                for (int b = 0; b < KW; ++b) acc[a][b] += d * xv[b];
            }
        }
        if (rest) {
            V xv[KW];
            shifted(full, xv);
#pragma GCC unroll 8
            for (int a = 0; a < KH; ++a) {
                if (!ok[a]) continue;
                T tmp[L] = {};
                const T* d = dy + (t - a * dil_h) * W_out;
                std::copy(d + full, d + W_out, tmp);
                const V dv = load<V>(tmp);
#pragma GCC unroll 8
                for (int b = 0; b < KW; ++b) {
                    const V p = dv * xv[b];
                    acc[a][b] += live ? p : V{};
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int a = 0; a < KH; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < KW; ++b) accv[a * KW + b] = acc[a][b];
}

// Taps per pass: their accumulators, the dy vector and a loaded x vector stay in registers.
constexpr int kTapBlock = kVectorBytes == 64 ? 12 : 8;

template <typename T>
void wgrad_tap_block(int nt, const T* xp, long Wp, const long* off, const T* dy, long H_out, long W_out,
                     typename Vec<T>::type* accv) {
    switch (nt) {
#define FASTCONV_CASE(K) \
    case K: return wgrad_taps<T, K>(xp, Wp, off, dy, H_out, W_out, accv);
        FASTCONV_CASE(1) FASTCONV_CASE(2) FASTCONV_CASE(3) FASTCONV_CASE(4) FASTCONV_CASE(5) FASTCONV_CASE(6)
        FASTCONV_CASE(7) FASTCONV_CASE(8)
#if defined(__AVX512F__)
        FASTCONV_CASE(9) FASTCONV_CASE(10) FASTCONV_CASE(11) FASTCONV_CASE(12)
#endif
#undef FASTCONV_CASE
        default: break;
    }
}

}  // namespace

// dw[o,a,b] = Σ_n Σ_i dy[n,o,i,:] · xpad[n, o / M_g, i*sh + a*dil_h, b*dil_w :: sw]   one task per output channel
// Stride 1: every tap is a vector accumulator over whole rows of dy (wgrad_taps), summed across lanes once
// per channel. Strided: a dot product per row and tap, one task per output channel.
template <typename T>
void conv2d_weight_grad_depthwise(const T* x, const T* dy, T* dw, const ConvShape& s) {
    using V = typename Vec<T>::type;
    const long kk = s.kH * s.kW, HWo = s.HW_out();
    const bool vec = s.sh == 1 && s.sw == 1;
    const long Hp = span(s.H_out, s.sh, s.kH, s.dil_h);
    const long Wp = vec ? vector_stride<T>(span(s.W_out, 1, s.kW, s.dil_w), s.W_out, s.kW, s.dil_w)
                        : span(s.W_out, s.sw, s.kW, s.dil_w);
    const int nt = threads_for(s.C_out, s.flops());
    Buffer<long> offs(kk);
    for (long k = 0; k < kk; ++k) offs.data()[k] = (k / s.kW) * s.dil_h * Wp + (k % s.kW) * s.dil_w;
    if (vec) {
        // Each thread owns a contiguous range of channels and walks the images outermost, so it streams
        // through x[n] and dy[n] in long contiguous runs (one 4 KiB plane at a time would restart the
        // hardware prefetcher at every plane). Per channel the sum over n runs in the same order for any
        // thread count.
        // 3x3 in direct.h's unpadded layout: x is read in place (wgrad_rows' UNPADDED)
        const bool unpadded = s.kH == 3 && direct::unpadded_ok<T>(s.W, s.W_out, s.pw, s.kH, s.kW, s.dil_w);
        Buffer<V> accs(s.C_out * kk);
        Buffer<T> work(unpadded ? 0 : nt * Hp * Wp);
        Stop stop;
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_thread(), nth = nt;
            const long o0 = s.C_out * tid / nth, o1 = s.C_out * (tid + 1) / nth;
            T* xp = unpadded ? nullptr : work.data() + tid * Hp * Wp;
            if (xp) std::fill(xp, xp + Hp * Wp, T(0));  // the padding stays zero; each plane refills the rest
            std::fill(accs.data() + o0 * kk, accs.data() + o1 * kk, V{});
            for (long n = 0; n < s.N && !stop(); ++n)
                for (long o = o0; o < o1; ++o) {
                    const T* xo = x + (n * s.C_in + o / s.M_g()) * s.HW();
                    const T* dyo = dy + (n * s.C_out + o) * HWo;
                    if (unpadded) {
                        wgrad_rows<T, 3, 3, false, true>(xo, s.W, s.dil_h, 1, dyo, s.H_out, s.W_out, accs.data() + o * kk,
                                                         s.ph, s.H);
                        continue;
                    }
                    refill_plane(xo, s.H, s.W, s.ph, s.pw, Hp, Wp, xp);
                    if (s.kH == 3 && s.kW == 3) {
                        if (s.dil_w == 1)  // rows vector-aligned: Wp and the per-thread buffers are whole vectors
                            wgrad_rows<T, 3, 3, true>(xp, Wp, s.dil_h, 1, dyo, s.H_out, s.W_out, accs.data() + o * kk);
                        else
                            wgrad_rows<T, 3, 3, false>(xp, Wp, s.dil_h, s.dil_w, dyo, s.H_out, s.W_out, accs.data() + o * kk);
                        continue;
                    }
                    for (long k0 = 0; k0 < kk; k0 += kTapBlock)
                        wgrad_tap_block<T>((int)std::min<long>(kTapBlock, kk - k0), xp, Wp, offs.data() + k0, dyo,
                                           s.H_out, s.W_out, accs.data() + o * kk + k0);
                }
            for (long o = o0; o < o1; ++o)
                for (long k = 0; k < kk; ++k) {
                    T sum = 0;
                    for (int l = 0; l < Vec<T>::lanes; ++l) sum += accs.data()[o * kk + k][l];
                    dw[o * kk + k] = sum;
                }
        }
        return;
    }
    Buffer<T> work(nt * Hp * Wp);
    Stop stop;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (long o = 0; o < s.C_out; ++o) {
        if (stop()) continue;
        T* xp = work.data() + omp_thread() * Hp * Wp;
        T* dwo = dw + o * kk;
        std::fill(dwo, dwo + kk, T(0));
        for (long n = 0; n < s.N; ++n) {
            pad_plane(x + (n * s.C_in + o / s.M_g()) * s.HW(), s.H, s.W, s.ph, s.pw, Hp, Wp, xp);
            const T* dyo = dy + (n * s.C_out + o) * HWo;
            for (long k = 0; k < kk; ++k) {
                const T* xk = xp + offs.data()[k];
                T sum = 0;
                for (long i = 0; i < s.H_out; ++i) sum += dot(dyo + i * s.W_out, xk + i * s.sh * Wp, s.W_out, s.sw);
                dwo[k] += sum;
            }
        }
    }
}

#define FASTCONV_INSTANTIATE(T) template void conv2d_weight_grad_depthwise<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
