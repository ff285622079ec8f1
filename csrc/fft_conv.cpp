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
    for (int c0 = 0; c0 < n; c0 += L) {
        load_block<T>(rows + c0, n, L, L, v + c0);
        transpose<T>(v + c0);
    }
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

#define FASTCONV_INSTANTIATE(T, n)                                                         \
    template void conv2d_fft<T, n>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad_fft<T, n>(const T*, const T*, T*, const ConvShape&);
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
