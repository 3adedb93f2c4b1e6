/* task_impl.h - private to src/tasks: the constructors of the standard tasks. */
#ifndef LOPT_TASK_IMPL_H
#define LOPT_TASK_IMPL_H

#include "tasks/task.h"

lopt_status task_quadratic_create(lopt_task *t, const lopt_task_opts *o, lopt_err *err);
lopt_status task_mlp_create(lopt_task *t, const lopt_task_opts *o, lopt_err *err);
lopt_status task_cnn_create(lopt_task *t, const lopt_task_opts *o, lopt_err *err);

/* Loads Fashion-MNIST at size x size once per process and shares it between
 * tasks (read-only after loading; reference counted). */
lopt_status task_data_acquire(const lopt_fmnist **fm, int size, const char *dir,
                              lopt_err *err);
void task_data_release(const lopt_fmnist *fm);

#endif
