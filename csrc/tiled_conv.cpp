// tiled_conv.cpp — tiled (and through it unshared) convolution: forward and both gradients side by side.
//
// For each tile phase (th, tw) the output positions it owns, over every image, are the columns
// q = (n, i', j') of one GEMM with that phase's kernel w[th, tw] (C_out x K, K = C_in*kH*kW):
//   forward      Y[o, q]   = W[o, k] · col[k, q]          (col = im2col of those positions)
//   weight-grad  dW[o, k] += dY[o, q] · col[k, q]^T
//   input-grad   dcol[k, q] = W[o, k]^T · dY[o, q], scattered back into dx (col2im)
// Columns are processed in blocks of NQ so the workspace stays small. Unshared conv has one
// position per phase, so its GEMM columns are the images of the batch. Few, large phases take the
// implicit GEMMs of tiled_implicit.cpp or the polyphase path of tiled_poly.cpp instead.
#include "tiled_conv.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "gemm.h"
#include "parallel.h"

namespace fastconv {

namespace {

// The columns [q0, q0 + nq) of phase (th, tw): image, top-left input corner of each position's window.
struct Columns {
    std::vector<long> n, i, j, ih, iw;
    void reserve(long nq) { n.reserve(nq), i.reserve(nq), j.reserve(nq), ih.reserve(nq), iw.reserve(nq); }
    // nq <= the reserved size: resizing allocates nothing (inside a parallel region).
    void locate(const TiledShape& s, long th, long tw, long q0, long nq) {
        const long Wp = s.cols(tw), P = s.rows(th) * Wp;
        n.resize(nq), i.resize(nq), j.resize(nq), ih.resize(nq), iw.resize(nq);
        for (long t = 0; t < nq; ++t) {
            long q = q0 + t, r = q % P;
            n[t] = q / P;
            i[t] = th + s.T_h * (r / Wp);
            j[t] = tw + s.T_w * (r % Wp);
            ih[t] = i[t] * s.sh - s.ph;
            iw[t] = j[t] * s.sw - s.pw;
        }
    }
};

// col[k*nq + t] = x[n_t, c, ih_t + a, iw_t + b] for k = (c, a, b), zero outside the input.
template <typename T>
void gather(const T* x, const TiledShape& s, const Columns& cs, long nq, T* col) {
    for (long c = 0, k = 0; c < s.C_in; ++c)
        for (long a = 0; a < s.kH; ++a)
            for (long b = 0; b < s.kW; ++b, ++k) {
                T* row = col + k * nq;
                for (long t = 0; t < nq; ++t) {
                    long h = cs.ih[t] + a, w = cs.iw[t] + b;
                    bool inside = h >= 0 && h < s.H && w >= 0 && w < s.W;
                    row[t] = inside ? x[((cs.n[t] * s.C_in + c) * s.H + h) * s.W + w] : T(0);
                }
            }
}

// dx[n_t, c, ih_t + a, iw_t + b] += dcol[k*nq + t]: the adjoint of gather.
template <typename T>
void scatter_add(const T* dcol, const TiledShape& s, const Columns& cs, long nq, T* dx) {
    for (long c = 0, k = 0; c < s.C_in; ++c)
        for (long a = 0; a < s.kH; ++a)
            for (long b = 0; b < s.kW; ++b, ++k) {
                const T* row = dcol + k * nq;
                for (long t = 0; t < nq; ++t) {
                    long h = cs.ih[t] + a, w = cs.iw[t] + b;
                    if (h >= 0 && h < s.H && w >= 0 && w < s.W) dx[((cs.n[t] * s.C_in + c) * s.H + h) * s.W + w] += row[t];
                }
            }
}

// Block of columns per GEMM: the packed-B panel width, so one block is one pack.
template <typename T>
constexpr long NQ = GemmBlock<T>::NC;

// Per-thread workspace.
template <typename T>
struct Work {
    Buffer<T> Ap, Bp, col, out;
    Columns cs;
    Work(const TiledShape& s, long a_rows, long a_cols)
        : Ap(packed_a_size<T>(a_rows, a_cols)), Bp(packed_b_size<T>()), col(s.K() * NQ<T>),
          out(std::max(s.C_out, s.K()) * NQ<T>) {
        cs.reserve(NQ<T>);
    }
};

// One Work per thread, built before the parallel region (see PerThread).
template <typename T>
std::vector<Work<T>> works(int nt, const TiledShape& s, long a_rows, long a_cols) {
    std::vector<Work<T>> w;
    w.reserve(nt);
    for (int t = 0; t < nt; ++t) w.emplace_back(s, a_rows, a_cols);
    return w;
}

// --- Few, large phases -----------------------------------------------------------------------------------
}  // namespace

template <typename T>
void tiled_conv2d_gather_gemm(const T* x, const T* w, const T* b, T* y, const TiledShape& s) {
    const long K = s.K(), phases = s.phases(), HWo = s.H_out * s.W_out;
    const long blocks = ceil_div(s.N * ceil_div(s.H_out, s.T_h) * ceil_div(s.W_out, s.T_w), NQ<T>);
    const int nt = threads_for(phases * blocks);
    std::vector<Work<T>> all = works<T>(nt, s, s.C_out, K);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        Work<T>& ws = all[omp_thread()];
        long packed = -1;
#pragma omp for schedule(dynamic)
        for (long task = 0; task < phases * blocks; ++task) {
            if (stop()) continue;
            long ph = task / blocks, th = ph / s.T_w, tw = ph % s.T_w;
            long cols = s.N * s.rows(th) * s.cols(tw), q0 = (task % blocks) * NQ<T>;
            if (q0 >= cols) continue;
            long nq = std::min(NQ<T>, cols - q0);
            if (packed != ph) {  // a thread's consecutive tasks mostly share the phase kernel
                pack_a(s.C_out, K, w + ph * s.C_out * K, K, 1L, ws.Ap.data());
                packed = ph;
            }
            ws.cs.locate(s, th, tw, q0, nq);
            gather(x, s, ws.cs, nq, ws.col.data());
            gemm_packed(s.C_out, nq, K, ws.Ap.data(), StridedB<T>{ws.col.data(), nq, 1}, ws.Bp.data(),
                        ws.out.data(), nq, false);
            for (long o = 0; o < s.C_out; ++o)
                for (long t = 0; t < nq; ++t) {
                    long i = ws.cs.i[t], j = ws.cs.j[t];
                    T bias = b ? b[o * s.b_o + i * s.b_i + j * s.b_j] : T(0);
                    y[(ws.cs.n[t] * s.C_out + o) * HWo + i * s.W_out + j] = ws.out.data()[o * nq + t] + bias;
                }
        }
    }
}

// Threads split the batch (each owns its images' dx), so the scatter-add needs no locks and every
// dx element sums its contributions in the same order whatever the thread count.
template <typename T>
void tiled_conv2d_input_grad_gather_gemm(const T* dy, const T* w, T* dx, const TiledShape& s) {
    const long K = s.K(), HWo = s.H_out * s.W_out;
    std::fill(dx, dx + s.N * s.C_in * s.H * s.W, T(0));
    const int nt = threads_for(s.N);
    std::vector<Work<T>> all = works<T>(nt, s, K, s.C_out);
#pragma omp parallel num_threads(nt)
    {
        Work<T>& ws = all[omp_thread()];
#pragma omp for schedule(static)
        for (int part = 0; part < nt; ++part) {
            long n0 = s.N * part / nt, n1 = s.N * (part + 1) / nt;
            for (long ph = 0; ph < s.phases(); ++ph) {
                long th = ph / s.T_w, tw = ph % s.T_w, P = s.rows(th) * s.cols(tw);
                if (P == 0) continue;
                pack_a(K, s.C_out, w + ph * s.C_out * K, 1L, K, ws.Ap.data());
                for (long q0 = n0 * P; q0 < n1 * P; q0 += NQ<T>) {
                    long nq = std::min(NQ<T>, n1 * P - q0);
                    ws.cs.locate(s, th, tw, q0, nq);
                    T* dyb = ws.out.data();  // dY block (C_out x nq)
                    for (long o = 0; o < s.C_out; ++o)
                        for (long t = 0; t < nq; ++t)
                            dyb[o * nq + t] = dy[(ws.cs.n[t] * s.C_out + o) * HWo + ws.cs.i[t] * s.W_out + ws.cs.j[t]];
                    gemm_packed(K, nq, s.C_out, ws.Ap.data(), StridedB<T>{dyb, nq, 1}, ws.Bp.data(), ws.col.data(),
                                nq, false);
                    scatter_add(ws.col.data(), s, ws.cs, nq, dx);
                }
            }
        }
    }
}

// Threads split the phases; each phase's dw[th, tw] sums its column blocks in order.
template <typename T>
void tiled_conv2d_weight_grad_gather_gemm(const T* x, const T* dy, T* dw, const TiledShape& s) {
    const long K = s.K(), HWo = s.H_out * s.W_out;
    const int nt = threads_for(s.phases());
    std::vector<Work<T>> all = works<T>(nt, s, s.C_out, NQ<T>);
#pragma omp parallel num_threads(nt)
    {
        Work<T>& ws = all[omp_thread()];
#pragma omp for schedule(dynamic)
        for (long ph = 0; ph < s.phases(); ++ph) {
            long th = ph / s.T_w, tw = ph % s.T_w, cols = s.N * s.rows(th) * s.cols(tw);
            T* dwp = dw + ph * s.C_out * K;
            std::fill(dwp, dwp + s.C_out * K, T(0));
            for (long q0 = 0; q0 < cols; q0 += NQ<T>) {
                long nq = std::min(NQ<T>, cols - q0);
                ws.cs.locate(s, th, tw, q0, nq);
                gather(x, s, ws.cs, nq, ws.col.data());
                T* dyb = ws.out.data();
                for (long o = 0; o < s.C_out; ++o)
                    for (long t = 0; t < nq; ++t)
                        dyb[o * nq + t] = dy[(ws.cs.n[t] * s.C_out + o) * HWo + ws.cs.i[t] * s.W_out + ws.cs.j[t]];
                pack_a(s.C_out, nq, dyb, nq, 1L, ws.Ap.data());
                gemm_packed(s.C_out, K, nq, ws.Ap.data(), StridedB<T>{ws.col.data(), 1, nq}, ws.Bp.data(), dwp, K,
                            true);
            }
        }
    }
}

#define FASTCONV_INSTANTIATE(T)                                                                \
    template void tiled_conv2d_gather_gemm<T>(const T*, const T*, const T*, T*, const TiledShape&);      \
    template void tiled_conv2d_input_grad_gather_gemm<T>(const T*, const T*, T*, const TiledShape&);     \
    template void tiled_conv2d_weight_grad_gather_gemm<T>(const T*, const T*, T*, const TiledShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
