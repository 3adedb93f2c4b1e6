/* lopt_ref.c - the C side of tests/torch_opt.sh: replays recorded gradients through
 * the public C API (include/lopt.h, the flat lopt_opt_step) from the same initial
 * weights, parameter groups and .lopt file as the PyTorch optimizer, and writes the
 * parameters after every step.
 *
 *   usage: lopt_ref MODEL.lopt IN.bin OUT.bin
 * IN.bin, little-endian: i32 ngroups; per group: i32 ntensors, f32 lr, f32 weight
 * decay, ntensors x i64 size; i32 nsteps; f32 w0[N]; nsteps x f32 g[N].
 * OUT.bin: nsteps x f32 w[N]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lopt.h"

static int rd(FILE *f, void *p, size_t size, size_t n) { return fread(p, size, n, f) == n; }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: lopt_ref MODEL.lopt IN.bin OUT.bin\n");
        return 2;
    }
    char msg[512];
    lopt_model *m = lopt_model_load(argv[1], msg, sizeof msg);
    if (!m) {
        fprintf(stderr, "lopt_ref: %s\n", msg);
        return 1;
    }
    FILE *in = fopen(argv[2], "rb");
    int32_t ng = 0, nsteps = 0;
    if (!in || !rd(in, &ng, 4, 1) || ng < 1 || ng > 64) {
        fprintf(stderr, "lopt_ref: bad input %s\n", argv[2]);
        return 1;
    }
    lopt_param_group groups[64];
    size_t *sizes[64], N = 0;
    for (int g = 0; g < ng; g++) {
        int32_t nt;
        float lr, wd;
        if (!rd(in, &nt, 4, 1) || nt < 1 || !rd(in, &lr, 4, 1) || !rd(in, &wd, 4, 1)) return 1;
        sizes[g] = calloc((size_t)nt, sizeof(size_t));
        for (int i = 0; i < nt; i++) {
            int64_t s;
            if (!rd(in, &s, 8, 1)) return 1;
            sizes[g][i] = (size_t)s;
            N += (size_t)s;
        }
        lopt_group_opts_default(&groups[g].opts);
        groups[g].opts.step_scale = lr;
        groups[g].opts.weight_decay = wd;
        groups[g].tensor_sizes = sizes[g];
        groups[g].ntensors = nt;
    }
    lopt_opt *opt = lopt_opt_new_groups(m, groups, ng, msg, sizeof msg);
    lopt_model_free(m);
    if (!opt || !rd(in, &nsteps, 4, 1)) {
        fprintf(stderr, "lopt_ref: %s\n", opt ? "bad input" : msg);
        return 1;
    }
    float *w = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
    FILE *out = fopen(argv[3], "wb");
    if (!out || !rd(in, w, 4, N)) return 1;
    for (int s = 0; s < nsteps; s++) {
        if (!rd(in, g, 4, N)) return 1;
        lopt_opt_step(opt, w, g);
        fwrite(w, 4, N, out);
    }
    fclose(out);
    fclose(in);
    for (int i = 0; i < ng; i++) free(sizes[i]);
    free(w);
    free(g);
    lopt_opt_free(opt);
    return 0;
}
