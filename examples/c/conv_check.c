/* conv_check.c — calls libfastconv through its C ABI and checks one convolution against a naive loop.
 *
 * Build and run (paths from `python -c "import fastconv.cabi as c; print(c.include_dir(), c.library_path())"`):
 *   cc -O2 -I INCLUDE_DIR conv_check.c LIBRARY_PATH -Wl,-rpath,LIB_DIR -o conv_check && ./conv_check
 * Prints "ok" and exits 0 when the library agrees with the loop.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fastconv.h"

int main(void) {
    /* x (2, 3, 9, 7), w (4, 3, 3, 3), stride 2, padding 1 */
    fc_conv_params p = {2, 3, 9, 7, 4, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1, 1};
    p.H_out = fc_conv_output_size(p.H, p.pad_h, p.pad_h, p.kH, p.stride_h, p.dilation_h);
    p.W_out = fc_conv_output_size(p.W, p.pad_w, p.pad_w, p.kW, p.stride_w, p.dilation_w);
    size_t nx = p.N * p.C_in * p.H * p.W, nw = p.C_out * p.C_in * p.kH * p.kW, ny = p.N * p.C_out * p.H_out * p.W_out;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(p.C_out * sizeof *b),
          *y = malloc(ny * sizeof *y);
    for (size_t i = 0; i < nx; ++i) x[i] = (float)((i * 37) % 11) - 5.0f;
    for (size_t i = 0; i < nw; ++i) w[i] = (float)((i * 13) % 7) - 3.0f;
    for (int64_t o = 0; o < p.C_out; ++o) b[o] = 0.5f * (float)o;

    if (fc_conv2d_f32(&p, x, w, b, y) != FC_OK) {
        fprintf(stderr, "fc_conv2d_f32 failed: %s\n", fc_last_error());
        return 1;
    }
    double worst = 0.0;
    for (int64_t n = 0; n < p.N; ++n)
        for (int64_t o = 0; o < p.C_out; ++o)
            for (int64_t i = 0; i < p.H_out; ++i)
                for (int64_t j = 0; j < p.W_out; ++j) {
                    double acc = b[o];
                    for (int64_t c = 0; c < p.C_in; ++c)
                        for (int64_t a = 0; a < p.kH; ++a)
                            for (int64_t e = 0; e < p.kW; ++e) {
                                int64_t h = i * p.stride_h + a - p.pad_h, v = j * p.stride_w + e - p.pad_w;
                                if (h >= 0 && h < p.H && v >= 0 && v < p.W)
                                    acc += (double)w[((o * p.C_in + c) * p.kH + a) * p.kW + e] *
                                           x[((n * p.C_in + c) * p.H + h) * p.W + v];
                            }
                    double err = fabs(acc - y[((n * p.C_out + o) * p.H_out + i) * p.W_out + j]);
                    if (err > worst) worst = err;
                }
    /* A bad call must fail cleanly with a message, not crash. */
    fc_conv_params bad = p;
    bad.groups = 2; /* does not divide C_in = 3 */
    int rc = fc_conv2d_f32(&bad, x, w, b, y);
    free(x), free(w), free(b), free(y);
    if (rc != FC_EINVAL) {
        fprintf(stderr, "expected FC_EINVAL for groups=2, got %d\n", rc);
        return 1;
    }
    if (worst > 1e-4) {
        fprintf(stderr, "max error %g\n", worst);
        return 1;
    }
    const char* isa = fc_isa();
    printf("ok (kernels: %s; max error %g; rejected groups=2: %s)\n", isa ? isa : "none", worst, fc_last_error());
    return 0;
}
