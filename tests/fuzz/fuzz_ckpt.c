/* fuzz_ckpt.c - libFuzzer harness for the checkpoint loader (lopt_meta_load); `make fuzz`
 * builds and runs it from the seed corpus tests/fuzz/corpus/ckpt. What an input does: fuzz.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0]) {   /* a file of our own under $LOPT_FUZZ_TMP (make fuzz: the build folder) */
        const char *d = getenv("LOPT_FUZZ_TMP");
        snprintf(path, sizeof path, "%s/lopt_fuzz_ckpt.%ld", d ? d : "/tmp", (long)getpid());
    }
    fuzz_one_ckpt(data, size, path);
    return 0;
}
