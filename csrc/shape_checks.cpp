// shape_checks.cpp — the preconditions every kernel entry point checks before touching a pointer
// (called by the bindings and the C ABI, in the front library: the kernels themselves only compute).
#include <stdexcept>
#include <string>

#include "batch_norm.h"
#include "conv2d.h"
#include "pool.h"
#include "tiled_conv.h"

namespace fastconv {

void check_conv_shape(const ConvShape& s) {
    const long dims[] = {s.N, s.C_in, s.H, s.W, s.C_out, s.kH, s.kW, s.H_out, s.W_out,
                         s.sh, s.sw, s.dil_h, s.dil_w, s.groups};
    for (long d : dims)
        if (d < 1) throw std::invalid_argument("conv2d: sizes, stride, dilation and groups must be >= 1");
    if (s.ph < 0 || s.pw < 0) throw std::invalid_argument("conv2d: padding must be >= 0");
    if (s.C_in % s.groups || s.C_out % s.groups)
        throw std::invalid_argument("conv2d: groups=" + std::to_string(s.groups) + " must divide C_in=" +
                                    std::to_string(s.C_in) + " and C_out=" + std::to_string(s.C_out));
}

void check_pool_shape(const PoolShape& s) {
    const long dims[] = {s.N, s.C, s.H, s.W, s.H_out, s.W_out, s.kh, s.kw, s.sh, s.sw, s.dil_h, s.dil_w};
    for (long d : dims)
        if (d < 1) throw std::invalid_argument("max_pool2d: sizes, kernel, stride and dilation must be >= 1");
    if (s.ph < 0 || s.pw < 0) throw std::invalid_argument("max_pool2d: padding must be >= 0");
}

void check_norm_shape(const NormShape& s) {
    if (s.N < 1 || s.C < 1 || s.HW < 1) throw std::invalid_argument("batch_norm2d: sizes must be >= 1");
    if (!(s.eps >= 0)) throw std::invalid_argument("batch_norm2d: eps must be >= 0");
}

void check_tiled_shape(const TiledShape& s) {
    long v[] = {s.N, s.C_in, s.H, s.W, s.C_out, s.kH, s.kW, s.H_out, s.W_out, s.sh, s.sw, s.T_h, s.T_w};
    for (long e : v)
        if (e < 1) throw std::invalid_argument("tiled/unshared conv: sizes, strides and tile must be >= 1");
    if (s.ph < 0 || s.pw < 0) throw std::invalid_argument("tiled/unshared conv: padding must be >= 0");
}

}  // namespace fastconv
