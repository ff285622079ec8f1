// gemm.h — a packed, cache-blocked GEMM (BLIS-style) that the convolutions are built on.
//
// C[M,N] (+)= A[M,K] · B[K,N], C row-major with leading dimension ldc. A and B are never read in
// place: they are first copied ("packed") into the order the micro-kernel streams them, which is
// also where transposes and im2col happen — a packer only has to produce the layout below, so the
// conv kernels pass their own B packers and no im2col matrix is ever materialised.
//
// Packed A (pack_a): for each KC block of K (block start pc), round_up(M, MR) rows as M/MR slivers;
//   sliver r of block pc starts at Ap + pc*round_up(M,MR) + r*kc*MR and holds A[r*MR+i, pc+p] at
//   [p*MR + i] (rows past M are zero).
// Packed B (one KC x NC block): slivers of NR columns; sliver s starts at Bp + s*kc*NR and holds
//   B[pc+p, jc+s*NR+j] at [p*NR + j] (columns past N are zero).
//
// The driver is serial: the conv kernels parallelise over their own tasks (batch, group, column
// block), each task running a whole small GEMM on private packing buffers.
#pragma once

#include <algorithm>

#include "parallel.h"
#include "simd.h"

namespace fastconv {

#if !defined(FASTCONV_MR)
#if defined(__AVX512F__)
#define FASTCONV_MR 8
#define FASTCONV_NV 2
#else
#define FASTCONV_MR 6
#define FASTCONV_NV 2
#endif
#endif

// Register blocking: an MR x NR tile of C lives in MR*NV vector registers during the K loop
// (AVX-512: 16 of 32 zmm; AVX2/SSE: 12 of 16), leaving room for the NV B vectors and an A broadcast.
// Cache blocking: a KC x NR B sliver stays in L1 across all A slivers, an MC x KC A block in L2;
// NC = FASTCONV_NCR * NR columns per packed B block. Overridable for tuning runs (-DFASTCONV_KC=...).
#if !defined(FASTCONV_KC)
#define FASTCONV_KC 256
#define FASTCONV_MC 128
#define FASTCONV_NCR 16
#endif

template <typename T>
struct GemmBlock {
    static constexpr int lanes = Vec<T>::lanes;
    static constexpr int MR = FASTCONV_MR;
    static constexpr int NV = FASTCONV_NV;
    static constexpr int NR = NV * lanes;
    static constexpr long KC = FASTCONV_KC;
    static constexpr long MC = (FASTCONV_MC + MR - 1) / MR * MR;  // a multiple of MR
    static constexpr long NC = FASTCONV_NCR * NR;
};

// Elements pack_a writes for an M x K matrix; elements one packed B block needs.
template <typename T> inline long packed_a_size(long M, long K) { return round_up(M, GemmBlock<T>::MR) * K; }
template <typename T> inline long packed_b_size() { return GemmBlock<T>::KC * GemmBlock<T>::NC; }
// ... and for a B of only K x N: small calls then allocate (and fault in) kilobytes, not half a megabyte.
template <typename T> inline long packed_b_size(long K, long N) {
    return std::min(GemmBlock<T>::KC, K) * round_up(std::min(GemmBlock<T>::NC, N), GemmBlock<T>::NR);
}

// acc = the MR x NR tile a-sliver · b-sliver over kc steps (packed as above), in MR*NV vector registers:
// the arithmetic of the micro-kernel, shared with kernels that store their tiles their own way.
template <typename T>
inline void tile_product(long kc, const T* __restrict a, const T* __restrict b,
                         typename Vec<T>::type (&acc)[GemmBlock<T>::MR][GemmBlock<T>::NV]) {
    using V = typename Vec<T>::type;
    constexpr int MR = GemmBlock<T>::MR, NV = GemmBlock<T>::NV, NR = GemmBlock<T>::NR, L = GemmBlock<T>::lanes;
    zero_tile(acc);
    for (long p = 0; p < kc; ++p) {
        V bv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) bv[j] = load<V>(b + j * L);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            const V ai = broadcast<V>(a[i]);
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
        }
        a += MR;
        b += NR;
    }
}

// A[i,k] = A[i*rsA + k*csA] (rsA=K, csA=1: row-major; rsA=1, csA=M: the transpose of a row-major matrix).
// K blocks of kcb columns (the implicit-GEMM kernels choose their own depth).
template <typename T>
void pack_a(long M, long K, const T* A, long rsA, long csA, T* Ap, long kcb = GemmBlock<T>::KC);

// One matrix for pack_a_blocks: A[i,k] = A[i*rsA + k*csA], i < M, k < K, packed into Ap.
template <typename T>
struct PackA {
    long M, K;
    const T* A;
    long rsA, csA;
    T* Ap;
};

// pack_a of `count` matrices, matrix(i) giving the i-th, with every (matrix, KC block) a task (each block
// of the packed layout is pack_a of that slice of A's columns): weights packed once before a parallel
// GEMM, which would otherwise wait for one thread to copy them (megabytes, for the 1x1 layers of a CNN's
// last stages). `values`: how many values all of them hold, for the thread count.
template <typename T, typename Matrix>
void pack_a_blocks(long count, long K, double values, const Matrix& matrix) {
    const long KC = GemmBlock<T>::KC, nb = ceil_div(K, KC);
#pragma omp parallel for schedule(static) num_threads(threads_for(count * nb, moved_work(values)))
    for (long t = 0; t < count * nb; ++t) {
        const PackA<T> a = matrix(t / nb);
        const long pc = t % nb * KC;
        const long Mpad = round_up(a.M, GemmBlock<T>::MR);
        pack_a(a.M, std::min(KC, a.K - pc), a.A + pc * a.csA, a.rsA, a.csA, a.Ap + pc * Mpad);
    }
}

template <typename T>
void pack_a_blocks(long M, long K, const T* A, long rsA, long csA, T* Ap) {
    pack_a_blocks<T>(1, K, (double)M * K, [&](long) { return PackA<T>{M, K, A, rsA, csA, Ap}; });
}

// One KC x NC block of a strided B: B[p,j] = B[p*rsB + j*csB], p < kc, j < nc.
template <typename T>
void pack_b(long kc, long nc, const T* B, long rsB, long csB, T* Bp);

// C[0:M, 0:nc] (+)= Ap-block · Bp-block for one KC block (Ap already offset to that block).
template <typename T>
void macro_kernel(long M, long nc, long kc, const T* Ap, const T* Bp, T* C, long ldc, bool accumulate);

// One kc x nc block of a B given transposed, B[p, j] = Bt[j*ld + p], packed as above into slivers of NR
// columns (a multiple of the vector width: the implicit weight grad also packs one-vector slivers), by
// L x L register transposes.
template <typename T, int NR = GemmBlock<T>::NR>
void pack_b_transposed(long kc, long nc, const T* Bt, long ld, T* Bp) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    static_assert(NR % L == 0, "slivers of whole vectors");
    for (long j0 = 0; j0 < round_up(nc, NR); j0 += L) {
        T* dst = Bp + j0 / NR * kc * NR + j0 % NR;
        for (long p0 = 0; p0 < kc; p0 += L) {
            const long w = std::min<long>(L, kc - p0);
            V v[L];
            load_block<T>(Bt + j0 * ld + p0, ld, nc - j0, w, v);
            transpose<T>(v);
            for (long t = 0; t < w; ++t) store(dst + (p0 + t) * NR, v[t]);
        }
    }
}

// A B packer for an ordinary strided matrix.
template <typename T>
struct StridedB {
    const T* B;
    long rsB, csB;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        pack_b(kc, nc, B + pc * rsB + jc * csB, rsB, csB, Bp);
    }
};

// C (+)= A·B with A pre-packed by pack_a and B produced block by block by pack_b_fn(pc, kc, jc, nc, Bp).
// Bp: scratch of packed_b_size<T>() elements.
template <typename T, typename PackB>
void gemm_packed(long M, long N, long K, const T* Ap, const PackB& pack_b_fn, T* Bp, T* C, long ldc,
                 bool accumulate) {
    const long Mpad = round_up(M, GemmBlock<T>::MR);
    for (long jc = 0; jc < N; jc += GemmBlock<T>::NC) {
        long nc = std::min(GemmBlock<T>::NC, N - jc);
        for (long pc = 0; pc < K; pc += GemmBlock<T>::KC) {
            long kc = std::min(GemmBlock<T>::KC, K - pc);
            pack_b_fn(pc, kc, jc, nc, Bp);
            // After the first K block C holds a partial sum, so later blocks always accumulate.
            macro_kernel(M, nc, kc, Ap + pc * Mpad, Bp, C + jc, ldc, accumulate || pc > 0);
        }
    }
}

}  // namespace fastconv
