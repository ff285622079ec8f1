// im2col.h — one row of the (virtual) im2col matrix at a time: gather it from x, or scatter-add it
// back into dx (col2im). The conv kernels never build the whole matrix; they gather rows straight
// into the GEMM's packed-B layout (see conv2d.cpp), so the workspace is one packed block.
//
// im2col row k = (c, a, b) over output positions j = oh*W_out + ow holds
//   x[c, oh*sh - ph + a*dil_h, ow*sw - pw + b*dil_w], zero where that falls outside the input.
#pragma once

#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "parallel.h"

namespace fastconv {

// The t in [0, n) with 0 <= start + t*step < limit form one range [lo, hi) (step > 0); computed
// once per output row so the copy loops below carry no bounds checks.
inline void valid_range(long start, long step, long n, long limit, long& lo, long& hi) {
    if (step == 1) {  // no divisions: this runs once per output row, often for a dozen elements
        lo = std::max(-start, 0L);
        hi = limit - start;
    } else {
        lo = start >= 0 ? 0 : ceil_div(-start, step);
        hi = start >= limit ? 0 : (limit - 1 - start) / step + 1;
    }
    lo = std::min(lo, n);
    hi = std::max(lo, std::min(hi, n));
}

// row[0:n) = im2col row (a, b) of input plane xc, output positions [j0, j0+n).
template <typename T>
void im2col_row(const T* xc, const ConvShape& s, long a, long b, long j0, long n, T* row) {
    long oh = j0 / s.W_out, ow = j0 % s.W_out;
    for (long t = 0; t < n; ++oh, ow = 0) {
        long seg = std::min(s.W_out - ow, n - t);
        long ih = oh * s.sh - s.ph + a * s.dil_h;
        T* r = row + t;
        t += seg;
        if (ih < 0 || ih >= s.H) {
            std::fill(r, r + seg, T(0));
            continue;
        }
        const T* xr = xc + ih * s.W;
        long iw0 = ow * s.sw - s.pw + b * s.dil_w, lo, hi;
        valid_range(iw0, s.sw, seg, s.W, lo, hi);
        std::fill(r, r + lo, T(0));
        if (s.sw == 1) {
            if (hi > lo) std::memcpy(r + lo, xr + iw0 + lo, (hi - lo) * sizeof(T));
        } else {
            for (long u = lo; u < hi; ++u) r[u] = xr[iw0 + u * s.sw];
        }
        std::fill(r + hi, r + seg, T(0));
    }
}

// dxc[...] += row[0:n): the adjoint of im2col_row (contributions outside the input are dropped).
template <typename T>
void col2im_row(const T* row, const ConvShape& s, long a, long b, long j0, long n, T* dxc) {
    long oh = j0 / s.W_out, ow = j0 % s.W_out;
    for (long t = 0; t < n; ++oh, ow = 0) {
        long seg = std::min(s.W_out - ow, n - t);
        long ih = oh * s.sh - s.ph + a * s.dil_h;
        const T* r = row + t;
        t += seg;
        if (ih < 0 || ih >= s.H) continue;
        T* dr = dxc + ih * s.W;
        long iw0 = ow * s.sw - s.pw + b * s.dil_w, lo, hi;
        valid_range(iw0, s.sw, seg, s.W, lo, hi);
        if (s.sw == 1) {
            for (long u = lo; u < hi; ++u) dr[iw0 + u] += r[u];
        } else {
            for (long u = lo; u < hi; ++u) dr[iw0 + u * s.sw] += r[u];
        }
    }
}

}  // namespace fastconv
