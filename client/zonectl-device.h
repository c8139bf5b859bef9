/* zonectl validate and info --sysfs: devices looked at without the daemon. */
#ifndef ZONECTL_DEVICE_H
#define ZONECTL_DEVICE_H

#include <stdbool.h>

/* Runs every check on each path, one line each (or one JSON document).
 * Returns the exit status: 0 when no check failed, 1 otherwise. */
int zonectl_validate(char *const *paths, int n, bool json);
/* The device's properties from sysfs, without opening it. Exit status. */
int zonectl_info_sysfs(const char *path, bool json);

#endif
