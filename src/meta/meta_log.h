/* meta_log.h - meta.c's log of outer steps, one lopt_meta_row per step (and row 0,
 * the starting theta's evaluation). Rows stay rows: in memory, in the checkpoint
 * (version 3, exact), for the plots (eval/metaplot.h); CSV text is made only for
 * the --log file (lopt_meta_log_csv, meta.h). Internal to src/meta. */
#ifndef LOPT_META_LOG_H
#define LOPT_META_LOG_H

#include "core/ser.h"
#include "meta/meta.h"

typedef struct {
    lopt_meta_row *rows;
    size_t n, cap;
} lopt_meta_log;

void lopt_meta_log_push(lopt_meta_log *l, const lopt_meta_row *r);
void lopt_meta_log_free(lopt_meta_log *l);

/* Checkpoint version 3's encoding. get appends to l and sets in->bad on a short
 * or inconsistent record (never allocating more than the bytes left could hold). */
void lopt_meta_log_put(ser_out *o, const lopt_meta_log *l);
void lopt_meta_log_get(ser_in *in, lopt_meta_log *l);

/* The CSV text kept by version-1 and -2 checkpoints (header + lines; version 1's
 * lacks the two evaluation columns, read as NaN), appended to l. Returns 0 if the
 * text does not start with either header. Printing the rows again with
 * lopt_meta_log_csv gives the version-2 text back byte for byte. */
int lopt_meta_log_from_csv(const unsigned char *text, size_t len, lopt_meta_log *l);

#endif
