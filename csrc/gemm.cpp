// gemm.cpp — packing routines, the register-blocked micro-kernel and the macro-kernel behind gemm.h.
#include "gemm.h"

#include <cstring>

namespace fastconv {

// Ap: KC-block-major, MR-row slivers (layout in gemm.h). Rows past M are zero so the micro-kernel
// can always compute a full MR-row tile.
// Row-contiguous A (csA == 1) with whole slivers per vector (lanes % MR == 0): L rows x L columns at
// a time through a register transpose, whose column t holds the L/MR slivers' row p0 + t.
template <typename T>
static void pack_a_rows(long M, long K, const T* A, long rsA, T* Ap, long kcb) {
    using V = typename Vec<T>::type;
    constexpr int MR = GemmBlock<T>::MR, L = Vec<T>::lanes;
    const long Mpad = round_up(M, MR);
    for (long pc = 0; pc < K; pc += kcb) {
        const long kc = std::min(kcb, K - pc);
        for (long i0 = 0; i0 < Mpad; i0 += L) {
            for (long p0 = 0; p0 < kc; p0 += L) {
                const long w = std::min<long>(L, kc - p0);
                V v[L];
                load_block<T>(A + i0 * rsA + pc + p0, rsA, M - i0, w, v);
                transpose<T>(v);
                for (int q = 0; q < L / MR && i0 + q * MR < Mpad; ++q) {
                    T* dst = Ap + pc * Mpad + (i0 + q * MR) * kc + p0 * MR;
                    for (long t = 0; t < w; ++t) std::memcpy(dst + t * MR, (const T*)&v[t] + q * MR, MR * sizeof(T));
                }
            }
        }
    }
}

template <typename T>
void pack_a(long M, long K, const T* A, long rsA, long csA, T* Ap, long kcb) {
    constexpr int MR = GemmBlock<T>::MR;
    if (csA == 1 && Vec<T>::lanes % MR == 0) return pack_a_rows(M, K, A, rsA, Ap, kcb);
    const long Mpad = round_up(M, MR);
    for (long pc = 0; pc < K; pc += kcb) {
        long kc = std::min(kcb, K - pc);
        for (long i0 = 0; i0 < Mpad; i0 += MR) {
            T* dst = Ap + pc * Mpad + i0 * kc;
            long mr = std::min<long>(MR, M - i0);
            if (rsA == 1) {  // a transposed row-major matrix: each sliver row is mr contiguous elements
                for (long p = 0; p < kc; ++p) {
                    if (mr == MR) {  // a fixed-size copy compiles to one vector move
                        std::memcpy(dst + p * MR, A + i0 + (pc + p) * csA, MR * sizeof(T));
                        continue;
                    }
                    std::memcpy(dst + p * MR, A + i0 + (pc + p) * csA, mr * sizeof(T));
                    std::fill(dst + p * MR + mr, dst + (p + 1) * MR, T(0));
                }
                continue;
            }
            for (long i = 0; i < MR; ++i) {
                if (i >= mr) {
                    for (long p = 0; p < kc; ++p) dst[p * MR + i] = T(0);
                    continue;
                }
                const T* src = A + (i0 + i) * rsA + pc * csA;
                for (long p = 0; p < kc; ++p) dst[p * MR + i] = src[p * csA];
            }
        }
    }
}

// Bp: NR-column slivers. Row-contiguous B (csB == 1, the common case) copies NR elements at a time.
template <typename T>
void pack_b(long kc, long nc, const T* B, long rsB, long csB, T* Bp) {
    constexpr int NR = GemmBlock<T>::NR;
    for (long j0 = 0; j0 < nc; j0 += NR) {
        T* dst = Bp + j0 * kc;
        long nr = std::min<long>(NR, nc - j0);
        for (long p = 0; p < kc; ++p) {
            const T* src = B + p * rsB + j0 * csB;
            T* d = dst + p * NR;
            if (csB == 1 && nr == NR) {
                std::memcpy(d, src, NR * sizeof(T));  // fixed size: one vector move, no call
                continue;
            } else if (csB == 1) {
                std::memcpy(d, src, nr * sizeof(T));
            } else {
                for (long j = 0; j < nr; ++j) d[j] = src[j * csB];
            }
            for (long j = nr; j < NR; ++j) d[j] = T(0);
        }
    }
}

// The MR x NR tile of C = a-sliver · b-sliver over kc steps, kept in MR*NV vector registers.
// Full tiles are stored straight into C; edge tiles go through a small buffer so nothing past
// the mr x nr corner is ever touched.
template <typename T>
static inline void micro_kernel(long kc, const T* __restrict a, const T* __restrict b, T* c, long ldc,
                                bool accumulate, long mr, long nr) {
    using V = typename Vec<T>::type;
    constexpr int MR = GemmBlock<T>::MR, NV = GemmBlock<T>::NV, NR = GemmBlock<T>::NR, L = GemmBlock<T>::lanes;
    V acc[MR][NV];
    tile_product(kc, a, b, acc);
    if (mr == MR && nr == NR) {
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) {
                T* cij = c + i * ldc + j * L;
                store(cij, accumulate ? load<V>(cij) + acc[i][j] : acc[i][j]);
            }
        return;
    }
    alignas(64) T tmp[MR * NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NV; ++j) store(tmp + i * NR + j * L, acc[i][j]);
    for (long i = 0; i < mr; ++i)
        for (long j = 0; j < nr; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : T(0)) + tmp[i * NR + j];
}

template <typename T>
void macro_kernel(long M, long nc, long kc, const T* Ap, const T* Bp, T* C, long ldc, bool accumulate) {
    constexpr int MR = GemmBlock<T>::MR, NR = GemmBlock<T>::NR;
    for (long ic = 0; ic < M; ic += GemmBlock<T>::MC) {
        long mc = std::min(GemmBlock<T>::MC, M - ic);
        for (long j = 0; j < nc; j += NR) {
            const T* b = Bp + j * kc;
            for (long i = ic; i < ic + mc; i += MR) {
                micro_kernel(kc, Ap + i * kc, b, C + i * ldc + j, ldc, accumulate, std::min<long>(MR, M - i),
                             std::min<long>(NR, nc - j));
            }
        }
    }
}

#define FASTCONV_INSTANTIATE(T)                                                                          \
    template void pack_a<T>(long, long, const T*, long, long, T*, long);                                       \
    template void pack_b<T>(long, long, const T*, long, long, T*);                                       \
    template void macro_kernel<T>(long, long, long, const T*, const T*, T*, long, bool);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
