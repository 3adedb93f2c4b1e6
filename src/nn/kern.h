/* kern.h - private helpers shared by the nn kernels (not part of the API): the
 * OpenMP pragma wrapper and the rule for when a loop forks.
 *
 * NN_OMP(clauses) expands to `#pragma omp clauses` when built with -fopenmp and to
 * nothing otherwise (a bare #pragma omp would trip -Wunknown-pragmas -Werror under
 * OMP=0). Every parallel loop carries `if (parallel: nn_par(work))`; the modifier
 * matters: on `parallel for simd` a bare if clause also binds the simd construct
 * (OpenMP 5.0), and when false GCC emits the scalar loop (measured 30x slower for
 * ReLU backward).
 *
 * One thread pool at a time. The GEMMs run on OpenBLAS's own (pthread) workers;
 * libgomp's workers spin for a while after each loop (OMP_WAIT_POLICY unset:
 * ~300k spins), so with both pools live on the same cores each starves the other:
 * measured on 2 cores, the fmnist CNN forward+backward took 3x longer with OpenMP
 * loops than without. So the loops fork only when OpenBLAS is single-threaded
 * (OPENBLAS_NUM_THREADS=1, or openblas_set_num_threads(1)); otherwise OpenBLAS
 * owns the cores and the loops stay serial. */
#ifndef LOPT_NN_KERN_H
#define LOPT_NN_KERN_H

#include <stddef.h>

#define NN_STR(...) #__VA_ARGS__
#ifdef _OPENMP
#define NN_OMP(...) _Pragma(NN_STR(omp __VA_ARGS__))
#else
#define NN_OMP(...)
#endif

/* Elements (floats touched) below which a loop is not worth forking: a parallel
 * region costs a few microseconds, a core streams ~ 4 floats per ns. */
#define NN_PAR_MIN 32768

int openblas_get_num_threads(void);   /* OpenBLAS's cblas.h, without its <complex.h> */

static inline int nn_par(size_t work)
{
    return work >= NN_PAR_MIN && openblas_get_num_threads() == 1;
}

#endif
