/* task_data.c - Fashion-MNIST loaded once per process per image size and shared
 * by every task object that needs it (read-only after loading, reference counted).
 * Creation and release happen on the main thread. */
#include <stdlib.h>
#include <string.h>

#include "tasks/task_impl.h"

typedef struct {
    int size;          /* 28 or 8 */
    int refs;
    lopt_fmnist fm;
} data_slot;

static data_slot slots[2];

lopt_status lopt_task_data_acquire(const lopt_fmnist **fm, int size, const char *dir,
                              lopt_err *err)
{
    data_slot *s = &slots[size == 28 ? 0 : 1];
    if (s->refs == 0) {
        lopt_status st = lopt_fmnist_load(&s->fm, dir, size, err);
        if (st != LOPT_OK) return st;
        s->size = size;
    }
    s->refs++;
    *fm = &s->fm;
    return LOPT_OK;
}

void lopt_task_data_release(const lopt_fmnist *fm)
{
    for (int i = 0; i < 2; i++)
        if (fm == &slots[i].fm && slots[i].refs > 0 && --slots[i].refs == 0)
            lopt_fmnist_free(&slots[i].fm);
}

void lopt_task_data_splits(lopt_split_data data[3], const lopt_fmnist *fm)
{
    for (int k = 0; k < 3; k++) {
        const lopt_dataset *d = &fm->split[k];
        data[k].n = d->n;
        data[k].x = d->x;
        data[k].labels = d->y;
        data[k].targets = NULL;
    }
}
