/* kern.h - private helpers shared by the nn kernels (not part of the API): the
 * OpenMP pragma wrapper and the size below which a kernel stays single-threaded.
 *
 * NN_OMP(clauses) expands to `#pragma omp clauses` when built with -fopenmp and to
 * nothing otherwise (a bare #pragma omp would trip -Wunknown-pragmas -Werror under
 * OMP=0). Every parallel loop carries an `if` clause so tiny layers never pay the
 * fork/join cost. */
#ifndef LOPT_NN_KERN_H
#define LOPT_NN_KERN_H

#define NN_STR(...) #__VA_ARGS__
#ifdef _OPENMP
#define NN_OMP(...) _Pragma(NN_STR(omp __VA_ARGS__))
#else
#define NN_OMP(...)
#endif

/* Elements (floats touched) below which a loop is not worth forking: a parallel
 * region costs a few microseconds, a core streams ~ 4 floats per ns. */
#define NN_PAR_MIN 32768

#endif
