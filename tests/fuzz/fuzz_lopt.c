/* fuzz_lopt.c - libFuzzer harness for the .lopt decoder (lopt_file_decode); `make fuzz`
 * builds and runs it from the seed corpus tests/fuzz/corpus/lopt. What an input does: fuzz.h. */
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_one_lopt(data, size);
    return 0;
}
