// conv2d.cpp — dense convolution: forward, input gradient and weight gradient, side by side.
//
// All three are GEMMs per (image n, group g) over the virtual im2col matrix col[K, HW_out],
// K = C_in/g * kH * kW:
//   forward      y[n,g]  = W_g · col            (M = C_out/g rows, im2col gathered into packed B)
//   input grad   col'    = W_gᵀ · dy[n,g], then dx[n,g] += col2im(col')
//   weight grad  dW_g   += dy[n,g] · colᵀ       (summed over n and column blocks)
// A 1x1, stride-1, unpadded conv skips im2col: col is x itself.
// Parallel tasks are independent blocks of the output, so results do not depend on scheduling;
// the weight gradient sums fixed task ranges into private partial buffers, reduced in a fixed order.
#include "conv2d.h"

#include <algorithm>
#include <cstring>

#include "gemm.h"
#include "im2col.h"
#include "implicit.h"
#include "parallel.h"

namespace fastconv {

namespace {

// B[k, j] = col[k, j0 + j] (forward): each im2col row is gathered once into `row`, then cut into
// the NR-wide slivers of the packed block.
template <typename T>
struct Im2colB {
    const T* xg;  // first input plane of the group
    const ConvShape& s;
    long j0;
    T* row;  // scratch, >= NC + NR elements
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        constexpr int NR = GemmBlock<T>::NR;
        const long kk = s.kH * s.kW, ncp = round_up(nc, NR);
        std::fill(row + nc, row + ncp, T(0));
        for (long p = 0; p < kc; ++p) {
            long k = pc + p;
            im2col_row(xg + (k / kk) * s.HW(), s, (k % kk) / s.kW, k % s.kW, j0 + jc, nc, row);
            for (long js = 0; js < ncp; js += NR) std::memcpy(Bp + js * kc + p * NR, row + js, NR * sizeof(T));
        }
    }
};

// Packed B of the weight grad, whose reduction runs over output positions: B[p, q] = col[q0 + q, j0 + p]
// for p < kc positions and q < nc im2col rows (zero past nc). Each sliver is built from L im2col rows
// at a time, gathered into `tmp` (L rows of round_up(kc, L)) and turned into sliver rows by L x L
// register transposes. tmp: >= L * round_up(KC, L) elements.
template <typename T>
void pack_col_transposed(const T* xg, const ConvShape& s, long j0, long kc, long q0, long nc, T* tmp, T* Bp) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, NR = GemmBlock<T>::NR;
    const long kk = s.kH * s.kW, kcp = round_up(kc, L);
    for (long q = 0; q < nc; q += L) {
        for (long r = 0; r < L; ++r) {
            T* row = tmp + r * kcp;
            const long k = q0 + q + r;
            if (q + r < nc)
                im2col_row(xg + (k / kk) * s.HW(), s, (k % kk) / s.kW, k % s.kW, j0, kc, row);
            else
                std::fill(row, row + kc, T(0));
            std::fill(row + kc, row + kcp, T(0));
        }
        T* dst = Bp + (q / NR) * NR * kc + q % NR;
        for (long p0 = 0; p0 < kc; p0 += L) {
            V v[L];
            for (int r = 0; r < L; ++r) v[r] = load<V>(tmp + r * kcp + p0);
            transpose<T>(v);
            for (long t = 0; t < std::min<long>(L, kc - p0); ++t) store(dst + (p0 + t) * NR, v[t]);
        }
    }
    // Whole missing L-row groups of the last sliver (nc up to NR - L short of a sliver).
    for (long q = round_up(nc, L); q < round_up(nc, NR); q += L) {
        T* dst = Bp + (q / NR) * NR * kc + q % NR;
        for (long p = 0; p < kc; ++p) store(dst + p * NR, V{});
    }
}

// The weight gradient's partial sums (one dw per position slice) take at most this much memory.
constexpr long kPartialBytes = 64L << 20;
// The weight gradient wants about this many (slice, group, sliver) tasks before it stops slicing the positions.
constexpr long kWgradTasks = 16;
// The input gradient's tasks hold about this many col' rows (channels x kernel taps).
constexpr long kInputGradRows = 256;

// Output columns per task: a full GEMM column block, halved while that leaves under four tasks per
// thread. Only the partition changes, never an element's summation order.
template <typename T>
long column_block(long HW_out, long outer_tasks) {
    long nb = GemmBlock<T>::NC, want = 4L * get_num_threads();
    while (nb > GemmBlock<T>::NR && outer_tasks * ceil_div(HW_out, nb) < want) nb = round_up(nb / 2, GemmBlock<T>::NR);
    return std::min(nb, HW_out);
}

}  // namespace

// y (N, C_out, H_out, W_out) = w (C_out, C_in/g, kH, kW) ⋆ x (N, C_in, H, W) + b (C_out)
template <typename T>
void conv2d_packed_gemm(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out();
    const long ap = packed_a_size<T>(M, K);
    Buffer<T> Ap(G * ap);  // every group's weights packed once, shared read-only by all tasks
    pack_a_blocks<T>(G, K, (double)G * M * K,
                     [&](long g) { return PackA<T>{M, K, w + g * M * K, K, 1, Ap.data() + g * ap}; });
    const long nb = column_block<T>(HWo, s.N * G), nblk = ceil_div(HWo, nb), ntasks = s.N * G * nblk;
    const long bsize = packed_b_size<T>(K, nb);
    parallel_tasks<T>(ntasks, s.flops(), bsize + nb + GemmBlock<T>::NR, [&](long t, T* Bp) {
        const long n = t / (G * nblk), g = t / nblk % G, j0 = t % nblk * nb, cols = std::min(nb, HWo - j0);
        const T* xg = x + (n * s.C_in + g * s.C_g()) * s.HW();
        T* yg = y + (n * s.C_out + g * M) * HWo + j0;
        if (s.is_pointwise())
            gemm_packed(M, cols, K, Ap.data() + g * ap, StridedB<T>{xg + j0, s.HW(), 1}, Bp, yg, HWo, false);
        else
            gemm_packed(M, cols, K, Ap.data() + g * ap, Im2colB<T>{xg, s, j0, Bp + bsize}, Bp, yg,
                        HWo, false);
        if (b)
            for (long i = 0; i < M; ++i)
                for (long j = 0; j < cols; ++j) yg[i * HWo + j] += b[g * M + i];
    });
}

// dx (N, C_in, H, W) = col2im(wᵀ · dy). Tasks own disjoint channel blocks of dx, so the scatter-add
// needs no locks; within a task column blocks are added in order.
template <typename T>
void conv2d_input_grad_packed_gemm(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long G = s.groups, M = s.M_g(), K = s.K(), C_g = s.C_g(), kk = s.kH * s.kW, HWo = s.HW_out();
    long cb = std::min(C_g, std::max(1L, kInputGradRows / kk));  // channels per task
    while (cb > 1 && s.N * G * ceil_div(C_g, cb) < 4L * get_num_threads()) cb = ceil_div(cb, 2);
    const long ncb = ceil_div(C_g, cb), ap = packed_a_size<T>(cb * kk, M), ntasks = s.N * G * ncb;
    Buffer<T> Ap(G * ncb * ap);  // wᵀ rows of each (group, channel block), packed once
    pack_a_blocks<T>(G * ncb, M, (double)G * M * K, [&](long t) {
        const long g = t / ncb, c0 = t % ncb * cb;
        return PackA<T>{(std::min(C_g, c0 + cb) - c0) * kk, M, w + g * M * K + c0 * kk, 1, K, Ap.data() + t * ap};
    });
    const long nb = GemmBlock<T>::NC;
    parallel_tasks<T>(ntasks, s.flops(), packed_b_size<T>() + cb * kk * nb, [&](long t, T* Bp) {
        T* colg = Bp + packed_b_size<T>();
        const long n = t / (G * ncb), g = t / ncb % G, i = t % ncb, c0 = i * cb, cn = std::min(C_g, c0 + cb) - c0;
        const T* dyg = dy + (n * s.C_out + g * M) * HWo;
        const T* Apt = Ap.data() + (g * ncb + i) * ap;
        T* dxc = dx + (n * s.C_in + g * C_g + c0) * s.HW();
        if (s.is_pointwise()) {
            gemm_packed(cn, HWo, M, Apt, StridedB<T>{dyg, HWo, 1}, Bp, dxc, s.HW(), false);
            return;
        }
        std::fill(dxc, dxc + cn * s.HW(), T(0));
        for (long j0 = 0; j0 < HWo; j0 += nb) {
            const long cols = std::min(nb, HWo - j0);
            gemm_packed(cn * kk, cols, M, Apt, StridedB<T>{dyg + j0, HWo, 1}, Bp, colg, nb, false);
            for (long r = 0; r < cn * kk; ++r)
                col2im_row(colg + r * nb, s, (r % kk) / s.kW, r % s.kW, j0, cols, dxc + (r / kk) * s.HW());
        }
    });
}

// dw (C_out, C_in/g, kH, kW) = Σ_n dy[n] · colᵀ[n]: per group a GEMM dW[M, K] += dY[M, P] · colᵀ[P, K]
// whose reduction runs over the P = N·HW_out output positions, in items of (image, KC positions).
// Tasks (group, position slice, column part) own disjoint column blocks of dW (or of their slice's
// partial sum), so they accumulate straight into it over all their items: dY is packed once per item
// and task, colᵀ once per item and column block. Slices (more than one only when dW has few
// columns to share out) depend on the problem alone and are added in slice order, so dw is
// bit-identical for any thread count; the column split does not change any element's sum.
template <typename T>
void conv2d_weight_grad_packed_gemm(const T* x, const T* dy, T* dw, const ConvShape& s) {
    constexpr long KC = GemmBlock<T>::KC, NR = GemmBlock<T>::NR, NC = GemmBlock<T>::NC, L = Vec<T>::lanes;
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out(), size = s.C_out * K;
    const long nblk = ceil_div(HWo, KC), items = s.N * nblk, nsl = ceil_div(K, NR);
    const long S = std::clamp(ceil_div(kWgradTasks, nsl * G), 1L,
                              std::min({items, 32L, std::max(1L, kPartialBytes / long(size * sizeof(T)))}));
    const long parts = std::clamp(ceil_div(2L * get_num_threads(), S * G), 1L, nsl), ntasks = G * S * parts;
    Buffer<T> partial(S > 1 ? S * size : 1);
    const long ap = packed_a_size<T>(M, KC), bp = KC * NC, scratch = ap + bp + L * round_up(KC, L);
    const int nt = threads_for(ntasks, s.flops());
    Buffer<T> work(nt * scratch);
    Stop stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long t = 0; t < ntasks; ++t) {
        T* Ap = work.data() + omp_thread() * scratch;
        T *Bp = Ap + ap, *tmp = Bp + bp;
        const long g = t / (S * parts), sl = t / parts % S, kp = t % parts;
        const long c0 = nsl * kp / parts * NR, c1 = std::min(K, nsl * (kp + 1) / parts * NR);
        if (c0 >= c1) continue;
        T* C = (S > 1 ? partial.data() + sl * size : dw) + g * M * K;
        for (long i = 0; i < M; ++i) std::fill(C + i * K + c0, C + i * K + c1, T(0));
        for (long it = items * sl / S; it < items * (sl + 1) / S && !stop(); ++it) {
            const long n = it / nblk, j0 = it % nblk * KC, kc = std::min(KC, HWo - j0);
            const T* xg = x + (n * s.C_in + g * s.C_g()) * s.HW();
            pack_a(M, kc, dy + (n * s.C_out + g * M) * HWo + j0, HWo, 1, Ap);
            for (long jc = c0; jc < c1; jc += NC) {
                const long nc = std::min(NC, c1 - jc);
                pack_col_transposed(xg, s, j0, kc, jc, nc, tmp, Bp);
                macro_kernel(M, nc, kc, Ap, Bp, C + jc, K, true);
            }
        }
    }
    if (S == 1) return;
    const T* p = partial.data();
#pragma omp parallel for schedule(static) num_threads(threads_for(size / 16384 + 1))
    for (long i = 0; i < size; ++i) {
        T acc = p[i];
        for (long k = 1; k < S; ++k) acc += p[k * size + i];
        dw[i] = acc;
    }
}

#define FASTCONV_INSTANTIATE(T)                                                    \
    template void conv2d_packed_gemm<T>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad_packed_gemm<T>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad_packed_gemm<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
