/* task_impl.h - private to src/tasks: the factories of the standard tasks. Each
 * fills a public lopt_task_spec (include/lopt.h), the same struct a user's task
 * fills; tasks.c checks it and makes the lopt_task. */
#ifndef LOPT_TASK_IMPL_H
#define LOPT_TASK_IMPL_H

#include "tasks/task.h"

lopt_status lopt_task_quadratic_spec(lopt_task_spec *s, const lopt_task_opts *o, lopt_err *err);
lopt_status lopt_task_mlp_spec(lopt_task_spec *s, const lopt_task_opts *o, lopt_err *err);
lopt_status lopt_task_cnn_spec(lopt_task_spec *s, const lopt_task_opts *o, lopt_err *err);

/* The in-memory splits of a loaded Fashion-MNIST, for a spec's data. */
void lopt_task_data_splits(lopt_split_data data[3], const lopt_fmnist *fm);

/* Loads Fashion-MNIST at size x size once per process and shares it between
 * tasks (read-only after loading; reference counted). */
lopt_status lopt_task_data_acquire(const lopt_fmnist **fm, int size, const char *dir,
                              lopt_err *err);
void lopt_task_data_release(const lopt_fmnist *fm);

#endif
