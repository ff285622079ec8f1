// winograd_split.h — layers that Winograd's F(m x m, 3 x 3) computes once they are split into undilated
// 3x3 stride-1 problems on sub-images: dilated 3x3 layers (winograd_dilated.cpp, one problem per stride
// phase) and 5x5 layers (winograd5.cpp, four 3x3 pieces of the kernel zero-padded to 6x6). Each copies
// its sub-images into one contiguous batch and runs the dense kernels of winograd.cpp on it once, so
// their transforms read whole rows (the strided per-phase reads of the dense kernels measured slower
// than the direct kernels) and one parallel region spans every phase or piece.
#pragma once

#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "implicit.h"
#include "parallel.h"
#include "winograd.h"

namespace fastconv {

// Grids out of planes: for every plane n·C + c of src (N·C planes of H x W), the Hs x Ws grid that pm
// places in it (zero outside the plane) into plane n·ld + c of dst (planes of Hs x Ws).
template <typename T>
void gather_grids(const T* src, long N, long C, long H, long W, const PlaneMap& pm, T* dst, long ld, long Hs,
                  long Ws) {
#pragma omp parallel for schedule(static) num_threads(threads_for(N * C, 4.0 * N * C * Hs * Ws))
    for (long p = 0; p < N * C; ++p) {
        const T* plane = src + p * H * W;
        T* grid = dst + (p / C * ld + p % C) * Hs * Ws;
        for (long u = 0; u < Hs; ++u) {
            T* row = grid + u * Ws;
            const long h = u * pm.step_h + pm.off_h;
            if (h < 0 || h >= H) {
                std::fill(row, row + Ws, T(0));
                continue;
            }
            // columns v with 0 <= v·step_w + off_w < W
            const long lo = std::min(Ws, pm.off_w >= 0 ? 0 : ceil_div(-pm.off_w, pm.step_w));
            const long hi = std::max(lo, std::min(Ws, W - pm.off_w <= 0 ? 0 : ceil_div(W - pm.off_w, pm.step_w)));
            std::fill(row, row + lo, T(0));
            const T* in = plane + h * W + lo * pm.step_w + pm.off_w;
            if (pm.step_w == 1) std::memcpy(row + lo, in, (hi - lo) * sizeof(T));
            else
                for (long v = lo; v < hi; ++v) row[v] = in[(v - lo) * pm.step_w];
            std::fill(row + hi, row + Ws, T(0));
        }
    }
}

// The inverse for outputs: the Hg x Wg grid at the top left of plane n·ld + c of src (planes of Hs x Ws)
// into the positions pm places it at in plane n·C + c of dst (N·C planes of H x W, the grid inside them).
template <typename T>
void scatter_grids(const T* src, long ld, long Hs, long Ws, long Hg, long Wg, T* dst, long N, long C, long H, long W,
                   const PlaneMap& pm) {
#pragma omp parallel for schedule(static) num_threads(threads_for(N * C, 4.0 * N * C * Hg * Wg))
    for (long p = 0; p < N * C; ++p) {
        const T* grid = src + (p / C * ld + p % C) * Hs * Ws;
        T* plane = dst + p * H * W;
        for (long u = 0; u < Hg; ++u) {
            T* out = plane + (u * pm.step_h + pm.off_h) * W + pm.off_w;
            const T* in = grid + u * Ws;
            if (pm.step_w == 1) std::memcpy(out, in, Wg * sizeof(T));
            else
                for (long v = 0; v < Wg; ++v) out[v * pm.step_w] = in[v];
        }
    }
}

// The undilated problem that one stride phase of a dilated 3x3 stride-1 layer becomes (its batch holds
// every phase of every image): what the dense Winograd kernels run, and what the registry's cost model reads.
inline ConvShape dilated_phase_shape(const ConvShape& s) {
    const long Hg = ceil_div(s.H_out, s.dil_h), Wg = ceil_div(s.W_out, s.dil_w);
    return {s.N * s.dil_h * s.dil_w, s.C_in, Hg + 2, Wg + 2, s.C_out, 3, 3, Hg, Wg, 1, 1, 0, 0, 1, 1, 1};
}

// The 3x3 problem that a 5x5 stride-1 layer becomes: 4·C_in input channels, one shifted copy of x per piece.
inline ConvShape pieces_shape(const ConvShape& s) {
    return {s.N, 4 * s.C_in, s.H_out + 2, s.W_out + 2, s.C_out, 3, 3, s.H_out, s.W_out, 1, 1, 0, 0, 1, 1, 1};
}

const char* winograd_dilated_why_not(const ConvShape& s);
const char* winograd5_why_not(const ConvShape& s);

// m = 2 or 4: the tile of the dense kernels that run the split problem.
template <typename T, int m>
void conv2d_winograd_dilated(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T, int m>
void conv2d_input_grad_winograd_dilated(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T, int m>
void conv2d_weight_grad_winograd_dilated(const T* x, const T* dy, T* dw, const ConvShape& s);
template <typename T, int m>
void conv2d_winograd5(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T, int m>
void conv2d_input_grad_winograd5(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T, int m>
void conv2d_weight_grad_winograd5(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
