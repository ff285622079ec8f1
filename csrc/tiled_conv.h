// tiled_conv.h — tiled and unshared (locally connected) convolution: kernels without full weight sharing.
//
// Tiled conv (Le et al. 2010) cycles T_h x T_w kernels over the output: position (i, j) uses kernel
// w[i % T_h, j % T_w]. Unshared conv is the tiled op with T = (H_out, W_out) (one kernel per position)
// and a bias per position, so both share one implementation: for each tile phase (th, tw), the
// positions {(th + T_h*i', tw + T_w*j')} of every image form the columns of one GEMM with that
// phase's kernel, exactly as a dense conv's output positions do.
#pragma once

#include "conv2d.h"

namespace fastconv {

// x (N, C_in, H, W), w (T_h, T_w, C_out, C_in, kH, kW), y (N, C_out, H_out, W_out); stride and
// padding (top, left). Bias element for (o, i, j) is b[o*b_o + i*b_i + j*b_j]: (1, 0, 0) for tiled
// (bias (C_out,)), (H_out*W_out, W_out, 1) for unshared (bias (C_out, H_out, W_out)).
struct TiledShape {
    long N, C_in, H, W, C_out, kH, kW, H_out, W_out;
    long sh, sw, ph, pw, T_h, T_w;
    long b_o, b_i, b_j;

    long K() const { return C_in * kH * kW; }
    long phases() const { return T_h * T_w; }
    // Output rows (cols) of phase th (tw): th, th + T_h, ... < H_out; none when th >= H_out.
    long rows(long th) const { return th < H_out ? (H_out - th + T_h - 1) / T_h : 0; }
    long cols(long tw) const { return tw < W_out ? (W_out - tw + T_w - 1) / T_w : 0; }
};

// Throws std::invalid_argument on non-positive sizes (called by the bindings and the C ABI).
void check_tiled_shape(const TiledShape& s);

// The dense conv of the same geometry (one kernel for every position).
inline ConvShape dense_shape(const TiledShape& s) {
    return ConvShape{s.N, s.C_in, s.H, s.W, s.C_out, s.kH, s.kW, s.H_out, s.W_out, s.sh, s.sw, s.ph, s.pw, 1, 1, 1};
}

// The stride-1 input gradient as a forward conv of dy (padding kH-1-ph, kW-1-pw: it needs both >= 0).
inline ConvShape tiled_input_grad_as_forward(const TiledShape& s) {
    return ConvShape{s.N, s.C_out, s.H_out, s.W_out, s.C_in, s.kH, s.kW, s.H, s.W, 1, 1,
                     s.kH - 1 - s.ph, s.kW - 1 - s.pw, 1, 1, 1};
}

// True when every phase has enough output positions per image (kPhasePositions) for a GEMM of its own to pay.
constexpr long kPhasePositions = 16;
inline bool phases_pay(const TiledShape& s) { return s.rows(s.T_h - 1) * s.cols(s.T_w - 1) >= kPhasePositions; }

// The implementations (csrc/registry.cpp lists them and decides which runs). Each computes
//   forward      y = tiled conv of x with w, plus bias (b may be null)
//   input grad   dx = adjoint of the forward in x         dy (N, C_out, H_out, W_out) -> dx (N, C_in, H, W)
//   weight grad  dw[th,tw] = Σ over the phase's positions of dy ⋆ x   -> dw (T_h, T_w, C_out, C_in, kH, kW)

// Gathered columns per block of positions of one phase, one packed GEMM each (tiled_conv.cpp): every problem.
template <typename T>
void tiled_conv2d_gather_gemm(const T* x, const T* w, const T* b, T* y, const TiledShape& s);
template <typename T>
void tiled_conv2d_input_grad_gather_gemm(const T* dy, const T* w, T* dx, const TiledShape& s);
template <typename T>
void tiled_conv2d_weight_grad_gather_gemm(const T* x, const T* dy, T* dw, const TiledShape& s);

// One GEMM per phase on a polyphase copy of the input (tiled_poly.cpp); pays when phases_pay(s).
template <typename T>
void tiled_conv2d_phase_poly(const T* x, const T* w, const T* b, T* y, const TiledShape& s);
template <typename T>
void tiled_conv2d_input_grad_phase_poly(const T* dy, const T* w, T* dx, const TiledShape& s);

// Implicit GEMM with weights that vary across vector lanes (tiled_implicit.cpp): T_w must divide the
// vector width (lane_weights_why_not); the input gradient also needs stride 1 and padding < kernel.
// Pays while the lane pattern wastes few lanes and the per-class weight vectors stay within
// kLaneWeightBytes (lane_weights_worth, on the forward conv that runs).
constexpr long kLaneWeightBytes = 8L << 20;
template <typename T>
void tiled_conv2d_lane_weights(const T* x, const T* w, const T* b, T* y, const TiledShape& s);
template <typename T>
void tiled_conv2d_input_grad_lane_weights(const T* dy, const T* w, T* dx, const TiledShape& s);
template <typename T>
const char* lane_weights_why_not(const TiledShape& s);
template <typename T>
bool lane_weights_worth(const ConvShape& c, long T_h);

// One implicit weight-gradient GEMM per phase over input copies of whole images (tiled_implicit.cpp);
// an image's copy takes tiled_weight_grad_copy_bytes(s).
template <typename T>
void tiled_conv2d_weight_grad_phase_implicit(const T* x, const T* dy, T* dw, const TiledShape& s);
template <typename T>
long tiled_weight_grad_copy_bytes(const TiledShape& s);

// Unshared conv (grid = output size, per-position bias) in batch-major layout (unshared_conv.cpp).
template <typename T>
void unshared_conv2d_batch_major(const T* x, const T* w, const T* b, T* y, const TiledShape& s);
template <typename T>
void unshared_conv2d_input_grad_batch_major(const T* dy, const T* w, T* dx, const TiledShape& s);
template <typename T>
void unshared_conv2d_weight_grad_batch_major(const T* x, const T* dy, T* dw, const TiledShape& s);

// The shape record of an unshared conv (grid = output size, per-position bias strides).
inline TiledShape unshared_shape(TiledShape s) {
    s.T_h = s.H_out;
    s.T_w = s.W_out;
    s.b_o = s.H_out * s.W_out;
    s.b_i = s.W_out;
    s.b_j = 1;
    return s;
}

}  // namespace fastconv
