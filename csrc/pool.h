// pool.h — max pooling that records its switches, and the unpooling that consumes them.
#pragma once

#include <cstdint>

namespace fastconv {

// x (N, C, H, W) -> y (N, C, H_out, W_out); kernel, stride, padding (top/left = bottom/right) per axis.
struct PoolShape {
    long N, C, H, W, H_out, W_out;
    long kh, kw, sh, sw, ph, pw;
};

void check_pool_shape(const PoolShape& s);

// y = window max, switches = flat index h*W + w of the first maximum (NaN wins) in each window
template <typename T>
void max_pool2d(const T* x, T* y, int64_t* switches, const PoolShape& s);

// out (planes, plane_out) = 0 except out[p][switches[p][i]] += y[p][i]; y/switches (planes, plane_in).
// Returns how many switches lie outside [0, plane_out): those are skipped.
template <typename T>
long max_unpool2d(const T* y, const int64_t* switches, T* out, long planes, long plane_in, long plane_out);

}  // namespace fastconv
