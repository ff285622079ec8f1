// batch_norm.h — batch normalisation with the batch's statistics (training mode), forward and gradient.
#pragma once

namespace fastconv {

// x (N, C, H, W) seen as (N, C, HW): each channel is normalised over its N*HW values.
struct NormShape {
    long N, C, HW;
    double eps;         // added to the (biased) variance; forward only
    bool relu = false;  // a ReLU fused after it: y = max(y, 0), and the gradient passes dy only where y > 0
};

void check_norm_shape(const NormShape& s);

// y = (x - mean) * inv_std * w + b per channel, mean and inv_std = 1 / sqrt(var + eps) of the batch
// (biased variance); w, b may be null (1 and 0). mean and inv_std (C,) are outputs. With relu, y is
// computed from mean and inv_std as stored, so that the gradient recomputes it exactly for the mask.
template <typename T>
void batch_norm2d_channel_blocks(const T* x, const T* w, const T* b, T* y, T* mean, T* inv_std, const NormShape& s);

// Given dy and the forward's x, mean, inv_std (and w, b, may be null): db = sum dy, dw = sum dy * x_hat,
// dx = w * inv_std * (dy - db / M - x_hat * dw / M), x_hat = (x - mean) * inv_std, M = N*HW; with relu, dy
// is first zeroed where the forward's y (recomputed) was not > 0. b is read only then.
template <typename T>
void batch_norm2d_grad_channel_blocks(const T* dy, const T* x, const T* mean, const T* inv_std, const T* w,
                                      const T* b, T* dx, T* dw, T* db, const NormShape& s);

}  // namespace fastconv
