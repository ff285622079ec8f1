// fft_conv.h — convolution by FFT over n x n tiles (fft_conv.cpp): what it computes, and the cost model
// (in vector-instruction units, calibrated by measurement: docs/performance.md) the registry compares.
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

inline const char* fft_why_not(const ConvShape& s, int n, long elem) {
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.groups != 1) return "needs groups == 1";
    if (fft_kernel_extent(s.kH, s.dil_h) > n || fft_kernel_extent(s.kW, s.dil_w) > n)
        return "needs a (dilated) kernel no larger than its tile";
    const double bins = n * (n / 2 + 1.0);
    if (bins * 2 * (s.C_in + 4) * kVectorBytes > kFftScratchBytes) return "needs fewer input channels (its spectra per tile group)";
    if (bins * 2 * s.C_in * s.C_out * elem > kFftKernelBytes) return "needs fewer channel pairs (its kernel spectra)";
    return nullptr;
}

// Time of the FFT kernel on s with tile n, in vector-instruction units: per group of L tiles, the tile
// transforms of every channel (n²·log2 n butterflies in all, about 4 units each, plus gather/scatter),
// and per bin the channel mix (4 FMAs per channel pair at 2 per unit); plus the kernel's transforms.
inline double fft_cost(const ConvShape& s, int n, int lanes) {
    const double kh = fft_kernel_extent(s.kH, s.dil_h), kw = fft_kernel_extent(s.kW, s.dil_w);
    const double tiles = s.N * (double)ceil_div(s.H_out, n - (long)kh + 1) * ceil_div(s.W_out, n - (long)kw + 1);
    const double groups = std::ceil(tiles / lanes), log2n = __builtin_ctz(n), bins = n * (n / 2 + 1.0);
    const double transform = 2.2 * n * n * log2n + 3.0 * n * n;
    const double per_group = (s.C_in + s.C_out) * transform + 2.0 * bins * s.C_in * s.C_out;
    return groups * per_group + std::ceil(s.C_in * s.C_out / (double)lanes) * transform;
}

// The direct kernels' time in the same units: multiply-adds at 2 vector FMAs per unit, less efficient
// on thin GEMMs (few channels): a single plane runs far below the FMA peak.
inline double direct_cost(const ConvShape& s, int lanes) {
    const double fmas = s.N * (double)s.C_out * s.HW_out() * s.C_g() * s.kH * s.kW / lanes;
    const double efficiency = std::min(1.0, 0.25 + (s.C_g() * s.kH * s.kW) / 1024.0);
    return fmas / (2 * 0.8 * efficiency);
}

template <typename T, int n>
void conv2d_fft(const T* x, const T* w, const T* b, T* y, const ConvShape& s);

}  // namespace fastconv
