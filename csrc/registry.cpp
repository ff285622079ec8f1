// registry.cpp — every op's implementation list, best first, and the table this ISA build exports
// (kernels.h). The only place that decides which kernel runs: each entry says what it cannot compute
// (why_not) and where it does not pay (worth); ImplList::select takes the first that can and pays.
// Compiled into every libfastconv_<isa>.so together with the kernels.
#include "border_products.h"
#include "fft_conv.h"
#include "gemm.h"
#include "implicit.h"
#include "kernels.h"
#include "parallel.h"
#include "simd.h"
#include "winograd.h"
#include "winograd_split.h"

namespace fastconv {
namespace {

template <typename S>
const char* always(const S&) {
    return nullptr;
}

// --- dense convolution --------------------------------------------------------------------------------

const char* depthwise_why_not(const ConvShape& s) {
    return s.C_g() == 1 ? nullptr : "needs one input channel per group (groups == C_in)";
}

// The depthwise and implicit kernels copy padded planes (or row blocks) spanning the dilated kernel, so
// their workspace follows the kernel's reach, not the output: a dilated kernel reaching far past the
// input (a dilation near 2**31 with 'same' padding) would ask for gigabytes around a 1x1 output. Past
// this the packed GEMM, whose im2col blocks follow the output, takes such a problem.
bool compact_reach(const ConvShape& s) {
    return (s.kH - 1) * s.dil_h <= 4 * s.H + 256 && (s.kW - 1) * s.dil_w <= 4 * s.W + 256;
}

// With four or more outputs per group a GEMM is no longer too thin.
bool depthwise_worth(const ConvShape& s) { return s.M_g() < 4 && compact_reach(s); }

// Channels-last depthwise (depthwise_channels_last.cpp) pays, given a vector of channels, on strided
// layers, where the plane kernels copy column phases (forward) or scatter-add (input gradient), and on
// output rows of half a vector or less, where the plane kernels' vectors are mostly empty (for the
// weight gradient on rows narrower than a vector). Measured on the MobileNet layers of
// bench/torch_interop.py (docs/performance.md).
const char* channels_last_why_not(const ConvShape& s) {
    return s.C_g() == 1 && s.M_g() == 1 ? nullptr : "needs one input and one output channel per group";
}
template <typename T>
bool channels_last_worth(const ConvShape& s) {
    return s.C_in >= Vec<T>::lanes && (s.sh > 1 || s.sw > 1 || 2 * s.W_out <= Vec<T>::lanes) && compact_reach(s);
}
template <typename T>
bool channels_last_weight_grad_worth(const ConvShape& s) {
    return channels_last_worth<T>(s) || (s.C_in >= Vec<T>::lanes && s.W_out < Vec<T>::lanes && compact_reach(s));
}

// Batch folded into the GEMM columns: pays where one image's positions fill few register tiles.
const char* pointwise_folded_why_not(const ConvShape& s) {
    return s.is_pointwise() && s.groups == 1 ? nullptr : "needs a 1x1, stride-1, unpadded conv with groups == 1";
}
template <typename T>
bool pointwise_folded_worth(const ConvShape& s) { return s.HW() < 2 * GemmBlock<T>::NR; }

// The implicit kernels' vector layouts hold output rows of at least about a vector (or planes whose
// flattened rows waste few lanes); on narrower rows they compute wrong results, so this gates them.
template <typename T>
const char* implicit_why_not(const ConvShape& s) {
    return use_implicit<T>(s) ? nullptr : "needs output rows of about a vector or more, not 1x1 stride 1 (use_implicit)";
}

template <typename T>
const char* implicit_input_grad_why_not(const ConvShape& s) {
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    const ConvShape t = input_grad_as_forward(s);
    if (t.ph < 0 || t.pw < 0) return "needs padding <= dilation * (kernel size - 1)";
    return implicit_why_not<T>(t);
}
// Few input channels make the transposed GEMM too thin (M = C_in/g rows of MR-row tiles).
template <typename T>
bool implicit_input_grad_worth(const ConvShape& s) { return s.C_g() >= 2 * GemmBlock<T>::MR && compact_reach(s); }

template <typename T>
bool implicit_weight_grad_worth(const ConvShape& s) {
    return !s.is_pointwise() && implicit_weight_grad_bytes<T>(s) <= kImplicitCopyBytes;
}

// Winograd (winograd.cpp) pays once its (m+2)² GEMMs are deep and wide enough to outrun the transforms of
// x, y and the weights: F(2x2) from 32 tiles and one per 16 input channels, F(4x4) over it from one tile
// per 8 input channels (each chunk of tiles streams all (m+2)² transformed weight matrices, 36/16 as many
// for F(4x4)). Thresholds measured on the bench layers and a sweep of 3x3 layers, and again on 7x7 to
// 28x28 layers of 128 to 512 channels at batch 1 to 32 once large scratch stayed mapped across calls
// (scratch.h; docs/performance.md). Layers dilated by 2 run on their stride phases, both column phases
// of a row phase in one grid (each plane row copied and each output row stored once, as whole vectors):
// on the bench's S5 and on 64- to 256-channel layers the forward and input grad measured 1.4-1.9x, the
// weight grad 1.2-1.4x faster than the direct kernels, which keep 32-channel layers (weight grad: 32 x
// 32), larger dilations (columns one by one) and the split kernels below, which measured no faster.
// F(4x4,5x5) takes 4 multiplies per output and channel pair where the direct kernels take 25; on a sweep
// of 5x5 layers (8x8 to 56x56 planes, 3 to 256 channels) its forward and input grad paid from 16 x 32
// channels, its weight gradient from 32 x 64, dilated by 2 alike (docs/performance.md).
inline long winograd_tiles(const ConvShape& s, int m) {  // summed over the phases of a dilated layer
    long rows = 0, cols = 0;
    for (long q = 0; q < s.dil_h; ++q) rows += ceil_div(ceil_div(std::max(0L, s.H_out - q), s.dil_h), m);
    for (long r = 0; r < s.dil_w; ++r) cols += ceil_div(ceil_div(std::max(0L, s.W_out - r), s.dil_w), m);
    return s.N * rows * cols;
}
inline bool winograd_deep(const ConvShape& s, long product, long max_dilation) {
    return s.dil_h <= max_dilation && s.dil_w <= max_dilation && s.C_in >= 16 && s.C_out >= 16 &&
           s.C_in * s.C_out >= product;
}
template <int m>
bool winograd_worth(const ConvShape& s) {
    return winograd_deep(s, 2048, 2) && winograd_tiles(s, m) >= (m == 4 ? s.C_in / 8 : std::max(32L, s.C_in / 16));
}
template <int m>
bool winograd_input_grad_worth(const ConvShape& s) { return winograd_worth<m>(input_grad_as_forward(s)); }
// The weight gradient's GEMMs reduce over the tiles, so fewer tiles per channel still pay.
template <int m>
bool winograd_weight_grad_worth(const ConvShape& s) {
    const bool dilated = s.dil_h > 1 || s.dil_w > 1;
    return winograd_deep(s, dilated ? 2048 : 1024, 2) && winograd_tiles(s, m) >= (m == 4 ? s.C_in / 4 : s.C_in / 16);
}
bool winograd5_worth(const ConvShape& s) { return winograd_deep(s, 512, 2) && winograd_tiles(s, 4) >= s.C_in / 8; }
bool winograd5_input_grad_worth(const ConvShape& s) { return winograd5_worth(input_grad_as_forward(s)); }
bool winograd5_weight_grad_worth(const ConvShape& s) {
    return winograd_deep(s, 2048, 2) && winograd_tiles(s, 4) >= s.C_in / 4;
}

// The split dilated layers (winograd_split.h) measured no faster than the direct kernels on the bench's S5
// row (the copies take what the fewer multiplies save), and slower than the dense kernels on every
// dilated layer measured. 'auto' leaves them out; they come after the dense kernels, so that a forced
// 'winograd' takes them only where those do not apply (an input grad padded past 2·dilation).
template <typename S>
bool never(const S&) {
    return false;
}

// FFT (fft_conv.cpp) pays where its cost model says the tile n is the cheapest FFT tile and cheaper than
// the direct kernels: large kernels (on planes from about 15x15, on 16-channel layers from about 7x7).
// Listed 32, 64, 128, 16: where none pays, a forced 'fft' takes the first that applies, and 32x32 tiles
// measured best or near it on every plane and layer with kernels up to 32 (64 beyond).
template <typename T, int n>
const char* fft_why_not(const ConvShape& s) { return fft_why_not(s, n, sizeof(T)); }
template <typename T, int n, bool weight_grad = false>
bool fft_worth(const ConvShape& s) {
    const double cost = fft_cost(s, n, Vec<T>::lanes, weight_grad);
    for (int other : kFftTiles)
        if (other != n && !fft_why_not(s, other, sizeof(T), weight_grad) &&
            fft_cost(s, other, Vec<T>::lanes, weight_grad) < cost)
            return false;
    return cost < direct_cost(s, Vec<T>::lanes);
}

// The input gradient is an FFT forward with the rotated, transposed kernel (any padding: a negative one
// just starts the tiles inside dy).
template <typename T, int n>
const char* fft_input_grad_why_not(const ConvShape& s) {
    return s.sh != 1 || s.sw != 1 ? "needs stride 1" : fft_why_not<T, n>(input_grad_as_forward(s));
}
template <typename T, int n>
bool fft_input_grad_worth(const ConvShape& s) { return fft_worth<T, n>(input_grad_as_forward(s)); }

// The weight gradient transforms the same tiles of x and dy as the forward, and multiplies as many bins
// and channel pairs.
template <typename T, int n>
const char* fft_weight_grad_why_not(const ConvShape& s) { return fft_why_not(s, n, sizeof(T), true); }
template <typename T, int n>
bool fft_weight_grad_worth(const ConvShape& s) { return fft_worth<T, n, true>(s); }

// --- tiled and unshared convolution -------------------------------------------------------------------

template <typename T>
bool lane_weights_forward_worth(const TiledShape& s) { return lane_weights_worth<T>(dense_shape(s), s.T_h); }

template <typename T>
const char* lane_weights_input_grad_why_not(const TiledShape& s) {
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.ph >= s.kH || s.pw >= s.kW) return "needs padding < kernel size";
    return lane_weights_why_not<T>(s);
}
template <typename T>
bool lane_weights_input_grad_worth(const TiledShape& s) {
    return lane_weights_worth<T>(tiled_input_grad_as_forward(s), s.T_h);
}

template <typename T>
bool phase_implicit_worth(const TiledShape& s) {
    return phases_pay(s) && tiled_weight_grad_copy_bytes<T>(s) <= kImplicitCopyBytes;
}

// --- pooling ------------------------------------------------------------------------------------------

const char* phase_split_why_not(const PoolShape& s) {
    if (pool_dilated(s)) return "needs dilation 1 (its phases hold adjacent taps)";
    return phase_split_fits(s) ? nullptr : "needs a kernel width of at most 2 * W + 64 (its rows span the windows)";
}
template <typename T>
bool phase_split_worth(const PoolShape& s) { return pool_vector_columns<T>(s) > 0; }

template <typename T>
bool streamed_worth(const UnpoolShape& s) { return unpool_streaming_pays(s, sizeof(T)); }

// --- non-finite values at the borders (border_products.h) ----------------------------------------------

// Kernels that multiply zero padding (or read a zero-padded dy): the repairs then take out what 0 × NaN
// added. One wrapper per op for the dense (ConvShape) and the tiled and unshared (TiledShape) kernels.
template <typename T, typename Shape, void (*K)(const T*, const T*, const T*, T*, const Shape&)>
void unpadded_forward(const T* x, const T* w, const T* b, T* y, const Shape& s) {
    K(x, w, b, y, s);
    forward_border_products(x, w, b, y, kernel_grid(s));
}
template <typename T, typename Shape, void (*K)(const T*, const T*, T*, const Shape&)>
void unpadded_weight_grad(const T* x, const T* dy, T* dw, const Shape& s) {
    K(x, dy, dw, s);
    weight_grad_border_products(x, dy, dw, kernel_grid(s));
}
template <typename T, typename Shape, void (*K)(const T*, const T*, T*, const Shape&)>
void unpadded_input_grad(const T* dy, const T* w, T* dx, const Shape& s) {
    K(dy, w, dx, s);
    input_grad_border_products(dy, w, dx, kernel_grid(s));
}

// Winograd's transforms mix a tile's inputs and a filter's taps, so one NaN or Inf would reach outputs whose
// windows never read it. It then leaves a non-finite output too: one pass over the output (all_finite,
// border_products.h) finds such calls, and the packed GEMM with its border repair redoes them.
template <typename T, ConvForward<T> K>
void finite_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    K(x, w, b, y, s);
    if (!all_finite(y, s.N * s.C_out * s.HW_out()))
        unpadded_forward<T, ConvShape, conv2d_packed_gemm<T>>(x, w, b, y, s);
}
template <typename T, ConvBackward<T> K>
void finite_input_grad(const T* dy, const T* w, T* dx, const ConvShape& s) {
    K(dy, w, dx, s);
    if (!all_finite(dx, s.N * s.C_in * s.HW())) conv2d_input_grad_packed_gemm<T>(dy, w, dx, s);
}
template <typename T, ConvBackward<T> K>
void finite_weight_grad(const T* x, const T* dy, T* dw, const ConvShape& s) {
    K(x, dy, dw, s);
    if (!all_finite(dw, s.C_out * s.K()))
        unpadded_weight_grad<T, ConvShape, conv2d_weight_grad_packed_gemm<T>>(x, dy, dw, s);
}

// --- the lists ----------------------------------------------------------------------------------------

template <typename Shape, typename Run, size_t N>
constexpr ImplList<Shape, Run> list(const Impl<Shape, Run> (&impls)[N]) {
    return {impls, (int)N};
}

template <typename T>
struct Lists {
    using CF = ConvForward<T>;
    using CB = ConvBackward<T>;
    using LF = TiledForward<T>;
    using LB = TiledBackward<T>;
    static constexpr Impl<ConvShape, CF> conv2d[] = {
        {"conv2d__winograd_f4x3", winograd_why_not<3>, winograd_worth<4>, finite_forward<T, conv2d_winograd<T, 4>>,
         "winograd", "F(4x4,3x3)"},
        {"conv2d__winograd_f2x3", winograd_why_not<3>, winograd_worth<2>, finite_forward<T, conv2d_winograd<T, 2>>,
         "winograd", "F(2x2,3x3)"},
        {"conv2d__winograd_f4x5", winograd_why_not<5>, winograd5_worth, finite_forward<T, conv2d_winograd<T, 4, 5>>,
         "winograd", "F(4x4,5x5)"},
        {"conv2d__winograd_dilated_f4x3", winograd_dilated_why_not, never,
         finite_forward<T, conv2d_winograd_dilated<T, 4>>, "winograd", "F(4x4,3x3) phases"},
        {"conv2d__winograd_dilated_f2x3", winograd_dilated_why_not, never,
         finite_forward<T, conv2d_winograd_dilated<T, 2>>, "winograd", "F(2x2,3x3) phases"},
        {"conv2d__fft_t32", fft_why_not<T, 32>, fft_worth<T, 32>, finite_forward<T, conv2d_fft<T, 32>>, "fft", "32x32"},
        {"conv2d__fft_t64", fft_why_not<T, 64>, fft_worth<T, 64>, finite_forward<T, conv2d_fft<T, 64>>, "fft", "64x64"},
        {"conv2d__fft_t128", fft_why_not<T, 128>, fft_worth<T, 128>, finite_forward<T, conv2d_fft<T, 128>>, "fft",
         "128x128"},
        {"conv2d__fft_t16", fft_why_not<T, 16>, fft_worth<T, 16>, finite_forward<T, conv2d_fft<T, 16>>, "fft", "16x16"},
        {"conv2d__depthwise_channels_last", channels_last_why_not, channels_last_worth<T>,
         unpadded_forward<T, ConvShape, conv2d_depthwise_channels_last<T>>},
        {"conv2d__depthwise", depthwise_why_not, depthwise_worth,
         unpadded_forward<T, ConvShape, conv2d_depthwise<T>>},
        {"conv2d__pointwise_folded", pointwise_folded_why_not, pointwise_folded_worth<T>, conv2d_pointwise_folded<T>},
        {"conv2d__implicit_gemm", implicit_why_not<T>, compact_reach,
         unpadded_forward<T, ConvShape, conv2d_implicit<T>>},
        {"conv2d__packed_gemm", always, nullptr, unpadded_forward<T, ConvShape, conv2d_packed_gemm<T>>},
    };
    static constexpr Impl<ConvShape, CB> conv2d_input_grad[] = {
        {"conv2d_input_grad__winograd_f4x3", winograd_input_grad_why_not<3>, winograd_input_grad_worth<4>,
         finite_input_grad<T, conv2d_input_grad_winograd<T, 4>>, "winograd", "F(4x4,3x3)"},
        {"conv2d_input_grad__winograd_f2x3", winograd_input_grad_why_not<3>, winograd_input_grad_worth<2>,
         finite_input_grad<T, conv2d_input_grad_winograd<T, 2>>, "winograd", "F(2x2,3x3)"},
        {"conv2d_input_grad__winograd_f4x5", winograd_input_grad_why_not<5>, winograd5_input_grad_worth,
         finite_input_grad<T, conv2d_input_grad_winograd<T, 4, 5>>, "winograd", "F(4x4,5x5)"},
        {"conv2d_input_grad__winograd_dilated_f4x3", winograd_dilated_why_not, never,
         finite_input_grad<T, conv2d_input_grad_winograd_dilated<T, 4>>, "winograd", "F(4x4,3x3) phases"},
        {"conv2d_input_grad__winograd_dilated_f2x3", winograd_dilated_why_not, never,
         finite_input_grad<T, conv2d_input_grad_winograd_dilated<T, 2>>, "winograd", "F(2x2,3x3) phases"},
        {"conv2d_input_grad__fft_t32", fft_input_grad_why_not<T, 32>, fft_input_grad_worth<T, 32>,
         finite_input_grad<T, conv2d_input_grad_fft<T, 32>>, "fft", "32x32"},
        {"conv2d_input_grad__fft_t64", fft_input_grad_why_not<T, 64>, fft_input_grad_worth<T, 64>,
         finite_input_grad<T, conv2d_input_grad_fft<T, 64>>, "fft", "64x64"},
        {"conv2d_input_grad__fft_t128", fft_input_grad_why_not<T, 128>, fft_input_grad_worth<T, 128>,
         finite_input_grad<T, conv2d_input_grad_fft<T, 128>>, "fft", "128x128"},
        {"conv2d_input_grad__fft_t16", fft_input_grad_why_not<T, 16>, fft_input_grad_worth<T, 16>,
         finite_input_grad<T, conv2d_input_grad_fft<T, 16>>, "fft", "16x16"},
        {"conv2d_input_grad__depthwise_channels_last", channels_last_why_not, channels_last_worth<T>,
         unpadded_input_grad<T, ConvShape, conv2d_input_grad_depthwise_channels_last<T>>},
        {"conv2d_input_grad__depthwise", depthwise_why_not, depthwise_worth,
         unpadded_input_grad<T, ConvShape, conv2d_input_grad_depthwise<T>>},
        {"conv2d_input_grad__pointwise_folded", pointwise_folded_why_not, pointwise_folded_worth<T>,
         conv2d_input_grad_pointwise_folded<T>},
        {"conv2d_input_grad__implicit_gemm", implicit_input_grad_why_not<T>, implicit_input_grad_worth<T>,
         unpadded_input_grad<T, ConvShape, conv2d_input_grad_implicit<T>>},
        {"conv2d_input_grad__packed_gemm", always, nullptr, conv2d_input_grad_packed_gemm<T>},
    };
    static constexpr Impl<ConvShape, CB> conv2d_weight_grad[] = {
        {"conv2d_weight_grad__winograd_f4x3", winograd_why_not<3>, winograd_weight_grad_worth<4>,
         finite_weight_grad<T, conv2d_weight_grad_winograd<T, 4>>, "winograd", "F(4x4,3x3)"},
        {"conv2d_weight_grad__winograd_f2x3", winograd_why_not<3>, winograd_weight_grad_worth<2>,
         finite_weight_grad<T, conv2d_weight_grad_winograd<T, 2>>, "winograd", "F(2x2,3x3)"},
        {"conv2d_weight_grad__winograd_f4x5", winograd_why_not<5>, winograd5_weight_grad_worth,
         finite_weight_grad<T, conv2d_weight_grad_winograd<T, 4, 5>>, "winograd", "F(4x4,5x5)"},
        {"conv2d_weight_grad__winograd_dilated_f4x3", winograd_dilated_why_not, never,
         finite_weight_grad<T, conv2d_weight_grad_winograd_dilated<T, 4>>, "winograd", "F(4x4,3x3) phases"},
        {"conv2d_weight_grad__winograd_dilated_f2x3", winograd_dilated_why_not, never,
         finite_weight_grad<T, conv2d_weight_grad_winograd_dilated<T, 2>>, "winograd", "F(2x2,3x3) phases"},
        {"conv2d_weight_grad__fft_t32", fft_weight_grad_why_not<T, 32>, fft_weight_grad_worth<T, 32>,
         finite_weight_grad<T, conv2d_weight_grad_fft<T, 32>>, "fft", "32x32"},
        {"conv2d_weight_grad__fft_t64", fft_weight_grad_why_not<T, 64>, fft_weight_grad_worth<T, 64>,
         finite_weight_grad<T, conv2d_weight_grad_fft<T, 64>>, "fft", "64x64"},
        {"conv2d_weight_grad__fft_t128", fft_weight_grad_why_not<T, 128>, fft_weight_grad_worth<T, 128>,
         finite_weight_grad<T, conv2d_weight_grad_fft<T, 128>>, "fft", "128x128"},
        {"conv2d_weight_grad__fft_t16", fft_weight_grad_why_not<T, 16>, fft_weight_grad_worth<T, 16>,
         finite_weight_grad<T, conv2d_weight_grad_fft<T, 16>>, "fft", "16x16"},
        {"conv2d_weight_grad__depthwise_channels_last", channels_last_why_not, channels_last_weight_grad_worth<T>,
         unpadded_weight_grad<T, ConvShape, conv2d_weight_grad_depthwise_channels_last<T>>},
        {"conv2d_weight_grad__depthwise", depthwise_why_not, depthwise_worth,
         unpadded_weight_grad<T, ConvShape, conv2d_weight_grad_depthwise<T>>},
        {"conv2d_weight_grad__pointwise_folded", pointwise_folded_why_not, pointwise_folded_worth<T>,
         conv2d_weight_grad_pointwise_folded<T>},
        {"conv2d_weight_grad__implicit_gemm", always, implicit_weight_grad_worth<T>,
         unpadded_weight_grad<T, ConvShape, conv2d_weight_grad_implicit<T>>},
        {"conv2d_weight_grad__packed_gemm", always, nullptr,
         unpadded_weight_grad<T, ConvShape, conv2d_weight_grad_packed_gemm<T>>},
    };
    static constexpr Impl<TiledShape, LF> tiled_conv2d[] = {
        {"tiled_conv2d__lane_weights", lane_weights_why_not<T>, lane_weights_forward_worth<T>,
         unpadded_forward<T, TiledShape, tiled_conv2d_lane_weights<T>>},
        {"tiled_conv2d__phase_poly", always, phases_pay,
         unpadded_forward<T, TiledShape, tiled_conv2d_phase_poly<T>>},
        {"tiled_conv2d__gather_gemm", always, nullptr, unpadded_forward<T, TiledShape, tiled_conv2d_gather_gemm<T>>},
    };
    static constexpr Impl<TiledShape, LB> tiled_conv2d_input_grad[] = {
        {"tiled_conv2d_input_grad__lane_weights", lane_weights_input_grad_why_not<T>,
         lane_weights_input_grad_worth<T>, unpadded_input_grad<T, TiledShape, tiled_conv2d_input_grad_lane_weights<T>>},
        {"tiled_conv2d_input_grad__phase_poly", always, phases_pay, tiled_conv2d_input_grad_phase_poly<T>},
        {"tiled_conv2d_input_grad__gather_gemm", always, nullptr, tiled_conv2d_input_grad_gather_gemm<T>},
    };
    static constexpr Impl<TiledShape, LB> tiled_conv2d_weight_grad[] = {
        {"tiled_conv2d_weight_grad__phase_implicit", always, phase_implicit_worth<T>,
         unpadded_weight_grad<T, TiledShape, tiled_conv2d_weight_grad_phase_implicit<T>>},
        {"tiled_conv2d_weight_grad__gather_gemm", always, nullptr,
         unpadded_weight_grad<T, TiledShape, tiled_conv2d_weight_grad_gather_gemm<T>>},
    };
    // The unshared ops are tiled convs whose grid is the output (unshared_shape): the general tiled
    // kernel computes them too.
    static constexpr Impl<TiledShape, LF> unshared_conv2d[] = {
        {"unshared_conv2d__batch_major", always, nullptr,
         unpadded_forward<T, TiledShape, unshared_conv2d_batch_major<T>>},
        {"unshared_conv2d__gather_gemm", always, nullptr, unpadded_forward<T, TiledShape, tiled_conv2d_gather_gemm<T>>},
    };
    static constexpr Impl<TiledShape, LB> unshared_conv2d_input_grad[] = {
        {"unshared_conv2d_input_grad__batch_major", always, nullptr, unshared_conv2d_input_grad_batch_major<T>},
        {"unshared_conv2d_input_grad__gather_gemm", always, nullptr, tiled_conv2d_input_grad_gather_gemm<T>},
    };
    static constexpr Impl<TiledShape, LB> unshared_conv2d_weight_grad[] = {
        {"unshared_conv2d_weight_grad__batch_major", always, nullptr,
         unpadded_weight_grad<T, TiledShape, unshared_conv2d_weight_grad_batch_major<T>>},
        {"unshared_conv2d_weight_grad__gather_gemm", always, nullptr,
         unpadded_weight_grad<T, TiledShape, tiled_conv2d_weight_grad_gather_gemm<T>>},
    };
    static constexpr Impl<PoolShape, PoolRun<T>> max_pool2d[] = {
        {"max_pool2d__phase_split", phase_split_why_not, phase_split_worth<T>, max_pool2d_phase_split<T>},
        {"max_pool2d__window_scan", always, nullptr, max_pool2d_window_scan<T>},
    };
    static constexpr Impl<UnpoolShape, UnpoolRun<T>> max_unpool2d[] = {
        {"max_unpool2d__streamed", always, streamed_worth<T>, max_unpool2d_streamed<T>},
        {"max_unpool2d__in_place", always, nullptr, max_unpool2d_in_place<T>},
    };
    static constexpr Impl<NormShape, NormForward<T>> batch_norm2d[] = {
        {"batch_norm2d__channel_blocks", always, nullptr, batch_norm2d_channel_blocks<T>},
    };
    static constexpr Impl<NormShape, NormBackward<T>> batch_norm2d_grad[] = {
        {"batch_norm2d_grad__channel_blocks", always, nullptr, batch_norm2d_grad_channel_blocks<T>},
    };

    static constexpr KernelOps<T> ops() {
        return {list(conv2d),          list(conv2d_input_grad),          list(conv2d_weight_grad),
                list(tiled_conv2d),    list(unshared_conv2d),            list(tiled_conv2d_input_grad),
                list(tiled_conv2d_weight_grad), list(unshared_conv2d_input_grad), list(unshared_conv2d_weight_grad),
                list(max_pool2d),      list(max_unpool2d),                list(batch_norm2d),
                list(batch_norm2d_grad)};
    }
};

const KernelTable kTable = {
    kKernelTableVersion,
    kSimdName,
    kVectorBytes,
    {GemmBlock<float>::MR, GemmBlock<float>::NR},
    {GemmBlock<double>::MR, GemmBlock<double>::NR},
    set_num_threads,
    get_num_threads,
    set_poll,
    Lists<float>::ops(),
    Lists<double>::ops(),
};

}  // namespace
}  // namespace fastconv

extern "C" __attribute__((visibility("default"))) const fastconv::KernelTable* fastconv_kernel_table(void) {
    return &fastconv::kTable;
}
