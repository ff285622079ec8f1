// pool.cpp — max_pool2d (with switches) and max_unpool2d, parallel over (n, c) planes.
//
// Switches follow PyTorch's return_indices: the flat index h*W + w inside the input plane, so
// they interoperate with torch.nn.MaxUnpool2d. Padding acts as -inf, i.e. padded positions are
// simply never candidates: each window is clipped to the plane once, and the scan needs no checks.
#include "pool.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "parallel.h"
#include "simd.h"

namespace fastconv {

void check_pool_shape(const PoolShape& s) {
    const long dims[] = {s.N, s.C, s.H, s.W, s.H_out, s.W_out, s.kh, s.kw, s.sh, s.sw};
    for (long d : dims)
        if (d < 1) throw std::invalid_argument("max_pool2d: sizes, kernel and stride must be >= 1");
    if (s.ph < 0 || s.pw < 0) throw std::invalid_argument("max_pool2d: padding must be >= 0");
}

namespace {

// One window [h0, h1) x [w0, w1) of plane xp (already clipped, non-empty). Row-major scan; a later
// value wins only if strictly greater, or if it is the first NaN (np.argmax semantics).
template <typename T>
inline void window_max(const T* xp, long W, long h0, long h1, long w0, long w1, T& out, int64_t& sw) {
    T best = xp[h0 * W + w0];
    long idx = h0 * W + w0;
    for (long h = h0; h < h1; ++h) {
        const T* r = xp + h * W;
        for (long w = w0; w < w1; ++w) {
            // Branch-free select: on real data the comparison is a coin flip the predictor loses.
            const T v = r[w];
            const bool take = (v > best) | ((v != v) & (best == best));
            best = take ? v : best;
            idx = take ? h * W + w : idx;
        }
    }
    out = best;
    sw = idx;
}

}  // namespace

// Scratch (in T elements) one thread needs for row_max: the stride phases of kh input rows, each
// padded to whole vectors.
inline long row_scratch(const PoolShape& s, int lanes) {
    return s.kh * s.sw * (round_up(s.W_out, lanes) + s.kw) + lanes;
}

// Outputs [ow0, ow1) of one output row whose windows lie horizontally inside the plane, using the
// window rows [a0, a1) (clipped to the plane: padding rows are never candidates). A vector of outputs
// keeps its running max and winning tap in registers while the taps run in row-major order, so ties
// and NaN resolve exactly as in window_max. Strided windows would make every tap a strided (gather)
// load, so each input row is first split into its `stride` phases, phase q holding columns
// base + q, base + q + st, ...: tap b of output i is then element i + b / st of phase b % st, a
// contiguous load. Phases are zero-padded to whole vectors; the padding lanes are computed and dropped.
template <typename T>
void row_max(const T* xp, const PoolShape& s, long hs, long a0, long a1, long ow0, long ow1, T* __restrict y,
             int64_t* __restrict sw, T* __restrict scratch) {
    using V = typename Vec<T>::type;
    using VI = typename Vec<T>::itype;
    using I = typename Vec<T>::int_t;
    constexpr int L = Vec<T>::lanes;
    const long W = s.W, kw = s.kw, st = s.sw, n = ow1 - ow0, base = ow0 * st - s.pw;
    const long plen = round_up(n, L) + (kw - 1) / st;  // elements per phase (every tap of every vector)
    for (long a = a0; a < a1; ++a) {
        const T* r = xp + (hs + a) * W + base;
        for (long q = 0; q < std::min(st, kw); ++q) {
            T* ph = scratch + (a * st + q) * plen;
            const long len = n + (kw - 1 - q) / st;  // the elements that exist in the row
            for (long m = 0; m < len; ++m) ph[m] = r[m * st + q];
            std::fill(ph + len, ph + plen, T(0));
        }
    }
    const int64_t corner = hs * W + base;  // flat index of output ow0's window corner
    for (long i = 0; i < n; i += L) {
        V best = load<V>(scratch + a0 * st * plen + i);
        VI tap = VI{} + (I)(a0 * W);
        for (long a = a0; a < a1; ++a)
            for (long b = (a == a0); b < kw; ++b) {
                const V v = load<V>(scratch + (a * st + b % st) * plen + b / st + i);
                const VI take = (v > best) | ((v != v) & (best == best));
                best = take ? v : best;
                tap = take ? VI{} + (I)(a * W + b) : tap;  // offset of the tap from the window's corner
            }
        for (long l = 0; l < std::min<long>(L, n - i); ++l) {
            y[ow0 + i + l] = best[l];
            sw[ow0 + i + l] = corner + (i + l) * st + tap[l];
        }
    }
}

// x (N, C, H, W) -> y, switches (N, C, H_out, W_out)
template <typename T>
void max_pool2d(const T* x, T* y, int64_t* switches, const PoolShape& s) {
    const long planes = s.N * s.C, in = s.H * s.W, out = s.H_out * s.W_out;
    // Output columns whose windows need no clipping: ow*sw - pw >= 0 and ow*sw - pw + kw <= W.
    const long ow0 = std::min(s.W_out, ceil_div(s.pw, s.sw));
    const long ow1 = std::max(ow0, std::min(s.W_out, s.W + s.pw - s.kw >= 0 ? (s.W + s.pw - s.kw) / s.sw + 1 : 0));
    const int nt = threads_for(planes, 4.0 * planes * in);
#pragma omp parallel num_threads(nt)
    {
        Buffer<T> scratch(row_scratch(s, Vec<T>::lanes));
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            const T* xp = x + p * in;
            for (long oh = 0; oh < s.H_out; ++oh) {
                const long hs = oh * s.sh - s.ph, h0 = std::max(hs, 0L), h1 = std::min(hs + s.kh, s.H);
                T* yr = y + p * out + oh * s.W_out;
                int64_t* sr = switches + p * out + oh * s.W_out;
                const bool inside = h1 > h0;  // some window row lies in the plane
                if (inside && ow1 > ow0) row_max(xp, s, hs, h0 - hs, h1 - hs, ow0, ow1, yr, sr, scratch.data());
                for (long ow = 0; ow < s.W_out; ++ow) {
                    if (inside && ow >= ow0 && ow < ow1) continue;
                    const long ws = ow * s.sw - s.pw, w0 = std::max(ws, 0L), w1 = std::min(ws + s.kw, s.W);
                    if (h0 >= h1 || w0 >= w1) {  // all padding: unreachable through ops.py, kept safe
                        yr[ow] = -std::numeric_limits<T>::infinity();
                        sr[ow] = std::min(h0, s.H - 1) * s.W + std::min(w0, s.W - 1);
                        continue;
                    }
                    window_max(xp, s.W, h0, h1, w0, w1, yr[ow], sr[ow]);
                }
            }
        }
    }
}

// Serial within a plane (overlapping windows add up in a fixed order), parallel across planes.
// Switches outside the plane are skipped, never written through.
template <typename T>
void max_unpool2d(const T* y, const int64_t* switches, T* out, long planes, long plane_in, long plane_out) {
#pragma omp parallel for schedule(static) num_threads(threads_for(planes, 2.0 * planes * plane_out))
    for (long p = 0; p < planes; ++p) {
        T* op = out + p * plane_out;
        const T* yp = y + p * plane_in;
        const int64_t* sp = switches + p * plane_in;
        std::fill(op, op + plane_out, T(0));
        for (long i = 0; i < plane_in; ++i) {
            const int64_t k = sp[i];
            if (k >= 0 && k < plane_out) op[k] += yp[i];
        }
    }
}

#define FASTCONV_INSTANTIATE(T)                                                       \
    template void max_pool2d<T>(const T*, T*, int64_t*, const PoolShape&);           \
    template void max_unpool2d<T>(const T*, const int64_t*, T*, long, long, long);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
