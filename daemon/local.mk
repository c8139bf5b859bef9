# Block device sysfs reading and validation, without daemon state: linked by
# the daemon's kernel backend and by zonectl (validate, info --sysfs).
noinst_LTLIBRARIES += daemon/libzoned-blkdev.la
daemon_libzoned_blkdev_la_SOURCES = daemon/blkdev.c daemon/blkdev.h

# The daemon is a convenience library plus a tiny main, so tests link its internals.
noinst_LTLIBRARIES += daemon/libzoned-daemon.la
daemon_libzoned_daemon_la_SOURCES = \
	daemon/zdev.h \
	daemon/zstore.c \
	daemon/zstore.h \
	daemon/size.c \
	daemon/emul.c \
	daemon/kernel.c \
	daemon/dm.c \
	daemon/dm.h \
	daemon/daemon.h \
	daemon/log.c \
	daemon/log.h \
	daemon/alloc.c \
	daemon/alloc.h \
	daemon/device.c \
	daemon/server.c \
	daemon/methods.c \
	daemon/lease.c \
	daemon/lease-methods.c \
	daemon/state.c \
	daemon/list.h \
	daemon/waiters.c \
	daemon/waiters.h \
	daemon/events.c \
	daemon/events.h \
	daemon/config.c \
	daemon/conf.h
daemon_libzoned_daemon_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(UV_CFLAGS) $(SYSTEMD_CFLAGS)
daemon_libzoned_daemon_la_LIBADD = daemon/libzoned-blkdev.la proto/libzoned-proto.la $(JSONC_LIBS) $(UV_LIBS) $(SYSTEMD_LIBS)

sbin_PROGRAMS += daemon/zonedd
daemon_zonedd_SOURCES = daemon/main.c
daemon_zonedd_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(UV_CFLAGS) $(SYSTEMD_CFLAGS)
daemon_zonedd_LDADD = daemon/libzoned-daemon.la
