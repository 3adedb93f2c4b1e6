/* fuzz_idx.c - libFuzzer harness for the IDX reader (lopt_idx_read); `make fuzz`
 * builds and runs it from the seed corpus tests/fuzz/corpus/idx. What an input does: fuzz.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/lopt_fuzz_idx.%ld", (long)getpid());
    fuzz_one_idx(data, size, path);
    return 0;
}
