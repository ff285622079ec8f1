// depthwise_channels_last.cpp — depthwise convolution (one input and one output channel per group) on
// small maps, forward and both gradients, vectorised across channels instead of along rows.
//
// The plane kernels of depthwise.cpp put a vector along an output row; rows narrower than a vector (the
// 8x8 and smaller maps of a MobileNet's later layers), and strided rows that first need their column
// phases copied, leave them in scalar tails and per-plane overhead. Here each task copies a block of
// channels of one image into a zero-padded channels-last buffer, xp[r][q][c]; then every tap of every
// output is a unit-stride vector over the channels, whatever the stride, dilation or map size. The input
// gradient scatter-adds w·dy into such a buffer and crops it; the weight gradient sums dy·xp products per
// tap over positions, in fixed slices of the batch added in slice order (independent of the thread count).
#include <algorithm>

#include "conv2d.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {
namespace {

// Threads are counted from the work of the copies into and out of the channels-last blocks as well as
// the products: on small maps the copies are most of it.
double work(const ConvShape& s) { return s.flops() + moved_work(s.N * s.C_in * (double)(s.HW() + s.HW_out())); }

// Channels per task: enough vectors to amortise a task, few enough that a padded block stays in L2.
constexpr long kChannelBlock = 128;
// The weight gradient's batch slices (partial sums of dw, added in order).
constexpr long kWgradSlices = 8;

// The padded channels-last buffer of a task: Hq x Wq positions of cb channels, covering every row and
// column the windows reach and every position of the (shifted) input.
struct Block {
    long Hq, Wq, cb;
    explicit Block(const ConvShape& s, long cb_)
        : Hq(std::max((s.H_out - 1) * s.sh + (s.kH - 1) * s.dil_h + 1, s.ph + s.H)),
          Wq(std::max((s.W_out - 1) * s.sw + (s.kW - 1) * s.dil_w + 1, s.pw + s.W)), cb(cb_) {}
    long size() const { return Hq * Wq * cb; }
};

// dst_row(j)[i] = src[i * lds + j] for i < rows, j < cols: L x L register transposes, the last block of
// rows and of columns partial (a strided scalar copy of a block that outgrows L1 costs more than the
// convolution itself, and planes of a few positions are all partial blocks).
template <typename T, typename DstRow>
void transpose_block(const T* src, long lds, long rows, long cols, const DstRow& dst_row) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    for (long i0 = 0; i0 < rows; i0 += L) {
        const long n = std::min<long>(L, rows - i0);
        for (long j0 = 0; j0 < cols; j0 += L) {
            const long c = std::min<long>(L, cols - j0);
            V v[L];
            load_block<T>(src + i0 * lds + j0, lds, n, c, v);
            transpose<T>(v);
            for (long t = 0; t < c; ++t) {
                if (n == L) store(dst_row(j0 + t) + i0, v[t]);
                else store_first(dst_row(j0 + t) + i0, v[t], n);
            }
        }
    }
}
template <typename T>
void transpose_block(const T* src, long lds, long rows, long cols, T* dst, long ldd) {
    transpose_block(src, lds, rows, cols, [=](long j) { return dst + j * ldd; });
}

// xp[(i + ph) * Wq + j + pw][c] = x[c][i][j] for the block's cn channels (x: first plane of the block): row
// by row, or, for rows narrower than a vector, whole planes at once.
template <typename T>
void to_padded(const T* x, const ConvShape& s, const Block& k, long cn, T* xp) {
    if (s.W < Vec<T>::lanes) {
        transpose_block(x, s.HW(), cn, s.HW(), [&](long p) { return xp + ((p / s.W + s.ph) * k.Wq + p % s.W + s.pw) * k.cb; });
        return;
    }
    for (long i = 0; i < s.H; ++i) transpose_block(x + i * s.W, s.HW(), cn, s.W, xp + ((i + s.ph) * k.Wq + s.pw) * k.cb, k.cb);
}

// x[c][i][j] = xp[(i + ph) * Wq + j + pw][c]: the inverse of to_padded, cropping the padding.
template <typename T>
void from_padded(const T* xp, const ConvShape& s, const Block& k, long cn, T* x) {
    for (long i = 0; i < s.H; ++i) transpose_block(xp + ((i + s.ph) * k.Wq + s.pw) * k.cb, k.cb, s.W, cn, x + i * s.W, s.HW());
}

// wt[tap][c] = w[c][tap]: a tap's weights across channels.
template <typename T>
void taps_across_channels(const T* w, long C, long kk, T* wt) {
    for (long c = 0; c < C; ++c)
        for (long t = 0; t < kk; ++t) wt[t * C + c] = w[c * kk + t];
}

// f(c0, lanes, U) over [0, cn): blocks of U = 4 vectors, then single vectors, then single lanes, the
// channel loop every kernel shares. Each vector of channels sums its taps (or positions) in one chain of
// dependent FMAs, so one vector at a time waits on the FMA latency; four keep four chains in flight.
constexpr int kVectorsPerBlock = 4;
template <typename T, typename F>
inline void over_channels(long cn, const F& f) {
    constexpr int L = Vec<T>::lanes, U = kVectorsPerBlock;
    long c = 0;
    for (; c + U * L <= cn; c += U * L) f(c, std::integral_constant<int, L>{}, std::integral_constant<int, U>{});
    for (; c + L <= cn; c += L) f(c, std::integral_constant<int, L>{}, std::integral_constant<int, 1>{});
    for (; c < cn; ++c) f(c, std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{});
}

template <typename T, int L>
using Lanes = std::conditional_t<L == 1, T, typename Vec<T>::type>;

template <typename T, int L>
inline Lanes<T, L> load_lanes(const T* p) {
    if constexpr (L == 1) return *p; else return load<Lanes<T, L>>(p);
}
template <typename T, int L>
inline void store_lanes(T* p, Lanes<T, L> v) {
    if constexpr (L == 1) *p = v; else store(p, v);
}

}  // namespace

// y[n, c] = b[c] + Σ_{a,b} w[c, a, b] · xpad[n, c, i*sh + a*dh, j*sw + b*dw]   one task per (image, channel block)
template <typename T>
void conv2d_depthwise_channels_last(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const long C = s.C_in, kk = s.kH * s.kW, HWo = s.HW_out(), cb = std::min(C, kChannelBlock), ncb = ceil_div(C, cb);
    const Block k(s, cb);
    Buffer<T> wt(kk * C);
    taps_across_channels(w, C, kk, wt.data());
    parallel_tasks<T>(s.N * ncb, work(s), k.size() + HWo * cb, [&](long task, T* xp) {
        const long n = task / ncb, c0 = task % ncb * cb, cn = std::min(cb, C - c0);
        T* yr = xp + k.size();
        std::fill(xp, xp + k.size(), T(0));
        to_padded(x + (n * C + c0) * s.HW(), s, k, cn, xp);
        for (long i = 0; i < s.H_out; ++i)
            for (long j = 0; j < s.W_out; ++j)
                over_channels<T>(cn, [&](long c, auto lanes, auto vectors) {
                    constexpr int L = decltype(lanes)::value, U = decltype(vectors)::value;
                    Lanes<T, L> acc[U];
                    for (int u = 0; u < U; ++u) acc[u] = b ? load_lanes<T, L>(b + c0 + c + u * L) : Lanes<T, L>{};
                    for (long a = 0; a < s.kH; ++a) {
                        const T* row = xp + ((i * s.sh + a * s.dil_h) * k.Wq + j * s.sw) * cb + c;
                        for (long q = 0; q < s.kW; ++q) {
                            const T *wq = wt.data() + (a * s.kW + q) * C + c0 + c, *xq = row + q * s.dil_w * cb;
                            for (int u = 0; u < U; ++u) acc[u] += load_lanes<T, L>(wq + u * L) * load_lanes<T, L>(xq + u * L);
                        }
                    }
                    for (int u = 0; u < U; ++u) store_lanes<T, L>(yr + (i * s.W_out + j) * cb + c + u * L, acc[u]);
                });
        transpose_block(yr, cb, HWo, cn, y + (n * C + c0) * HWo, HWo);
    });
}

// dx[n, c] = crop(Σ_{i,j,a,b} w[c, a, b] · dy[n, c, i, j] scattered to (i*sh + a*dh, j*sw + b*dw))
template <typename T>
void conv2d_input_grad_depthwise_channels_last(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long C = s.C_in, kk = s.kH * s.kW, HWo = s.HW_out(), cb = std::min(C, kChannelBlock), ncb = ceil_div(C, cb);
    const Block k(s, cb);
    Buffer<T> wt(kk * C);
    taps_across_channels(w, C, kk, wt.data());
    parallel_tasks<T>(s.N * ncb, work(s), k.size() + HWo * cb, [&](long task, T* dxp) {
        const long n = task / ncb, c0 = task % ncb * cb, cn = std::min(cb, C - c0);
        T* dyr = dxp + k.size();
        std::fill(dxp, dxp + k.size(), T(0));
        transpose_block(dy + (n * C + c0) * HWo, HWo, cn, HWo, dyr, cb);
        for (long i = 0; i < s.H_out; ++i)
            for (long j = 0; j < s.W_out; ++j)
                over_channels<T>(cn, [&](long c, auto lanes, auto vectors) {
                    constexpr int L = decltype(lanes)::value, U = decltype(vectors)::value;
                    Lanes<T, L> d[U];
                    for (int u = 0; u < U; ++u) d[u] = load_lanes<T, L>(dyr + (i * s.W_out + j) * cb + c + u * L);
                    for (long a = 0; a < s.kH; ++a) {
                        T* row = dxp + ((i * s.sh + a * s.dil_h) * k.Wq + j * s.sw) * cb + c;
                        for (long q = 0; q < s.kW; ++q) {
                            T* p = row + q * s.dil_w * cb;
                            const T* wq = wt.data() + (a * s.kW + q) * C + c0 + c;
                            for (int u = 0; u < U; ++u)
                                store_lanes<T, L>(p + u * L, load_lanes<T, L>(p + u * L) + d[u] * load_lanes<T, L>(wq + u * L));
                        }
                    }
                });
        from_padded(dxp, s, k, cn, dx + (n * C + c0) * s.HW());
    });
}

// dw[c, a, b] = Σ_n Σ_{i,j} dy[n, c, i, j] · xpad[n, c, i*sh + a*dh, j*sw + b*dw]; tasks (batch slice,
// channel block) sum into their slice's partial dw[tap][c], then the slices are added in order.
template <typename T>
void conv2d_weight_grad_depthwise_channels_last(const T* x, const T* dy, T* dw, const ConvShape& s) {
    const long C = s.C_in, kk = s.kH * s.kW, HWo = s.HW_out(), cb = std::min(C, kChannelBlock), ncb = ceil_div(C, cb);
    const long S = std::min(s.N, kWgradSlices);
    const Block k(s, cb);
    Buffer<T> partial(S * kk * C);
    parallel_tasks<T>(S * ncb, work(s), k.size() + HWo * cb, [&](long task, T* xp) {
        const long sl = task / ncb, c0 = task % ncb * cb, cn = std::min(cb, C - c0);
        T* dyr = xp + k.size();
        T* acc_dw = partial.data() + sl * kk * C + c0;  // acc_dw[tap * C + c]
        for (long t = 0; t < kk; ++t) std::fill(acc_dw + t * C, acc_dw + t * C + cn, T(0));
        std::fill(xp, xp + k.size(), T(0));  // the padding stays zero; each image refills the rest
        for (long n = s.N * sl / S; n < s.N * (sl + 1) / S; ++n) {
            to_padded(x + (n * C + c0) * s.HW(), s, k, cn, xp);
            transpose_block(dy + (n * C + c0) * HWo, HWo, cn, HWo, dyr, cb);
            over_channels<T>(cn, [&](long c, auto lanes, auto vectors) {
                constexpr int L = decltype(lanes)::value, U = decltype(vectors)::value;
                for (long a = 0; a < s.kH; ++a)
                    for (long q = 0; q < s.kW; ++q) {
                        T* dwq = acc_dw + (a * s.kW + q) * C + c;
                        Lanes<T, L> acc[U];
                        for (int u = 0; u < U; ++u) acc[u] = load_lanes<T, L>(dwq + u * L);
                        for (long i = 0; i < s.H_out; ++i) {
                            const T* row = xp + ((i * s.sh + a * s.dil_h) * k.Wq + q * s.dil_w) * cb + c;
                            for (long j = 0; j < s.W_out; ++j) {
                                const T *dyq = dyr + (i * s.W_out + j) * cb + c, *xq = row + j * s.sw * cb;
                                for (int u = 0; u < U; ++u) acc[u] += load_lanes<T, L>(dyq + u * L) * load_lanes<T, L>(xq + u * L);
                            }
                        }
                        for (int u = 0; u < U; ++u) store_lanes<T, L>(dwq + u * L, acc[u]);
                    }
            });
        }
    });
    for (long c = 0; c < C; ++c)
        for (long t = 0; t < kk; ++t) {
            T acc = partial.data()[t * C + c];
            for (long sl = 1; sl < S; ++sl) acc += partial.data()[(sl * kk + t) * C + c];
            dw[c * kk + t] = acc;
        }
}

#define FASTCONV_INSTANTIATE(T)                                                                                 \
    template void conv2d_depthwise_channels_last<T>(const T*, const T*, const T*, T*, const ConvShape&);        \
    template void conv2d_input_grad_depthwise_channels_last<T>(const T*, const T*, T*, const ConvShape&);       \
    template void conv2d_weight_grad_depthwise_channels_last<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
