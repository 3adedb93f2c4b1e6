/* metaplot.h - the meta-training log as plots: outer loss and the merged
 * estimator's es weight against the outer step (running means over a window). */
#ifndef LOPT_METAPLOT_H
#define LOPT_METAPLOT_H

#include "core/core.h"

/* csv: the text of a meta-train log (lopt_meta_csv_header + rows). Writes
 * BASE-loss.{svg,png} and BASE-wes.{svg,png}. A log with no rows writes nothing. */
lopt_status lopt_meta_plot(const char *csv, const char *base, lopt_err *err);

#endif
