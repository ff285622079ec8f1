// implicit.h — implicit-GEMM convolution: the im2col matrix is neither built nor packed; the kernels
// read it straight from a zero-padded, stride-phase-split copy of the input planes.
//
// For stride (sh, sw) the copy holds, per input channel c and phase (r, q) in [0,sh) x [0,sw),
//   xs[c][r][q][i][j] = x[c, (i0 + i)*sh + r - ph, j*sw + q - pw]      (zero outside x)
// for the output rows [i0, i0 + rows) of one task. Then im2col row k = (c, a, b) at output position
// (oh, ow) is xs[off[k] + (oh - i0)*Wq + ow], with off[k] fixed per row: contiguous in ow for every
// stride and dilation, so both operands of the GEMM come in whole vectors without any packing.
// Output rows are computed in whole vectors of L columns (the lanes past W_out are never stored),
// so a plane row is Wq = round_up(W_out, L) + the largest column offset wide.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv2d.h"
#include "im2col.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {

// Deepest K block of the implicit kernels' register tiles (K is cut into equal blocks of at most this):
// deeper than the packed GEMM's, since their B operand is an L1-resident input copy, not a packed block.
// 1152 keeps a 3x3 layer of up to 128 input channels in one block: fewer passes that reload and store
// the accumulators.
#ifndef FASTCONV_IMPLICIT_KC
#define FASTCONV_IMPLICIT_KC 1152
#endif

// The weight gradients copy the input of a chunk of whole images at a time, each chunk at most this
// large (at least one image).
constexpr long kImplicitCopyBytes = 64L << 20;

struct ImplicitGeometry {
    bool flat;    // vectors run over the flattened plane (see implicit_flat), not along output rows
    long Wv;      // vectors per output row (row layout)
    long Wq, Hq;  // plane row length and rows (rows of the task + the largest row offset [+ slack])
    long plane;   // Hq * Wq
};

// Phase planes per input channel: sh * sw.
inline long phases(const ConvShape& s) { return s.sh * s.sw; }

// Largest column offset of a tap in a phase plane.
inline long max_col_offset(const ConvShape& s) { return (s.kW - 1) * s.dil_w / s.sw; }

// Row layout: every output row in whole vectors, so up to L-1 lanes of its last vector are wasted.
// Flat layout: plane rows exactly W_out + max column offset long, vectors laid end to end over the
// flattened plane (position f = r*Wq + col, contiguous in every tap's copy), wasting only the lanes
// at col >= W_out; a vector then spans at most two output rows (Wq >= L) and stores in two pieces.
// The flat layout is taken where it wastes fewer lanes.
template <typename T>
bool implicit_flat(const ConvShape& s) {
    constexpr long L = Vec<T>::lanes;
    const long bj = max_col_offset(s), Wq = s.W_out + bj, row = round_up(s.W_out, L);
    return Wq >= L && bj * row < (row - s.W_out) * Wq;
}

template <typename T>
ImplicitGeometry implicit_geometry(const ConvShape& s, long rows, bool flat = false) {
    constexpr long L = Vec<T>::lanes;
    ImplicitGeometry g;
    g.flat = flat;
    g.Wv = ceil_div(s.W_out, L);
    g.Wq = (flat ? s.W_out : g.Wv * L) + max_col_offset(s);
    // Flat: the last vector of the task reads up to L - 1 positions past its rows.
    g.Hq = rows + (s.kH - 1) * s.dil_h / s.sh + (flat ? ceil_div(L, g.Wq) : 0);
    g.plane = g.Hq * g.Wq;
    return g;
}

// Elements of one task's copy of the C_g planes of a group.
inline long implicit_copy_size(const ConvShape& s, const ImplicitGeometry& g) { return s.C_g() * phases(s) * g.plane; }

// Output rows per task: whole images unless that leaves under four tasks per thread, and a copy
// of at most 1 MiB, about one core's L2 (docs/performance.md has the sizes measured).
template <typename T>
long implicit_rows(const ConvShape& s, bool flat = false) {
    long rows = s.H_out;
    while (rows > 1 && (s.N * s.groups * ceil_div(s.H_out, rows) < 4L * get_num_threads() ||
                        implicit_copy_size(s, implicit_geometry<T>(s, rows, flat)) * (long)sizeof(T) > (1024L << 10)))
        rows = ceil_div(rows, 2);
    return rows;
}

// At most a quarter of the vector lanes wasted in the row layout (the tiled kernels need it) ...
template <typename T>
bool implicit_rows_ok(const ConvShape& s) {
    return !s.is_pointwise() && 4 * round_up(s.W_out, Vec<T>::lanes) <= 5 * s.W_out;
}

// ... or in either layout: whether the dense implicit kernels suit s.
template <typename T>
bool use_implicit(const ConvShape& s) {
    const long bj = max_col_offset(s), Wq = s.W_out + bj;
    return implicit_rows_ok<T>(s) || (!s.is_pointwise() && Wq >= Vec<T>::lanes && 4 * bj <= Wq);
}

// off[k] for the K im2col rows of a group, k = (c, a, b) — or k = (a, c, b) with tap_rows_first, which
// makes the taps of each kernel row a contiguous range of k.
inline void implicit_offsets(const ConvShape& s, const ImplicitGeometry& g, long* off, bool tap_rows_first = false) {
    for (long c = 0; c < s.C_g(); ++c)
        for (long a = 0; a < s.kH; ++a)
            for (long b = 0; b < s.kW; ++b) {
                const long ra = a * s.dil_h, rb = b * s.dil_w;
                const long k = tap_rows_first ? (a * s.C_g() + c) * s.kW + b : (c * s.kH + a) * s.kW + b;
                off[k] = ((c * s.sh + ra % s.sh) * s.sw + rb % s.sw) * g.plane + ra / s.sh * g.Wq + rb / s.sw;
            }
}

// xs = the copy described at the top for the group whose first input plane is xg, rows from i0.
template <typename T>
void implicit_fill(const T* xg, const ConvShape& s, const ImplicitGeometry& g, long i0, T* xs) {
    for (long c = 0; c < s.C_g(); ++c)
        for (long r = 0; r < s.sh; ++r)
            for (long q = 0; q < s.sw; ++q) {
                T* dst = xs + ((c * s.sh + r) * s.sw + q) * g.plane;
                long lo, hi;
                valid_range(q - s.pw, s.sw, g.Wq, s.W, lo, hi);
                for (long i = 0; i < g.Hq; ++i) {
                    T* d = dst + i * g.Wq;
                    const long ih = (i0 + i) * s.sh + r - s.ph;
                    if (ih < 0 || ih >= s.H || hi <= lo) {
                        std::fill(d, d + g.Wq, T(0));
                        continue;
                    }
                    const T* xr = xg + c * s.HW() + ih * s.W + q - s.pw;
                    std::fill(d, d + lo, T(0));
                    if (s.sw == 1)
                        std::copy(xr + lo, xr + hi, d + lo);
                    else
                        for (long j = lo; j < hi; ++j) d[j] = xr[j * s.sw];
                    std::fill(d + hi, d + g.Wq, T(0));
                }
            }
}

// Runs task(n, g, i0, nrows, xs) in parallel for every image n, group g and block of output rows
// [i0, i0 + nrows) (blocks of `rows`), xs holding that block's copy of the group's input (implicit_fill)
// in the running thread's workspace.
template <typename T, typename Task>
void implicit_row_tasks(const T* x, const ConvShape& s, const ImplicitGeometry& geo, long rows, const Task& task) {
    const long G = s.groups, nrb = ceil_div(s.H_out, rows);
    parallel_tasks<T>(s.N * G * nrb, s.flops(), implicit_copy_size(s, geo), [&](long t, T* xs) {
        const long n = t / (G * nrb), g = t / nrb % G, i0 = t % nrb * rows;
        implicit_fill(x + (n * s.C_in + g * s.C_g()) * s.HW(), s, geo, i0, xs);
        task(n, g, i0, std::min(rows, s.H_out - i0), (const T*)xs);
    });
}

// The weight operand of the implicit kernels for one (output channel, im2col row): AW stored lanes
// repeated across the vector. AW = 1 is the dense kernels' broadcast scalar; two floats are one 8-byte
// broadcast load; wider patterns (the tiled kernels') are stored expanded, AW = L.
template <typename T, int AW>
inline typename Vec<T>::type load_weights(const T* a) {
    using V = typename Vec<T>::type;
    if constexpr (AW == 1) {
        return broadcast<V>(a[0]);
    } else if constexpr (AW == Vec<T>::lanes) {
        return load<V>(a);
    } else {
        static_assert(AW * sizeof(T) == 8, "patterns of 8 bytes are broadcast, wider ones stored expanded");
        typedef uint64_t UV __attribute__((vector_size(kVectorBytes)));
        uint64_t u;
        std::memcpy(&u, a, sizeof(u));
        const UV uv = u - UV{};
        V v;
        std::memcpy(&v, &uv, sizeof(V));
        return v;
    }
}

// Where lanes [lane, lane + n) of an output vector go: c[0..n) of the tile's first row.
template <typename T>
struct OutSeg {
    T* c;
    long lane, n;
};

// The register tile of the implicit kernels: for each of NV input vectors j, its (at most two) output
// pieces seg[j][0..1], row i at + i*ldc (i < mr):
//   (+)= Σ_p load_weights<AW>(a + (p*MR + i)*AW) ⊙ base[j][off[p] + 0..L)
// MR x NV accumulators; the B operand is loaded in place at the offset of each im2col row.
template <typename T, int MR, int NV, int AW>
inline void implicit_micro(long kc, const T* __restrict a, const long* __restrict off, const T* const* base,
                           const OutSeg<T> (*seg)[2], long ldc, long mr, bool accumulate) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    V acc[MR][NV];
    zero_tile(acc);
    const T* b[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) b[j] = base[j];
    for (long p = 0; p < kc; ++p) {
        V bv[NV];
        const long o = off[p];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) bv[j] = load<V>(b[j] + o);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            const V ai = load_weights<T, AW>(a + i * AW);
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
        }
        a += MR * AW;
    }
    // Rows by compile-time index (i < mr tested inside): a runtime-bounded loop would index acc
    // dynamically and so keep the whole tile in memory.
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
        if (seg[j][0].n == L) {
#pragma GCC unroll 32
            for (int i = 0; i < MR; ++i) {
                if (i >= mr) break;
                T* cij = seg[j][0].c + i * ldc;
                store(cij, accumulate ? load<V>(cij) + acc[i][j] : acc[i][j]);
            }
            continue;
        }
        for (int q = 0; q < 2; ++q) {
            const OutSeg<T>& sg = seg[j][q];
            if (sg.n <= 0) continue;
#pragma GCC unroll 32
            for (int i = 0; i < MR; ++i) {
                if (i >= mr) break;
                alignas(64) T tmp[L];
                store(tmp, acc[i][j]);
                T* cij = sg.c + i * ldc;
                for (long l = 0; l < sg.n; ++l) cij[l] = (accumulate ? cij[l] : T(0)) + tmp[sg.lane + l];
            }
        }
    }
}

// Forward convolution by implicit GEMM (implicit_conv.cpp); use_implicit<T>(s) says whether it pays.
template <typename T>
void conv2d_implicit(const T* x, const T* w, const T* b, T* y, const ConvShape& s);

// The input gradient of a stride-1 conv is the forward correlation of dy with w'[c, m, a', b'] =
// w[m, c, kH-1-a', kW-1-b'] at padding ((kH-1)*dil_h - ph, (kW-1)*dil_w - pw): this is that forward problem
// (reads outside dy are zero, so no bottom/right padding is needed). It needs both paddings >= 0.
inline ConvShape input_grad_as_forward(const ConvShape& s) {
    ConvShape t = s;
    t.C_in = s.C_out, t.H = s.H_out, t.W = s.W_out;
    t.C_out = s.C_in, t.H_out = s.H, t.W_out = s.W;
    t.ph = (s.kH - 1) * s.dil_h - s.ph;
    t.pw = (s.kW - 1) * s.dil_w - s.pw;
    return t;
}

// Input gradient of a stride-1 conv (input_grad_as_forward with paddings >= 0) as that forward implicit
// conv with the flipped, transposed kernel.
template <typename T>
void conv2d_input_grad_implicit(const T* dy, const T* w, T* dx, const ConvShape& s);

// One weight-gradient problem: dw (M x K) (+)= Σ_p dy[m, p] · col[k, p] over the positions p of nseg
// segments of len positions; segment q reads im2col row k at xs + q*xs_stride + off[k] + pos[p] and
// dy row m at dy + q*dy_stride + m*ld + p.
template <typename T>
struct ImplicitWgrad {
    const T* xs;
    long xs_stride;
    const long* pos;
    long nseg, len;
    const T* dy;
    long dy_stride, ld;
    T* dw;
    bool accumulate;
};

// The im2col rows of the weight-gradient GEMM, shared by its problems: row k is read at off[k] (see
// ImplicitWgrad) and is column col[k] of dw; in every segment only positions [lo[k], hi[k]) of row k
// read inside x — the rest read padding and are skipped. Null col, lo, hi: identity order, all positions.
struct WgradRows {
    const long* off;
    const long* col = nullptr;
    const long* lo = nullptr;
    const long* hi = nullptr;
};

// Solves nprob problems of the same M and K (and rows) in one parallel region (implicit_conv.cpp):
// a dense conv's groups, a tiled conv's phases.
template <typename T>
void implicit_weight_grad(const ImplicitWgrad<T>* problems, long nprob, const WgradRows& rows, long K, long M);

// Weight gradient by implicit GEMM (implicit_conv.cpp); every group's copy of one image at a time
// (implicit_weight_grad_bytes(s)) must fit in memory, and pays while it stays within kImplicitCopyBytes.
template <typename T>
void conv2d_weight_grad_implicit(const T* x, const T* dy, T* dw, const ConvShape& s);
template <typename T>
long implicit_weight_grad_bytes(const ConvShape& s) {
    return s.groups * implicit_copy_size(s, implicit_geometry<T>(s, s.H_out)) * (long)sizeof(T);
}

}  // namespace fastconv
