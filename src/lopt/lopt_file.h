/* lopt_file.h - the .lopt file: a learned optimizer (architecture + theta) with
 * its meta-training provenance, as a self-checking binary file (docs/design.md section 5).
 *
 * Byte layout, version 2 (written); version 1 (still read) lacks the fields marked
 * v2. Every integer and float is little-endian whatever the host; floats are
 * IEEE-754 binary32; a string is a u32 byte count followed by that many bytes (no
 * terminating NUL, no NUL inside).
 *
 *   offset  size      field
 *   0       8         magic 89 4C 4F 50 54 0D 0A 1A  ("\x89LOPT\r\n\x1a": the high
 *                     byte catches 7-bit transfers, CR LF catches newline rewriting)
 *   8       4         u32 format version (2; 1 is read too)
 *   12      8         u64 total file size in bytes, magic and CRC included
 *   20      4         u32 nmom                       (0 .. LOPT_MAX_MOM)
 *           4 nmom    f32 beta[nmom]
 *           4         u32 ntime                      (0 .. LOPT_MAX_TIME)
 *           4 ntime   f32 tau[ntime]
 *           4         u32 nhidden                    (1 .. LOPT_MAX_LAYERS)
 *           4         u32 hidden                     (1 .. 4096)
 *           4         f32 step_mult                  ((0, 1]; the presets 0.001)
 *           4         f32 exp_mult                   ([0, 1]; the presets 0.001)
 *     v2    4         u32 form                       (0 mlp, 1 nominal)
 *     v2    4         u32 nominal_dir                (nominal: 0 gradient, 1 momentum; mlp: 0)
 *     v2    4         u32 nominal_mom                (momentum: < nmom; otherwise 0)
 *     v2    4         f32 nominal_step               (nominal: (0, 1]; mlp: 0)
 *           8         u64 ntheta                     (= lopt_arch_nparams)
 *           4 ntheta  f32 theta[ntheta]              (layout: mlp_lopt.h)
 *           4+len     str task                       (len < LOPT_PROV_NAME)
 *           4+len     str estimator                  (len < LOPT_PROV_NAME)
 *           8         u64 outer_steps
 *     v2    8         u64 horizon                    (0 unknown, <= INT64_MAX)
 *           4+len     str outer_loss                 (len < LOPT_PROV_NAME)
 *           4+len     str note                       (len < LOPT_PROV_NOTE)
 *   size-4  4         u32 CRC-32 (zlib's crc32) of bytes [0, size-4)
 *
 * A version-1 file reads as the mlp form (nominal fields zero) with horizon 0. The
 * form fields sit before ntheta because theta's length depends on the form.
 * A reader checks, in this order: magic, version, the size field against the
 * bytes present (truncated / trailing bytes), the CRC, then every field (ranges,
 * theta count, finite theta, string caps, that the fields end exactly at the CRC).
 * Any failure is LOPT_EFORMAT with a one-line reason; nothing is returned half-read.
 * Left out: compression (theta is a few kB), other float widths, writing version 1
 * (an older reader refuses a version-2 file by its version field, never misreads it).
 */
#ifndef LOPT_LOPT_FILE_H
#define LOPT_LOPT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "lopt/mlp_lopt.h"

#define LOPT_FILE_VERSION 2u         /* the version written */
#define LOPT_FILE_VERSION_OLDEST 1u  /* the oldest version read */
#define LOPT_PROV_NAME 64     /* provenance name fields: bytes including the NUL */
#define LOPT_PROV_NOTE 4096   /* provenance note: bytes including the NUL */

/* Where a learned optimizer came from. Empty strings mean "not recorded". */
typedef struct {
    char task[LOPT_PROV_NAME];        /* meta-training task or family */
    char estimator[LOPT_PROV_NAME];   /* rp|es|merged|pes, "none" when untrained */
    uint64_t outer_steps;             /* outer (meta) steps taken */
    uint64_t horizon;                 /* meta-training horizon in inner steps: what the
                                       * optimizer was trained to do well at; 0 unknown
                                       * (untrained, or a version-1 file) */
    char outer_loss[LOPT_PROV_NAME];  /* train|valid */
    char note[LOPT_PROV_NOTE];        /* free-form: recipe, command line, seed */
    uint32_t file_version;            /* set by the reader: the version the file had;
                                       * the writer ignores it (writes LOPT_FILE_VERSION) */
} lopt_provenance;

/* Encodes a learned optimizer into a malloc'ed buffer *data of *n bytes (caller
 * frees with free), format version LOPT_FILE_VERSION. p may be NULL (empty
 * provenance). Refuses with LOPT_EUSAGE an architecture out of range, a non-finite
 * theta, a horizon above INT64_MAX or a provenance string without a NUL inside its
 * array; on failure *data is NULL. */
lopt_status lopt_file_encode(const lopt_arch *a, const float *theta, const lopt_provenance *p,
                             unsigned char **data, size_t *n, lopt_err *err);

/* Decodes exactly n bytes (a whole .lopt image, version 1 or 2; trailing bytes are
 * an error).
 * On success fills *a, *theta (lopt_arch_nparams(a) floats, allocated with
 * lopt_floats: free with lopt_free) and *p (if p is not NULL). On failure returns
 * LOPT_EFORMAT with a one-line reason, *theta is NULL and *a, *p are zeroed.
 * Never reads outside data[0..n). */
lopt_status lopt_file_decode(const unsigned char *data, size_t n, lopt_arch *a, float **theta,
                             lopt_provenance *p, lopt_err *err);

/* lopt_file_encode + lopt_write_atomic (temp file, fsync, rename). LOPT_EIO when
 * the file cannot be written; an existing file at path is replaced only on success. */
lopt_status lopt_file_write(const char *path, const lopt_arch *a, const float *theta,
                            const lopt_provenance *p, lopt_err *err);

/* lopt_read_file_max (at most lopt_file_max_bytes, the magic checked as soon as it
 * is read, so /dev/zero or an endless FIFO is refused at once) + lopt_file_decode;
 * messages are prefixed with the path. LOPT_EIO for a missing or unreadable file,
 * LOPT_EFORMAT for a bad one. Outputs as lopt_file_decode. */
lopt_status lopt_file_read(const char *path, lopt_arch *a, float **theta, lopt_provenance *p,
                           lopt_err *err);

/* The largest well-formed .lopt file: every architecture field at its maximum
 * (about 202 MB; the presets' files are 3-8 kB). */
size_t lopt_file_max_bytes(void);

/* Copies src into a provenance field of cap bytes, truncating if needed (a
 * convenience for callers filling lopt_provenance from arbitrary strings). */
void lopt_provenance_set(char *field, size_t cap, const char *src);

#endif
