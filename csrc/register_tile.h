// register_tile.h — the register tile of every GEMM-shaped kernel: MR x NV vector accumulators updated
// by rank-1 steps over kc positions,
//   acc[i][j] = Σ_{p < kc} a(p, i) ⊙ b(p, j)
// The packed GEMM, the implicit-GEMM forward and weight gradient and the unshared scatter differ only in
// where a(p, i) and b(p, j) come from (packed slivers, weights of one or several lanes, the input copy read
// at im2col offsets, im2col rows read in place) — the loaders they pass — and in where the tile goes:
// stored, added, or scattered through row pointers or output segments, with add_vector / add_lanes.
#pragma once

#include "simd.h"

namespace fastconv {

// acc = Σ_p a(p, i) ⊙ b(p, j). Each step loads the NV vectors b(p, ·) once and each a(p, i) once, so the
// tile stays in MR*NV + NV + 1 registers; the loaders are inlined lambdas.
template <typename V, int MR, int NV, class LoadA, class LoadB>
inline void tile_product(long kc, LoadA a, LoadB b, V (&acc)[MR][NV]) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[i][j] = V{};
    for (long p = 0; p < kc; ++p) {
        V bv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) bv[j] = b(p, j);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            const V ai = a(p, i);
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
        }
    }
}

// c[0..L) = v, or += v.
template <typename T, typename V>
inline void add_vector(T* c, V v, bool accumulate) {
    store(c, accumulate ? load<V>(c) + v : v);
}

// c[0..n) = lanes [lane, lane + n) of v, or += them: an edge of the output, through a buffer so that
// nothing past c[n) is touched.
template <typename T, typename V>
inline void add_lanes(T* c, V v, long lane, long n, bool accumulate) {
    alignas(64) T tmp[sizeof(V) / sizeof(T)];
    store(tmp, v);
    for (long l = 0; l < n; ++l) c[l] = (accumulate ? c[l] : T(0)) + tmp[lane + l];
}

// c[0..n) (+)= the first n lanes of one tile row of NV vectors (whole vectors wherever n covers them).
template <typename T, typename V, int NV>
inline void add_row(T* c, const V (&row)[NV], long n, bool accumulate) {
    constexpr long L = sizeof(V) / sizeof(T);
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
        if (n >= (j + 1) * L) add_vector(c + j * L, row[j], accumulate);
        else if (n > j * L) add_lanes(c + j * L, row[j], 0, n - j * L, accumulate);
    }
}

// f(i, acc[i]) for the rows i < mr, by compile-time index (the test inside): a runtime-bounded loop
// would index acc dynamically and so keep the whole tile in memory.
template <typename V, int MR, int NV, class F>
inline void for_rows(const V (&acc)[MR][NV], long mr, F f) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        f(i, acc[i]);
    }
}

}  // namespace fastconv
