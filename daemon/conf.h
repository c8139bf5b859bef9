/* zonedd configuration: defaults, the JSON config file, command-line
 * overrides. Owned by main and the reload handler; plain data. */
#ifndef ZONED_CONF_H
#define ZONED_CONF_H

/* Named conf.h, not config.h: autoconf's config.h is the build
 * configuration, and a daemon/config.h would shadow it for every file in
 * daemon/ that says #include "config.h". */
#include <config.h>

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZD_ID_MAX 64

struct zd_device_conf {
	char id[ZD_ID_MAX];     /* unique; default: basename of the path */
	char path[PATH_MAX];    /* block device, or emulated backing file */
	bool emulated;
	char spec[512];         /* emulated parameters, zd_emul_parse_spec() syntax */
	char faults[256];       /* emulated: fault injection spec (tests), "" none */
	int isolation;          /* enum zd_isolation; AUTO: the config's default */
};

struct zd_config {
	char socket_path[108];
	char state_dir[PATH_MAX];
	struct zd_device_conf *devices;
	size_t nr_devices;
	char client_group[64];  /* "" = anyone who can reach the socket may lease */
	char admin_group[64];   /* "" = only root and the daemon's uid are admins */
	uint32_t max_leases_per_conn;
	uint32_t max_conns_per_uid;
	uint32_t max_wait_ms;   /* upper bound on a lease.acquire wait_ms */
	uint32_t max_waiters_per_conn; /* waiting acquires one connection may have */
	uint32_t max_waiters_per_uid;  /* ... and one uid over all its connections */
	uint32_t grace_ms;      /* how long an orphaned lease may be reclaimed */
	bool lease_table_sync_always; /* fdatasync the lease table before each reply */
	int log_level;          /* syslog priority */
	int isolation;          /* enum zd_isolation, for devices that name none */
};

void zd_config_defaults(struct zd_config *cfg);
void zd_config_free(struct zd_config *cfg);
/* Adds a device; returns 0 or a negative errno (-EEXIST for a duplicate id). */
int zd_config_add_device(struct zd_config *cfg, const struct zd_device_conf *dev);
/* Loads a config file over cfg. On error returns a negative errno and puts
 * "FILE:LINE: key: reason" (or as much as is known) into err. */
int zd_config_load(struct zd_config *cfg, const char *path, char *err, size_t err_len);
/* As zd_config_load for a reload: a device of `running` (the devices served
 * now) whose id the file names at another path, or with another backend,
 * is refused ("FILE:LINE: devices[N].emulate: ..."). */
int zd_config_reload(struct zd_config *cfg, const char *path,
		     const struct zd_device_conf *running, size_t nr_running, char *err,
		     size_t err_len);
/* Same backend and the same file (by name, or by inode for two names). */
bool zd_config_same_device(const struct zd_device_conf *a, const struct zd_device_conf *b);

#endif
