/* fuzz_ckpt.c - libFuzzer harness for the checkpoint loader (lopt_meta_load); `make fuzz`
 * builds and runs it from the seed corpus tests/fuzz/corpus/ckpt. What an input does: fuzz.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/lopt_fuzz_ckpt.%ld", (long)getpid());
    fuzz_one_ckpt(data, size, path);
    return 0;
}
