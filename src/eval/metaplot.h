/* metaplot.h - the meta-training log as plots: outer loss and the merged
 * estimator's es weight against the outer step (running means over a window),
 * and the full-horizon evaluation columns where the log has them. */
#ifndef LOPT_METAPLOT_H
#define LOPT_METAPLOT_H

#include "core/core.h"
#include "meta/meta.h"

/* rows: a meta-training log (lopt_meta_rows). Writes BASE-loss.{svg,png},
 * BASE-wes.{svg,png} and, if any row was evaluated at the horizon,
 * BASE-eval.{svg,png}. An empty log writes nothing. */
lopt_status lopt_meta_plot(const lopt_meta_row *rows, size_t n, const char *base,
                           lopt_err *err);

#endif
