// pointwise.cpp — 1x1, stride-1, ungrouped convolutions on small maps, forward and both gradients, with
// the batch folded into the GEMM's columns.
//
// The packed GEMM of conv2d.cpp runs one GEMM per image, whose H*W columns fill only part of an
// NR-column register tile when the map is small (a 2x2 map uses 4 of 32 float columns at AVX-512).
// Here x is first copied channel-major, xt[c][n*HW + j] = x[n][c][j], so that each op is one GEMM with
// N*HW columns:
//   forward      yt  = W · xt         (C_out x N*HW)
//   input grad   dxt = Wᵀ · dyt       (C_in x N*HW)
//   weight grad  dW  = dyt · xtᵀ      (C_out x C_in, reduced over the N*HW positions)
// and the result is copied back to (N, C, H, W). The two copies cost one pass over the operands each,
// small next to a GEMM whose depth is a channel count.
#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "gemm.h"
#include "parallel.h"

namespace fastconv {
namespace {

// dst[c][n*HW + j] = src[n][c][j]: the batch folded into columns (C rows of N*HW).
template <typename T>
void fold_batch(const T* src, long N, long C, long HW, T* dst) {
#pragma omp parallel for schedule(static) num_threads(threads_for(N * C / 64 + 1))
    for (long c = 0; c < C; ++c)
        for (long n = 0; n < N; ++n) std::memcpy(dst + (c * N + n) * HW, src + (n * C + c) * HW, HW * sizeof(T));
}

// dst[n][c][j] = src[c][n*HW + j] (+ b[c]): back to (N, C, H, W).
template <typename T>
void unfold_batch(const T* src, long N, long C, long HW, const T* b, T* dst) {
#pragma omp parallel for schedule(static) num_threads(threads_for(N * C / 64 + 1))
    for (long n = 0; n < N; ++n)
        for (long c = 0; c < C; ++c) {
            const T* s = src + (c * N + n) * HW;
            T* d = dst + (n * C + c) * HW;
            if (!b) {
                std::memcpy(d, s, HW * sizeof(T));
                continue;
            }
            for (long j = 0; j < HW; ++j) d[j] = s[j] + b[c];
        }
}

// Columns per task: a GEMM column block, halved (in whole slivers) while that leaves under four tasks
// per thread; the split does not change any element's sum.
template <typename T>
long column_block(long columns) {
    long nb = GemmBlock<T>::NC;
    while (nb > GemmBlock<T>::NR && ceil_div(columns, nb) < 4L * get_num_threads()) nb = round_up(nb / 2, GemmBlock<T>::NR);
    return std::min(nb, columns);
}

// C (M x P) = A · B, A packed by pack_a (M x K), B row-major K x P. One task per column block, each
// streaming all of packed A; or, when B's columns fit one block and A has at least four times as many
// rows (the 2x2 maps of a CNN's last stage: a hundred columns against a thousand channels), B packed once
// and shared, and one task per block of A's rows, so that A is streamed once. (With A and B of one size
// the row tasks each stream all of B instead, which measured twice as slow.) Each element sums over K in
// the same order either way.
template <typename T>
void folded_gemm(long M, long K, long P, const T* Ap, const T* B, T* C, double flops) {
    constexpr long MR = GemmBlock<T>::MR, KC = GemmBlock<T>::KC;
    if (P > GemmBlock<T>::NC || M < 4 * P) {
        const long nb = column_block<T>(P), nblk = ceil_div(P, nb);
        parallel_tasks<T>(nblk, flops, packed_b_size<T>(K, nb), [&](long t, T* Bp) {
            const long j0 = t * nb;
            gemm_packed(M, std::min(nb, P - j0), K, Ap, StridedB<T>{B + j0, P, 1}, Bp, C + j0, P, false);
        });
        return;
    }
    const long nkb = ceil_div(K, KC), bstride = std::min(KC, K) * round_up(P, GemmBlock<T>::NR), Mpad = round_up(M, MR);
    Buffer<T> Bp(nkb * bstride);
#pragma omp parallel for schedule(static) num_threads(threads_for(nkb, moved_work((double)K * P)))
    for (long kb = 0; kb < nkb; ++kb) pack_b(std::min(KC, K - kb * KC), P, B + kb * KC * P, P, 1L, Bp.data() + kb * bstride);
    const long rb = std::max(MR, round_up(ceil_div(M, 4L * get_num_threads()), MR)), nrb = ceil_div(M, rb);
    parallel_tasks<T>(nrb, flops, 0, [&](long t, T*) {
        const long i0 = t * rb, rows = std::min(rb, M - i0);
        for (long kb = 0; kb < nkb; ++kb) {
            const long pc = kb * KC, kc = std::min(KC, K - pc);
            macro_kernel(rows, P, kc, Ap + pc * Mpad + i0 * kc, Bp.data() + kb * bstride, C + i0 * P, P, kb > 0);
        }
    });
}

// A B packer for B = Btᵀ, Bt row-major with leading dimension ld (B[p, j] = Bt[j*ld + p]).
template <typename T>
struct TransposedB {
    const T* Bt;
    long ld;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        pack_b_transposed(kc, nc, Bt + jc * ld + pc, ld, Bp);
    }
};

}  // namespace

// y (N, C_out, H, W) = w (C_out, C_in) · x (N, C_in, H, W) + b
template <typename T>
void conv2d_pointwise_folded(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const long M = s.C_out, K = s.C_in, HW = s.HW(), P = s.N * HW;
    Buffer<T> xt(K * P), yt(M * P), Ap(packed_a_size<T>(M, K));
    fold_batch(x, s.N, K, HW, xt.data());
    pack_a_blocks(M, K, w, K, 1, Ap.data());
    folded_gemm(M, K, P, Ap.data(), xt.data(), yt.data(), s.flops());
    unfold_batch(yt.data(), s.N, M, HW, b, y);
}

// dx (N, C_in, H, W) = wᵀ · dy (N, C_out, H, W)
template <typename T>
void conv2d_input_grad_pointwise_folded(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long M = s.C_in, K = s.C_out, HW = s.HW(), P = s.N * HW;
    Buffer<T> dyt(K * P), dxt(M * P), Ap(packed_a_size<T>(M, K));
    fold_batch(dy, s.N, K, HW, dyt.data());
    pack_a_blocks(M, K, w, 1, M, Ap.data());
    folded_gemm(M, K, P, Ap.data(), dyt.data(), dxt.data(), s.flops());
    unfold_batch(dxt.data(), s.N, M, HW, static_cast<const T*>(nullptr), dx);
}

// dw (C_out, C_in) = Σ_{n,j} dy[n, :, j] x[n, :, j]ᵀ. Tasks own disjoint (row block, column block)
// tiles of dw and reduce over all positions in order, so dw does not depend on the thread count. Every
// task packs its column block of xᵀ (all P positions deep) itself, so the tasks split the columns first
// (each block packed once) and the rows only where there are too few column blocks.
template <typename T>
void conv2d_weight_grad_pointwise_folded(const T* x, const T* dy, T* dw, const ConvShape& s) {
    constexpr long MR = GemmBlock<T>::MR, NR = GemmBlock<T>::NR;
    const long M = s.C_out, C = s.C_in, HW = s.HW(), P = s.N * HW;
    const long cb = std::min({round_up(C, NR), GemmBlock<T>::NC, round_up(ceil_div(C, 4L * get_num_threads()), NR)});
    const long ncb = ceil_div(C, cb);
    const long rblocks = std::clamp(ceil_div(4L * get_num_threads(), ncb), 1L, ceil_div(M, MR));
    const long rb = round_up(ceil_div(M, rblocks), MR), nrb = ceil_div(M, rb), ap = packed_a_size<T>(rb, P);
    Buffer<T> xt(C * P), dyt(M * P), Ap(nrb * ap);
    fold_batch(x, s.N, C, HW, xt.data());
    fold_batch(dy, s.N, M, HW, dyt.data());
#pragma omp parallel for schedule(static) num_threads(threads_for(nrb, double(M) * P))
    for (long i = 0; i < nrb; ++i) pack_a(std::min(rb, M - i * rb), P, dyt.data() + i * rb * P, P, 1, Ap.data() + i * ap);
    parallel_tasks<T>(nrb * ncb, s.flops(), packed_b_size<T>(P, cb), [&](long t, T* Bp) {
        const long i = t / ncb, c0 = t % ncb * cb;
        gemm_packed(std::min(rb, M - i * rb), std::min(cb, C - c0), P, Ap.data() + i * ap,
                    TransposedB<T>{xt.data() + c0 * P, P}, Bp, dw + i * rb * C + c0, C, false);
    });
}

#define FASTCONV_INSTANTIATE(T)                                                                        \
    template void conv2d_pointwise_folded<T>(const T*, const T*, const T*, T*, const ConvShape&);      \
    template void conv2d_input_grad_pointwise_folded<T>(const T*, const T*, T*, const ConvShape&);     \
    template void conv2d_weight_grad_pointwise_folded<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
