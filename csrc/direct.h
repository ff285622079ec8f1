// direct.h — register-blocked direct 2-D correlation of one zero-padded plane, stride 1, row dilation 1.
//
// out (H_out x W_out)[i][j] = (accumulate ? out : init) + Σ_{a,b} k[a,b] · xp[i + a][j + b*dil_w]
//
// Each call to block() keeps R output rows x NV vectors of output columns in registers. It walks the
// R + kH - 1 input rows that the R output rows span; each input vector, loaded once, feeds every output
// row it contributes to (output row r takes input row t with tap row a = t - r), so an input load
// serves up to R FMAs instead of one. With R = NV = 4 under AVX-512 that is 16 accumulators + 4 input
// vectors + 1 broadcast weight: 21 of the 32 zmm registers.
//
// Preconditions: xp's row stride Wp >= padded_width(W_out, kW, dil_w) (every vector read is in range:
// the last, partial, vector of a row reads zeros past the valid columns and stores only the valid
// lanes), and xp has H_out + kH - 1 rows.
//
// 3x3 and 5x5 kernels with dil_w = 1 on a plane laid out by aligned_width (vector-aligned rows) take a
// compiled-in path: each input row is read as NV + 1 aligned vectors and every tap's shifted vector
// is built in registers (shift_lanes). Unaligned loads straddle cache lines for two taps in three,
// and that — not the FMAs — bounds a load-per-tap kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "parallel.h"
#include "simd.h"

namespace fastconv {
namespace direct {

#if defined(__AVX512F__)
constexpr int kRows = 4, kVecs = 4;
#else
constexpr int kRows = 4, kVecs = 2;  // 16 vector registers: 8 accumulators
#endif

// Row stride of a padded plane that the stride-1 kernel may read whole vectors from.
template <typename T>
inline long padded_width(long W_out, long kW, long dil_w) {
    return round_up(W_out, Vec<T>::lanes) + (kW - 1) * dil_w;
}

// Row stride of a padded plane for the compiled-in path: whole vectors, one more than the output row
// needs (each row is read as NV + 1 vectors).
template <typename T>
inline long aligned_width(long W_out) {
    return round_up(W_out, Vec<T>::lanes) + Vec<T>::lanes;
}

template <int... B, typename F>
inline void for_each_tap(std::integer_sequence<int, B...>, F&& f) {
    (f(std::integral_constant<int, B>{}), ...);
}

// KH, KW > 0: the compiled-in path (kH, kW, dil_w are then KH, KW, 1 and xp's rows are vector-aligned).
// UNPADDED (with KH, KW): xp is the plane itself, H rows of Wp = W_out columns (whole vectors), padded by
// `top` zero rows above and (KW - 1) / 2 zero columns left and right: rows outside it are skipped and the
// columns beyond its edges are zero vectors, so no padded copy is needed.
template <typename T, int R, int NV, int KH = 0, int KW = 0, bool UNPADDED = false>
inline void block(const T* xp, long Wp, const T* k, long kH_, long kW_, long dil_w, T* out, long W_out, long i0,
                  long j0, bool accumulate, T init, long top = 0, long H = 0) {
    const long kH = KH > 0 ? KH : kH_, kW = KW > 0 ? KW : kW_;
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    const long ncols = std::min<long>(NV * L, W_out - j0);  // valid columns of this block
    V acc[R][NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            if (!accumulate) {
                acc[r][v] = broadcast<V>(init);
                continue;
            }
            const T* o = out + (i0 + r) * W_out + j0 + v * L;
            const long n = std::clamp<long>(ncols - v * L, 0, L);
            if (n == L) {
                acc[r][v] = load<V>(o);
            } else {
                T tmp[L] = {};
                std::copy(o, o + n, tmp);
                acc[r][v] = load<V>(tmp);
            }
        }
    if constexpr (KH > 0) {
        // 3x3: the nine weights stay broadcast in registers for the block (a 5x5 kernel would need 25)
        constexpr int KV = KH * KW <= 9 ? KH * KW : 1;
        V wk[KV];
#pragma GCC unroll 16
        for (int q = 0; q < KV; ++q) wk[q] = broadcast<V>(k[q]);
#pragma GCC unroll 16
        for (int t = 0; t < R + KH - 1; ++t) {
            // a[u] starts at padded column j0 + u·L - OFF: tap b of vector v starts OFF + b lanes into a[v]
            constexpr int OFF = UNPADDED ? L - (KW - 1) / 2 : 0;
            V a[NV + 2];
            if constexpr (UNPADDED) {
                const long h = i0 + t - top;
                if (h < 0 || h >= H) continue;
                const T* xr = xp + h * Wp + j0;
                a[0] = j0 > 0 ? load<V>(xr - L) : V{};
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) a[v + 1] = load<V>(xr + v * L);
                a[NV + 1] = j0 + NV * L < Wp ? load<V>(xr + NV * L) : V{};
            } else {
                const T* xr = xp + (i0 + t) * Wp + j0;
#pragma GCC unroll 8
                for (int v = 0; v <= NV; ++v) a[v] = load<V>(xr + v * L);
            }
            for_each_tap(std::make_integer_sequence<int, KW>{}, [&](auto b) {
                constexpr int S = OFF + b(), U = UNPADDED && S >= L ? 1 : 0;
                V xv[NV];
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) xv[v] = shift_lanes<S - U * L, T>(a[v + U], a[v + U + 1]);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) {
                    if (t - r < 0 || t - r >= KH) continue;
                    V wv;
                    if constexpr (KV > 1)
                        wv = wk[(t - r) * KW + b()];
                    else
                        wv = broadcast<V>(k[(t - r) * KW + b()]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV; ++v) acc[r][v] += wv * xv[v];
                }
            });
        }
    } else {
        // Input row t feeds output rows [rlo, rhi]; where that is every row of the block (ALL), the
        // per-row test compiles away.
        auto row = [&](const T* xr, long t, long rlo, long rhi, auto all) {
            for (long b = 0; b < kW; ++b) {
                V xv[NV];
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) xv[v] = load<V>(xr + b * dil_w + v * L);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) {
                    if constexpr (!decltype(all)::value)
                        if (r < rlo || r > rhi) continue;
                    const V wv = broadcast<V>(k[(t - r) * kW + b]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV; ++v) acc[r][v] += wv * xv[v];
                }
            }
        };
        for (long t = 0; t < R + kH - 1; ++t) {
            const T* xr = xp + (i0 + t) * Wp + j0;
            const long rlo = std::max(0L, t - kH + 1), rhi = std::min<long>(R - 1, t);
            if (rlo == 0 && rhi == R - 1)
                row(xr, t, rlo, rhi, std::true_type{});
            else
                row(xr, t, rlo, rhi, std::false_type{});
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            T* o = out + (i0 + r) * W_out + j0 + v * L;
            const long n = std::clamp<long>(ncols - v * L, 0, L);
            if (n == L) {
                store(o, acc[r][v]);
            } else if (n > 0) {
                T tmp[L];
                store(tmp, acc[r][v]);
                std::copy(tmp, tmp + n, o);
            }
        }
}

// R rows, all column blocks: NV-vector blocks, then one block for the remaining (possibly partial) vectors.
template <typename T, int R, int KH, int KW, bool UNPADDED>
inline void row_block(const T* xp, long Wp, const T* k, long kH, long kW, long dil_w, T* out, long W_out, long i0,
                      bool accumulate, T init, long top, long H) {
    constexpr int L = Vec<T>::lanes, NV = kVecs;
    long j0 = 0;
    auto run = [&](auto nv) {
        block<T, R, decltype(nv)::value, KH, KW, UNPADDED>(xp, Wp, k, kH, kW, dil_w, out, W_out, i0, j0, accumulate, init,
                                                          top, H);
    };
    for (; j0 + NV * L <= W_out; j0 += NV * L) run(std::integral_constant<int, NV>{});
    if (j0 >= W_out) return;
    switch (ceil_div(W_out - j0, L)) {
        case 1: return run(std::integral_constant<int, 1>{});
        case 2: return run(std::integral_constant<int, 2>{});
        case 3: return run(std::integral_constant<int, (NV > 2 ? 3 : 1)>{});
        default: return run(std::integral_constant<int, NV>{});
    }
}

template <typename T, int KH = 0, int KW = 0, bool UNPADDED = false>
void rows(const T* xp, long Wp, const T* k, long kH, long kW, long dil_w, T* out, long W_out, long i_begin, long i_end,
          bool accumulate, T init, long top = 0, long H = 0) {
    constexpr int R = kRows;
    long i = i_begin;
    for (; i + R <= i_end; i += R)
        row_block<T, R, KH, KW, UNPADDED>(xp, Wp, k, kH, kW, dil_w, out, W_out, i, accumulate, init, top, H);
    for (; i < i_end; ++i)
        row_block<T, 1, KH, KW, UNPADDED>(xp, Wp, k, kH, kW, dil_w, out, W_out, i, accumulate, init, top, H);
}

// Output rows [i_begin, i_end) of the correlation described at the top of the file.
template <typename T>
void correlate_rows(const T* xp, long Wp, const T* k, long kH, long kW, long dil_w, T* out, long W_out, long i_begin,
                    long i_end, bool accumulate, T init) {
    constexpr long vector_bytes = Vec<T>::lanes * sizeof(T);
    const bool aligned = dil_w == 1 && Wp % Vec<T>::lanes == 0 && Wp >= aligned_width<T>(W_out) &&
                         reinterpret_cast<std::uintptr_t>(xp) % vector_bytes == 0;
    if (aligned && kH == 3 && kW == 3) return rows<T, 3, 3>(xp, Wp, k, kH, kW, dil_w, out, W_out, i_begin, i_end, accumulate, init);
    if (aligned && kH == 5 && kW == 5 && 4 <= Vec<T>::lanes)
        return rows<T, 5, 5>(xp, Wp, k, kH, kW, dil_w, out, W_out, i_begin, i_end, accumulate, init);
    rows<T>(xp, Wp, k, kH, kW, dil_w, out, W_out, i_begin, i_end, accumulate, init);
}

// Whether correlate_rows_unpadded applies: a 3x3 or 5x5 kernel with 'same' columns (left = (kW - 1) / 2
// zero columns either side, fewer than a vector) at dil_w = 1, on a plane of W = W_out columns, whole vectors.
template <typename T>
inline bool unpadded_ok(long W, long W_out, long left, long kH, long kW, long dil_w) {
    return dil_w == 1 && W_out == W && W % Vec<T>::lanes == 0 && kH == kW && (kH == 3 || kH == 5) &&
           left == (kW - 1) / 2 && left < Vec<T>::lanes;
}

// The same correlation straight from an unpadded plane x (H x W) with `top` zero rows above it and `left`
// zero columns on either side, where unpadded_ok: no padded copy, whose stores (off the vector grid by
// the padding) cost a 3x3 depthwise layer nearly a third of its time.
template <typename T>
void correlate_rows_unpadded(const T* x, long H, long W, long top, const T* k, long kH, T* out, long i_begin,
                             long i_end, bool accumulate, T init) {
    if (kH == 3)
        rows<T, 3, 3, true>(x, W, k, 3, 3, 1, out, W, i_begin, i_end, accumulate, init, top, H);
    else
        rows<T, 5, 5, true>(x, W, k, 5, 5, 1, out, W, i_begin, i_end, accumulate, init, top, H);
}

}  // namespace direct
}  // namespace fastconv
