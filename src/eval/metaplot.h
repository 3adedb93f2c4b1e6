/* metaplot.h - the meta-training log as plots: outer loss and the merged
 * estimator's es weight against the outer step (running means over a window),
 * and the full-horizon evaluation columns where the log has them. */
#ifndef LOPT_METAPLOT_H
#define LOPT_METAPLOT_H

#include "core/core.h"

/* csv: the text of a meta-train log (lopt_meta_csv_header + rows). Writes
 * BASE-loss.{svg,png}, BASE-wes.{svg,png} and, if any row was evaluated at
 * the horizon, BASE-eval.{svg,png}. A log with no rows writes nothing. */
lopt_status lopt_meta_plot(const char *csv, const char *base, lopt_err *err);

#endif
