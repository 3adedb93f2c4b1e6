/* fit.c - a program with its own model, trained by a learned optimizer through
 * the public API (include/lopt.h) only.
 *
 * The model: a 1 -> 16 -> tanh -> 1 network regressing y = sin(x) on 64 points of
 * [-3, 3], full batch, mean squared error; forward and backward written out here.
 * Its parameters are four tensors in one flat vector: W1 (16), b1 (16), W2 (16),
 * b2 (1).
 *
 *   usage: fit FILE.lopt [STEPS]      (default 500 steps)
 *
 * Prints the initial and final loss; exits 1 with a message if the file cannot
 * be loaded or the loss stops being finite. An untrained optimizer (lopt
 * init-lopt) runs but need not lower the loss.
 * Build, after make install: cc examples/fit.c $(pkg-config --cflags --libs lopt) -o fit
 *    or in the repository:   cc -std=c11 -Iinclude examples/fit.c build/liblopt.a \
 *                                -lopenblas -lz -lm -fopenmp -o fit
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lopt.h"

enum { H = 16, NPTS = 64 };
enum { OFF_W1 = 0, OFF_B1 = H, OFF_W2 = 2 * H, OFF_B2 = 3 * H, NPARAMS = 3 * H + 1 };

/* Mean squared error of the network on the data; grad (NPARAMS) is overwritten
 * with its gradient. */
static double loss_grad(const float *p, const float *x, const float *y, float *grad)
{
    const float *W1 = p + OFF_W1, *b1 = p + OFF_B1, *W2 = p + OFF_W2, *b2 = p + OFF_B2;
    for (int i = 0; i < NPARAMS; i++) grad[i] = 0.0f;
    double loss = 0.0;
    for (int n = 0; n < NPTS; n++) {
        float h[H];   /* hidden activations tanh(W1 x + b1) */
        float out = b2[0];
        for (int j = 0; j < H; j++) {
            h[j] = tanhf(W1[j] * x[n] + b1[j]);
            out += W2[j] * h[j];
        }
        float err = out - y[n];
        loss += (double)err * err / NPTS;
        /* d loss / d out = 2 err / NPTS, then back through out = W2 h + b2 and
         * h = tanh(z), dz = dh (1 - h^2) */
        float dout = 2.0f * err / NPTS;
        grad[OFF_B2] += dout;
        for (int j = 0; j < H; j++) {
            grad[OFF_W2 + j] += dout * h[j];
            float dz = dout * W2[j] * (1.0f - h[j] * h[j]);
            grad[OFF_W1 + j] += dz * x[n];
            grad[OFF_B1 + j] += dz;
        }
    }
    return loss;
}

/* a small deterministic generator for the initial weights (xorshift64*) */
static double uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * 0x1.0p-53;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fit FILE.lopt [STEPS]\n");
        return 2;
    }
    long steps = argc == 3 ? strtol(argv[2], NULL, 10) : 500;
    if (steps <= 0) {
        fprintf(stderr, "fit: STEPS must be a positive integer\n");
        return 2;
    }

    char msg[512];
    lopt_model *model = lopt_model_load(argv[1], msg, sizeof msg);
    if (!model) {
        fprintf(stderr, "fit: %s\n", msg);
        return 1;
    }
    char desc[512];
    printf("optimizer: %s\n", lopt_model_describe(model, desc, sizeof desc));

    const size_t sizes[] = {H, H, H, 1};   /* W1, b1, W2, b2 */
    lopt_opt *opt = lopt_opt_new(model, sizes, 4);
    lopt_model_free(model);
    if (!opt) {
        fprintf(stderr, "fit: %s\n", lopt_last_error());
        return 1;
    }

    float x[NPTS], y[NPTS];
    for (int n = 0; n < NPTS; n++) {
        x[n] = -3.0f + 6.0f * (float)n / (NPTS - 1);
        y[n] = sinf(x[n]);
    }
    float params[NPARAMS], grad[NPARAMS];
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int j = 0; j < H; j++) {
        params[OFF_W1 + j] = (float)(2.0 * uniform(&rng) - 1.0);                /* fan-in 1 */
        params[OFF_B1 + j] = 0.0f;
        params[OFF_W2 + j] = (float)((2.0 * uniform(&rng) - 1.0) / sqrt(H));  /* fan-in H */
    }
    params[OFF_B2] = 0.0f;

    double loss = loss_grad(params, x, y, grad);
    printf("initial loss %.6f\n", loss);
    for (long s = 0; s < steps && isfinite(loss); s++) {
        lopt_opt_step(opt, params, grad);
        loss = loss_grad(params, x, y, grad);
    }
    lopt_opt_free(opt);
    printf("final loss %.6f after %ld steps\n", loss, steps);
    if (!isfinite(loss)) {
        fprintf(stderr, "fit: the loss diverged\n");
        return 1;
    }
    return 0;
}
