// winograd.h — Winograd minimal filtering F(m x m, r x r) (Lavin & Gray 2016): transform matrices,
// the vectorised tile transforms, and the dense r x r stride-1 kernels built on them (winograd.cpp).
//
// An r x r correlation over an output tile of m x m is  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)] A  on the
// a x a input patch d, a = m + r − 1: a² multiplies instead of r² m². Summed over input channels, each of
// the a² transform points ξ is one GEMM  M[ξ] (C_out x tiles) = U[ξ] (C_out x C_in) · V[ξ] (C_in x tiles).
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

// F(m, r) with interpolation points 0, ±1 (a = 4), 0, ±1, ±2 (a = 6) or 0, ±1, ±2, ±1/2 (a = 8), and ∞
// (Toom–Cook: Bᵀ's rows the coefficients of Π(x − p_k) without one point, G's rows p_i^j / Π_k≠i (p_i − p_k)).
template <int m, int r = 3> struct Winograd;
template <> struct Winograd<2, 3> {
    static constexpr Mat<4, 4> BT{{{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}}};
    static constexpr Mat<4, 3> G{{{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}};
    static constexpr Mat<2, 4> AT{{{1, 1, 1, 0}, {0, 1, -1, -1}}};
    static constexpr Mat<4, 2> A = transposed(AT);
};
template <> struct Winograd<4, 3> {
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
template <> struct Winograd<4, 5> {
    static constexpr Mat<8, 8> BT{{{-1, 0, 21.0 / 4, 0, -21.0 / 4, 0, 1, 0},
                                   {0, 1, 1, -17.0 / 4, -17.0 / 4, 1, 1, 0},
                                   {0, -1, 1, 17.0 / 4, -17.0 / 4, -1, 1, 0},
                                   {0, 1.0 / 2, 1.0 / 4, -5.0 / 2, -5.0 / 4, 2, 1, 0},
                                   {0, -1.0 / 2, 1.0 / 4, 5.0 / 2, -5.0 / 4, -2, 1, 0},
                                   {0, 2, 4, -5.0 / 2, -5, 1.0 / 2, 1, 0},
                                   {0, -2, 4, 5.0 / 2, -5, -1.0 / 2, 1, 0},
                                   {0, -1, 0, 21.0 / 4, 0, -21.0 / 4, 0, 1}}};
    static constexpr Mat<8, 5> G{{{-1, 0, 0, 0, 0},
                                  {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
                                  {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
                                  {1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
                                  {1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
                                  {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
                                  {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
                                  {0, 0, 0, 0, 1}}};
    static constexpr Mat<4, 8> AT{{{1, 1, 1, 1, 1, 1, 1, 0},
                                   {0, 1, -1, 2, -2, 1.0 / 2, -1.0 / 2, 0},
                                   {0, 1, 1, 4, 4, 1.0 / 4, 1.0 / 4, 0},
                                   {0, 1, -1, 8, -8, 1.0 / 8, -1.0 / 8, 1}}};
    static constexpr Mat<8, 4> A = transposed(AT);
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

// Scratch of the transforms of a chunk of P tiles (elements; p column phases each): transform_tiles' copied
// rows (two per row of an a x a patch), or inverse_tiles' outputs and the vector it reads past them.
template <typename T, int m, int a, int p = 1>
inline long transform_scratch(long P) {
    return std::max(2 * a * p * m * round_up(P, Vec<T>::lanes), p * m * m * round_up(P, Vec<T>::lanes) + Vec<T>::lanes);
}

// dst[0:n) := zeros, in vectors (the runs are a few elements, and a memset call costs more).
template <typename T>
inline void zero_run(T* dst, long n) {
    using V = typename Vec<T>::type;
    for (long k = 0; k < n; k += Vec<T>::lanes) store_first<T>(dst + k, V{}, std::min<long>(Vec<T>::lanes, n - k));
}

// A grid row's columns in a plane row of W columns: grid column j is the plane's column off + j·step;
// the columns [lo, hi) lie inside the plane (worked out once per plane, not per row: two divisions).
struct GridCols {
    long off, step, lo, hi;
    GridCols(long W, long off_, long step_)
        : off(off_), step(step_), lo(ceil_div(std::max(0L, -off_), step_)),
          hi(std::max(lo, W - off_ > 0 ? ceil_div(W - off_, step_) : 0L)) {}
};

// dst[j - j0] := column j of grid row src (placed by gc; zero outside the plane), for j0 <= j < j1;
// src: the plane row, or nullptr (a row outside the plane: zeros). By step 1 in whole vectors and one
// masked one at the end, since the rows are a few vectors long and element-wise copies of their edges
// cost as much as the transform. (Layers dilated by 2 in columns read their rows by step 1 too, both
// column phases at once; larger column steps, element by element.)
template <typename T>
inline void grid_row(const T* src, const GridCols& gc, long j0, long j1, T* dst) {
    constexpr int L = Vec<T>::lanes;
    const long off = gc.off, step = gc.step;
    const long lo = src ? std::clamp(gc.lo, j0, j1) : j1, hi = src ? std::clamp(gc.hi, lo, j1) : j1;
    zero_run(dst, lo - j0);
    zero_run(dst + (hi - j0), j1 - hi);
    if (step == 1)
        for (long j = lo; j < hi; j += L) {
            const long n = std::min<long>(L, hi - j);
            store_first<T>(dst + (j - j0), load_first<T>(src + off + j, n), n);
        }
    else
        for (long j = lo; j < hi; ++j) dst[j - j0] = src[off + j * step];
}

// s[c] := column c of the vector of tiles whose columns start at q, q + w, ..., w = p·m, in a grid whose
// columns interleave p column phases: phase ph's column c of a tile at element p·c + ph. One phase's
// columns are every p-th element, picked by a shuffle per pair of vectors, then deinterleaved by m.
template <typename T, int m, int p>
inline void load_tile_columns(const T* q, int ph, typename Vec<T>::type* s) {
    using V = typename Vec<T>::type;
    if constexpr (p == 1) {
        load_strided<T, m>(q, s);
    } else {
        static_assert(p == 2, "one or two column phases");
        using I = typename Vec<T>::itype;
        constexpr int L = Vec<T>::lanes;
        I pick;
        for (int l = 0; l < L; ++l) pick[l] = 2 * l + ph;
        V v[m];
        for (int i = 0; i < m; ++i) v[i] = __builtin_shuffle(load<V>(q + 2 * i * L), load<V>(q + (2 * i + 1) * L), pick);
        deinterleave<T, m>(v, s);
    }
}

// The tiles of one channel into the transform domain: for tiles t of the chunk,
//   out[(ξ·R + η)·ld + t] = (M · d_t · Mᵀ)[ξ][η],   R = M.rows,
// d_t the M.cols x M.cols patch at grid rows m·(tile row).., columns m·(tile column).. of the H x W plane
// of its image (x + image·image_stride) placed by pm (zero outside the plane).
// Input transform: M = Bᵀ (patch m + r − 1); the weight gradient's dy transform: M = A (patch m).
// Patch row r of every tile of the chunk is first copied into one row, cat[r][m·t + j] = the patch's
// column j < m, and (patches of up to 2m columns) its columns m.. into a second, from one tile on: a vector of
// tiles' patch column c is then the elements m·t + c (c < m) of one or the other, deinterleaved by
// shuffles (load_strided) whether the vector spans one tile row or several.
// p = 2: the grid holds a layer dilated by 2 in columns, both column phases interleaved as in the plane
// (tiles of w = 2m grid columns, pm's column step 1); the tiles of phase 1 go to out's columns P + t.
// Each plane row is then copied once for both phases, as whole vectors.
// next: where the caller's next plane lies from x (0: none), whose rows are prefetched as these are
// copied: the copies otherwise wait on the outer caches for a third of the transform's time.
template <typename T, const auto& M, int m, int p = 1>
void transform_tiles(const T* x, long image_stride, long H, long W, const PlaneMap& pm, const TileRows& tr, T* out,
                     long ld, T* buf, long next = 0) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, R = M.rows, Cn = M.cols, rows_per_patch = Cn > m ? 2 : 1, w = p * m;
    static_assert(Cn <= 2 * m, "a patch spans at most two tiles' columns");
    const long P = tr.tiles(), Pv = round_up(P, L), len = w * Pv;  // elements of one copied row
    T* const cat = buf;  // cat[(r·rows_per_patch + half)·len + w·t + j]
    const GridCols gc(W, pm.off_w, pm.step_w);
    for (long rr = 0; rr < tr.rows; ++rr) {
        const T* plane = x + tr.image(rr) * image_stride;
        const long cb = tr.col_begin(rr), ce = tr.col_end(rr), at = w * (tr.t_of(rr) + cb);
        for (int r = 0; r < Cn; ++r) {
            const long h = (tr.tile_row(rr) * m + r) * pm.step_h + pm.off_h;
            const T* src = h >= 0 && h < H ? plane + h * W : nullptr;
            for (long k = 0; src && next && k < W; k += 64 / sizeof(T)) __builtin_prefetch(src + next + k);
            for (int half = 0; half < rows_per_patch; ++half)
                grid_row(src, gc, w * (cb + half), w * (ce + half), cat + (r * rows_per_patch + half) * len + at);
        }
    }
    for (int k = 0; k < Cn * rows_per_patch; ++k) zero_run(cat + k * len + w * P, len - w * P);
    for (long t0 = 0; t0 < P; t0 += L)
        for (int ph = 0; ph < p; ++ph) {
            V rows[Cn][R];  // each patch row transformed along its columns
            for (int r = 0; r < Cn; ++r) {
                V in[2 * m];
                load_tile_columns<T, m, p>(cat + r * rows_per_patch * len + w * t0, ph, in);
                if constexpr (Cn > m)
                    load_tile_columns<T, m, p>(cat + (r * rows_per_patch + 1) * len + w * t0, ph, in + m);
                mat_apply<T, M>(in, rows[r]);
            }
            const long n = std::min<long>(L, P - t0);
            for (int eta = 0; eta < R; ++eta) {
                V in[Cn], o[R];
#pragma GCC unroll 8
                for (int r = 0; r < Cn; ++r) in[r] = rows[r][eta];
                mat_apply<T, M>(in, o);
                for (int xi = 0; xi < R; ++xi) store_first<T>(out + (xi * R + eta) * ld + ph * P + t0, o[xi], n);
            }
        }
}

// The inverse, for one output channel: o_t = Aᵀ · S_t · A with S_t[ξ][η] = src[(ξ·a + η)·stride + t] (read up
// to a vector past the chunk's tiles), plus bias, written to the outputs of tile t inside the Hg x Wg grid,
// placed by pm in the plane (of width W) of its image (y + image·image_stride). p = 2: the grid of
// transform_tiles<p = 2>, tile t's phase ph at src's column ph·P + t, its outputs interleaved with the
// other phase's in the grid's (and, pm's column step 1, the plane's) columns.
template <typename T, int m, int r, int p = 1>
void inverse_tiles(const T* src, long stride, const TileRows& tr, T bias, T* y, long image_stride, long Hg, long Wg,
                   long W, const PlaneMap& pm, T* buf) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, a = m + r - 1, w = p * m;
    const long P = tr.tiles(), Pv = round_up(P, L);
    for (long t0 = 0; t0 < P; t0 += L)
        for (int ph = 0; ph < p; ++ph) {
            V cols[a][m];  // each column η of S transformed along ξ
            for (int eta = 0; eta < a; ++eta) {
                V in[a];
#pragma GCC unroll 8
                for (int xi = 0; xi < a; ++xi) in[xi] = load<V>(src + (xi * a + eta) * stride + ph * P + t0);
                mat_apply<T, Winograd<m, r>::AT>(in, cols[eta]);
            }
            for (int i = 0; i < m; ++i) {
                V in[a], o[m];
#pragma GCC unroll 8
                for (int eta = 0; eta < a; ++eta) in[eta] = cols[eta][i];
                mat_apply<T, Winograd<m, r>::AT>(in, o);
                for (int j = 0; j < m; ++j) store(buf + ((i * m + j) * p + ph) * Pv + t0, o[j]);
            }
        }
    for (long rr = 0; rr < tr.rows; ++rr) {  // interleave the columns (and phases) back into output rows
        const long r0 = tr.tile_row(rr) * m;
        for (int i = 0; i < m && r0 + i < Hg; ++i) {
            T* row = y + tr.image(rr) * image_stride + ((r0 + i) * pm.step_h + pm.off_h) * W + pm.off_w;
            const T* outs = buf + i * w * Pv + tr.t_of(rr);  // grid column k of tile u at outs[k·Pv + u]
            const long ue = tr.col_end(rr);
            long u = tr.col_begin(rr);
            if (pm.step_w == 1)  // up to a vector of the tiles whose w columns lie inside the grid
                for (V s[w]; u < ue && w * u + w <= Wg;) {
                    const long n = std::min<long>({L, ue - u, Wg / w - u});
                    for (int k = 0; k < w; ++k) s[k] = load<V>(outs + k * Pv + u) + broadcast<V>(bias);
                    store_interleaved<T, w>(row + w * u, s, n);
                    u += n;
                }
            for (; u < ue && w * u < Wg; ++u)
                for (int k = 0; k < w && w * u + k < Wg; ++k) row[(w * u + k) * pm.step_w] = outs[k * Pv + u] + bias;
        }
    }
}

// The kernels (winograd.cpp), for the problems winograd_why_not<r> accepts: F(2x2, 3x3), F(4x4, 3x3) and
// F(4x4, 5x5).
template <int r = 3>
const char* winograd_why_not(const ConvShape& s);
template <int r = 3>
const char* winograd_input_grad_why_not(const ConvShape& s);
template <typename T, int m, int r = 3>
void conv2d_winograd(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T, int m, int r = 3>
void conv2d_input_grad_winograd(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T, int m, int r = 3>
void conv2d_weight_grad_winograd(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
