// tiled_conv.h — tiled and unshared (locally connected) convolution: kernels without full weight sharing.
//
// Tiled conv (Le et al. 2010) cycles T_h x T_w kernels over the output: position (i, j) uses kernel
// w[i % T_h, j % T_w]. Unshared conv is the tiled op with T = (H_out, W_out) (one kernel per position)
// and a bias per position, so both share one implementation: for each tile phase (th, tw), the
// positions {(th + T_h*i', tw + T_w*j')} of every image form the columns of one GEMM with that
// phase's kernel, exactly as a dense conv's output positions do.
#pragma once

namespace fastconv {

// x (N, C_in, H, W), w (T_h, T_w, C_out, C_in, kH, kW), y (N, C_out, H_out, W_out); stride and
// padding (top, left). Bias element for (o, i, j) is b[o*b_o + i*b_i + j*b_j]: (1, 0, 0) for tiled
// (bias (C_out,)), (H_out*W_out, W_out, 1) for unshared (bias (C_out, H_out, W_out)).
struct LocalShape {
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
void check_local_shape(const LocalShape& s);

// y = tiled conv of x with w, plus bias (b may be null)
template <typename T>
void tiled_conv2d(const T* x, const T* w, const T* b, T* y, const LocalShape& s);

// dx = adjoint of tiled_conv2d in x          dy (N, C_out, H_out, W_out) -> dx (N, C_in, H, W)
template <typename T>
void tiled_conv2d_input_grad(const T* dy, const T* w, T* dx, const LocalShape& s);

// dw[th,tw] = Σ over the phase's positions of dy ⋆ x      -> dw (T_h, T_w, C_out, C_in, kH, kW)
template <typename T>
void tiled_conv2d_weight_grad(const T* x, const T* dy, T* dw, const LocalShape& s);

// Few, large phases on a polyphase copy of the input (tiled_poly.cpp); the tiled kernels dispatch to
// these when every phase has enough positions per image.
template <typename T>
void tiled_forward_poly(const T* x, const T* w, const T* b, T* y, const LocalShape& s);
template <typename T>
void tiled_input_grad_poly(const T* dy, const T* w, T* dx, const LocalShape& s);

// Forward and stride-1 input gradient by implicit GEMM with lane-varying weights (tiled_implicit.cpp),
// when T_w divides the vector width, and the weight gradient per phase; they return false (doing
// nothing) where they do not apply.
template <typename T>
bool tiled_forward_implicit(const T* x, const T* w, const T* b, T* y, const LocalShape& s);
template <typename T>
bool tiled_input_grad_implicit(const T* dy, const T* w, T* dx, const LocalShape& s);
template <typename T>
bool tiled_weight_grad_implicit(const T* x, const T* dy, T* dw, const LocalShape& s);

// Unshared conv in batch-major layout (unshared_conv.cpp); the tiled kernels dispatch to these when
// the grid is the output size (is_unshared) and the bias strides are the unshared ones.
inline bool is_unshared(const LocalShape& s) {
    return s.T_h == s.H_out && s.T_w == s.W_out && s.b_o == s.H_out * s.W_out && s.b_i == s.W_out && s.b_j == 1;
}
template <typename T>
void unshared_forward(const T* x, const T* w, const T* b, T* y, const LocalShape& s);
template <typename T>
void unshared_input_grad(const T* dy, const T* w, T* dx, const LocalShape& s);
template <typename T>
void unshared_weight_grad(const T* x, const T* dy, T* dw, const LocalShape& s);

// Unshared conv = tiled conv with T = (H_out, W_out); s.T_h/T_w and the bias strides must say so.
template <typename T>
void unshared_conv2d(const T* x, const T* w, const T* b, T* y, const LocalShape& s) {
    tiled_conv2d(x, w, b, y, s);
}
template <typename T>
void unshared_conv2d_input_grad(const T* dy, const T* w, T* dx, const LocalShape& s) {
    tiled_conv2d_input_grad(dy, w, dx, s);
}
template <typename T>
void unshared_conv2d_weight_grad(const T* x, const T* dy, T* dw, const LocalShape& s) {
    tiled_conv2d_weight_grad(x, dy, dw, s);
}

// The shape record of an unshared conv (grid = output size, per-position bias strides).
inline LocalShape unshared_shape(LocalShape s) {
    s.T_h = s.H_out;
    s.T_w = s.W_out;
    s.b_o = s.H_out * s.W_out;
    s.b_i = s.W_out;
    s.b_j = 1;
    return s;
}

}  // namespace fastconv
