// pool.h — max pooling that records its switches, and the unpooling that consumes them.
#pragma once

#include <cstdint>

namespace fastconv {

// x (N, C, H, W) -> y (N, C, H_out, W_out); kernel, stride, padding (top/left = bottom/right) and
// dilation (tap a of a window reads row h0 + a*dil_h) per axis.
struct PoolShape {
    long N, C, H, W, H_out, W_out;
    long kh, kw, sh, sw, ph, pw;
    long dil_h = 1, dil_w = 1;
};

// Unpool: y, switches (planes, plane_in) -> out (planes, plane_out).
struct UnpoolShape {
    long planes, plane_in, plane_out;
};

void check_pool_shape(const PoolShape& s);

// y = window max, switches = flat index h*W + w of the first maximum (NaN wins) in each window.
// phase_split: the windows inside the plane's columns in vectors, over each input row split once into
// its stride phases (the others, clipped by the border, in scalar code); window_scan: every window in
// scalar code (the only one that takes a dilation). phase_split applies when pool_vector_columns(s) > 0.
template <typename T>
void max_pool2d_phase_split(const T* x, T* y, int64_t* switches, const PoolShape& s);
template <typename T>
void max_pool2d_window_scan(const T* x, T* y, int64_t* switches, const PoolShape& s);
template <typename T>
long pool_vector_columns(const PoolShape& s);
// phase_split's scratch rows span the windows, padding included: it takes kernels of at most about twice
// the input's width, so that its workspace follows the input, never the kernel alone.
inline bool phase_split_fits(const PoolShape& s) { return s.kw <= 2 * s.W + 64; }
inline bool pool_dilated(const PoolShape& s) { return s.dil_h != 1 || s.dil_w != 1; }

// out = 0 except out[p][switches[p][i]] += y[p][i]. Returns how many switches lie outside
// [0, plane_out): those are skipped. in_place scatters into out; streamed builds each plane in a
// scratch plane and streams it out (pays for outputs far larger than the caches, planes within L2).
template <typename T>
long max_unpool2d_in_place(const T* y, const int64_t* switches, T* out, const UnpoolShape& s);
template <typename T>
long max_unpool2d_streamed(const T* y, const int64_t* switches, T* out, const UnpoolShape& s);
bool unpool_streaming_pays(const UnpoolShape& s, long element_bytes);

}  // namespace fastconv
