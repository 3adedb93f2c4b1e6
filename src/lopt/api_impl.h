/* api_impl.h - private to the public API's implementation (src/lopt/api.c,
 * src/eval/api_run.c): what a lopt_model is. */
#ifndef LOPT_API_IMPL_H
#define LOPT_API_IMPL_H

#include "lopt.h"
#include "lopt/lopt_file.h"
#include "lopt/mlp_lopt.h"

struct lopt_model {
    lopt_arch arch;
    float *theta;   /* (lopt_arch_nparams(&arch)), lopt_floats */
    lopt_provenance prov;
};

/* A model that owns copies of arch, theta and p (p may be NULL: empty). */
lopt_model *lopt_model_make(const lopt_arch *a, const float *theta, const lopt_provenance *p);

#endif
