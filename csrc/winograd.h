// winograd.h — Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016): transform matrices,
// the vectorised tile transforms, and the dense 3x3 stride-1 kernels built on them (winograd.cpp).
//
// A 3x3 correlation over an output tile of m x m is  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)] A  on the
// (m+2) x (m+2) input patch d: (m+2)² multiplies instead of 9 m². Summed over input channels, each of
// the (m+2)² transform points ξ is one GEMM  M[ξ] (C_out x tiles) = U[ξ] (C_out x C_in) · V[ξ] (C_in x tiles).
// The weight gradient is the same bilinear form differentiated in g:  dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ V] G.
//
// The transforms are vectorised over tiles: L consecutive tiles of a chunk (across tile rows and
// images) at a time, so that small planes fill the vectors as well as large ones.
#pragma once

#include <algorithm>
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

// A chunk of the tile grid: tile rows row0 .. row0 + rows − 1, th rows of tw tiles per image, less the
// first `first` tiles of its first row and the last `cut` of its last (so that a chunk can hold a whole
// number of GEMM column slivers), numbered t = (row − row0)·tw + column − first; the transforms run along
// t, so vectors span tile rows and images alike.
struct TileRows {
    long row0, rows, th, tw, first = 0, cut = 0;
    long tiles() const { return rows * tw - first - cut; }
    long image(long rr) const { return (row0 + rr) / th; }
    long tile_row(long rr) const { return (row0 + rr) % th; }
    // The columns of row rr in the chunk, [col_begin, col_end), and the t of its column 0.
    long col_begin(long rr) const { return rr == 0 ? first : 0; }
    long col_end(long rr) const { return rr == rows - 1 ? tw - cut : tw; }
    long t_of(long rr) const { return rr * tw - first; }
};

// Where a tile grid lies in a plane: its row h is the plane's row h·step_h + off_h, its column w the
// plane's column w·step_w + off_w. Steps of 1 and offsets of −padding for plain layers; a dilated layer
// runs as d_h·d_w undilated ones, one per stride phase (sub-image) of its input and output.
struct PlaneMap {
    long step_h, step_w, off_h, off_w;
};

// Scratch of the transforms of a chunk of P tiles (elements): transform_tiles' copied rows, or
// inverse_tiles' outputs and the vector it reads past them.
template <typename T, int m>
inline long transform_scratch(long P) {
    return std::max(2 * (m + 2) * m * round_up(P, Vec<T>::lanes), m * m * round_up(P, Vec<T>::lanes) + Vec<T>::lanes);
}

// dst[j - j0] := column j of a grid whose column j is the plane row's column off + j·step (zero outside
// [0, W)), for j0 <= j < j1; src: the plane row, or nullptr (a row outside the plane: zeros). By step 2,
// whole vectors of the even elements of pairs inside the row (or the odd ones of the pairs one element
// back).
template <typename T>
inline void grid_row(const T* src, long W, long off, long step, long j0, long j1, T* dst) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    const long lo = src ? std::clamp(ceil_div(std::max(0L, -off), step), j0, j1) : j1;
    const long hi = src ? std::clamp(W - off > 0 ? ceil_div(W - off, step) : 0L, lo, j1) : j1;
    std::fill(dst, dst + (lo - j0), T(0));
    std::fill(dst + (hi - j0), dst + (j1 - j0), T(0));
    if (!src) return;
    long j = lo;
    if (step == 1)  // in vectors, not memcpy: the rows are a few vectors long, and a call costs more
        for (; j + L <= hi; j += L) store(dst + (j - j0), load<V>(src + off + j));
    for (V pair[2]; step == 2 && j + L <= hi; j += L) {
        const long col = off + 2 * j;
        if (col + 2 * L <= W) {
            load_strided<T, 2>(src + col, pair);
            store(dst + (j - j0), pair[0]);
        } else if (col >= 1) {
            load_strided<T, 2>(src + col - 1, pair);
            store(dst + (j - j0), pair[1]);
        } else {
            break;
        }
    }
    for (; j < hi; ++j) dst[j - j0] = src[off + j * step];
}

// The tiles of one channel into the transform domain: for tiles t of the chunk,
//   out[(ξ·R + η)·ld + t] = (M · d_t · Mᵀ)[ξ][η],   R = M.rows,
// d_t the M.cols x M.cols patch at grid rows m·(tile row).., columns m·(tile column).. of the H x W plane
// of its image (x + image·image_stride) placed by pm (zero outside the plane).
// Input transform: M = Bᵀ (patch m+2); the weight gradient's dy transform: M = A (patch m).
// Patch row r of every tile of the chunk is first copied into one row, cat[r][m·t + j] = the patch's
// column j < m, and (patches of m+2 columns) its columns m.. into a second, from one tile on: a vector of
// tiles' patch column c is then the elements m·t + c (c < m) of one or the other, deinterleaved by
// shuffles (load_strided) whether the vector spans one tile row or several.
template <typename T, const auto& M, int m>
void transform_tiles(const T* x, long image_stride, long H, long W, const PlaneMap& pm, const TileRows& tr, T* out,
                     long ld, T* buf) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, R = M.rows, Cn = M.cols, rows_per_patch = Cn > m ? 2 : 1;
    static_assert(Cn <= 2 * m, "a patch spans at most two tiles' columns");
    const long P = tr.tiles(), Pv = round_up(P, L), len = m * Pv;  // elements of one copied row
    T* const cat = buf;  // cat[(r·rows_per_patch + half)·len + m·t + j]
    for (long rr = 0; rr < tr.rows; ++rr) {
        const T* plane = x + tr.image(rr) * image_stride;
        const long cb = tr.col_begin(rr), ce = tr.col_end(rr), at = m * (tr.t_of(rr) + cb);
        for (int r = 0; r < Cn; ++r) {
            const long h = (tr.tile_row(rr) * m + r) * pm.step_h + pm.off_h;
            const T* src = h >= 0 && h < H ? plane + h * W : nullptr;
            for (int half = 0; half < rows_per_patch; ++half)
                grid_row(src, W, pm.off_w, pm.step_w, m * (cb + half), m * (ce + half),
                         cat + (r * rows_per_patch + half) * len + at);
        }
    }
    for (int k = 0; k < Cn * rows_per_patch; ++k) std::fill(cat + k * len + m * P, cat + (k + 1) * len, T(0));
    for (long t0 = 0; t0 < P; t0 += L) {
        V rows[Cn][R];  // each patch row transformed along its columns
        for (int r = 0; r < Cn; ++r) {
            V in[2 * m];
            load_strided<T, m>(cat + r * rows_per_patch * len + m * t0, in);
            if constexpr (Cn > m) load_strided<T, m>(cat + (r * rows_per_patch + 1) * len + m * t0, in + m);
            mat_apply<T, M>(in, rows[r]);
        }
        const long n = std::min<long>(L, P - t0);
        for (int eta = 0; eta < R; ++eta) {
            V in[Cn], o[R];
#pragma GCC unroll 8
            for (int r = 0; r < Cn; ++r) in[r] = rows[r][eta];
            mat_apply<T, M>(in, o);
            for (int xi = 0; xi < R; ++xi) {
                T* dst = out + (xi * R + eta) * ld + t0;
                if (n == L) store(dst, o[xi]);
                else store_first<T>(dst, o[xi], n);
            }
        }
    }
}

// The inverse, for one output channel: o_t = Aᵀ · S_t · A with S_t[ξ][η] = src[(ξ·a + η)·stride + t] (read up
// to a vector past the chunk's tiles), plus bias, written to the outputs of tile t inside the Hg x Wg grid,
// placed by pm in the plane (of width W) of its image (y + image·image_stride).
template <typename T, int m>
void inverse_tiles(const T* src, long stride, const TileRows& tr, T bias, T* y, long image_stride, long Hg, long Wg,
                   long W, const PlaneMap& pm, T* buf) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, a = m + 2;
    const long P = tr.tiles(), Pv = round_up(P, L);
    for (long t0 = 0; t0 < P; t0 += L) {
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
            for (int j = 0; j < m; ++j) store(buf + (i * m + j) * Pv + t0, o[j]);
        }
    }
    for (long rr = 0; rr < tr.rows; ++rr) {  // interleave the phases back into output rows
        const long r0 = tr.tile_row(rr) * m;
        for (int i = 0; i < m && r0 + i < Hg; ++i) {
            T* row = y + tr.image(rr) * image_stride + ((r0 + i) * pm.step_h + pm.off_h) * W + pm.off_w;
            const T* ph = buf + i * m * Pv + tr.t_of(rr);
            const long ue = tr.col_end(rr);
            long u = tr.col_begin(rr);
            if (pm.step_w <= 2)  // up to a vector of the tiles whose m columns lie inside the grid
                for (V s[m]; u < ue && m * u + m <= Wg;) {
                    const long n = std::min<long>({L, ue - u, Wg / m - u});
                    for (int j = 0; j < m; ++j) s[j] = load<V>(ph + j * Pv + u) + broadcast<V>(bias);
                    if (pm.step_w == 1) {
                        store_interleaved<T, m>(row + m * u, s, n);
                    } else {  // a dilated layer's phase: every second column, spread from their sequence
                        alignas(64) T seq[m * L];
                        store_interleaved<T, m>(seq, s, n);
                        for (long k = 0; k < m * n; k += L)
                            store_every_other<T>(row + 2 * (m * u + k), load<V>(seq + k), std::min<long>(L, m * n - k));
                    }
                    u += n;
                }
            for (; u < ue && m * u < Wg; ++u)
                for (int j = 0; j < m && m * u + j < Wg; ++j) row[(m * u + j) * pm.step_w] = ph[j * Pv + u] + bias;
        }
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
