// unshared_conv.cpp — unshared (locally connected) convolution in batch-major layout: forward and both
// gradients side by side. tiled_conv.cpp dispatches here when the kernel grid equals the output size.
//
// Every output position l = (i, j) has its own kernel w[l] (C_out x K, K = C_in*kH*kW), so each
// position is one small GEMM whose columns are the N images of the batch:
//   forward      yT[o, l, :]    = w[l] · P_l            P_l[k, n] = x[n, c, i*sh - ph + a, j*sw - pw + b]
//   weight grad  dw[l]          = dyT[:, l, :] · P_lᵀ
//   input grad   dP_l           = w[l]ᵀ · dyT[:, l, :], scatter-added into dxT
// The tensors are first transposed to batch-major order (xT[c, h, w, n]), so a row of P_l is N
// contiguous floats (or zeros outside the input): the gather is a row copy with one bounds check per
// row instead of one per element, and the GEMM streams whole vectors of images.
#include <algorithm>
#include <cstring>

#include "gemm.h"
#include "parallel.h"
#include "simd.h"
#include "tiled_conv.h"

namespace fastconv {

namespace {

// dst (cols x rows) = src (rows x cols)ᵀ: L x L blocks through a register transpose (scalar at the
// edges), an L-row strip per task so both sides stream through cache.
template <typename T>
void transpose(const T* src, long rows, long cols, T* dst) {
    using V = typename Vec<T>::type;
    constexpr long L = Vec<T>::lanes;
    const long strips = ceil_div(rows, L);
#pragma omp parallel for schedule(static) num_threads(threads_for(strips, 2.0 * rows * cols))
    for (long t = 0; t < strips; ++t) {
        const long r0 = t * L;
        long c0 = 0;
        if (r0 + L <= rows)
            for (; c0 + L <= cols; c0 += L) {
                V v[L];
                for (long r = 0; r < L; ++r) v[r] = load<V>(src + (r0 + r) * cols + c0);
                fastconv::transpose<T>(v);
                for (long c = 0; c < L; ++c) store(dst + (c0 + c) * rows + r0, v[c]);
            }
        for (long r = r0; r < std::min(rows, r0 + L); ++r)
            for (long c = c0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
    }
}

// Row k = (c, a, b) of P_l: the address of xT's N images at that input pixel, or null (padding).
template <typename T>
struct PatchRows {
    const T* xT;
    const TiledShape& s;
    long ih, iw;  // top-left input corner of position l's window
    const T* row(long k) const {
        const long kk = s.kH * s.kW, c = k / kk, h = ih + (k % kk) / s.kW, w = iw + k % s.kW;
        if (h < 0 || h >= s.H || w < 0 || w >= s.W) return nullptr;
        return xT + ((c * s.H + h) * s.W + w) * s.N;
    }
};

// B[k, n] = P_l[k, n0 + n] (forward): NR-wide slivers copied from contiguous image runs.
template <typename T>
struct PatchB {
    PatchRows<T> P;
    long n0;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        constexpr int NR = GemmBlock<T>::NR;
        for (long p = 0; p < kc; ++p) {
            const T* r = P.row(pc + p);
            for (long js = 0; js < nc; js += NR) {
                T* d = Bp + js * kc + p * NR;
                const long nr = std::min<long>(NR, nc - js);
                if (r)
                    std::memcpy(d, r + n0 + jc + js, nr * sizeof(T));
                else
                    std::fill(d, d + nr, T(0));
                std::fill(d + nr, d + NR, T(0));
            }
        }
    }
};

// B[n, k] = P_l[k, n] (weight grad: the reduction runs over the images).
template <typename T>
struct PatchTransposedB {
    PatchRows<T> P;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        constexpr int NR = GemmBlock<T>::NR;
        for (long q = 0; q < round_up(nc, NR); ++q) {
            T* d = Bp + (q / NR) * NR * kc + q % NR;
            const T* r = q < nc ? P.row(jc + q) : nullptr;
            for (long p = 0; p < kc; ++p) d[p * NR] = r ? r[pc + p] : T(0);
        }
    }
};

// rows[i][0..nr) += the MR x NR tile a-sliver · b-sliver over kc steps (packed as in gemm.h); rows
// with a null pointer fall in the padding and are dropped. The input gradient's GEMM adds its tiles
// straight into dxT this way, with no dP buffer and no separate scatter pass.
template <typename T>
inline void scatter_tile(long kc, const T* __restrict a, const T* __restrict b, T* const* rows, long nr) {
    using V = typename Vec<T>::type;
    constexpr int MR = GemmBlock<T>::MR, NV = GemmBlock<T>::NV, NR = GemmBlock<T>::NR, L = Vec<T>::lanes;
    V acc[MR][NV];
    tile_product(kc, a, b, acc);
    for (int i = 0; i < MR; ++i) {
        T* r = rows[i];
        if (!r) continue;
        if (nr == NR) {
            for (int j = 0; j < NV; ++j) store(r + j * L, load<V>(r + j * L) + acc[i][j]);
            continue;
        }
        alignas(64) T tmp[NR];
        for (int j = 0; j < NV; ++j) store(tmp + j * L, acc[i][j]);
        for (long j = 0; j < nr; ++j) r[j] += tmp[j];
    }
}

template <typename T>
PatchRows<T> patch(const T* xT, const TiledShape& s, long l) {
    return PatchRows<T>{xT, s, (l / s.W_out) * s.sh - s.ph, (l % s.W_out) * s.sw - s.pw};
}

}  // namespace

// y (N, C_out, H_out, W_out); one task per output position.
template <typename T>
void unshared_conv2d_batch_major(const T* x, const T* w, const T* b, T* y, const TiledShape& s) {
    const long L = s.H_out * s.W_out, K = s.K(), M = s.C_out, N = s.N;
    Buffer<T> xT(N * s.C_in * s.H * s.W), yT(M * L * N);
    transpose(x, N, s.C_in * s.H * s.W, xT.data());
    const int nt = threads_for(L, 2.0 * N * M * L * K);
    PerThread<T> Aps(nt, packed_a_size<T>(M, K)), Bps(nt, packed_b_size<T>(K, N));
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        T *const Ap = Aps.get(), *const Bp = Bps.get();
#pragma omp for schedule(dynamic)
        for (long l = 0; l < L; ++l) {
            if (stop()) continue;
            pack_a(M, K, w + l * M * K, K, 1L, Ap);
            gemm_packed(M, N, K, Ap, PatchB<T>{patch(xT.data(), s, l), 0}, Bp, yT.data() + l * N, L * N, false);
        }
    }
    if (stop()) return;  // the output is dropped: skip its transpose
    transpose(yT.data(), M * L, N, y);
    if (b)
#pragma omp parallel for schedule(static) num_threads(threads_for(N, 1.0 * N * M * L))
        for (long n = 0; n < N; ++n)
            for (long i = 0; i < M * L; ++i) y[n * M * L + i] += b[i];  // unshared bias is (C_out, H_out, W_out)
}

// dx (N, C_in, H, W). Windows of neighbouring positions overlap, so threads split the images instead
// of the positions: each owns its columns of dxT and adds every position's contribution in order.
template <typename T>
void unshared_conv2d_input_grad_batch_major(const T* dy, const T* w, T* dx, const TiledShape& s) {
    const long L = s.H_out * s.W_out, K = s.K(), M = s.C_out, N = s.N, R = s.C_in * s.H * s.W;
    Buffer<T> dyT(M * L * N), dxT(R * N);
    transpose(dy, N, M * L, dyT.data());
    std::fill(dxT.data(), dxT.data() + R * N, T(0));
    const long ap = packed_a_size<T>(K, M);
    Buffer<T> Ap(L * ap);  // every position's w[l]ᵀ packed once, shared by the threads
#pragma omp parallel for schedule(static) num_threads(threads_for(L, 1.0 * L * K * M))
    for (long l = 0; l < L; ++l) pack_a(K, M, w + l * M * K, 1L, K, Ap.data() + l * ap);
    const long Kpad = round_up(K, GemmBlock<T>::MR);
    const int nt = threads_for(ceil_div(N, 8), 2.0 * N * M * L * K);  // at least 8 images per thread
    PerThread<T> Bps(nt, packed_b_size<T>(M, ceil_div(N, nt)));      // a thread's share: at most ceil(N / nt)
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_thread();
        const long n0 = N * t / nt, n1 = N * (t + 1) / nt, cols = n1 - n0;
        T* const Bp = Bps.get();
        for (long l = 0; l < L && cols > 0 && !stop(); ++l) {
            const PatchRows<T> P = patch((const T*)dxT.data(), s, l);
            for (long pc = 0; pc < M; pc += GemmBlock<T>::KC) {
                const long kc = std::min(GemmBlock<T>::KC, M - pc);
                pack_b(kc, cols, dyT.data() + pc * L * N + l * N + n0, L * N, 1L, Bp);
                for (long js = 0; js < cols; js += GemmBlock<T>::NR)
                    for (long i0 = 0; i0 < K; i0 += GemmBlock<T>::MR) {
                        T* rows[GemmBlock<T>::MR];
                        for (long i = 0; i < GemmBlock<T>::MR; ++i) {
                            T* r = i0 + i < K ? const_cast<T*>(P.row(i0 + i)) : nullptr;
                            rows[i] = r ? r + n0 + js : nullptr;
                        }
                        scatter_tile(kc, Ap.data() + l * ap + pc * Kpad + i0 * kc, Bp + js * kc, rows,
                                     std::min<long>(GemmBlock<T>::NR, cols - js));
                    }
            }
        }
    }
    if (stop()) return;
    transpose(dxT.data(), R, N, dx);
}

// dw (H_out, W_out, C_out, C_in, kH, kW); one task per output position.
template <typename T>
void unshared_conv2d_weight_grad_batch_major(const T* x, const T* dy, T* dw, const TiledShape& s) {
    const long L = s.H_out * s.W_out, K = s.K(), M = s.C_out, N = s.N;
    Buffer<T> xT(N * s.C_in * s.H * s.W), dyT(M * L * N);
    transpose(x, N, s.C_in * s.H * s.W, xT.data());
    transpose(dy, N, M * L, dyT.data());
    const int nt = threads_for(L, 2.0 * N * M * L * K);
    PerThread<T> Aps(nt, packed_a_size<T>(M, N)), Bps(nt, packed_b_size<T>(N, K));
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        T *const Ap = Aps.get(), *const Bp = Bps.get();
#pragma omp for schedule(dynamic)
        for (long l = 0; l < L; ++l) {
            if (stop()) continue;
            pack_a(M, N, dyT.data() + l * N, L * N, 1L, Ap);
            gemm_packed(M, K, N, Ap, PatchTransposedB<T>{patch(xT.data(), s, l)}, Bp, dw + l * M * K, K, false);
        }
    }
}

#define FASTCONV_INSTANTIATE(T)                                                                  \
    template void unshared_conv2d_batch_major<T>(const T*, const T*, const T*, T*, const TiledShape&);     \
    template void unshared_conv2d_input_grad_batch_major<T>(const T*, const T*, T*, const TiledShape&);            \
    template void unshared_conv2d_weight_grad_batch_major<T>(const T*, const T*, T*, const TiledShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
