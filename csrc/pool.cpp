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

// x (N, C, H, W) -> y, switches (N, C, H_out, W_out)
template <typename T>
void max_pool2d(const T* x, T* y, int64_t* switches, const PoolShape& s) {
    const long planes = s.N * s.C, in = s.H * s.W, out = s.H_out * s.W_out;
#pragma omp parallel for schedule(static) num_threads(threads_for(planes * out / 4096 + 1))
    for (long p = 0; p < planes; ++p) {
        const T* xp = x + p * in;
        T* yp = y + p * out;
        int64_t* sp = switches + p * out;
        for (long oh = 0; oh < s.H_out; ++oh) {
            const long hs = oh * s.sh - s.ph, h0 = std::max(hs, 0L), h1 = std::min(hs + s.kh, s.H);
            for (long ow = 0; ow < s.W_out; ++ow) {
                const long ws = ow * s.sw - s.pw, w0 = std::max(ws, 0L), w1 = std::min(ws + s.kw, s.W);
                const long o = oh * s.W_out + ow;
                if (h0 >= h1 || w0 >= w1) {  // all padding: unreachable through ops.py, kept safe
                    yp[o] = -std::numeric_limits<T>::infinity();
                    sp[o] = std::min(std::max(h0, 0L), s.H - 1) * s.W + std::min(std::max(w0, 0L), s.W - 1);
                    continue;
                }
                window_max(xp, s.W, h0, h1, w0, w1, yp[o], sp[o]);
            }
        }
    }
}

// Serial within a plane (overlapping windows add up in a fixed order), parallel across planes.
// Switches outside the plane are skipped, never written through.
template <typename T>
void max_unpool2d(const T* y, const int64_t* switches, T* out, long planes, long plane_in, long plane_out) {
#pragma omp parallel for schedule(static) num_threads(threads_for(planes * plane_out / 16384 + 1))
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
