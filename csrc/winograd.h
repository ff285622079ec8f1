// winograd.h — Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016): transform matrices,
// the vectorised tile transforms, and the dense 3x3 stride-1 kernels built on them (winograd.cpp).
//
// A 3x3 correlation over an output tile of m x m is  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)] A  on the
// (m+2) x (m+2) input patch d: (m+2)² multiplies instead of 9 m². Summed over input channels, each of
// the (m+2)² transform points ξ is one GEMM  M[ξ] (C_out x tiles) = U[ξ] (C_out x C_in) · V[ξ] (C_in x tiles).
// The weight gradient is the same bilinear form differentiated in g:  dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ V] G.
//
// Tiles are vectorised along a row of tiles: the input row is first split into its m column phases
// (element m·t + q goes to phase q at t), after which the columns of every tile of the row sit at
// one offset of a phase array, and a vector of L consecutive tiles is one plain load.
#pragma once

#include <cstring>
#include <utility>

#include "conv2d.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {

template <int R, int C>
struct Mat {
    static constexpr int rows = R, cols = C;
    double v[R][C];
};

template <int R, int C>
constexpr Mat<C, R> transposed(const Mat<R, C>& a) {
    Mat<C, R> t{};
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < C; ++j) t.v[j][i] = a.v[i][j];
    return t;
}

// F(m, 3) with interpolation points 0, ±1, ±2 (m = 4) or 0, ±1 (m = 2), and ∞; alpha = m + 2.
template <int m> struct Winograd;
template <> struct Winograd<2> {
    static constexpr Mat<4, 4> BT{{{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}}};
    static constexpr Mat<4, 3> G{{{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}};
    static constexpr Mat<2, 4> AT{{{1, 1, 1, 0}, {0, 1, -1, -1}}};
    static constexpr Mat<4, 2> A = transposed(AT);
};
template <> struct Winograd<4> {
    static constexpr Mat<6, 6> BT{{{4, 0, -5, 0, 1, 0},
                                   {0, -4, -4, 1, 1, 0},
                                   {0, 4, -4, -1, 1, 0},
                                   {0, -2, -1, 2, 1, 0},
                                   {0, 2, -1, -2, 1, 0},
                                   {0, 4, 0, -5, 0, 1}}};
    static constexpr Mat<6, 3> G{{{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}}};
    static constexpr Mat<4, 6> AT{{{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}}};
    static constexpr Mat<6, 4> A = transposed(AT);
};

// acc + M[i][j]·x, with the zero and ±1 coefficients resolved at compile time (most of Bᵀ and Aᵀ).
template <typename T, const auto& M, int i, int j>
inline typename Vec<T>::type term(typename Vec<T>::type acc, typename Vec<T>::type x) {
    constexpr double c = M.v[i][j];
    if constexpr (c == 0) return acc;
    else if constexpr (c == 1) return acc + x;
    else if constexpr (c == -1) return acc - x;
    else return acc + broadcast<typename Vec<T>::type>(T(c)) * x;
}

template <typename T, const auto& M, int i, size_t... j>
inline typename Vec<T>::type mat_row(const typename Vec<T>::type* in, std::index_sequence<j...>) {
    typename Vec<T>::type acc{};
    ((acc = term<T, M, i, (int)j>(acc, in[j])), ...);
    return acc;
}

// out[i] = Σ_j M[i][j] · in[j], lane by lane.
template <typename T, const auto& M, size_t... i>
inline void mat_apply(const typename Vec<T>::type* in, typename Vec<T>::type* out, std::index_sequence<i...>) {
    ((out[i] = mat_row<T, M, (int)i>(in, std::make_index_sequence<M.cols>{})), ...);
}
template <typename T, const auto& M>
inline void mat_apply(const typename Vec<T>::type* in, typename Vec<T>::type* out) {
    mat_apply<T, M>(in, out, std::make_index_sequence<M.rows>{});
}

// Length of one phase array of a row of tw tiles: vector loads at offsets 0 and 1 of any tile stay inside.
template <typename T>
inline long phase_len(long tw) { return round_up(tw, Vec<T>::lanes) + Vec<T>::lanes; }

// Scratch of the transforms of one row of tw tiles (elements).
template <typename T, int m>
inline long transform_scratch(long tw) { return (m + 2) * m * phase_len<T>(tw); }

// One row of tiles of one plane into the transform domain: for tiles t < tw,
//   out[(ξ·R + η)·ld + t] = (M · d_t · Mᵀ)[ξ][η],   R = M.rows,
// d_t the M.cols x M.cols patch at rows r0.., columns m·t − c0.. of the H x W plane (zero outside it).
// Input transform: M = Bᵀ (patch m+2); the weight gradient's dy transform: M = A (patch m).
template <typename T, const auto& M, int m>
void transform_tile_row(const T* plane, long H, long W, long r0, long c0, long tw, T* out, long ld, T* buf) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, R = M.rows, Cn = M.cols;
    const long len = phase_len<T>(tw);
    for (int r = 0; r < Cn; ++r) {  // split the patch rows into column phases, zero-padded
        const long h = r0 + r;
        for (int q = 0; q < m; ++q) {
            T* ph = buf + (r * m + q) * len;
            if (h < 0 || h >= H) {
                std::fill(ph, ph + len, T(0));
                continue;
            }
            const T* row = plane + h * W;
            for (long t = 0; t < len; ++t) {
                const long col = m * t + q - c0;
                ph[t] = col >= 0 && col < W ? row[col] : T(0);
            }
        }
    }
    for (long t0 = 0; t0 < tw; t0 += L) {
        V rows[Cn][R];  // each patch row transformed along its columns
        for (int r = 0; r < Cn; ++r) {
            V in[Cn];
#pragma GCC unroll 8
            for (int c = 0; c < Cn; ++c) in[c] = load<V>(buf + (r * m + c % m) * len + t0 + c / m);
            mat_apply<T, M>(in, rows[r]);
        }
        const long n = std::min<long>(L, tw - t0);
        for (int eta = 0; eta < R; ++eta) {
            V in[Cn], o[R];
#pragma GCC unroll 8
            for (int r = 0; r < Cn; ++r) in[r] = rows[r][eta];
            mat_apply<T, M>(in, o);
            for (int xi = 0; xi < R; ++xi) {
                T* dst = out + (xi * R + eta) * ld + t0;
                if (n == L) store(dst, o[xi]);
                else std::memcpy(dst, &o[xi], n * sizeof(T));
            }
        }
    }
}

// The inverse: for tiles t < tw of one row of tiles, o_t = Aᵀ · S_t · A with S_t[ξ][η] = src[(ξ·a + η)·stride + t]
// (read up to a vector past tw), written to rows r0.. r0+m−1 of the H x W plane (those inside it), plus bias.
template <typename T, int m>
void inverse_tile_row(const T* src, long stride, long tw, T bias, T* plane, long H, long W, long r0, T* buf) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, a = m + 2;
    const long len = phase_len<T>(tw);
    for (long t0 = 0; t0 < tw; t0 += L) {
        V cols[a][m];  // each column η of S transformed along ξ
        for (int eta = 0; eta < a; ++eta) {
            V in[a];
#pragma GCC unroll 8
            for (int xi = 0; xi < a; ++xi) in[xi] = load<V>(src + (xi * a + eta) * stride + t0);
            mat_apply<T, Winograd<m>::AT>(in, cols[eta]);
        }
        for (int i = 0; i < m; ++i) {
            V in[a], o[m];
#pragma GCC unroll 8
            for (int eta = 0; eta < a; ++eta) in[eta] = cols[eta][i];
            mat_apply<T, Winograd<m>::AT>(in, o);
            for (int j = 0; j < m; ++j) store(buf + (i * m + j) * len + t0, o[j]);
        }
    }
    for (int i = 0; i < m && r0 + i < H; ++i) {  // interleave the phases back into output rows
        T* row = plane + (r0 + i) * W;
        const T* ph = buf + i * m * len;
        for (long col = 0; col < W; ++col) row[col] = ph[(col % m) * len + col / m] + bias;
    }
}

// The kernels (winograd.cpp), for the problems winograd_why_not accepts. m = 2 or 4.
const char* winograd_why_not(const ConvShape& s);
const char* winograd_input_grad_why_not(const ConvShape& s);
template <typename T, int m>
void conv2d_winograd(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T, int m>
void conv2d_input_grad_winograd(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T, int m>
void conv2d_weight_grad_winograd(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
