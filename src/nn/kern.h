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
 * One thread pool at a time (core.h, lopt_threads_init): OpenMP owns the cores and
 * OpenBLAS is single-threaded. Both pools live on the same cores starve each other
 * (libgomp's workers spin ~300k times after each loop, OMP_WAIT_POLICY unset):
 * measured on 2 cores, the fmnist CNN forward+backward took 3x longer with OpenMP
 * loops beside OpenBLAS threads than without. So a loop forks only when OpenBLAS is
 * single-threaded (always, unless a program using the library raised it again) and
 * it is not already inside a parallel region (meta-training's workers, a task's
 * image groups), where the enclosing threads already use every core. */
#ifndef LOPT_NN_KERN_H
#define LOPT_NN_KERN_H

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
#ifdef _OPENMP
    if (omp_in_parallel()) return 0;
#endif
    return work >= NN_PAR_MIN && openblas_get_num_threads() == 1;
}

#endif
