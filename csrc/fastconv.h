/* fastconv.h — the plain C ABI of the fastconv kernels (libfastconv.so), for C, Julia, Rust, cffi.
 *
 * Arrays are dense, C-contiguous NCHW buffers that the caller allocates; sizes are passed explicitly
 * in a parameter struct. Semantics are those of the Python API (fastconv.conv2d, ...): convolution
 * means cross-correlation; padding is (top, left) and the output size is given by the caller (reads
 * outside the input are zero, so bottom/right padding is implied by H_out, W_out).
 *
 * Every function validates its sizes and returns FC_OK (0) or an error code, never aborting and never
 * touching memory outside the sizes it was given; fc_last_error() returns the message of the last
 * failure on the calling thread. Threads: fc_set_num_threads(n) bounds the OpenMP threads.
 *
 * The kernels are built once per ISA level; the library loads, on first use, the best level the CPU
 * runs (capped by the environment variable FASTCONV_ISA) from the libfastconv_<isa>.so files beside it.
 * fc_isa() names that level ("sse2", "avx2", "avx512", "neon"), or returns NULL when no kernel library
 * could be loaded (fc_last_error() says why; every entry point then fails with that message).
 *
 * Nothing outside the cffi-begin/cffi-end markers is needed to call the library: fastconv.cabi feeds
 * that part of this file to cffi verbatim, so it must stay free of preprocessor directives.
 */
#ifndef FASTCONV_H
#define FASTCONV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
enum { FC_OK = 0, FC_EINVAL = 1, FC_ENOMEM = 2, FC_EINTERNAL = 3 };

/* Dense conv: x (N, C_in, H, W), w (C_out, C_in/groups, kH, kW), b (C_out) or NULL, y (N, C_out, H_out, W_out). */
typedef struct {
    int64_t N, C_in, H, W, C_out, kH, kW, H_out, W_out;
    int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
} fc_conv_params;

/* Tiled conv: w (tile_h, tile_w, C_out, C_in, kH, kW), b (C_out) or NULL.
 * Unshared conv: w (H_out, W_out, C_out, C_in, kH, kW), b (C_out, H_out, W_out) or NULL; tile_* ignored. */
typedef struct {
    int64_t N, C_in, H, W, C_out, kH, kW, H_out, W_out;
    int64_t stride_h, stride_w, pad_h, pad_w, tile_h, tile_w;
} fc_tiled_params;
typedef fc_tiled_params fc_local_params; /* the former name, kept for existing callers */

/* Max-pool: x (N, C, H, W) -> y, switches (N, C, H_out, W_out); pad at most half the kernel;
 * H_out as PyTorch's floor or ceil_mode rule (windows start inside the input or its top/left padding and are
 * clipped at the far edge). fc_max_pool2d_* is fc_max_pool2d_dilated_* with dilation 1.
 * Unpool: y, switches (N, C, H_out, W_out) -> out (N, C, H, W). */
typedef struct {
    int64_t N, C, H, W, H_out, W_out;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} fc_pool_params;

const char* fc_last_error(void);
const char* fc_version(void);
void fc_set_num_threads(int n);
const char* fc_isa(void);

/* Output size of a conv along one axis: floor((n + pad_before + pad_after - dilation*(k-1) - 1)/stride) + 1,
 * computed without overflow; 0 for invalid arguments or a size beyond int64. Every entry point also refuses
 * (FC_EINVAL) a padded input (N*C*(H + 2*pad_h + 1)*(W + 2*pad_w + 1)) of more than 2**48 elements. */
int64_t fc_conv_output_size(int64_t n, int64_t pad_before, int64_t pad_after, int64_t k, int64_t stride,
                            int64_t dilation);

int fc_conv2d_f32(const fc_conv_params* p, const float* x, const float* w, const float* b, float* y);
int fc_conv2d_f64(const fc_conv_params* p, const double* x, const double* w, const double* b, double* y);
int fc_conv2d_input_grad_f32(const fc_conv_params* p, const float* dy, const float* w, float* dx);
int fc_conv2d_input_grad_f64(const fc_conv_params* p, const double* dy, const double* w, double* dx);
int fc_conv2d_weight_grad_f32(const fc_conv_params* p, const float* x, const float* dy, float* dw);
int fc_conv2d_weight_grad_f64(const fc_conv_params* p, const double* x, const double* dy, double* dw);

int fc_tiled_conv2d_f32(const fc_tiled_params* p, const float* x, const float* w, const float* b, float* y);
int fc_tiled_conv2d_f64(const fc_tiled_params* p, const double* x, const double* w, const double* b, double* y);
int fc_tiled_conv2d_input_grad_f32(const fc_tiled_params* p, const float* dy, const float* w, float* dx);
int fc_tiled_conv2d_input_grad_f64(const fc_tiled_params* p, const double* dy, const double* w, double* dx);
int fc_tiled_conv2d_weight_grad_f32(const fc_tiled_params* p, const float* x, const float* dy, float* dw);
int fc_tiled_conv2d_weight_grad_f64(const fc_tiled_params* p, const double* x, const double* dy, double* dw);

int fc_unshared_conv2d_f32(const fc_tiled_params* p, const float* x, const float* w, const float* b, float* y);
int fc_unshared_conv2d_f64(const fc_tiled_params* p, const double* x, const double* w, const double* b, double* y);
int fc_unshared_conv2d_input_grad_f32(const fc_tiled_params* p, const float* dy, const float* w, float* dx);
int fc_unshared_conv2d_input_grad_f64(const fc_tiled_params* p, const double* dy, const double* w, double* dx);
int fc_unshared_conv2d_weight_grad_f32(const fc_tiled_params* p, const float* x, const float* dy, float* dw);
int fc_unshared_conv2d_weight_grad_f64(const fc_tiled_params* p, const double* x, const double* dy, double* dw);

int fc_max_pool2d_f32(const fc_pool_params* p, const float* x, float* y, int64_t* switches);
int fc_max_pool2d_f64(const fc_pool_params* p, const double* x, double* y, int64_t* switches);
int fc_max_pool2d_dilated_f32(const fc_pool_params* p, int64_t dilation_h, int64_t dilation_w, const float* x,
                              float* y, int64_t* switches);
int fc_max_pool2d_dilated_f64(const fc_pool_params* p, int64_t dilation_h, int64_t dilation_w, const double* x,
                              double* y, int64_t* switches);
int fc_max_unpool2d_f32(const fc_pool_params* p, const float* y, const int64_t* switches, float* out);
int fc_max_unpool2d_f64(const fc_pool_params* p, const double* y, const int64_t* switches, double* out);

/* Batch norm with the batch's statistics (training mode), per channel over its N*H*W >= 2 values:
 * x, y (N, C, H, W); w, b (C) or NULL (1 and 0); mean, inv_std (C) are written, inv_std = 1/sqrt(var + eps)
 * with the biased variance. Gradient: dy, x, dx (N, C, H, W); mean, inv_std as the forward wrote them; w (C)
 * or NULL; dw = sum dy * (x - mean) * inv_std and db = sum dy (C) are written. */
typedef struct {
    int64_t N, C, H, W;
} fc_norm_params;

int fc_batch_norm2d_f32(const fc_norm_params* p, double eps, const float* x, const float* w, const float* b, float* y,
                        float* mean, float* inv_std);
int fc_batch_norm2d_f64(const fc_norm_params* p, double eps, const double* x, const double* w, const double* b,
                        double* y, double* mean, double* inv_std);
int fc_batch_norm2d_grad_f32(const fc_norm_params* p, const float* dy, const float* x, const float* mean,
                             const float* inv_std, const float* w, float* dx, float* dw, float* db);
int fc_batch_norm2d_grad_f64(const fc_norm_params* p, const double* dy, const double* x, const double* mean,
                             const double* inv_std, const double* w, double* dx, double* dw, double* db);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif /* FASTCONV_H */
