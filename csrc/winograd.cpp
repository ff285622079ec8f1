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

// Transformed input plus GEMM output of one chunk of tiles take about this many bytes: per thread in
// the forward (the outer caches), shared in the weight gradient (where every chunk costs two barriers).
constexpr long kChunkBytes = 2L << 20, kSharedChunkBytes = 16L << 20;

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
    Tiling(const ConvShape& s, int m, long channels, int a, long elem, long bytes)
        : th(ceil_div(s.H_out, m)), tw(ceil_div(s.W_out, m)), rows_total(s.N * th) {
        rows = std::clamp(bytes / (channels * a * a * tw * elem), 1L, rows_total);
    }
};

// Ap = U[ξ] = (G g Gᵀ)[ξ] for every (o, i) pair of a K x C kernel g = w[o, i] — or, `flipped`, g = w[i, o]
// rotated by 180° (the input gradient's kernel) — packed as gemm.h's A per ξ (ap elements each),
// written straight into the packed layout: a task computes one MR-row sliver for L input channels,
// vectorised over the channels, and each ξ's block of it is one contiguous run of the packed A.
template <typename T, int m>
void transform_weights(const T* w, long K, long C, bool flipped, T* Ap, long ap) {
    using V = typename Vec<T>::type;
    constexpr int a = m + 2, L = Vec<T>::lanes, MR = GemmBlock<T>::MR;
    constexpr long KC = GemmBlock<T>::KC;  // the depth of pack_a's blocks, which gemm_packed reads
    const long Kpad = round_up(K, MR), blocks = ceil_div(C, L), tasks = Kpad / MR * blocks;
#pragma omp parallel for schedule(static) num_threads(threads_for(tasks, 100.0 * K * C))
    for (long task = 0; task < tasks; ++task) {
        const long o0 = task / blocks * MR, i0 = task % blocks * L, n = std::min<long>(L, C - i0);
        alignas(64) T u[a * a][MR][L];
        for (int r = 0; r < MR; ++r) {
            const long o = o0 + r;
            alignas(64) T g[3][3][L] = {};
            for (long l = 0; l < n && o < K; ++l)
                for (int kr = 0; kr < 3; ++kr)
                    for (int kc = 0; kc < 3; ++kc)
                        g[kr][kc][l] = flipped ? w[((i0 + l) * K + o) * 9 + (2 - kr) * 3 + 2 - kc]
                                               : w[((o * C + i0 + l) * 3 + kr) * 3 + kc];
            V cols[3][a];  // G · column kc of g
            for (int kc = 0; kc < 3; ++kc) {
                V in[3] = {load<V>(g[0][kc]), load<V>(g[1][kc]), load<V>(g[2][kc])};
                mat_apply<T, Winograd<m>::G>(in, cols[kc]);
            }
            for (int xi = 0; xi < a; ++xi) {
                V in[3] = {cols[0][xi], cols[1][xi], cols[2][xi]}, out[a];
                mat_apply<T, Winograd<m>::G>(in, out);
                for (int eta = 0; eta < a; ++eta) store(u[xi * a + eta][r], out[eta]);
            }
        }
        const long pc = i0 / KC * KC, kc = std::min(KC, C - pc);
        for (int k = 0; k < a * a; ++k) {
            T* dst = Ap + k * ap + pc * Kpad + o0 * kc + (i0 - pc) * MR;
            for (long p = 0; p < n; ++p)
#pragma GCC unroll 16
                for (int r = 0; r < MR; ++r) dst[p * MR + r] = u[k][r][p];
        }
    }
}

}  // namespace

// y (N, K, H_out, W_out) = w ⋆ x + b, w (K, C, 3, 3) — or, `flipped`, w (C, K, 3, 3) read rotated and
// transposed. Each task is one chunk of tile rows taken from input to output by one thread, on its own
// buffers: no barrier between the passes, so one descheduled thread on a loaded machine holds up only
// its own chunks. Chunks hold at least a few GEMM column slivers and at most a share of the tile rows.
template <typename T, int m>
static void winograd_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    constexpr int a = m + 2, L = Vec<T>::lanes, NR = GemmBlock<T>::NR;
    const long K = s.C_out, C = s.C_in;
    Tiling tl(s, m, K + C, a, sizeof(T), kChunkBytes);
    tl.rows = std::min(std::max(tl.rows, ceil_div(4 * NR, tl.tw)), ceil_div(tl.rows_total, get_num_threads()));
    const long ap = packed_a_size<T>(K, C), pc = tl.rows * tl.tw, chunks = ceil_div(tl.rows_total, tl.rows);
    Buffer<T> Ap(a * a * ap);
    transform_weights<T, m>(w, K, C, flipped, Ap.data(), ap);
    const int nt = threads_for(chunks, s.flops() / 4);
    const long vsize = a * a * C * pc, msize = a * a * K * pc + L, bsize = packed_b_size<T>(C, pc);
    PerThread<T> work(nt, vsize + msize + bsize + transform_scratch<T, m>(pc, tl.tw));
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long chunk = 0; chunk < chunks; ++chunk) {
        T *V = work.get(), *M = V + vsize, *Bp = M + msize, *buf = Bp + bsize;
        const long row0 = chunk * tl.rows;
        const TileRows tr{row0, std::min(tl.rows, tl.rows_total - row0), tl.th, tl.tw};
        std::fill(M + msize - L, M + msize, T(0));  // read past by the last vector of the inverse
        for (long c = 0; c < C; ++c)
            transform_tiles<T, Winograd<m>::BT, m>(x + c * s.HW(), C * s.HW(), s.H, s.W, s.ph, s.pw, tr, V + c * pc,
                                                   C * pc, buf);
        for (int k = 0; k < a * a; ++k)
            gemm_packed(K, tr.tiles(), C, Ap.data() + k * ap, StridedB<T>{V + k * C * pc, pc, 1}, Bp, M + k * K * pc,
                        pc, false);
        for (long o = 0; o < K; ++o)
            inverse_tiles<T, m>(M + o * pc, K * pc, tr, b ? b[o] : T(0), y + o * s.HW_out(), K * s.HW_out(), s.H_out,
                                s.W_out, buf);
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
    const Tiling tl(s, m, K + C, a, sizeof(T), kSharedChunkBytes);
    const long pc = tl.rows * tl.tw;
    Buffer<T> V(a * a * C * pc), Y(a * a * K * pc), Z(a * a * K * C);
    const int gt = threads_for(a * a, 2.0 * K * C * pc * a * a);
    const long ap = packed_a_size<T>(K, pc), bsize = packed_b_size<T>(pc, C);
    PerThread<T> work(gt, ap + bsize);
    PerThread<T> buf(threads_for(K + C), transform_scratch<T, m>(pc, tl.tw));
    for (long row0 = 0; row0 < tl.rows_total; row0 += tl.rows) {
        const TileRows tr{row0, std::min(tl.rows, tl.rows_total - row0), tl.th, tl.tw};
        const long P = tr.tiles();
#pragma omp parallel for schedule(dynamic) num_threads(threads_for(K + C, 400.0 * (K + C) * P))
        for (long c = 0; c < K + C; ++c) {  // x's channels, then dy's
            if (c < C)
                transform_tiles<T, Winograd<m>::BT, m>(x + c * s.HW(), C * s.HW(), s.H, s.W, s.ph, s.pw, tr,
                                                       V.data() + c * pc, C * pc, buf.get());
            else
                transform_tiles<T, Winograd<m>::A, m>(dy + (c - C) * s.HW_out(), K * s.HW_out(), s.H_out, s.W_out, 0,
                                                      0, tr, Y.data() + (c - C) * pc, K * pc, buf.get());
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
