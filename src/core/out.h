/* out.h - the output toolkit every writer of lopt's files shares: JSON values, XML
 * text, paths inside an output directory, and CRC-32.
 *
 * Intended usage (a writer builds its text in a lopt_sbuf, then puts it on disk):
 *
 *     lopt_sbuf b = {0};
 *     lopt_sb_printf(&b, "{\"task\": ");
 *     lopt_json_str(&b, name);              // quoted and escaped
 *     lopt_sb_printf(&b, ", \"loss\": ");
 *     lopt_json_num(&b, loss);              // %.8g, or null for NaN/inf
 *     lopt_sb_printf(&b, "}\n");
 *     st = lopt_write_sb_in(dir, "summary.json", &b, err);   // frees b's text
 *
 * Left out: a JSON parser (lopt reads no JSON) and pretty-printing (each writer lays
 * out its own lines; the files' layouts are part of their formats).
 */
#ifndef LOPT_OUT_H
#define LOPT_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- JSON ---------------------------------------------------------------------- */
/* A number as %.8g; NaN and inf (which JSON has not) as null. */
void lopt_json_num(lopt_sbuf *b, double v);
/* A string, quoted, with '"', '\' and control characters escaped. */
void lopt_json_str(lopt_sbuf *b, const char *s);
/* An array of n numbers, "[a, b, c]", each as lopt_json_num. */
void lopt_json_nums(lopt_sbuf *b, const double *v, int n);

/* ---- XML (SVG) ------------------------------------------------------------------ */
/* Text with &, <, > and " escaped (s may be NULL: nothing). */
void lopt_xml_text(lopt_sbuf *b, const char *s);

/* ---- files in an output directory ---------------------------------------------- */
/* Creates directory dir and its missing parents (mode 0755), and checks it is a
 * directory this process can write into: LOPT_EIO "cannot create directory ..." or
 * "cannot write into ...", LOPT_EUSAGE for a path too long. */
lopt_status lopt_outdir_create(const char *dir, lopt_err *err);
/* out = "dir/name"; LOPT_EUSAGE "path too long: dir/name" when it does not fit cap. */
lopt_status lopt_path_join(char *out, size_t cap, const char *dir, const char *name,
                           lopt_err *err);
/* Writes n bytes atomically (lopt_write_atomic) as dir/name. */
lopt_status lopt_write_in(const char *dir, const char *name, const void *data, size_t n,
                          lopt_err *err);
/* The same for b's text, then frees it and leaves b empty ({NULL, 0, 0}) for reuse,
 * whether or not the write succeeded. */
lopt_status lopt_write_sb_in(const char *dir, const char *name, lopt_sbuf *b, lopt_err *err);

/* ---- checksums ------------------------------------------------------------------ */
/* zlib's CRC-32 of n bytes (any n: zlib's length type is fed in pieces). */
uint32_t lopt_crc32(const void *p, size_t n);

#endif
