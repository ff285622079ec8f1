// winograd_split.h — dilated 3x3 layers split into undilated 3x3 stride-1 problems, one per stride phase
// (winograd_dilated.cpp), which Winograd's F(m x m, 3 x 3) computes. The stride-phase sub-images are
// copied into one contiguous batch and the dense kernels of winograd.cpp run on it once. This measured
// no faster than the direct kernels on the bench's S5 row, nor than the dense kernels run on the phases
// in place: only use_kernel runs it (registry.cpp).
#pragma once

#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "implicit.h"
#include "parallel.h"
#include "winograd.h"

namespace fastconv {

// Where the split problem keeps its images: B images of `rows` x cell_w, side by side, gw to a plane
// (cells of rows x cell_w, rows of row_stride elements), planes ordered (plane, channel). The dense
// kernels' transforms pay a fixed cost per tile row, which on small sub-images (the 18 x 18 phases
// of the bench's S5 row) outweighs the transform itself; cells side by side make rows of a few
// hundred columns. A valid 3x3 conv over a plane computes every cell's outputs at the cell's own
// corner; the two columns after each cell's outputs read the next cell and are dropped.
struct Mosaic {
    long channels, rows, cell_w, gw, row_stride;
    long offset(long image, long c) const {
        return (image / gw * channels + c) * rows * row_stride + image % gw * cell_w;
    }
};

// Cells per plane for B images of Ws columns: planes of at least about kMosaicColumns, as few cells
// left empty as that allows.
constexpr long kMosaicColumns = 256;
inline long mosaic_cells(long B, long Ws) {
    const long planes = ceil_div(B, std::clamp(ceil_div(kMosaicColumns, Ws), 1L, B));
    return ceil_div(B, planes);
}

// The split problem on Hs x Ws input cells, gw to a plane: planes of Hs x gw·Ws, no padding.
inline ConvShape mosaic_shape(long B, long C, long K, long Hs, long Ws) {
    const long gw = mosaic_cells(B, Ws);
    return {ceil_div(B, gw), C, Hs, gw * Ws, K, 3, 3, Hs - 2, gw * Ws - 2, 1, 1, 0, 0, 1, 1, 1};
}
// Its input and output mosaics (cells Ws apart; the output cells hold Hs − 2 x Ws − 2 outputs).
inline Mosaic input_mosaic(const ConvShape& u, long Ws) { return {u.C_in, u.H, Ws, u.W / Ws, u.W}; }
inline Mosaic output_mosaic(const ConvShape& u, long Ws) { return {u.C_out, u.H_out, Ws, u.W / Ws, u.W_out}; }

// A grid out of a plane: the Hs x Ws grid that pm places in the H x W plane (zero outside it), into
// rows of row_stride elements.
template <typename T>
void gather_grid(const T* plane, long H, long W, const PlaneMap& pm, T* grid, long row_stride, long Hs, long Ws) {
    // columns v with 0 <= v·step_w + off_w < W
    const long lo = std::min(Ws, pm.off_w >= 0 ? 0 : ceil_div(-pm.off_w, pm.step_w));
    const long hi = std::max(lo, std::min(Ws, W - pm.off_w <= 0 ? 0 : ceil_div(W - pm.off_w, pm.step_w)));
    for (long u = 0; u < Hs; ++u) {
        T* row = grid + u * row_stride;
        const long h = u * pm.step_h + pm.off_h;
        if (h < 0 || h >= H) {
            std::fill(row, row + Ws, T(0));
            continue;
        }
        std::fill(row, row + lo, T(0));
        const T* in = plane + h * W + lo * pm.step_w + pm.off_w;
        if (pm.step_w == 1) std::memcpy(row + lo, in, (hi - lo) * sizeof(T));
        else
            for (long v = lo; v < hi; ++v) row[v] = in[(v - lo) * pm.step_w];
        std::fill(row + hi, row + Ws, T(0));
    }
}

// The inverse for outputs: the Hg x Wg grid (rows row_stride apart) to the positions pm places it at
// in a plane of width W.
template <typename T>
void scatter_grid(const T* grid, long row_stride, long Hg, long Wg, T* plane, long W, const PlaneMap& pm) {
    for (long u = 0; u < Hg; ++u) {
        T* out = plane + (u * pm.step_h + pm.off_h) * W + pm.off_w;
        const T* in = grid + u * row_stride;
        if (pm.step_w == 1) std::memcpy(out, in, Wg * sizeof(T));
        else
            for (long v = 0; v < Wg; ++v) out[v * pm.step_w] = in[v];
    }
}

// f(j) for j < count, copies of about `elements` in all: one parallel region for every phase,
// and one thread below a few million elements: a copy is bound by memory, not by a core, and on a
// loaded machine a second thread's start can take longer than the copy (docs/performance.md).
template <typename F>
void for_each_grid(long count, double elements, const F& f) {
#pragma omp parallel for schedule(static) num_threads(threads_for(count, elements / 2))
    for (long j = 0; j < count; ++j) f(j);
}

// Zero the cells of images B .. (the mosaic's last plane not filled), every channel: read by the kernels.
template <typename T>
void zero_empty_cells(T* X, const Mosaic& mo, long B, long planes, long Hs, long Ws) {
    for (long i = B; i < planes * mo.gw; ++i)
        for (long c = 0; c < mo.channels; ++c)
            for (long u = 0; u < Hs; ++u) std::fill_n(X + mo.offset(i, c) + u * mo.row_stride, Ws, T(0));
}

// The 3x3 problem that a dilated 3x3 stride-1 layer becomes: every stride phase of every image is an
// image of ceil(H_out / d_h) + 2 rows (the largest phase's), phase-major (image k·N + n).
inline ConvShape dilated_phase_shape(const ConvShape& s) {
    return mosaic_shape(s.N * s.dil_h * s.dil_w, s.C_in, s.C_out, ceil_div(s.H_out, s.dil_h) + 2,
                        ceil_div(s.W_out, s.dil_w) + 2);
}

const char* winograd_dilated_why_not(const ConvShape& s);

// m = 2 or 4: the tile of the dense kernels that run the split problem.
template <typename T, int m>
void conv2d_winograd_dilated(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T, int m>
void conv2d_input_grad_winograd_dilated(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T, int m>
void conv2d_weight_grad_winograd_dilated(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
