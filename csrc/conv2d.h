// conv2d.h — the dense convolution kernels (forward and both gradients) and their shape record.
#pragma once

#include <stdexcept>
#include <string>

namespace fastconv {

// Everything a dense conv kernel needs: sizes of x (N, C_in, H, W), w (C_out, C_in/groups, kH, kW)
// and y (N, C_out, H_out, W_out); stride, padding (top, left) and dilation per axis; groups.
// The output size is given, not derived: reads outside the input are zero, so asymmetric
// ('same', 'full') padding needs no bottom/right values.
struct ConvShape {
    long N, C_in, H, W, C_out, kH, kW, H_out, W_out;
    long sh, sw, ph, pw, dil_h, dil_w, groups;

    long C_g() const { return C_in / groups; }    // input channels per group
    long M_g() const { return C_out / groups; }   // output channels per group
    long K() const { return C_g() * kH * kW; }    // GEMM reduction length (im2col rows)
    long HW_out() const { return H_out * W_out; }
    long HW() const { return H * W; }
    double flops() const { return 2.0 * N * C_out * HW_out() * K(); }  // multiply-adds x 2
    // 1x1, stride 1, unpadded, same size: the conv is a plain GEMM on x, no im2col.
    bool is_pointwise() const {
        return kH == 1 && kW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && H_out == H && W_out == W;
    }
};

// Precondition check (throws std::invalid_argument naming the bad value): positive sizes, groups
// dividing both channel counts. Called by the bindings and the C ABI before any pointer is touched.
void check_conv_shape(const ConvShape& s);

// The implementations of the three ops (csrc/registry.cpp lists them and decides which runs). Each
// computes, for every problem it accepts:
//   forward      y = conv(x, w) + b   x (N,C_in,H,W), w (C_out,C_in/g,kH,kW), b (C_out) or null, y (N,C_out,H_out,W_out)
//   input grad   dx = adjoint of conv in x          dy (N,C_out,H_out,W_out), w -> dx (N,C_in,H,W)
//   weight grad  dw = Σ_n dy ⋆ x                    x, dy -> dw (C_out,C_in/g,kH,kW)

// Packed, cache-blocked GEMM over packed im2col blocks (conv2d.cpp): every problem.
template <typename T>
void conv2d_packed_gemm(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T>
void conv2d_input_grad_packed_gemm(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T>
void conv2d_weight_grad_packed_gemm(const T* x, const T* dy, T* dw, const ConvShape& s);

// Direct kernels (depthwise.cpp) for one input channel per group, where a GEMM would be too thin.
template <typename T>
void conv2d_depthwise(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T>
void conv2d_input_grad_depthwise(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T>
void conv2d_weight_grad_depthwise(const T* x, const T* dy, T* dw, const ConvShape& s);

// Depthwise (groups == C_in == C_out) vectorised across channels (depthwise_channels_last.cpp), for
// strided layers and rows narrower than a vector, where the plane kernels above lose their vectors.
template <typename T>
void conv2d_depthwise_channels_last(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T>
void conv2d_input_grad_depthwise_channels_last(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T>
void conv2d_weight_grad_depthwise_channels_last(const T* x, const T* dy, T* dw, const ConvShape& s);

// 1x1 stride-1 ungrouped convs as one GEMM over all images' positions (pointwise.cpp), for small maps.
template <typename T>
void conv2d_pointwise_folded(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
template <typename T>
void conv2d_input_grad_pointwise_folded(const T* dy, const T* w, T* dx, const ConvShape& s);
template <typename T>
void conv2d_weight_grad_pointwise_folded(const T* x, const T* dy, T* dw, const ConvShape& s);

}  // namespace fastconv
