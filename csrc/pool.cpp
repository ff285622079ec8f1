// pool.cpp — max_pool2d (with switches) and max_unpool2d, parallel over (n, c) planes.
//
// Switches follow PyTorch's return_indices: the flat index h*W + w inside the input plane, so
// they interoperate with torch.nn.MaxUnpool2d. Padding acts as -inf, i.e. padded positions are
// simply never candidates: each window is clipped to the plane once, and the scan needs no checks.
#include "pool.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace fastconv {

namespace {

// Outputs of at least kStreamBytes, in planes of at most kStreamPlaneBytes (a scratch plane that stays
// in L2), are written with non-temporal stores.
constexpr long kStreamBytes = 8L << 20, kStreamPlaneBytes = 256L << 10;

// One window of plane xp, rows h0, h0 + dh, ... below h1 and columns w0, w0 + dw, ... below w1 (already
// clipped, non-empty). Row-major scan; a later value wins only if strictly greater, or if it is the first
// NaN (np.argmax semantics).
template <typename T>
inline void window_max(const T* xp, long W, long h0, long h1, long dh, long w0, long w1, long dw, T& out,
                       int64_t& sw) {
    T best = xp[h0 * W + w0];
    long idx = h0 * W + w0;
    for (long h = h0; h < h1; h += dh) {
        const T* r = xp + h * W;
        for (long w = w0; w < w1; w += dw) {
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

// The vectorised part: outputs [ow0, ow1) of a row, those whose windows meet the plane's columns (all of
// them when the padding is at most half the kernel, as ops.py requires). Strided windows would make every
// tap a strided (gather) load, so each input row is split once per plane into its `stride` phases, phase q
// holding columns c0 + q, c0 + q + st, ... (c0: the first window column rounded down to the phase grid, so
// that a row splits in whole vectors). Columns outside the plane hold -inf, so a clipped window needs no
// clipping: a padded tap never wins against a real value. Tap b of output ow0 + i is then element
// i + (shift + b) / st of phase (shift + b) % st: a contiguous load. A vector of outputs keeps its running
// max and winning tap in registers while the taps run in row-major order, so ties and NaN resolve exactly
// as in window_max. A clipped window whose maximum is -inf may have kept a padded first tap as its switch:
// those few are redone by window_max. The lanes past ow1 compute on whatever the phases hold and are dropped.
struct PoolPlan {
    long ow0, ow1, n;       // vectorised outputs [ow0, ow1), n of them (0: none)
    long in0, in1;          // the outputs whose windows need no clipping (a subrange of [ow0, ow1))
    long st, base, shift;   // column stride, first window column base = ow0*st - pw, base mod st
    long c0, nph, plen, rs; // split start, phases per row, elements per phase, scratch row stride
};

template <typename T>
PoolPlan plan_pool(const PoolShape& s, bool vectors = true) {
    constexpr int L = Vec<T>::lanes;
    PoolPlan p{};
    // Windows meet the plane where ws + kw > 0 and ws < W (ws = ow*sw - pw), and need no clipping where
    // ws >= 0 and ws + kw <= W.
    p.ow0 = std::min(s.W_out, s.pw >= s.kw ? (s.pw - s.kw) / s.sw + 1 : 0L);
    p.ow1 = std::max(p.ow0, std::min(s.W_out, ceil_div(s.W + s.pw, s.sw)));
    p.in0 = std::min(s.W_out, ceil_div(s.pw, s.sw));
    p.in1 = std::max(p.in0, std::min(s.W_out, s.W + s.pw - s.kw >= 0 ? (s.W + s.pw - s.kw) / s.sw + 1 : 0));
    // Switch arithmetic runs in the lanes' integer type: plane indices (plus a vector of slack) must fit.
    // Without a vector part every window is left to the scalar code: [in0, in1) must be empty too.
    if (!vectors ||
        (double)s.H * s.W + (double)s.sw * L + s.kw >= (double)std::numeric_limits<typename Vec<T>::int_t>::max())
        p.ow1 = p.ow0, p.in1 = p.in0;
    p.n = p.ow1 - p.ow0;
    p.st = s.sw;
    p.base = p.ow0 * s.sw - s.pw;
    p.shift = (p.base % p.st + p.st) % p.st;
    p.c0 = p.base - p.shift;
    p.nph = std::min(p.st, p.shift + s.kw);
    p.plen = round_up(p.n, L) + (p.shift + s.kw - 1) / p.st + L;
    p.rs = p.nph * p.plen;
    return p;
}

// Phases of input row xr (W columns) into dst (nph phases of plen elements, -inf where never written):
// element k of phase q is column c0 + k*st + q, written when that column is in [0, W).
template <typename T>
void split_row(const T* __restrict xr, long W, const PoolPlan& p, T* __restrict dst) {
    using V = typename Vec<T>::type;
    using VI = typename Vec<T>::itype;
    using I = typename Vec<T>::int_t;
    constexpr int L = Vec<T>::lanes;
    const long avail = W - p.c0;  // columns from c0 to the end of the row
    // [v0, v1): elements done in whole vectors, in every phase (c0 is a multiple of st, so from v0 on
    // every phase's columns are >= 0)
    const long v0 = p.c0 < 0 ? -p.c0 / p.st : 0;
    long v1 = v0;
    if (p.st == 1) {
        for (const long len = std::min(avail, p.plen); v1 + L <= len; v1 += L)
            store(dst + v1, load<V>(xr + p.c0 + v1));
    } else if (p.st == 2) {
        VI ev, od;
        for (int l = 0; l < L; ++l) ev[l] = (I)(2 * l), od[l] = (I)(2 * l + 1);
        for (; 2 * (v1 + L) <= avail && v1 + L <= p.plen; v1 += L) {
            const V lo = load<V>(xr + p.c0 + 2 * v1), hi = load<V>(xr + p.c0 + 2 * v1 + L);
            store(dst + v1, __builtin_shuffle(lo, hi, ev));
            if (p.nph > 1) store(dst + p.plen + v1, __builtin_shuffle(lo, hi, od));
        }
    }
    for (long q = 0; q < p.nph; ++q) {
        T* d = dst + q * p.plen;
        const long lo = p.c0 + q >= 0 ? 0 : ceil_div(-(p.c0 + q), p.st);
        const long hi = std::min(p.plen, avail > q ? ceil_div(avail - q, p.st) : 0L);
        for (long k = lo; k < std::min(v0, hi); ++k) d[k] = xr[p.c0 + k * p.st + q];
        for (long k = std::max(v1, lo); k < hi; ++k) d[k] = xr[p.c0 + k * p.st + q];
    }
}

// NR output rows, oh, oh + 1, ..., whose windows start at input rows hs, hs + sh, ...: window rows [a0, a1)
// (clipped to the plane, the same for all NR) of the plane's phases ph. The NR running maxima are
// independent chains: interleaved, they hide the compare-and-select latency one chain would wait on.
template <typename T, int NR>
void row_max(const T* __restrict ph, const PoolShape& s, const PoolPlan& p, const long* __restrict tb, long hs,
             long a0, long a1, T* __restrict y, int64_t* __restrict sw) {
    using V = typename Vec<T>::type;
    using VI = typename Vec<T>::itype;
    using I = typename Vec<T>::int_t;
    constexpr int L = Vec<T>::lanes;
    const long W = s.W, kw = s.kw, rstep = s.sh * p.rs;
    VI lane_off;  // lane l's window corner relative to lane 0's
    for (int l = 0; l < L; ++l) lane_off[l] = (I)(l * p.st);
    for (long i = 0; i < p.n; i += L) {
        V best[NR];
        VI tap[NR];
        const T* r0 = ph + (hs + a0) * p.rs + i + tb[0];
        for (int j = 0; j < NR; ++j) best[j] = load<V>(r0 + j * rstep), tap[j] = VI{} + (I)(a0 * W);
        for (long a = a0; a < a1; ++a) {
            const T* r = ph + (hs + a) * p.rs + i;
            const VI row = VI{} + (I)(a * W);
            for (long b = (a == a0); b < kw; ++b) {
                const VI tap_ab = row + (I)b;  // offset of the tap from the window's corner
                for (int j = 0; j < NR; ++j) {
                    const V v = load<V>(r + j * rstep + tb[b]);
                    // v > best, or v is the first NaN: !(v <= best) holds for both, and for a NaN best
                    const VI take = (best[j] == best[j]) & ~(v <= best[j]);
                    best[j] = take ? v : best[j];
                    tap[j] = take ? tap_ab : tap[j];
                }
            }
        }
        for (int j = 0; j < NR; ++j) {
            // flat index: window corner of lane 0 (row's hs*W + base + i*st) + lane offset + tap offset
            const VI idx = tap[j] + lane_off + (I)((hs + j * s.sh) * W + p.base + i * p.st);
            T* yo = y + j * s.W_out + p.ow0 + i;
            int64_t* so = sw + j * s.W_out + p.ow0 + i;
            if (i + L <= p.n) {
                store(yo, best[j]);
                I t[L];
                store(t, idx);
                for (int l = 0; l < L; ++l) so[l] = t[l];
            } else {
                T v[L];
                I t[L];
                store(v, best[j]);
                store(t, idx);
                for (long l = 0; l < p.n - i; ++l) yo[l] = v[l], so[l] = t[l];
            }
        }
    }
}

// The outputs of row oh that the vector part left to the scalar code: those outside [ow0, ow1), those of
// a row with no window row in the plane, and the clipped windows whose vector maximum is -inf (their
// switch may name a padded tap). `vectorised`: whether row_max ran on this row.
template <typename T, bool Dilated>
void finish_row(const T* xp, const PoolShape& s, const PoolPlan& pl, long oh, bool vectorised, T* yr, int64_t* sr) {
    constexpr T ninf = -std::numeric_limits<T>::infinity();
    // Steps of 1 at compile time when undilated: the scan keeps its unit-stride loops (window_max is inlined).
    const long dil_h = Dilated ? s.dil_h : 1, dil_w = Dilated ? s.dil_w : 1;
    // The first tap inside the plane, and the end of the last: a dilated window skips rows and columns (the
    // division only runs for windows that start in the padding).
    const long hs = oh * s.sh - s.ph, h0 = hs >= 0 ? hs : hs + ceil_div(-hs, dil_h) * dil_h,
               h1 = std::min(hs + (s.kh - 1) * dil_h + 1, s.H);
    for (long ow = 0; ow < s.W_out; ++ow) {
        if (vectorised && ow >= pl.in0 && ow < pl.in1) {
            ow = pl.in1 - 1;
            continue;
        }
        if (vectorised && ow >= pl.ow0 && ow < pl.ow1 && !(yr[ow] == ninf)) continue;
        const long ws = ow * s.sw - s.pw, w0 = ws >= 0 ? ws : ws + ceil_div(-ws, dil_w) * dil_w,
                   w1 = std::min(ws + (s.kw - 1) * dil_w + 1, s.W);
        if (h0 >= h1 || w0 >= w1) {  // all padding: unreachable through ops.py, kept safe
            yr[ow] = ninf;
            sr[ow] = std::min(h0, s.H - 1) * s.W + std::min(w0, s.W - 1);
            continue;
        }
        window_max(xp, s.W, h0, h1, dil_h, w0, w1, dil_w, yr[ow], sr[ow]);
    }
}

// x (N, C, H, W) -> y, switches (N, C, H_out, W_out); without a vector part (pl.n = 0) every window runs
// in finish_row's scalar code.
template <typename T>
void pool_planes(const T* x, T* y, int64_t* switches, const PoolShape& s, bool vectors) {
    const long planes = s.N * s.C, in = s.H * s.W, out = s.H_out * s.W_out;
    const PoolPlan pl = plan_pool<T>(s, vectors);
    const bool dilated = pool_dilated(s);
    std::vector<long> tb(s.kw);  // offset of tap b in a scratch row, relative to the output's element
    for (long b = 0; b < s.kw; ++b) tb[b] = ((pl.shift + b) % pl.st) * pl.plen + (pl.shift + b) / pl.st;
    const int nt = threads_for(planes, 4.0 * planes * in);
    PerThread<T> scratches(nt, pl.n > 0 ? s.H * pl.rs : 1);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        T* const scratch = scratches.get();
        if (pl.n > 0) std::fill(scratch, scratch + s.H * pl.rs, -std::numeric_limits<T>::infinity());
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            if (stop()) continue;
            const T* xp = x + p * in;
            // Row h of the next plane is prefetched while row h of this one splits: the hardware prefetchers
            // stop at page boundaries, so each new small plane would otherwise start with misses.
            if (pl.n > 0)
                for (long h = 0; h < s.H; ++h) {
                    if (p + 1 < planes) {
                        const char* nr = reinterpret_cast<const char*>(xp + in + h * s.W);
                        for (long k = 0; k < s.W * (long)sizeof(T); k += 64) __builtin_prefetch(nr + k);
                    }
                    split_row(xp + h * s.W, s.W, pl, scratch + h * pl.rs);
                }
            for (long oh = 0; oh < s.H_out;) {
                // four rows at once where all four windows lie vertically inside the plane
                const long hs = oh * s.sh - s.ph, h0 = std::max(hs, 0L), h1 = std::min(hs + s.kh, s.H);
                const bool four = pl.n > 0 && oh + 4 <= s.H_out && hs >= 0 && hs + 3 * s.sh + s.kh <= s.H;
                const bool vectorised = pl.n > 0 && h1 > h0;  // some window row lies in the plane
                const long rows = four ? 4 : 1;
                T* yr = y + p * out + oh * s.W_out;
                int64_t* sr = switches + p * out + oh * s.W_out;
                if (four)
                    row_max<T, 4>(scratch, s, pl, tb.data(), hs, 0, s.kh, yr, sr);
                else if (vectorised)
                    row_max<T, 1>(scratch, s, pl, tb.data(), hs, h0 - hs, h1 - hs, yr, sr);
                for (long j = 0; j < rows; ++j)
                    (dilated ? finish_row<T, true> : finish_row<T, false>)(xp, s, pl, oh + j, vectorised,
                                                                             yr + j * s.W_out, sr + j * s.W_out);
                oh += rows;
            }
        }
    }
}

// Serial within a plane (overlapping windows add up in a fixed order), parallel across planes; each plane
// is zeroed just before its scatter, so it is still in L1 when the scatter runs. Switches outside the
// plane are skipped and counted, never written through (one unsigned comparison covers both ends): the
// count is the caller's range check, which thus costs no pass of its own over the switches. A large
// output is built plane by plane in a scratch plane and streamed out (stream_copy): no line of it is read in.
template <typename T>
long unpool_planes(const T* y, const int64_t* switches, T* out, const UnpoolShape& s, bool stream) {
    const long planes = s.planes, plane_in = s.plane_in, plane_out = s.plane_out;
    long skipped = 0;
    const int nt = threads_for(planes, 2.0 * planes * plane_out);
    PerThread<T> scratches(nt, stream ? plane_out : 0);
#pragma omp parallel num_threads(nt) reduction(+ : skipped)
    {
        T* const scratch = scratches.get();
#pragma omp for schedule(static)
        for (long p = 0; p < planes; ++p) {
            T* __restrict op = stream ? scratch : out + p * plane_out;
            const T* __restrict yp = y + p * plane_in;
            const int64_t* __restrict sp = switches + p * plane_in;
            std::fill(op, op + plane_out, T(0));
            for (long i = 0; i < plane_in; ++i) {
                const uint64_t k = (uint64_t)sp[i];
                if (k < (uint64_t)plane_out)
                    op[k] += yp[i];
                else
                    ++skipped;
            }
            if (stream) stream_copy(out + p * plane_out, op, plane_out * sizeof(T));
        }
        stream_fence();
    }
    return skipped;
}

template <typename T>
void max_pool2d_phase_split(const T* x, T* y, int64_t* switches, const PoolShape& s) {
    pool_planes(x, y, switches, s, true);
}

template <typename T>
void max_pool2d_window_scan(const T* x, T* y, int64_t* switches, const PoolShape& s) {
    pool_planes(x, y, switches, s, false);
}

template <typename T>
long pool_vector_columns(const PoolShape& s) {
    return plan_pool<T>(s).n;
}

template <typename T>
long max_unpool2d_in_place(const T* y, const int64_t* switches, T* out, const UnpoolShape& s) {
    return unpool_planes(y, switches, out, s, false);
}

template <typename T>
long max_unpool2d_streamed(const T* y, const int64_t* switches, T* out, const UnpoolShape& s) {
    return unpool_planes(y, switches, out, s, true);
}

bool unpool_streaming_pays(const UnpoolShape& s, long element_bytes) {
    const long plane_bytes = s.plane_out * element_bytes;
    return s.planes * plane_bytes >= kStreamBytes && plane_bytes <= kStreamPlaneBytes;
}

#define FASTCONV_INSTANTIATE(T)                                                                     \
    template void max_pool2d_phase_split<T>(const T*, T*, int64_t*, const PoolShape&);             \
    template void max_pool2d_window_scan<T>(const T*, T*, int64_t*, const PoolShape&);             \
    template long pool_vector_columns<T>(const PoolShape&);                                         \
    template long max_unpool2d_in_place<T>(const T*, const int64_t*, T*, const UnpoolShape&);      \
    template long max_unpool2d_streamed<T>(const T*, const int64_t*, T*, const UnpoolShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
