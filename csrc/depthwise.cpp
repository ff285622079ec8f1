// depthwise.cpp — direct kernels for convolutions with one input channel per group and few output
// channels per group: depthwise conv (groups == C_in) and the single-plane correlate2d/convolve2d.
//
// There the GEMM would be (C_out/g) x (kH*kW) — far too thin for an MR x NR register tile (a 3x3
// depthwise layer would waste 7/8 of every tile and spend its time packing). Instead each input
// plane is copied once into a zero-padded buffer, after which every tap of every output is in range:
// a vector of outputs accumulates its kH*kW taps in a register with no bounds checks. At stride 1 the
// register-blocked kernel of direct.h does this for a block of rows x vectors at once; a single
// plane (fewer planes than threads) is padded once and split into bands of output rows.
// The stride-1 input gradient is the same correlation on the padded dy with the kernel rotated 180°;
// strided input gradients scatter-add im2col rows instead (col2im).
#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "direct.h"
#include "im2col.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {

namespace {

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

struct Taps {
    long kH, kW, sh, sw, dh, dw;
};

// The register-blocked kernel of direct.h applies (stride 1, no row dilation).
inline bool direct_ok(const Taps& t) { return t.sh == 1 && t.sw == 1 && t.dh == 1; }

// Row stride of a padded plane whose rows are read in whole vectors (direct.h, wgrad_rows): the span of
// the windows, widened to padded_width and aligned_width, in whole vectors so that rows stay aligned.
template <typename T>
long vector_stride(long span_w, long W_out, long kW, long dw) {
    const long w = std::max({span_w, direct::padded_width<T>(W_out, kW, dw), direct::aligned_width<T>(W_out)});
    return round_up(w, Vec<T>::lanes);
}

// Row stride of the padded plane: vector_stride where the direct kernel applies, else the span.
template <typename T>
long padded_stride(const Taps& t, long span_w, long W_out) {
    return direct_ok(t) ? vector_stride<T>(span_w, W_out, t.kW, t.dw) : span_w;
}

// out (H_out x W_out)[i][j] = (accumulate ? out : init) + Σ_{a,b} k[a,b] · xp[i*sh + a*dh][j*sw + b*dw]
template <typename T>
void correlate_padded(const T* xp, long Wp, const T* k, const Taps& t, long H_out, long W_out, T* out,
                      bool accumulate, T init) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    if (direct_ok(t) && Wp >= direct::padded_width<T>(W_out, t.kW, t.dw))
        return direct::correlate_rows(xp, Wp, k, t.kH, t.kW, t.dw, out, W_out, 0L, H_out, accumulate, init);
    for (long i = 0; i < H_out; ++i) {
        T* o = out + i * W_out;
        long j = 0;
        if (t.sw == 1)
            for (; j + L <= W_out; j += L) {
                V acc = accumulate ? load<V>(o + j) : broadcast<V>(init);
                for (long a = 0; a < t.kH; ++a) {
                    const T* xr = xp + (i * t.sh + a * t.dh) * Wp + j;
                    for (long b = 0; b < t.kW; ++b) acc += broadcast<V>(k[a * t.kW + b]) * load<V>(xr + b * t.dw);
                }
                store(o + j, acc);
            }
        for (; j < W_out; ++j) {
            T acc = accumulate ? o[j] : init;
            for (long a = 0; a < t.kH; ++a)
                for (long b = 0; b < t.kW; ++b) acc += k[a * t.kW + b] * xp[(i * t.sh + a * t.dh) * Wp + j * t.sw + b * t.dw];
            o[j] = acc;
        }
    }
}

// Rows/columns of x (padded) that the forward windows span.
inline long span(long out, long s, long k, long d) { return (out - 1) * s + (k - 1) * d + 1; }

}  // namespace

// y[n,o] = b[o] + Σ_{a,b} w[o,a,b] · xpad[n, o / M_g]
// Many planes: one task per output plane, each thread padding into its own buffer. Fewer planes than
// threads (a single image plane): every plane padded once, then one task per band of output rows.
template <typename T>
void conv2d_depthwise(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const long planes = s.N * s.C_out, kk = s.kH * s.kW, HWo = s.HW_out();
    const Taps taps{s.kH, s.kW, s.sh, s.sw, s.dh, s.dw};
    const long Hp = span(s.H_out, s.sh, s.kH, s.dh);
    const long Wp = padded_stride<T>(taps, span(s.W_out, s.sw, s.kW, s.dw), s.W_out);
    const T* const xs = x;
    auto plane_of = [&](long p) { return xs + (p / s.C_out * s.C_in + p % s.C_out / s.M_g()) * s.HW(); };
    if (direct_ok(taps) && planes < get_num_threads()) {
        const long band = 8 * direct::kRows, bands = ceil_div(s.H_out, band);
        const int nt = threads_for(planes * bands, s.flops());
        Buffer<T> padded(planes * Hp * Wp);
#pragma omp parallel num_threads(nt)
        {
#pragma omp for schedule(static)
            for (long p = 0; p < planes; ++p) pad_plane(plane_of(p), s.H, s.W, s.ph, s.pw, Hp, Wp, padded.data() + p * Hp * Wp);
#pragma omp for schedule(dynamic)
            for (long t = 0; t < planes * bands; ++t) {
                const long p = t / bands, i0 = t % bands * band, o = p % s.C_out;
                direct::correlate_rows(padded.data() + p * Hp * Wp, Wp, w + o * kk, s.kH, s.kW, s.dw, y + p * HWo,
                                       s.W_out, i0, std::min(i0 + band, s.H_out), false, b ? b[o] : T(0));
            }
        }
        return;
    }
    const int nt = threads_for(planes, s.flops());
    const bool unpadded = direct_ok(taps) && direct::unpadded_ok<T>(s.W, s.W_out, s.pw, s.kH, s.kW, s.dw);
    Buffer<T> work(unpadded ? 0 : nt * Hp * Wp);
#pragma omp parallel num_threads(nt)
    {
        T* xp = unpadded ? nullptr : work.data() + omp_thread() * Hp * Wp;
        if (xp) std::fill(xp, xp + Hp * Wp, T(0));  // the padding stays zero; each plane refills the rest
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            const long o = p % s.C_out;
            if (unpadded) {
                direct::correlate_rows_unpadded(plane_of(p), s.H, s.W, s.ph, w + o * kk, s.kH, y + p * HWo, 0L, s.H_out,
                                                false, b ? b[o] : T(0));
                continue;
            }
            refill_plane(plane_of(p), s.H, s.W, s.ph, s.pw, Hp, Wp, xp);
            correlate_padded(xp, Wp, w + o * kk, taps, s.H_out, s.W_out, y + p * HWo, false, b ? b[o] : T(0));
        }
    }
}

// dx[n,c] = Σ_{o in group c} adjoint of the tap sum. Stride 1: a correlation of the padded dy[n,o] with
// w[o] rotated 180°; otherwise w[o,k]·dy[n,o] is scatter-added per tap.   one task per input plane
template <typename T>
void conv2d_input_grad_depthwise(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long planes = s.N * s.C_in, kk = s.kH * s.kW, HWo = s.HW_out(), M = s.M_g();
    const bool gather = s.sh == 1 && s.sw == 1;
    const Taps taps{s.kH, s.kW, 1, 1, s.dh, s.dw};
    const long Hp = s.H + (s.kH - 1) * s.dh, Wp = padded_stride<T>(taps, s.W + (s.kW - 1) * s.dw, s.W);
    const long top = (s.kH - 1) * s.dh - s.ph, left = (s.kW - 1) * s.dw - s.pw;  // dy's padding
    const bool unpadded = gather && direct_ok(taps) && direct::unpadded_ok<T>(s.W_out, s.W, left, s.kH, s.kW, s.dw);
    // Per thread: the padded plane (vector-aligned, for the direct kernel), then the rotated kernel.
    const long scratch = gather ? round_up(Hp * Wp + kk, Vec<T>::lanes) : HWo;
    const int nt = threads_for(planes, s.flops());
    Buffer<T> work(nt * scratch);
#pragma omp parallel num_threads(nt)
    {
        T* buf = work.data() + omp_thread() * scratch;
        std::fill(buf, buf + scratch, T(0));  // the padding stays zero; each plane refills the rest
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            const long n = p / s.C_in, c = p % s.C_in;
            T* dxc = dx + p * s.HW();
            if (!gather) std::fill(dxc, dxc + s.HW(), T(0));
            for (long o = c * M; o < (c + 1) * M; ++o) {
                const T* dyo = dy + (n * s.C_out + o) * HWo;
                const T* wo = w + o * kk;
                if (gather) {
                    T* rot = buf + Hp * Wp;
                    for (long k = 0; k < kk; ++k) rot[k] = wo[kk - 1 - k];
                    if (unpadded) {
                        direct::correlate_rows_unpadded(dyo, s.H_out, s.W_out, top, rot, s.kH, dxc, 0L, s.H, o > c * M,
                                                        T(0));
                        continue;
                    }
                    refill_plane(dyo, s.H_out, s.W_out, top, left, Hp, Wp, buf);
                    correlate_padded(buf, Wp, rot, taps, s.H, s.W, dxc, o > c * M, T(0));
                    continue;
                }
                for (long k = 0; k < kk; ++k) {
                    for (long j = 0; j < HWo; ++j) buf[j] = wo[k] * dyo[j];
                    col2im_row(buf, s, k / s.kW, k % s.kW, 0, HWo, dxc);
                }
            }
        }
    }
}

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
// row t are loaded once and each feeds the KH dy rows t - a·dh that take it (an unaligned load serves KH
// FMAs instead of one). accv holds KH·KW vectors in row-major tap order. ALIGNED (dw = 1, vector-aligned
// rows of at least direct::aligned_width): the shifted vectors come from two aligned ones by shift_lanes,
// as in direct.h. UNPADDED (dw = 1): xp is the plane x itself, H rows of Wp = W_out columns (whole
// vectors), with `top` zero rows above it and (KW - 1) / 2 zero columns either side (direct.h's
// unpadded layout): rows outside it are skipped and the columns past its edges are zero vectors.
template <typename T, int KH, int KW, bool ALIGNED, bool UNPADDED = false>
void wgrad_rows(const T* xp, long Wp, long dh, long dw, const T* dy, long H_out, long W_out,
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
    const long rows = H_out + (KH - 1) * dh;
    for (long t = 0; t < rows; ++t) {
        if (UNPADDED && (t < top || t - top >= H)) continue;
        const T* xr = xp + (UNPADDED ? t - top : t) * Wp;
        bool ok[KH];
#pragma GCC unroll 8
        for (int a = 0; a < KH; ++a) ok[a] = t - a * dh >= 0 && t - a * dh < H_out;
        V next{}, cur{}, prev{};
        if constexpr (ALIGNED) next = load<V>(xr);
        if constexpr (UNPADDED) cur = load<V>(xr);
        // x vectors at (padded) columns j + b*dw, b < KW.
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
                for (int b = 0; b < KW; ++b) xv[b] = load<V>(xr + j + b * dw);
            }
        };
        for (long j = 0; j < full; j += L) {
            V xv[KW];
            shifted(j, xv);
#pragma GCC unroll 8
            for (int a = 0; a < KH; ++a) {
                if (!ok[a]) continue;
                const V d = load<V>(dy + (t - a * dh) * W_out + j);
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
                const T* d = dy + (t - a * dh) * W_out;
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

// dw[o,a,b] = Σ_n Σ_i dy[n,o,i,:] · xpad[n, o / M_g, i*sh + a*dh, b*dw :: sw]   one task per output channel
// Stride 1: every tap is a vector accumulator over whole rows of dy (wgrad_taps), summed across lanes once
// per channel. Strided: a dot product per row and tap, one task per output channel.
template <typename T>
void conv2d_weight_grad_depthwise(const T* x, const T* dy, T* dw, const ConvShape& s) {
    using V = typename Vec<T>::type;
    const long kk = s.kH * s.kW, HWo = s.HW_out();
    const bool vec = s.sh == 1 && s.sw == 1;
    const long Hp = span(s.H_out, s.sh, s.kH, s.dh);
    const long Wp = vec ? vector_stride<T>(span(s.W_out, 1, s.kW, s.dw), s.W_out, s.kW, s.dw)
                        : span(s.W_out, s.sw, s.kW, s.dw);
    const int nt = threads_for(s.C_out, s.flops());
    Buffer<long> offs(kk);
    for (long k = 0; k < kk; ++k) offs.data()[k] = (k / s.kW) * s.dh * Wp + (k % s.kW) * s.dw;
    if (vec) {
        // Each thread owns a contiguous range of channels and walks the images outermost, so it streams
        // through x[n] and dy[n] in long contiguous runs (one 4 KiB plane at a time would restart the
        // hardware prefetcher at every plane). Per channel the sum over n runs in the same order for any
        // thread count.
        // 3x3 in direct.h's unpadded layout: x is read in place (wgrad_rows' UNPADDED)
        const bool unpadded = s.kH == 3 && direct::unpadded_ok<T>(s.W, s.W_out, s.pw, s.kH, s.kW, s.dw);
        Buffer<V> accs(s.C_out * kk);
        Buffer<T> work(unpadded ? 0 : nt * Hp * Wp);
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_thread(), nth = nt;
            const long o0 = s.C_out * tid / nth, o1 = s.C_out * (tid + 1) / nth;
            T* xp = unpadded ? nullptr : work.data() + tid * Hp * Wp;
            if (xp) std::fill(xp, xp + Hp * Wp, T(0));  // the padding stays zero; each plane refills the rest
            std::fill(accs.data() + o0 * kk, accs.data() + o1 * kk, V{});
            for (long n = 0; n < s.N; ++n)
                for (long o = o0; o < o1; ++o) {
                    const T* xo = x + (n * s.C_in + o / s.M_g()) * s.HW();
                    const T* dyo = dy + (n * s.C_out + o) * HWo;
                    if (unpadded) {
                        wgrad_rows<T, 3, 3, false, true>(xo, s.W, s.dh, 1, dyo, s.H_out, s.W_out, accs.data() + o * kk,
                                                         s.ph, s.H);
                        continue;
                    }
                    refill_plane(xo, s.H, s.W, s.ph, s.pw, Hp, Wp, xp);
                    if (s.kH == 3 && s.kW == 3) {
                        if (s.dw == 1)  // rows vector-aligned: Wp and the per-thread buffers are whole vectors
                            wgrad_rows<T, 3, 3, true>(xp, Wp, s.dh, 1, dyo, s.H_out, s.W_out, accs.data() + o * kk);
                        else
                            wgrad_rows<T, 3, 3, false>(xp, Wp, s.dh, s.dw, dyo, s.H_out, s.W_out, accs.data() + o * kk);
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
#pragma omp parallel for schedule(static) num_threads(nt)
    for (long o = 0; o < s.C_out; ++o) {
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

#define FASTCONV_INSTANTIATE(T)                                                              \
    template void conv2d_depthwise<T>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad_depthwise<T>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad_depthwise<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
