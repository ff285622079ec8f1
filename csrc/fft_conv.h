// fft_conv.h — convolution by FFT over n x n tiles (fft_conv.cpp): what it computes, and the cost model
// (calibrated by measurement: docs/performance.md) the registry compares with the direct kernels'.
#pragma once

#include <algorithm>
#include <cmath>

#include "conv2d.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {

// Tile sizes (power-of-two FFT lengths) that have an implementation.
constexpr int kFftTiles[] = {16, 32, 64, 128};

// Per thread the spectra of a tile group (every input channel) and the kernel's spectra (every pair of
// channels) must fit in these.
constexpr double kFftScratchBytes = 256.0 * (1 << 20), kFftKernelBytes = 1024.0 * (1 << 20);

inline long fft_kernel_extent(long k, long dil) { return (k - 1) * dil + 1; }

// Why the FFT kernels with tile n cannot compute s (nullptr: they can); `weight_grad`: the weight gradient,
// which holds the spectra of the input and output channels of at least one tile group at once.
inline const char* fft_why_not(const ConvShape& s, int n, long elem, bool weight_grad = false) {
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.groups != 1) return "needs groups == 1";
    if (fft_kernel_extent(s.kH, s.dil_h) > n || fft_kernel_extent(s.kW, s.dil_w) > n)
        return "needs a (dilated) kernel no larger than its tile";
    const double bins = n * (n / 2 + 1.0);
    if (weight_grad && bins * 2 * (s.C_in + s.C_out + 8) * kVectorBytes > kFftScratchBytes)
        return "needs fewer channels (their spectra per tile group)";
    if (bins * 2 * (s.C_in + 4) * kVectorBytes > kFftScratchBytes) return "needs fewer input channels (its spectra per tile group)";
    if (bins * 2 * s.C_in * s.C_out * elem > kFftKernelBytes) return "needs fewer channel pairs (its kernel spectra)";
    return nullptr;
}

// Time of the FFT kernel on s with tile n, in units of about 2 ns of one core (fitted to single-thread
// times of planes and layers with 3x3 to 31x31 kernels, docs/performance.md): per group of L tiles, the
// 2-D transforms of every input and output channel (n² (log2 n + 4) each: butterflies, gathers and
// scatters) and the channel mix (6 per bin and channel pair); plus the kernel's transforms. The weight
// gradient's products (`weight_grad`) reduce over the tiles in register blocks of channel pairs, which
// measured twice as fast per pair (3; its channels padded to whole blocks, fft_conv.cpp).
inline double fft_cost(const ConvShape& s, int n, int lanes, bool weight_grad = false) {
    const long kh = fft_kernel_extent(s.kH, s.dil_h), kw = fft_kernel_extent(s.kW, s.dil_w);
    const double tiles = s.N * (double)ceil_div(s.H_out, n - kh + 1) * ceil_div(s.W_out, n - kw + 1);
    const double transform = n * n * (__builtin_ctz(n) + 4.0), bins = n * (n / 2 + 1.0);
    const double mix = weight_grad ? 3.0 * bins * round_up(s.C_in, 2) * round_up(s.C_out, lanes >= 16 ? 4 : 2)
                                   : 6.0 * bins * s.C_in * s.C_out;
    const double per_group = (s.C_in + s.C_out) * transform + mix;
    return std::ceil(tiles / lanes) * per_group + std::ceil(s.C_in * s.C_out / (double)lanes) * transform;
}

// The direct kernels' time in the same units: 0.2 per L multiply-adds (they run near the FMA peak on
// planes and layers alike once the kernel is 7x7 or larger; smaller kernels never reach FFT's range).
inline double direct_cost(const ConvShape& s, int lanes) {
    return 0.2 * s.N * (double)s.C_out * s.HW_out() * s.C_g() * s.kH * s.kW / lanes;
}

template <typename T, int n>
void conv2d_fft(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
// The input gradient of a stride-1 layer: conv2d_fft on input_grad_as_forward(s) (implicit.h).
template <typename T, int n>
void conv2d_input_grad_fft(const T* dy, const T* w, T* dx, const ConvShape& s);
// The weight gradient of a stride-1 layer: per bin, the channel pairs' products summed over the tiles.
template <typename T, int n>
void conv2d_weight_grad_fft(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
