// fft_conv.cpp — convolution by FFT over n x n tiles (overlap-save): the forward of stride-1 layers
// with large kernels, and single planes (correlate2d/convolve2d run the forward on a 1x1 layer); the
// input gradient is that forward on dy with the rotated, transposed kernel (input_grad_as_forward).
//
// A tile of n x n inputs yields (n - k_eff + 1)² outputs of a correlation with a k_eff x k_eff kernel
// (k_eff = (k - 1)·dilation + 1: a dilated kernel is an undilated one with zero taps): its circular
// correlation with the kernel zero-padded to n x n, y = IDFT(DFT(x) · conj(DFT(w))), wraps only into the
// other outputs. Zero padding costs nothing: tiles read zeros outside the input. Summed over input
// channels, every bin is a complex matrix product  Y[o] = Σ_c conj(W[o, c]) · X[c]  over L tiles at a time.
//
// One task is one group of L tiles (consecutive along rows, tile rows and images): gather and transform
// its tiles for every input channel, mix the channels bin by bin into blocks of output channels, and
// transform each back into its outputs. The kernel's spectra are computed once per call. Every output
// is computed by one task in a fixed order, so results do not depend on the thread count.
#include "fft_conv.h"

#include <algorithm>
#include <cstring>

#include "fft.h"
#include "implicit.h"
#include "parallel.h"

namespace fastconv {
namespace {

constexpr int kOutBlock = 4;  // output channels mixed at once: their accumulators stay in registers

template <typename T, int n>
struct FftTiling {
    static constexpr int L = Vec<T>::lanes, E = n * (n / 2 + 1);
    long kh, kw, mh, mw, th, tw, tiles, groups;  // dilated kernel, outputs per tile, tile grid
    explicit FftTiling(const ConvShape& s)
        : kh((s.kH - 1) * s.dil_h + 1), kw((s.kW - 1) * s.dil_w + 1), mh(n - kh + 1), mw(n - kw + 1),
          th(ceil_div(s.H_out, mh)), tw(ceil_div(s.W_out, mw)), tiles(s.N * th * tw), groups(ceil_div(tiles, L)) {}
};

// Wt[((e·K + o)·C + c)·2 + {0, 1}] = conj(DFT(w[o, c]))[e] / (4 n²): the kernel's spectra, conjugated
// for a correlation, with rfft2's doubling and the unscaled inverse folded in; `flipped`: of w[c, o]
// rotated by 180° (w then has shape (C, K, kH, kW)). L kernels per transform.
template <typename T, int n>
void kernel_spectra(const T* w, const ConvShape& s, bool flipped, const FftTiling<T, n>& tl, T* Wt) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, E = FftTiling<T, n>::E;
    const long K = s.C_out, C = s.C_in, pairs = K * C, tasks = ceil_div(pairs, L);
    const T scale = T(1.0 / (4.0 * n * n));
    // about 5 n² log2 n flops per real 2-D transform, L transforms per task
    const int rows = (int)round_up(tl.kh, 2), nt = threads_for(tasks, 5.0 * tasks * L * n * n * __builtin_ctz(n));
    PerThread<V> work(nt, n * n + 2 * E);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (long task = 0; task < tasks; ++task) {
        V *x = work.get(), *bins = x + n * n;
        std::fill(x, x + n * n, V{});
        const long p0 = task * L, np = std::min<long>(L, pairs - p0);
        for (long l = 0; l < np; ++l) {
            const long o = (p0 + l) / C, c = (p0 + l) % C, kk = s.kH * s.kW;
            const T* g = flipped ? w + (c * K + o) * kk : w + (o * C + c) * kk;
            for (long i = 0; i < kk; ++i)
                x[i / s.kW * s.dil_h * n + i % s.kW * s.dil_w][l] = g[flipped ? kk - 1 - i : i];
        }
        rfft2<T, n>([x](int r, V* v) { std::copy(x + r * n, x + (r + 1) * n, v); }, rows, bins, 2);
        for (long e = 0; e < E; ++e)
            for (long l = 0; l < np; ++l) {
                const long o = (p0 + l) / C, c = (p0 + l) % C;
                Wt[((e * K + o) * C + c) * 2] = bins[2 * e][l] * scale;
                Wt[((e * K + o) * C + c) * 2 + 1] = -bins[2 * e + 1][l] * scale;
            }
    }
}

// Where the tiles of group g lie: per lane (tile), its image, first output row and column, and how many
// of its rows and columns of outputs fall inside the output (0 rows for lanes past the last tile).
template <typename T>
struct GroupTiles {
    long img[Vec<T>::lanes], h0[Vec<T>::lanes], w0[Vec<T>::lanes], rows[Vec<T>::lanes], cols[Vec<T>::lanes];
    template <typename Tiling>
    GroupTiles(const ConvShape& s, const Tiling& tl, long g) {
        for (int l = 0; l < Vec<T>::lanes; ++l) {
            const long t = g * Vec<T>::lanes + l, j = t % tl.tw, i = t / tl.tw % tl.th;
            img[l] = t / (tl.tw * tl.th), h0[l] = i * tl.mh, w0[l] = j * tl.mw;
            rows[l] = t < tl.tiles ? std::min(tl.mh, s.H_out - h0[l]) : 0;
            cols[l] = std::min(tl.mw, s.W_out - w0[l]);
        }
    }
};

// v[c] := column c of L rows of n (rows[l·n + c] into lane l).
template <typename T, int n>
void rows_to_lanes(const T* rows, typename Vec<T>::type* v) {
    constexpr int L = Vec<T>::lanes;
    for (int c0 = 0; c0 < n; c0 += L) {
        load_block<T>(rows + c0, n, L, L, v + c0);
        transpose<T>(v + c0);
    }
}

// v := row r of the group's tiles (lanes = tiles) in channel c, zero outside the plane and for lanes
// past the last tile. rows: scratch of L·n elements.
template <typename T, int n>
void gather_row(const T* x, const ConvShape& s, const GroupTiles<T>& gt, long c, int r, typename Vec<T>::type* v,
                T* rows) {
    constexpr int L = Vec<T>::lanes;
    for (int l = 0; l < L; ++l) {
        T* row = rows + l * n;
        const long h = gt.h0[l] - s.ph + r, w0 = gt.w0[l] - s.pw;
        const long lo = std::max(0L, -w0), hi = std::min<long>(n, s.W - w0);
        if (gt.rows[l] == 0 || h < 0 || h >= s.H || hi <= lo) {
            std::fill(row, row + n, T(0));
            continue;
        }
        std::fill(row, row + lo, T(0));
        std::memcpy(row + lo, x + ((gt.img[l] * s.C_in + c) * s.H + h) * s.W + w0 + lo, (hi - lo) * sizeof(T));
        std::fill(row + hi, row + n, T(0));
    }
    rows_to_lanes<T, n>(rows, v);
}

// v := row r of the group's tiles of dy (lanes = tiles) in channel o: the tiles' own outputs, zero past
// them (their neighbours' outputs, the plane's edge, lanes past the last tile). rows: scratch of L·n.
template <typename T, int n>
void gather_dy_row(const T* dy, const ConvShape& s, const GroupTiles<T>& gt, long o, int r,
                   typename Vec<T>::type* v, T* rows) {
    constexpr int L = Vec<T>::lanes;
    for (int l = 0; l < L; ++l) {
        T* row = rows + l * n;
        const long cols = r < gt.rows[l] ? gt.cols[l] : 0;
        if (cols > 0)
            std::memcpy(row, dy + ((gt.img[l] * s.C_out + o) * s.H_out + gt.h0[l] + r) * s.W_out + gt.w0[l],
                        cols * sizeof(T));
        std::fill(row + cols, row + n, T(0));
    }
    rows_to_lanes<T, n>(rows, v);
}

// Row r of the group's tiles (v, lanes = tiles), where inside their valid outputs, plus bias, into dst[l]
// (channel o of tile l's outputs).
template <typename T, int n>
void scatter_row(typename Vec<T>::type* v, int r, typename Vec<T>::type bias, long mw, long W_out,
                 const GroupTiles<T>& gt, T* const* dst) {
    constexpr int L = Vec<T>::lanes;
    for (int c0 = 0; c0 < mw; c0 += L) {
        transpose<T>(v + c0);
        for (int l = 0; l < L; ++l) {
            const long cnt = std::min<long>(L, gt.cols[l] - c0);
            if (r >= gt.rows[l] || cnt <= 0) continue;
            T* d = dst[l] + r * W_out + c0;
            if (cnt == L) {
                store(d, v[c0 + l] + bias);
            } else {
                alignas(64) T part[L];
                store(part, v[c0 + l] + bias);
                std::memcpy(d, part, cnt * sizeof(T));
            }
        }
    }
}

// out[j][2e], [2e+1] = Σ_c Wt[e, o0 + j, c] · xs[e, c] (complex) for j < OB, every bin e.
template <typename T, int n, int OB>
void mix(const T* Wt, const typename Vec<T>::type* xs, long K, long C, long o0, typename Vec<T>::type* out,
         long out_stride) {
    using V = typename Vec<T>::type;
    constexpr int E = FftTiling<T, n>::E;
    for (long e = 0; e < E; ++e) {
        V ar[OB] = {}, ai[OB] = {};
        const V* d = xs + e * C * 2;
        const T* w = Wt + (e * K + o0) * C * 2;
        for (long c = 0; c < C; ++c) {
            const V dr = d[2 * c], di = d[2 * c + 1];
#pragma GCC unroll 4
            for (int j = 0; j < OB; ++j) {
                const V a = broadcast<V>(w[(j * C + c) * 2]), b = broadcast<V>(w[(j * C + c) * 2 + 1]);
                ar[j] += a * dr - b * di;
                ai[j] += a * di + b * dr;
            }
        }
        for (int j = 0; j < OB; ++j) out[j * out_stride + 2 * e] = ar[j], out[j * out_stride + 2 * e + 1] = ai[j];
    }
}

}  // namespace

// y (N, K, H_out, W_out) = w ⋆ x + b, w (K, C, kH, kW) — or, `flipped`, w (C, K, kH, kW) rotated and
// transposed.
template <typename T, int n>
static void fft_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, E = FftTiling<T, n>::E;
    const FftTiling<T, n> tl(s);
    const long K = s.C_out, C = s.C_in, OB = std::min<long>(kOutBlock, K);
    Buffer<T> Wt(E * K * C * 2);
    kernel_spectra<T, n>(w, s, flipped, tl, Wt.data());
    const int out_rows = (int)round_up(tl.mh, 2);
    const int nt = threads_for(tl.groups, s.flops() / 8);
    const long xssize = 2 * E * C, ysize = 2 * E * OB;
    PerThread<V> work(nt, xssize + ysize + n);
    Stop stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long g = 0; g < tl.groups; ++g) {
        if (stop()) continue;
        V *xs = work.get(), *ys = xs + xssize;
        T* rows = reinterpret_cast<T*>(ys + ysize);
        const GroupTiles<T> gt(s, tl, g);
        for (long c = 0; c < C; ++c)
            rfft2<T, n>([&](int r, V* v) { gather_row<T, n>(x, s, gt, c, r, v, rows); }, n, xs + 2 * c, 2 * C);
        for (long o0 = 0; o0 < K; o0 += OB) {
            const long ob = std::min(OB, K - o0);
            switch (ob) {
                case 4: mix<T, n, 4>(Wt.data(), xs, K, C, o0, ys, 2 * E); break;
                case 3: mix<T, n, 3>(Wt.data(), xs, K, C, o0, ys, 2 * E); break;
                case 2: mix<T, n, 2>(Wt.data(), xs, K, C, o0, ys, 2 * E); break;
                default: mix<T, n, 1>(Wt.data(), xs, K, C, o0, ys, 2 * E); break;
            }
            for (long j = 0; j < ob; ++j) {
                T* dst[L];
                for (int l = 0; l < L; ++l)  // lanes past the last tile point nowhere (and are never written)
                    dst[l] = gt.rows[l] ? y + ((gt.img[l] * K + o0 + j) * s.H_out + gt.h0[l]) * s.W_out + gt.w0[l]
                                        : nullptr;
                const V bias = broadcast<V>(b ? b[o0 + j] : T(0));
                irfft2<T, n>(ys + j * 2 * E, out_rows,
                             [&](int r, V* v) { scatter_row<T, n>(v, r, bias, tl.mw, s.W_out, gt, dst); });
            }
        }
    }
}

template <typename T, int n>
void conv2d_fft(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    fft_forward<T, n>(x, w, b, y, s, false);
}

template <typename T, int n>
void conv2d_input_grad_fft(const T* dy, const T* w, T* dx, const ConvShape& s) {
    fft_forward<T, n>(dy, w, nullptr, dx, input_grad_as_forward(s), true);
}

// The weight gradient. A tile's n x n inputs x_t (as the forward gathers them) and its mh x mw outputs'
// dy_t (zero-padded to n x n) give every tap: dw[o, c](i, j) = Σ_t Σ_(r, q) dy_t[o](r, q) · x_t[c](r + i·dh,
// q + j·dw), and r + i·dh < mh + k_eff - 1 = n, so the circular correlation does not wrap:
// dw[o, c] = IDFT(Σ_t conj(DY_t[o]) · X_t[c]) at the taps. Per bin e a complex matrix product that
// reduces over the tiles, DW_e = conj(DY_e)ᵀ X_e, with the tiles in the lanes: register blocks of
// OB x CB channel pairs accumulate per lane, and sum_lanes reduces each block once per chunk of groups.
//
// In chunks of G tile groups (their spectra within kFftChunkBytes): transform every channel of x and dy
// (a task per group and channel), then the products (a task per bin), added to DW; after the last chunk
// one inverse transform per L channel pairs. Each bin's sums run in a fixed order on one thread, so the
// result does not depend on the thread count.
constexpr double kFftChunkBytes = 64.0 * (1 << 20);

template <typename T, int n>
void conv2d_weight_grad_fft(const T* x, const T* dy, T* dw, const ConvShape& s) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, E = FftTiling<T, n>::E, CB = 2, OB = L >= 16 ? 4 : 2, A = 2 * OB * CB;
    static_assert(A % L == 0, "a register block's sums fill whole vectors");
    const FftTiling<T, n> tl(s);
    const long K = s.C_out, C = s.C_in, Kp = round_up(K, OB), P = Kp + round_up(C, CB);
    // spectra[((e·G + g)·P + channel)·2 + {re, im}]: dy's channels 0 .. Kp, x's from Kp; padding stays zero
    const long G = std::clamp<long>((long)(kFftChunkBytes / (E * 2.0 * P * sizeof(V))), 1, tl.groups), ld = G * P * 2;
    Buffer<V> spectra(E * ld);
    for (long eg = 0; eg < E * G; ++eg) {
        std::fill(spectra.data() + eg * P * 2 + 2 * K, spectra.data() + eg * P * 2 + 2 * Kp, V{});
        std::fill(spectra.data() + eg * P * 2 + 2 * (Kp + C), spectra.data() + (eg + 1) * P * 2, V{});
    }
    // DW[((p / L · E + e)·2 + {re, im})·L + p % L] for the channel pair p = o·C + c: irfft2's layout
    const long pairs = K * C, pgroups = ceil_div(pairs, L);
    Buffer<T> DW(pgroups * E * 2 * L);
    std::fill(DW.data(), DW.data() + pgroups * E * 2 * L, T(0));
    const double transform_flops = 5.0 * L * n * n * __builtin_ctz(n);
    for (long g0 = 0; g0 < tl.groups; g0 += G) {
        const long gn = std::min(G, tl.groups - g0);
        parallel_tasks<T>(gn * (K + C), gn * (K + C) * transform_flops, L * n, [&](long task, T* rows) {
            const long g = task / (K + C), ch = task % (K + C);
            const GroupTiles<T> gt(s, tl, g0 + g);
            if (ch < K)
                rfft2<T, n>([&](int r, V* v) { gather_dy_row<T, n>(dy, s, gt, ch, r, v, rows); }, (int)tl.mh,
                            spectra.data() + (g * P + ch) * 2, ld);
            else
                rfft2<T, n>([&](int r, V* v) { gather_row<T, n>(x, s, gt, ch - K, r, v, rows); }, n,
                            spectra.data() + (g * P + Kp + ch - K) * 2, ld);
        });
        parallel_tasks<T>(E, 8.0 * E * Kp * P * gn * L, 0, [&](long e, T*) {
            const V* S = spectra.data() + e * ld;
            for (long o0 = 0; o0 < Kp; o0 += OB)
                for (long c0 = Kp; c0 < P; c0 += CB) {
                    V acc[A] = {};  // acc[((j·CB + i)·2 + {re, im}]: output o0 + j, input channel c0 - Kp + i
                    for (long g = 0; g < gn; ++g) {
                        const V *d = S + (g * P + o0) * 2, *xs = S + (g * P + c0) * 2;
#pragma GCC unroll 4
                        for (int j = 0; j < OB; ++j)
#pragma GCC unroll 2
                            for (int i = 0; i < CB; ++i) {
                                acc[(j * CB + i) * 2] += d[2 * j] * xs[2 * i] + d[2 * j + 1] * xs[2 * i + 1];
                                acc[(j * CB + i) * 2 + 1] += d[2 * j] * xs[2 * i + 1] - d[2 * j + 1] * xs[2 * i];
                            }
                    }
                    for (int a0 = 0; a0 < A; a0 += L) {
                        const V sums = sum_lanes<T>(acc + a0);
                        for (int l = 0; l < L; ++l) {
                            const int a = a0 + l, j = a / (2 * CB), i = a / 2 % CB;
                            const long o = o0 + j, c = c0 - Kp + i, p = o * C + c;
                            if (o < K && c < C) DW.data()[((p / L * E + e) * 2 + a % 2) * L + p % L] += sums[l];
                        }
                    }
                }
        });
    }
    const T scale = T(1.0 / (4.0 * n * n));  // rfft2's doubling of both spectra, irfft2's unscaled inverse
    const long kk = s.kH * s.kW;
    parallel_tasks<T>(pgroups, pgroups * transform_flops, 0, [&](long pg, T*) {
        const long p0 = pg * L, np = std::min<long>(L, pairs - p0);
        irfft2<T, n>(reinterpret_cast<V*>(DW.data() + pg * E * 2 * L), (int)round_up(tl.kh, 2), [&](int r, V* v) {
            if (r % s.dil_h || r / s.dil_h >= s.kH) return;
            for (long j = 0; j < s.kW; ++j)
                for (long l = 0; l < np; ++l) dw[(p0 + l) * kk + r / s.dil_h * s.kW + j] = v[j * s.dil_w][l] * scale;
        });
    });
}

#define FASTCONV_INSTANTIATE(T, n)                                                           \
    template void conv2d_fft<T, n>(const T*, const T*, const T*, T*, const ConvShape&);   \
    template void conv2d_input_grad_fft<T, n>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad_fft<T, n>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float, 16)
FASTCONV_INSTANTIATE(float, 32)
FASTCONV_INSTANTIATE(float, 64)
FASTCONV_INSTANTIATE(float, 128)
FASTCONV_INSTANTIATE(double, 16)
FASTCONV_INSTANTIATE(double, 32)
FASTCONV_INSTANTIATE(double, 64)
FASTCONV_INSTANTIATE(double, 128)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
