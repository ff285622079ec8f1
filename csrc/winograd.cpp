// winograd.cpp — dense 3x3 stride-1 convolution by Winograd's F(m x m, 3 x 3): forward, input gradient
// (the forward on dy with the rotated, transposed kernel) and weight gradient, side by side.
//
// The tiles are processed in chunks of whole tile rows, small enough that the chunk's transformed
// input and GEMM output stay in the outer caches; per chunk three parallel passes: transform the
// input rows, (m+2)² GEMMs on the packed micro-kernel, transform back. Every element's sum runs in a
// fixed order over fixed chunks, so results do not depend on the thread count.
#include "winograd.h"

#include <algorithm>

#include "gemm.h"
#include "implicit.h"
#include "parallel.h"

namespace fastconv {

const char* winograd_why_not(const ConvShape& s) {
    if (s.kH != 3 || s.kW != 3) return "needs a 3x3 kernel";
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.dil_h != 1 || s.dil_w != 1) return "needs dilation 1";
    if (s.groups != 1) return "needs groups == 1";
    return nullptr;
}

const char* winograd_input_grad_why_not(const ConvShape& s) {
    if (const char* why = winograd_why_not(s)) return why;
    if (s.ph > 2 || s.pw > 2) return "needs padding <= 2 (the input grad is a forward conv with padding 2 - padding)";
    return nullptr;
}

namespace {

// Transformed input plus GEMM output of one chunk of tiles take about this many bytes.
constexpr long kChunkBytes = 8L << 20;

// A B packer for a B given transposed: B[p, j] = Bt[j*ld + p].
template <typename T>
struct TransposedB {
    const T* Bt;
    long ld;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        pack_b_transposed<T>(kc, nc, Bt + jc * ld + pc, ld, Bp);
    }
};

// The tiling of one problem: tiles of m x m outputs, th x tw per image, in chunks of `rows` tile rows.
struct Tiling {
    long th, tw, rows_total, rows;
    Tiling(const ConvShape& s, int m, long channels, int a, long elem)
        : th(ceil_div(s.H_out, m)), tw(ceil_div(s.W_out, m)), rows_total(s.N * th) {
        rows = std::clamp(kChunkBytes / (channels * a * a * tw * elem), 1L, rows_total);
    }
};

// U[ξ][o][i] = (G g Gᵀ)[ξ] for every (o, i) pair of a K x C kernel g = w[o, i] — or, `flipped`,
// g = w[i, o] rotated by 180° (the input gradient's kernel) — then packed as A per ξ.
template <typename T, int m>
void transform_weights(const T* w, long K, long C, bool flipped, T* U, T* Ap) {
    constexpr int a = m + 2;
    const auto& G = Winograd<m>::G;
#pragma omp parallel for schedule(static) num_threads(threads_for(K, 200.0 * K * C))
    for (long o = 0; o < K; ++o)
        for (long i = 0; i < C; ++i) {
            double g[3][3], gg[a][3];
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c)
                    g[r][c] = flipped ? w[((i * K + o) * 3 + 2 - r) * 3 + 2 - c] : w[((o * C + i) * 3 + r) * 3 + c];
            for (int xi = 0; xi < a; ++xi)
                for (int c = 0; c < 3; ++c) gg[xi][c] = G.v[xi][0] * g[0][c] + G.v[xi][1] * g[1][c] + G.v[xi][2] * g[2][c];
            for (int xi = 0; xi < a; ++xi)
                for (int eta = 0; eta < a; ++eta)
                    U[((xi * a + eta) * K + o) * C + i] =
                        T(gg[xi][0] * G.v[eta][0] + gg[xi][1] * G.v[eta][1] + gg[xi][2] * G.v[eta][2]);
        }
    const long ap = packed_a_size<T>(K, C);
#pragma omp parallel for schedule(static) num_threads(threads_for(a * a, 1.0 * a * a * K * C))
    for (int k = 0; k < a * a; ++k) pack_a(K, C, U + k * K * C, C, 1, Ap + k * ap);
}

// V[ξ][c][t] for the tiles t of tile rows [row0, row0 + rows) of the C planes of x (ld: the chunk's tiles).
template <typename T, int m>
void transform_input(const T* x, const ConvShape& s, long C, const Tiling& tl, long row0, long rows, T* V, long ld) {
    PerThread<T> buf(threads_for(rows * C), transform_scratch<T, m>(tl.tw));
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * C, 400.0 * rows * C * tl.tw))
    for (long task = 0; task < rows * C; ++task) {
        const long r = task / C, c = task % C, n = (row0 + r) / tl.th, ti = (row0 + r) % tl.th;
        transform_tile_row<T, Winograd<m>::BT, m>(x + (n * C + c) * s.H * s.W, s.H, s.W, ti * m - s.ph, s.pw, tl.tw,
                                     V + c * ld + r * tl.tw, C * ld, buf.get());
    }
}

}  // namespace

// y (N, K, H_out, W_out) = w ⋆ x + b, w (K, C, 3, 3) — or, `flipped`, w (C, K, 3, 3) read rotated and
// transposed — in chunks of tile rows.
template <typename T, int m>
static void winograd_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    constexpr int a = m + 2, L = Vec<T>::lanes;
    const long K = s.C_out, C = s.C_in;
    const Tiling tl(s, m, K + C, a, sizeof(T));
    const long ap = packed_a_size<T>(K, C), pc = tl.rows * tl.tw;
    Buffer<T> U(a * a * K * C), Ap(a * a * ap);
    transform_weights<T, m>(w, K, C, flipped, U.data(), Ap.data());
    Buffer<T> V(a * a * C * pc), M(a * a * K * pc + L);
    std::fill(M.data() + a * a * K * pc, M.data() + a * a * K * pc + L, T(0));  // read past by the last vector
    const long nb = GemmBlock<T>::NC, bsize = packed_b_size<T>(C, std::min(nb, pc));
    const long nblk = ceil_div(pc, nb), gemm_tasks = a * a * nblk;
    const int gt = threads_for(gemm_tasks, 2.0 * K * C * pc * a * a);
    PerThread<T> Bp(gt, bsize);
    PerThread<T> obuf(threads_for(tl.rows * K), transform_scratch<T, m>(tl.tw));
    for (long row0 = 0; row0 < tl.rows_total; row0 += tl.rows) {
        const long rows = std::min(tl.rows, tl.rows_total - row0), P = rows * tl.tw;
        transform_input<T, m>(x, s, C, tl, row0, rows, V.data(), pc);
#pragma omp parallel for schedule(dynamic) num_threads(gt)
        for (long task = 0; task < gemm_tasks; ++task) {
            const long k = task / nblk, j0 = task % nblk * nb;
            if (j0 >= P) continue;
            gemm_packed(K, std::min(nb, P - j0), C, Ap.data() + k * ap, StridedB<T>{V.data() + k * C * pc + j0, pc, 1},
                        Bp.get(), M.data() + k * K * pc + j0, pc, false);
        }
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * K, 300.0 * rows * K * tl.tw))
        for (long task = 0; task < rows * K; ++task) {
            const long r = task / K, o = task % K, n = (row0 + r) / tl.th, ti = (row0 + r) % tl.th;
            inverse_tile_row<T, m>(M.data() + o * pc + r * tl.tw, K * pc, tl.tw, b ? b[o] : T(0),
                                   y + (n * K + o) * s.HW_out(), s.H_out, s.W_out, ti * m, obuf.get());
        }
    }
}

template <typename T, int m>
void conv2d_winograd(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    winograd_forward<T, m>(x, w, b, y, s, false);
}

template <typename T, int m>
void conv2d_input_grad_winograd(const T* dy, const T* w, T* dx, const ConvShape& s) {
    winograd_forward<T, m>(dy, w, nullptr, dx, input_grad_as_forward(s), true);
}

// dw (K, C, 3, 3) = Gᵀ [Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ x Bᵀᵀ)] G: per ξ a GEMM Z[ξ] (K x C) += Ŷ[ξ] (K x tiles) · V[ξ]ᵀ.
template <typename T, int m>
void conv2d_weight_grad_winograd(const T* x, const T* dy, T* dw, const ConvShape& s) {
    constexpr int a = m + 2;
    const auto& G = Winograd<m>::G;
    const long K = s.C_out, C = s.C_in;
    const Tiling tl(s, m, K + C, a, sizeof(T));
    const long pc = tl.rows * tl.tw;
    Buffer<T> V(a * a * C * pc), Y(a * a * K * pc), Z(a * a * K * C);
    const int gt = threads_for(a * a, 2.0 * K * C * pc * a * a);
    const long ap = packed_a_size<T>(K, pc), bsize = packed_b_size<T>(pc, C);
    PerThread<T> work(gt, ap + bsize);
    PerThread<T> buf(threads_for(tl.rows * K), transform_scratch<T, m>(tl.tw));
    for (long row0 = 0; row0 < tl.rows_total; row0 += tl.rows) {
        const long rows = std::min(tl.rows, tl.rows_total - row0), P = rows * tl.tw;
        transform_input<T, m>(x, s, C, tl, row0, rows, V.data(), pc);
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * K, 200.0 * rows * K * tl.tw))
        for (long task = 0; task < rows * K; ++task) {
            const long r = task / K, o = task % K, n = (row0 + r) / tl.th, ti = (row0 + r) % tl.th;
            transform_tile_row<T, Winograd<m>::A, m>(dy + (n * K + o) * s.HW_out(), s.H_out, s.W_out, ti * m, 0, tl.tw,
                                        Y.data() + o * pc + r * tl.tw, K * pc, buf.get());
        }
#pragma omp parallel for schedule(dynamic) num_threads(gt)
        for (long k = 0; k < a * a; ++k) {
            T* Apk = work.get();
            pack_a(K, P, Y.data() + k * K * pc, pc, 1, Apk);
            gemm_packed(K, C, P, Apk, TransposedB<T>{V.data() + k * C * pc, pc}, Apk + ap, Z.data() + k * K * C, C,
                        row0 > 0);
        }
    }
#pragma omp parallel for schedule(static) num_threads(threads_for(K, 300.0 * K * C))
    for (long o = 0; o < K; ++o)
        for (long i = 0; i < C; ++i) {
            double zg[a][3];  // Z[ξ][η] · G, then Gᵀ · that
            for (int xi = 0; xi < a; ++xi)
                for (int c = 0; c < 3; ++c) {
                    double acc = 0;
                    for (int eta = 0; eta < a; ++eta) acc += Z.data()[((xi * a + eta) * K + o) * C + i] * G.v[eta][c];
                    zg[xi][c] = acc;
                }
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c) {
                    double acc = 0;
                    for (int xi = 0; xi < a; ++xi) acc += G.v[xi][r] * zg[xi][c];
                    dw[((o * C + i) * 3 + r) * 3 + c] = T(acc);
                }
        }
}

#define FASTCONV_INSTANTIATE(T, m)                                                                    \
    template void conv2d_winograd<T, m>(const T*, const T*, const T*, T*, const ConvShape&);          \
    template void conv2d_input_grad_winograd<T, m>(const T*, const T*, T*, const ConvShape&);         \
    template void conv2d_weight_grad_winograd<T, m>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float, 2)
FASTCONV_INSTANTIATE(float, 4)
FASTCONV_INSTANTIATE(double, 2)
FASTCONV_INSTANTIATE(double, 4)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
