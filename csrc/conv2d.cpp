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
#include "parallel.h"

namespace fastconv {

void check_conv_shape(const ConvShape& s) {
    const long dims[] = {s.N, s.C_in, s.H, s.W, s.C_out, s.kH, s.kW, s.H_out, s.W_out,
                         s.sh, s.sw, s.dh, s.dw, s.groups};
    for (long d : dims)
        if (d < 1) throw std::invalid_argument("conv2d: sizes, stride, dilation and groups must be >= 1");
    if (s.ph < 0 || s.pw < 0) throw std::invalid_argument("conv2d: padding must be >= 0");
    if (s.C_in % s.groups || s.C_out % s.groups)
        throw std::invalid_argument("conv2d: groups=" + std::to_string(s.groups) + " must divide C_in=" +
                                    std::to_string(s.C_in) + " and C_out=" + std::to_string(s.C_out));
}

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
        constexpr int NR = Tile<T>::NR;
        const long kk = s.kH * s.kW, ncp = round_up(nc, NR);
        std::fill(row + nc, row + ncp, T(0));
        for (long p = 0; p < kc; ++p) {
            long k = pc + p;
            im2col_row(xg + (k / kk) * s.HW(), s, (k % kk) / s.kW, k % s.kW, j0 + jc, nc, row);
            for (long js = 0; js < ncp; js += NR) std::memcpy(Bp + js * kc + p * NR, row + js, NR * sizeof(T));
        }
    }
};

// B[p, q] = col[q, j0 + p] (weight grad: the reduction runs over output positions).
template <typename T>
struct Im2colTransposedB {
    const T* xg;
    const ConvShape& s;
    long j0;
    T* row;  // scratch, >= KC elements
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        constexpr int NR = Tile<T>::NR;
        const long kk = s.kH * s.kW, ncp = round_up(nc, NR);
        for (long q = 0; q < ncp; ++q) {
            T* dst = Bp + (q / NR) * NR * kc + q % NR;
            if (q >= nc) {
                for (long p = 0; p < kc; ++p) dst[p * NR] = T(0);
                continue;
            }
            long k = jc + q;
            im2col_row(xg + (k / kk) * s.HW(), s, (k % kk) / s.kW, k % s.kW, j0 + pc, kc, row);
            for (long p = 0; p < kc; ++p) dst[p * NR] = row[p];
        }
    }
};

// Output columns per task: a full GEMM column block, halved while that leaves under four tasks per
// thread. Only the partition changes, never an element's summation order.
template <typename T>
long column_block(long HW_out, long outer_tasks) {
    long nb = Tile<T>::NC, want = 4L * get_num_threads();
    while (nb > Tile<T>::NR && outer_tasks * ceil_div(HW_out, nb) < want) nb = round_up(nb / 2, Tile<T>::NR);
    return std::min(nb, HW_out);
}

#ifdef _OPENMP
inline int thread_id() { return omp_get_thread_num(); }
#else
inline int thread_id() { return 0; }
#endif

}  // namespace

// y (N, C_out, H_out, W_out) = w (C_out, C_in/g, kH, kW) ⋆ x (N, C_in, H, W) + b (C_out)
template <typename T>
void conv2d(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    if (use_depthwise(s)) return conv2d_depthwise(x, w, b, y, s);
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out();
    const long ap = packed_a_size<T>(M, K);
    Buffer<T> Ap(G * ap);  // every group's weights packed once, shared read-only by all tasks
    for (long g = 0; g < G; ++g) pack_a(M, K, w + g * M * K, K, 1, Ap.data() + g * ap);
    const long nb = column_block<T>(HWo, s.N * G), nblk = ceil_div(HWo, nb), ntasks = s.N * G * nblk;
    const int nt = threads_for(ntasks, s.flops());
    const long bsize = packed_b_size<T>(K, nb), scratch = bsize + nb + Tile<T>::NR;
    Buffer<T> work(nt * scratch);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long t = 0; t < ntasks; ++t) {
        T* Bp = work.data() + thread_id() * scratch;
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
    }
}

// dx (N, C_in, H, W) = col2im(wᵀ · dy). Tasks own disjoint channel blocks of dx, so the scatter-add
// needs no locks; within a task column blocks are added in order.
template <typename T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const ConvShape& s) {
    if (use_depthwise(s)) return conv2d_input_grad_depthwise(dy, w, dx, s);
    const long G = s.groups, M = s.M_g(), K = s.K(), C_g = s.C_g(), kk = s.kH * s.kW, HWo = s.HW_out();
    long cb = std::min(C_g, std::max(1L, 256 / kk));  // channels per task: about 256 col' rows
    while (cb > 1 && s.N * G * ceil_div(C_g, cb) < 4L * get_num_threads()) cb = ceil_div(cb, 2);
    const long ncb = ceil_div(C_g, cb), ap = packed_a_size<T>(cb * kk, M), ntasks = s.N * G * ncb;
    Buffer<T> Ap(G * ncb * ap);  // wᵀ rows of each (group, channel block), packed once
    for (long g = 0; g < G; ++g)
        for (long i = 0; i < ncb; ++i) {
            long rows = (std::min(C_g, (i + 1) * cb) - i * cb) * kk;
            pack_a(rows, M, w + g * M * K + i * cb * kk, 1, K, Ap.data() + (g * ncb + i) * ap);
        }
    const long nb = Tile<T>::NC, scratch = packed_b_size<T>() + cb * kk * nb;
    const int nt = threads_for(ntasks, s.flops());
    Buffer<T> work(nt * scratch);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long t = 0; t < ntasks; ++t) {
        T* Bp = work.data() + thread_id() * scratch;
        T* colg = Bp + packed_b_size<T>();
        const long n = t / (G * ncb), g = t / ncb % G, i = t % ncb, c0 = i * cb, cn = std::min(C_g, c0 + cb) - c0;
        const T* dyg = dy + (n * s.C_out + g * M) * HWo;
        const T* Apt = Ap.data() + (g * ncb + i) * ap;
        T* dxc = dx + (n * s.C_in + g * C_g + c0) * s.HW();
        if (s.is_pointwise()) {
            gemm_packed(cn, HWo, M, Apt, StridedB<T>{dyg, HWo, 1}, Bp, dxc, s.HW(), false);
            continue;
        }
        std::fill(dxc, dxc + cn * s.HW(), T(0));
        for (long j0 = 0; j0 < HWo; j0 += nb) {
            const long cols = std::min(nb, HWo - j0);
            gemm_packed(cn * kk, cols, M, Apt, StridedB<T>{dyg + j0, HWo, 1}, Bp, colg, nb, false);
            for (long r = 0; r < cn * kk; ++r)
                col2im_row(colg + r * nb, s, (r % kk) / s.kW, r % s.kW, j0, cols, dxc + (r / kk) * s.HW());
        }
    }
}

// dw (C_out, C_in/g, kH, kW) = Σ_n dy[n] · colᵀ[n]. Tasks (n, g, block of output positions) are cut
// into S contiguous ranges ("slots") whose partial sums are added in slot order; S depends on the
// problem only, so dw is bit-identical for any thread count.
template <typename T>
void conv2d_weight_grad(const T* x, const T* dy, T* dw, const ConvShape& s) {
    if (use_depthwise(s)) return conv2d_weight_grad_depthwise(x, dy, dw, s);
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out(), nbw = Tile<T>::KC;
    const long nblk = ceil_div(HWo, nbw), ntasks = s.N * G * nblk, size = s.C_out * K;
    const long S = std::min({ntasks, 32L, std::max(1L, (64L << 20) / long(size * sizeof(T)))});
    Buffer<T> partial(S * size);
    const long ap = packed_a_size<T>(M, nbw), scratch = ap + packed_b_size<T>() + Tile<T>::KC;
    const int nt = threads_for(S, s.flops());
    Buffer<T> work(nt * scratch);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long slot = 0; slot < S; ++slot) {
        T* Ap = work.data() + thread_id() * scratch;
        T* Bp = Ap + ap;
        T* part = partial.data() + slot * size;
        std::fill(part, part + size, T(0));
        for (long t = ntasks * slot / S; t < ntasks * (slot + 1) / S; ++t) {
            const long n = t / (G * nblk), g = t / nblk % G, j0 = t % nblk * nbw, cols = std::min(nbw, HWo - j0);
            const T* xg = x + (n * s.C_in + g * s.C_g()) * s.HW();
            pack_a(M, cols, dy + (n * s.C_out + g * M) * HWo + j0, HWo, 1, Ap);
            if (s.is_pointwise())
                gemm_packed(M, K, cols, Ap, StridedB<T>{xg + j0, 1, s.HW()}, Bp, part + g * M * K, K, true);
            else
                gemm_packed(M, K, cols, Ap, Im2colTransposedB<T>{xg, s, j0, Bp + packed_b_size<T>()}, Bp,
                            part + g * M * K, K, true);
        }
    }
    const T* p = partial.data();
#pragma omp parallel for schedule(static) num_threads(threads_for(size / 16384 + 1))
    for (long i = 0; i < size; ++i) {
        T acc = p[i];
        for (long k = 1; k < S; ++k) acc += p[k * size + i];
        dw[i] = acc;
    }
}

#define FASTCONV_INSTANTIATE(T)                                                    \
    template void conv2d<T>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad<T>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad<T>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
