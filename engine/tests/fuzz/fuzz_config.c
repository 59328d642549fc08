/* libFuzzer: impulse's config loader on any text (as a single YAML file):
 * it loads or refuses with a message, never crashes or leaks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct imp_config *cfg = imp_config_load_text(text, err, sizeof(err));
    if (cfg) imp_config_destroy(cfg);
    free(text);
    return 0;
}
