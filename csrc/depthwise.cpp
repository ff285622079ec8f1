// depthwise.cpp — direct kernels for convolutions with one input channel per group and few output
// channels per group: depthwise conv (groups == C_in) and the single-plane correlate2d/convolve2d.
//
// There the GEMM would be (C_out/g) x (kH*kW) — far too thin for an MR x NR register tile (a 3x3
// depthwise layer would waste 7/8 of every tile and spend its time packing). Instead each input
// plane is copied once into a zero-padded buffer, after which every tap of every output is in range:
// a vector of outputs accumulates its kH*kW taps in a register with no bounds checks. At stride 1 the
// register-blocked kernel of direct.h does this for a block of rows x vectors at once; a single
// plane (fewer planes than threads) is padded once and split into bands of output rows. At a column
// stride > 1 the padded plane is split into its column phases first, so vectors still load unit-stride.
// The stride-1 input gradient is the same correlation on the padded dy with the kernel rotated 180°;
// strided input gradients scatter-add im2col rows instead (col2im).
#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "depthwise.h"
#include "direct.h"
#include "im2col.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {
namespace {

using namespace depthwise;

struct Taps {
    long kH, kW, sh, sw, dil_h, dil_w;
};

// The register-blocked kernel of direct.h applies (stride 1, no row dilation).
inline bool direct_ok(const Taps& t) { return t.sh == 1 && t.sw == 1 && t.dil_h == 1; }

// Row stride of the padded plane: vector_stride where the direct kernel applies, else the span.
template <typename T>
long padded_stride(const Taps& t, long span_w, long W_out) {
    return direct_ok(t) ? vector_stride<T>(span_w, W_out, t.kW, t.dil_w) : span_w;
}

// Elements of the column-phase copy of a padded plane (correlate_phases) at column stride sw.
inline long phases_size(long Hp, long Wp, long sw) { return sw * Hp * ceil_div(Wp, sw); }

// Column stride sw > 1: the padded plane's rows split into their sw column phases (phase q holds columns
// q, q + sw, q + 2sw, ...), so that each tap of a vector of consecutive outputs is one unit-stride load
// (output j, tap b reads column j*sw + b*dil_w: phase (b*dil_w) % sw, entry j + (b*dil_w) / sw).
template <typename T>
void correlate_phases(const T* xp, long Wp, const T* k, const Taps& t, long H_out, long W_out, T* out,
                      bool accumulate, T init, T* phases) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    const long sw = t.sw, Hp = span(H_out, t.sh, t.kH, t.dil_h), Wq = ceil_div(Wp, sw);
    for (long r = 0; r < Hp; ++r)
        for (long q = 0; q < sw; ++q) {
            T* d = phases + (q * Hp + r) * Wq;
            const long n = (Wp - q + sw - 1) / sw;
            for (long c = 0; c < n; ++c) d[c] = xp[r * Wp + c * sw + q];
            std::fill(d + n, d + Wq, T(0));
        }
    for (long i = 0; i < H_out; ++i) {
        T* o = out + i * W_out;
        long j = 0;
        for (; j + L <= W_out; j += L) {
            V acc = accumulate ? load<V>(o + j) : broadcast<V>(init);
            for (long a = 0; a < t.kH; ++a) {
                const long r = i * t.sh + a * t.dil_h;
                for (long b = 0; b < t.kW; ++b)
                    acc += broadcast<V>(k[a * t.kW + b]) *
                           load<V>(phases + (b * t.dil_w % sw * Hp + r) * Wq + j + b * t.dil_w / sw);
            }
            store(o + j, acc);
        }
        for (; j < W_out; ++j) {
            T acc = accumulate ? o[j] : init;
            for (long a = 0; a < t.kH; ++a)
                for (long b = 0; b < t.kW; ++b) acc += k[a * t.kW + b] * xp[(i * t.sh + a * t.dil_h) * Wp + j * sw + b * t.dil_w];
            o[j] = acc;
        }
    }
}

// out (H_out x W_out)[i][j] = (accumulate ? out : init) + Σ_{a,b} k[a,b] · xp[i*sh + a*dil_h][j*sw + b*dil_w]
// phases: scratch of phases_size elements for strided rows of a vector or more (else unused, may be null).
template <typename T>
void correlate_padded(const T* xp, long Wp, const T* k, const Taps& t, long H_out, long W_out, T* out,
                      bool accumulate, T init, T* phases = nullptr) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    if (direct_ok(t) && Wp >= direct::padded_width<T>(W_out, t.kW, t.dil_w))
        return direct::correlate_rows(xp, Wp, k, t.kH, t.kW, t.dil_w, out, W_out, 0L, H_out, accumulate, init);
    if (phases && t.sw > 1 && W_out >= L)
        return correlate_phases(xp, Wp, k, t, H_out, W_out, out, accumulate, init, phases);
    for (long i = 0; i < H_out; ++i) {
        T* o = out + i * W_out;
        long j = 0;
        if (t.sw == 1)
            for (; j + L <= W_out; j += L) {
                V acc = accumulate ? load<V>(o + j) : broadcast<V>(init);
                for (long a = 0; a < t.kH; ++a) {
                    const T* xr = xp + (i * t.sh + a * t.dil_h) * Wp + j;
                    for (long b = 0; b < t.kW; ++b) acc += broadcast<V>(k[a * t.kW + b]) * load<V>(xr + b * t.dil_w);
                }
                store(o + j, acc);
            }
        for (; j < W_out; ++j) {
            T acc = accumulate ? o[j] : init;
            for (long a = 0; a < t.kH; ++a)
                for (long b = 0; b < t.kW; ++b) acc += k[a * t.kW + b] * xp[(i * t.sh + a * t.dil_h) * Wp + j * t.sw + b * t.dil_w];
            o[j] = acc;
        }
    }
}

}  // namespace

// y[n,o] = b[o] + Σ_{a,b} w[o,a,b] · xpad[n, o / M_g]
// Many planes: one task per output plane, each thread padding into its own buffer. Fewer planes than
// threads (a single image plane): every plane padded once, then one task per band of output rows.
template <typename T>
void conv2d_depthwise(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const long planes = s.N * s.C_out, kk = s.kH * s.kW, HWo = s.HW_out();
    const Taps taps{s.kH, s.kW, s.sh, s.sw, s.dil_h, s.dil_w};
    const long Hp = span(s.H_out, s.sh, s.kH, s.dil_h);
    const long Wp = padded_stride<T>(taps, span(s.W_out, s.sw, s.kW, s.dil_w), s.W_out);
    const T* const xs = x;
    auto plane_of = [&](long p) { return xs + (p / s.C_out * s.C_in + p % s.C_out / s.M_g()) * s.HW(); };
    if (direct_ok(taps) && planes < get_num_threads()) {
        const long band = 8 * direct::kRows, bands = ceil_div(s.H_out, band);
        const int nt = threads_for(planes * bands, s.flops());
        Buffer<T> padded(planes * Hp * Wp);
        Stop stop;
#pragma omp parallel num_threads(nt)
        {
#pragma omp for schedule(static)
            for (long p = 0; p < planes; ++p) pad_plane(plane_of(p), s.H, s.W, s.ph, s.pw, Hp, Wp, padded.data() + p * Hp * Wp);
#pragma omp for schedule(dynamic)
            for (long t = 0; t < planes * bands; ++t) {
                if (stop()) continue;
                const long p = t / bands, i0 = t % bands * band, o = p % s.C_out;
                direct::correlate_rows(padded.data() + p * Hp * Wp, Wp, w + o * kk, s.kH, s.kW, s.dil_w, y + p * HWo,
                                       s.W_out, i0, std::min(i0 + band, s.H_out), false, b ? b[o] : T(0));
            }
        }
        return;
    }
    const int nt = threads_for(planes, s.flops());
    const bool unpadded = direct_ok(taps) && direct::unpadded_ok<T>(s.W, s.W_out, s.pw, s.kH, s.kW, s.dil_w);
    const long phased = s.sw > 1 && s.W_out >= Vec<T>::lanes ? phases_size(Hp, Wp, s.sw) : 0;
    const long scratch = (unpadded ? 0 : Hp * Wp) + phased;  // per thread: the padded plane, its phases
    Buffer<T> work(nt * scratch);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        T* xp = unpadded ? nullptr : work.data() + omp_thread() * scratch;
        T* phases = phased ? xp + Hp * Wp : nullptr;
        if (xp) std::fill(xp, xp + Hp * Wp, T(0));  // the padding stays zero; each plane refills the rest
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            if (stop()) continue;
            const long o = p % s.C_out;
            if (unpadded) {
                direct::correlate_rows_unpadded(plane_of(p), s.H, s.W, s.ph, w + o * kk, s.kH, y + p * HWo, 0L, s.H_out,
                                                false, b ? b[o] : T(0));
                continue;
            }
            refill_plane(plane_of(p), s.H, s.W, s.ph, s.pw, Hp, Wp, xp);
            correlate_padded(xp, Wp, w + o * kk, taps, s.H_out, s.W_out, y + p * HWo, false, b ? b[o] : T(0), phases);
        }
    }
}

// dx[n,c] = Σ_{o in group c} adjoint of the tap sum. Stride 1: a correlation of the padded dy[n,o] with
// w[o] rotated 180°; otherwise w[o,k]·dy[n,o] is scatter-added per tap.   one task per input plane
template <typename T>
void conv2d_input_grad_depthwise(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long planes = s.N * s.C_in, kk = s.kH * s.kW, HWo = s.HW_out(), M = s.M_g();
    const bool gather = s.sh == 1 && s.sw == 1;
    const Taps taps{s.kH, s.kW, 1, 1, s.dil_h, s.dil_w};
    const long Hp = s.H + (s.kH - 1) * s.dil_h, Wp = padded_stride<T>(taps, s.W + (s.kW - 1) * s.dil_w, s.W);
    const long top = (s.kH - 1) * s.dil_h - s.ph, left = (s.kW - 1) * s.dil_w - s.pw;  // dy's padding
    const bool unpadded = gather && direct_ok(taps) && direct::unpadded_ok<T>(s.W_out, s.W, left, s.kH, s.kW, s.dil_w);
    // Per thread: the padded plane (vector-aligned, for the direct kernel), then the rotated kernel.
    const long scratch = gather ? round_up(Hp * Wp + kk, Vec<T>::lanes) : HWo;
    const int nt = threads_for(planes, s.flops());
    Buffer<T> work(nt * scratch);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        T* buf = work.data() + omp_thread() * scratch;
        std::fill(buf, buf + scratch, T(0));  // the padding stays zero; each plane refills the rest
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            if (stop()) continue;
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

#define FASTCONV_INSTANTIATE(T)                                                              \
    template void conv2d_depthwise<T>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad_depthwise<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
