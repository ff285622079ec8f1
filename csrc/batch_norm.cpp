// batch_norm.cpp — batch normalisation with the batch's statistics, forward and gradient, parallel over
// blocks of channels.
//
// A channel's values are N planes of HW values, one per image, C*HW apart. Planes of a few values (the
// 2x2 and 4x4 maps deep in a CNN) are too short to vectorise one at a time, so a task takes a block of B
// consecutive channels, whose planes in one image are a single contiguous run of B*HW values, and keeps
// one accumulator per position of that run (a slot); after the N runs each channel sums its HW slots.
// Planes of kChunk values or more make blocks of one channel, walked in chunks of kChunk slots. A slot
// always accumulates the same values in the same order whatever B is, so the results do not depend on
// the thread count. Each task makes its reduction pass and then its elementwise pass over the same
// block, which is then still in the cache. Sums are in double. Every difference x - mean is taken as
// (x - x0) - (mean - x0), x0 the channel's first value: x - x0 is exact or rounded to the spread of the
// values, not to their magnitude, so neither the one-pass variance (the mean square of x - x0 less the
// square of its mean) nor x_hat loses digits to values far from zero.
//
// With a fused ReLU the forward computes y from mean and inv_std as it stores them (rounded to T), and the
// gradient the same value with the same arithmetic (normalized below), so that the gradient's mask is
// exactly the forward's y > 0.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "batch_norm.h"
#include "parallel.h"

// No trapping math in this file: without it GCC will not turn a select on an ordered float comparison
// (which could trap on NaN) into a vector blend, so the gradient's loops with the ReLU mask stayed scalar,
// five times slower. The kernels never enable floating-point traps, so results are the same. (Not for all
// kernels: the flag changes how GCC compiles the implicit GEMM, slower on small layers.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace fastconv {
namespace {

constexpr long kChunk = 1024;

struct Blocks {
    long B, chunk, tasks;
};

Blocks plan(const NormShape& s) {
    if (s.HW >= kChunk) return {1, kChunk, s.C};
    // Enough blocks for every thread to take a few, as long as a block's run fills a vector or so.
    const long B =
        std::max(1L, std::min(kChunk / s.HW, std::max(ceil_div(16, s.HW), ceil_div(s.C, 4L * get_num_threads()))));
    return {B, B * s.HW, ceil_div(s.C, B)};
}

// For each image n, f(offset of a chunk of the block's run, its length) over the block's channels
// [c0, c1): the runs split in chunks of at most k.chunk values, slot j of a chunk being its j-th value.
template <typename F>
void for_each_chunk(const NormShape& s, const Blocks& k, long c0, long c1, const F& f) {
    const long len = (c1 - c0) * s.HW;
    for (long n = 0; n < s.N; ++n)
        for (long off = 0; off < len; off += k.chunk) f((n * s.C + c0) * s.HW + off, std::min(k.chunk, len - off));
}

// Per channel c of the block [c0, c1): f(c, first slot, number of slots, sum of its slots of a, ... of b).
template <typename F>
void channel_sums(const Blocks& k, long HW, long c0, long c1, const double* a, const double* b, const F& f) {
    const long per = k.B == 1 ? k.chunk : HW;
    for (long c = c0; c < c1; ++c) {
        const long j0 = k.B == 1 ? 0 : (c - c0) * HW;
        double sa = 0, sb = 0;
        for (long j = j0; j < j0 + per; ++j) sa += a[j], sb += b[j];
        f(c, j0, per, sa, sb);
    }
}

// x0 of channel c: its first value, or 0 when that is not finite (then the sums are too, as the reference's).
template <typename T>
inline T channel_shift(const T* x, long HW, long c) {
    const T x0 = x[c * HW];
    return std::isfinite(x0) ? x0 : T(0);
}

// The normalised value of x at a slot: x0 (shift), mean - x0 (off), w * inv_std (scale) and b (bias).
template <typename T>
inline T normalized(T x, T shift, T off, T scale, T bias) {
    return ((x - shift) - off) * scale + bias;
}

// A slot's mean - x0 and scale, from mean and inv_std as stored: the same in forward and gradient.
template <typename T>
inline void slot_params(T mean, T inv_std, const T* w, long c, T shift, T& off, T& scale) {
    off = (T)((double)mean - (double)shift);
    scale = (T)(w ? (double)inv_std * w[c] : (double)inv_std);
}

// The gradient's g: dy, or with the fused ReLU zero where its input (the forward's value, recomputed) was
// <= 0 (not at NaN, as torch's threshold_backward).
template <bool Relu, typename T>
inline T masked(T dy, T x, T shift, T off, T scale, T bias) {
    if constexpr (Relu)
        return normalized(x, shift, off, scale, bias) <= 0 ? T(0) : dy;
    else
        return dy;
}

// The gradient's two passes over a chunk of m slots. Separate functions with restrict pointers: the
// compiler would otherwise check all these arrays for overlap before vectorising, and gives up past ten.
template <bool Relu, typename T>
void grad_sums(long m, const T* __restrict dy, const T* __restrict x, const T* __restrict shift,
               const T* __restrict off, const T* __restrict scale, const T* __restrict bias, double* __restrict sdy,
               double* __restrict sdyx) {
    for (long j = 0; j < m; ++j) {
        const double g = (double)masked<Relu>(dy[j], x[j], shift[j], off[j], scale[j], bias[j]);
        sdy[j] += g, sdyx[j] += g * (double)((x[j] - shift[j]) - off[j]);
    }
}

template <bool Relu, typename T>
void grad_values(long m, const T* __restrict dy, const T* __restrict x, const T* __restrict shift,
                 const T* __restrict off, const T* __restrict scale, const T* __restrict bias, const T* __restrict a,
                 const T* __restrict q, T* __restrict dx) {
    for (long j = 0; j < m; ++j)
        dx[j] = scale[j] * (masked<Relu>(dy[j], x[j], shift[j], off[j], scale[j], bias[j]) - a[j] -
                            ((x[j] - shift[j]) - off[j]) * q[j]);
}

// Slot j's channel in the block starting at c0.
inline long slot_channel(const Blocks& k, long HW, long c0, long j) { return k.B == 1 ? c0 : c0 + j / HW; }

// A task's workspace: two double accumulators per slot, then Arrays per-slot values of T, the first of
// them each slot's x0. start() zeroes the accumulators and sets x0 for the slots of the block [c0, c1).
template <typename T, int Arrays>
struct Slots {
    static long size(long chunk) { return 2 * chunk + Arrays * ceil_div(chunk * (long)sizeof(T), (long)sizeof(double)); }
    Slots(double* ws, long chunk) : s1(ws), s2(ws + chunk) {
        for (int i = 0; i < Arrays; ++i) v[i] = reinterpret_cast<T*>(ws + 2 * chunk) + i * chunk;
    }
    void start(const T* x, const NormShape& s, const Blocks& k, long c0, long c1) {
        for (long j = 0; j < std::min(k.chunk, (c1 - c0) * s.HW); ++j) {
            v[0][j] = channel_shift(x, s.HW, slot_channel(k, s.HW, c0, j));
            s1[j] = s2[j] = 0;
        }
    }
    double *s1, *s2;
    T* v[Arrays];
};

}  // namespace

template <typename T>
void batch_norm2d_channel_blocks(const T* x, const T* w, const T* b, T* y, T* mean, T* inv_std, const NormShape& s) {
    const Blocks k = plan(s);
    const double M = (double)s.N * s.HW;
    using S = Slots<T, 4>;  // the slots' x0, mean - x0, scale and bias
    parallel_tasks<double>(k.tasks, moved_work(2.0 * s.N * s.C * s.HW), S::size(k.chunk), [&](long t, double* ws) {
        const long c0 = t * k.B, c1 = std::min(s.C, c0 + k.B);
        S slots(ws, k.chunk);
        slots.start(x, s, k, c0, c1);
        double *sum = slots.s1, *sq = slots.s2;
        T *shift = slots.v[0], *off = slots.v[1], *scale = slots.v[2], *bias = slots.v[3];
        for_each_chunk(s, k, c0, c1, [&](long at, long m) {
            const T* xr = x + at;
            for (long j = 0; j < m; ++j) {
                const double d = (double)(xr[j] - shift[j]);
                sum[j] += d, sq[j] += d * d;
            }
        });
        channel_sums(k, s.HW, c0, c1, sum, sq, [&](long c, long j0, long per, double s1, double s2) {
            const double mean_d = s1 / M, d2 = s2 / M - mean_d * mean_d, var = d2 < 0 ? 0.0 : d2;  // keeps NaN
            const double m = (double)channel_shift(x, s.HW, c) + mean_d, inv = 1.0 / std::sqrt(var + s.eps);
            mean[c] = (T)m, inv_std[c] = (T)inv;
            for (long j = j0; j < j0 + per; ++j) {
                if (s.relu)  // y as the gradient will recompute it for the mask
                    slot_params(mean[c], inv_std[c], w, c, shift[j], off[j], scale[j]);
                else  // y from the unrounded statistics: exact mean - x0 for two values far from zero
                    off[j] = (T)mean_d, scale[j] = (T)(w ? inv * w[c] : inv);
                bias[j] = b ? b[c] : T(0);
            }
        });
        for_each_chunk(s, k, c0, c1, [&](long at, long m) {
            const T* xr = x + at;
            T* yr = y + at;
            if (s.relu)
                for (long j = 0; j < m; ++j) {
                    const T v = normalized(xr[j], shift[j], off[j], scale[j], bias[j]);
                    yr[j] = v <= 0 ? T(0) : v;  // NaN stays, as in torch's relu
                }
            else
                for (long j = 0; j < m; ++j) yr[j] = normalized(xr[j], shift[j], off[j], scale[j], bias[j]);
        });
    });
}

template <typename T>
void batch_norm2d_grad_channel_blocks(const T* dy, const T* x, const T* mean, const T* inv_std, const T* w,
                                      const T* b, T* dx, T* dw, T* db, const NormShape& s) {
    const Blocks k = plan(s);
    const double M = (double)s.N * s.HW;
    using S = Slots<T, 6>;  // the slots' x0, mean - x0, scale, bias, a and q (below)
    parallel_tasks<double>(k.tasks, moved_work(2.0 * s.N * s.C * s.HW), S::size(k.chunk), [&](long t, double* ws) {
        const long c0 = t * k.B, c1 = std::min(s.C, c0 + k.B);
        S slots(ws, k.chunk);
        slots.start(x, s, k, c0, c1);
        double *sdy = slots.s1, *sdyx = slots.s2;
        T *shift = slots.v[0], *off = slots.v[1], *scale = slots.v[2], *bias = slots.v[3], *a = slots.v[4],
          *q = slots.v[5];
        for (long j = 0; j < std::min(k.chunk, (c1 - c0) * s.HW); ++j) {
            const long c = slot_channel(k, s.HW, c0, j);
            slot_params(mean[c], inv_std[c], w, c, shift[j], off[j], scale[j]);
            bias[j] = b ? b[c] : T(0);
        }
        const auto passes = [&](auto relu) {
            constexpr bool R = decltype(relu)::value;
            for_each_chunk(s, k, c0, c1, [&](long at, long m) {
                grad_sums<R>(m, dy + at, x + at, shift, off, scale, bias, sdy, sdyx);
            });
            // dx = w * inv_std * (g - a - (x - mean) * q): a = the mean of g, q = inv_std^2 times the mean of
            // g * (x - mean).
            channel_sums(k, s.HW, c0, c1, sdy, sdyx, [&](long c, long j0, long per, double s1, double s2) {
                const double inv = inv_std[c];
                db[c] = (T)s1, dw[c] = (T)(s2 * inv);
                for (long j = j0; j < j0 + per; ++j) a[j] = (T)(s1 / M), q[j] = (T)(inv * inv * s2 / M);
            });
            for_each_chunk(s, k, c0, c1, [&](long at, long m) {
                grad_values<R>(m, dy + at, x + at, shift, off, scale, bias, a, q, dx + at);
            });
        };
        if (s.relu)
            passes(std::true_type{});
        else
            passes(std::false_type{});
    });
}

#define FASTCONV_INSTANTIATE(T)                                                                                   \
    template void batch_norm2d_channel_blocks<T>(const T*, const T*, const T*, T*, T*, T*, const NormShape&);     \
    template void batch_norm2d_grad_channel_blocks<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, \
                                                      T*, T*, const NormShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)

}  // namespace fastconv
