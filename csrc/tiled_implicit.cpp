// tiled_implicit.cpp — tiled conv by implicit GEMM: the forward (and its stride-1 input gradient) with
// lane-varying weights, the weight gradient as one GEMM per tile phase.
//
// When T_w divides the vector width L, lane l of every vector of L output columns (which starts at a
// multiple of L) always takes tile column l % T_w. So the tiled conv is the dense implicit GEMM of
// implicit.h with one change: the A operand is a vector per (output channel, im2col row), holding in
// lane l the weight of tile (oh % T_h, l % T_w), and every register tile takes NV vectors of output
// rows of the same class oh % T_h. The input gradient (stride 1) is the same kernel on dy with the
// flipped kernel, whose class and lane pattern follow from the dy position each tap reads.
#include <cstring>
#include <vector>

#include "implicit.h"
#include "tiled_conv.h"

namespace fastconv {

namespace {

#if defined(__AVX512F__)
constexpr int kLaneMR = 4, kLaneNV = 4;  // 16 accumulators + 4 input vectors + 1 weight vector of 32 zmm
#else
constexpr int kLaneMR = 4, kLaneNV = 2;  // 8 of 16 registers
#endif

// y = the conv of x (shape s, groups 1) whose weight for output row oh, lane l, channel m and im2col row
// k is weight(oh % T_h, l, m, k), periodic in l with period T_w; output rows of one class share a
// register tile.
template <typename T, int AW, typename Weight>
void lane_conv_aw(const T* x, T* y, const ConvShape& s, long T_h, long T_w, const Weight& weight) {
    constexpr int MR = kLaneMR, NV = kLaneNV, L = Vec<T>::lanes;
    const long M = s.C_out, K = s.K(), HWo = s.HW_out(), Mpad = round_up(M, MR);
    const long KC = ceil_div(K, ceil_div(K, (long)FASTCONV_IMPLICIT_KC)), per_class = Mpad * K * AW;
    // Aw[cl]: K blocks of depth KC; in block pc, MR-row sliver r holds (p, i) at ((r*kc + p)*MR + i)*AW.
    Buffer<T> Aw(T_h * per_class);
    for (long cl = 0; cl < T_h; ++cl)
        for (long pc = 0; pc < K; pc += KC) {
            const long kc = std::min(KC, K - pc);
            for (long m = 0; m < Mpad; ++m)
                for (long p = 0; p < kc; ++p) {
                    T* dst = Aw.data() + cl * per_class + pc * Mpad * AW + ((m / MR * kc + p) * MR + m % MR) * AW;
                    // Lanes repeat with period T_w (which divides AW).
                    for (long l = 0; l < T_w; ++l) dst[l] = m < M ? weight(cl, l, m, pc + p) : T(0);
                    for (long l = T_w; l < AW; ++l) dst[l] = dst[l - T_w];
                }
        }
    const long rows = implicit_rows<T>(s);
    const ImplicitGeometry geo = implicit_geometry<T>(s, rows);
    Buffer<long> off(K);
    implicit_offsets(s, geo, off.data());
    implicit_row_tasks(x, s, geo, rows, [&](long n, long, long i0, long nrows, const T* xs) {
        T* yn = y + n * M * HWo;
        for (long cl = 0; cl < T_h; ++cl) {
            // Vectors of the rows r = first, first + T_h, ... (task-relative) whose class is cl.
            const long first = ((cl - i0) % T_h + T_h) % T_h, nr = first < nrows ? ceil_div(nrows - first, T_h) : 0;
            const long nvec = nr * geo.Wv;
            const T* Ac = Aw.data() + (i0 + first) % T_h * per_class;
            for (long pc = 0; pc < K; pc += KC) {
                const long kc = std::min(KC, K - pc);
                for (long v0 = 0; v0 < nvec; v0 += NV) {
                    const T* base[NV];
                    OutSeg<T> seg[NV][2];
                    for (int j = 0; j < NV; ++j) {
                        const long v = std::min(v0 + j, nvec - 1), r = first + v / geo.Wv * T_h, col = v % geo.Wv * L;
                        base[j] = xs + r * geo.Wq + col;
                        seg[j][0] = {yn + (i0 + r) * s.W_out + col, 0, v0 + j < nvec ? std::min<long>(L, s.W_out - col) : 0};
                        seg[j][1] = {yn, 0, 0};
                    }
                    for (long i = 0; i < M; i += MR) {
                        OutSeg<T> si[NV][2];
                        for (int j = 0; j < NV; ++j)
                            for (int q = 0; q < 2; ++q) si[j][q] = {seg[j][q].c + i * HWo, 0, seg[j][q].n};
                        implicit_micro<T, MR, NV, AW>(kc, Ac + pc * Mpad * AW + i * kc * AW, off.data() + pc, base, si,
                                                      HWo, std::min<long>(MR, M - i), pc > 0);
                    }
                }
            }
        }
    });
}

template <typename T, typename Weight>
void lane_conv(const T* x, T* y, const ConvShape& s, long T_h, long T_w, const Weight& weight) {
    if (T_w == 1) return lane_conv_aw<T, 1>(x, y, s, T_h, T_w, weight);
    if (T_w * sizeof(T) == 8) return lane_conv_aw<T, 8 / sizeof(T)>(x, y, s, T_h, T_w, weight);
    lane_conv_aw<T, Vec<T>::lanes>(x, y, s, T_h, T_w, weight);
}


}  // namespace

template <typename T>
const char* lane_weights_why_not(const TiledShape& s) {
    return Vec<T>::lanes % s.T_w ? "the tile width must divide the vector width" : nullptr;
}

template <typename T>
bool lane_weights_worth(const ConvShape& c, long T_h) {
    return implicit_rows_ok<T>(c) && T_h * c.C_out * c.K() * Vec<T>::lanes <= kLaneWeightBytes;
}


template <typename T>
void tiled_conv2d_lane_weights(const T* x, const T* w, const T* b, T* y, const TiledShape& s) {
    const ConvShape c = dense_shape(s);
    const long K = s.K(), M = s.C_out, T_w = s.T_w;
    lane_conv(x, y, c, s.T_h, T_w, [&](long th, long l, long m, long k) { return w[((th * T_w + l % T_w) * M + m) * K + k]; });
    if (b)
#pragma omp parallel for schedule(static) num_threads(threads_for(s.N * M, 1.0 * s.N * M * c.HW_out()))
        for (long nm = 0; nm < s.N * M; ++nm) {
            const long o = nm % M;
            T* yp = y + nm * c.HW_out();
            for (long i = 0; i < s.H_out; ++i)
                for (long j = 0; j < s.W_out; ++j) yp[i * s.W_out + j] += b[o * s.b_o + i * s.b_i + j * s.b_j];
        }
}

// Stride 1: dx[c, y, x] = Σ_{m,a,b} dy[m, y + ph - a, x + pw - b] · w[(y + ph - a) % T_h, (x + pw - b) % T_w, m, c, a, b],
// the forward conv of dy at padding (kH-1-ph, kW-1-pw) with taps a' = kH-1-a, b' = kW-1-b; for x = x0 + l
// (x0 a multiple of T_w) the tile column is (l + pw - b) mod T_w, and the row class of y decides the tile row.
template <typename T>
void tiled_conv2d_input_grad_lane_weights(const T* dy, const T* w, T* dx, const TiledShape& s) {
    const ConvShape c = tiled_input_grad_as_forward(s);
    const long T_h = s.T_h, T_w = s.T_w, kk = s.kH * s.kW, C_in = s.C_in, M = s.C_out;
    auto mod = [](long a, long m) { return (a % m + m) % m; };
    lane_conv(dy, dx, c, T_h, T_w, [&](long yc, long l, long ci, long k) {
        const long m = k / kk, a = s.kH - 1 - k % kk / s.kW, b = s.kW - 1 - k % s.kW;
        const long th = mod(yc + s.ph - a, T_h), tw = mod(l + s.pw - b, T_w);
        return w[(((th * T_w + tw) * M + m) * C_in + ci) * kk + a * s.kW + b];
    });
}

// Phase (th, tw) sums over its own positions: for a chunk of images they are copied out of dy into one
// run, dyp[m][(n, i', j')], and pos carries each position's image to its input copy, so every phase is
// one weight-grad GEMM whose items span images (a phase may have only a few positions per image).
template <typename T>
void tiled_conv2d_weight_grad_phase_implicit(const T* x, const T* dy, T* dw, const TiledShape& s) {
    const ConvShape c = dense_shape(s);
    const ImplicitGeometry geo = implicit_geometry<T>(c, s.H_out);
    const long K = s.K(), M = s.C_out, xs_size = implicit_copy_size(c, geo), HWo = c.HW_out();
    const long chunk = std::clamp(kImplicitCopyBytes / (xs_size * (long)sizeof(T)), 1L, s.N);
    Buffer<T> xs(chunk * xs_size), dyp(M * chunk * HWo);
    Buffer<long> off(K), pos(chunk * HWo);
    implicit_offsets(c, geo, off.data());
    for (long n0 = 0; n0 < s.N; n0 += chunk) {
        const long n1 = std::min(s.N, n0 + chunk);
#pragma omp parallel for schedule(static) num_threads(threads_for(n1 - n0, c.flops()))
        for (long n = n0; n < n1; ++n) implicit_fill(x + n * s.C_in * c.HW(), c, geo, 0, xs.data() + (n - n0) * xs_size);
        // Positions and dy values of every phase, phase after phase: dyp[phase][m][(n, i', j')].
        std::vector<ImplicitWgrad<T>> phases;
        std::vector<long> which;  // th * T_w + tw of each entry of phases
        long* ps = pos.data();
        T* dq = dyp.data();
        for (long th = 0; th < s.T_h; ++th)
            for (long tw = 0; tw < s.T_w; ++tw) {
                const long len = (n1 - n0) * s.rows(th) * s.cols(tw);
                T* dwp = dw + (th * s.T_w + tw) * M * K;
                if (len == 0) {  // a phase with no output positions
                    std::fill(dwp, dwp + M * K, T(0));
                    continue;
                }
                phases.push_back({xs.data(), 0L, ps, 1L, len, dq, 0L, len, dwp, n0 > 0});
                which.push_back(th * s.T_w + tw);
                ps += len;
                dq += M * len;
            }
#pragma omp parallel for schedule(static) num_threads(threads_for((long)phases.size() * M, 1.0 * M * chunk * HWo))
        for (long qm = 0; qm < (long)phases.size() * M; ++qm) {
            const ImplicitWgrad<T>& P = phases[qm / M];
            const long m = qm % M, th = which[qm / M] / s.T_w, tw = which[qm / M] % s.T_w;
            T* d = const_cast<T*>(P.dy) + m * P.len;
            for (long n = n0; n < n1; ++n)
                for (long i = th; i < s.H_out; i += s.T_h) {
                    const T* row = dy + (n * M + m) * HWo + i * s.W_out;
                    for (long j = tw; j < s.W_out; j += s.T_w) *d++ = row[j];
                }
            if (m == 0) {  // the phase's positions, built here rather than serially beforehand
                long* ps = const_cast<long*>(P.pos);
                for (long n = n0; n < n1; ++n)
                    for (long i = th; i < s.H_out; i += s.T_h)
                        for (long j = tw; j < s.W_out; j += s.T_w) *ps++ = (n - n0) * xs_size + i * geo.Wq + j;
            }
        }
        implicit_weight_grad(phases.data(), (long)phases.size(), WgradRows{off.data()}, K, M);
    }
}

template <typename T>
long tiled_weight_grad_copy_bytes(const TiledShape& s) {
    const ConvShape c = dense_shape(s);
    return implicit_copy_size(c, implicit_geometry<T>(c, s.H_out)) * (long)sizeof(T);
}

#define FASTCONV_INSTANTIATE(T)                                                                            \
    template void tiled_conv2d_lane_weights<T>(const T*, const T*, const T*, T*, const TiledShape&);       \
    template void tiled_conv2d_input_grad_lane_weights<T>(const T*, const T*, T*, const TiledShape&);      \
    template void tiled_conv2d_weight_grad_phase_implicit<T>(const T*, const T*, T*, const TiledShape&);   \
    template const char* lane_weights_why_not<T>(const TiledShape&);                                       \
    template bool lane_weights_worth<T>(const ConvShape&, long);                                           \
    template long tiled_weight_grad_copy_bytes<T>(const TiledShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
