/* Fuzzes the config file parser: the bytes are written to a memfd and
 * loaded through the same path a real file takes, then validated. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pushbridge/core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("pbconf", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[512];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        struct pb_config c;
        if (pb_config_init(&c) == 0) {
            if (pb_config_load_file(&c, path, err, sizeof(err)) == 0)
                pb_config_validate(&c, err, sizeof(err));
        }
        pb_config_free(&c);
    }
    close(fd);
    return 0;
}
