/* refio.h - reads the PyTorch reference fixtures written by tests/torch/refio.py:
 * records of (u32 name length, name, u64 count, count x float64 LE). Header-only. */
#ifndef LOPT_REFIO_H
#define LOPT_REFIO_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[128];
    size_t n;
    double *v;
} ref_array;

typedef struct {
    ref_array *a;
    int count;
} ref_file;

/* Returns 0 on success; prints why and returns -1 otherwise. */
static int ref_load(ref_file *rf, const char *path)
{
    memset(rf, 0, sizeof *rf);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open fixture %s (run `make fixtures`)\n", path);
        return -1;
    }
    for (;;) {
        uint32_t len;
        if (fread(&len, 4, 1, f) != 1) break;
        ref_array r;
        memset(&r, 0, sizeof r);
        uint64_t n;
        if (len >= sizeof r.name || fread(r.name, 1, len, f) != len ||
            fread(&n, 8, 1, f) != 1) {
            fprintf(stderr, "fixture %s is truncated\n", path);
            fclose(f);
            return -1;
        }
        r.n = (size_t)n;
        r.v = malloc((r.n ? r.n : 1) * sizeof(double));
        if (!r.v || fread(r.v, sizeof(double), r.n, f) != r.n) {
            fprintf(stderr, "fixture %s is truncated\n", path);
            free(r.v);
            fclose(f);
            return -1;
        }
        rf->a = realloc(rf->a, (size_t)(rf->count + 1) * sizeof *rf->a);
        rf->a[rf->count++] = r;
    }
    fclose(f);
    return 0;
}

/* The array called name, or NULL (and a message) if absent or not of size n
 * (n == 0 accepts any size). */
static const ref_array *ref_get(const ref_file *rf, const char *name, size_t n)
{
    for (int i = 0; i < rf->count; i++)
        if (strcmp(rf->a[i].name, name) == 0) {
            if (n && rf->a[i].n != n) {
                fprintf(stderr, "fixture array %s has %zu elements, want %zu\n", name,
                        rf->a[i].n, n);
                return NULL;
            }
            return &rf->a[i];
        }
    fprintf(stderr, "fixture array %s missing\n", name);
    return NULL;
}

static void ref_free(ref_file *rf)
{
    for (int i = 0; i < rf->count; i++) free(rf->a[i].v);
    free(rf->a);
    memset(rf, 0, sizeof *rf);
}

#endif
