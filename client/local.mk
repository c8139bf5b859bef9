lib_LTLIBRARIES += client/libzoned-client.la
zonedincludedir = $(includedir)/zoned
zonedinclude_HEADERS = include/zoned/client.h
client_libzoned_client_la_SOURCES = client/client.c client/core.c client/event.c client/lease.c \
	client/client-private.h
# Only symbols marked ZC_EXPORT leave the library; the version script pins them.
client_libzoned_client_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) -fvisibility=hidden -pthread
client_libzoned_client_la_LIBADD = proto/libzoned-proto.la $(JSONC_LIBS)
client_libzoned_client_la_LDFLAGS = $(AM_LDFLAGS) -version-info $(LIBZONED_CLIENT_LT_VERSION) \
	-Wl,--version-script=$(top_srcdir)/client/libzoned-client.sym -pthread
EXTRA_client_libzoned_client_la_DEPENDENCIES = client/libzoned-client.sym
EXTRA_DIST += client/libzoned-client.sym client/zoned-client.pc.in
pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = client/zoned-client.pc

bin_PROGRAMS += client/zonectl
client_zonectl_SOURCES = client/zonectl.c client/zonectl-bench.c client/zonectl-bench.h \
	client/zonectl-device.c client/zonectl-device.h \
	client/zonectl-progress.c client/zonectl-progress.h
client_zonectl_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) -pthread
# validate and info --sysfs check devices with the daemon's own code.
client_zonectl_LDADD = client/libzoned-client.la daemon/libzoned-blkdev.la $(JSONC_LIBS)

# zoned-client-uninstalled.pc: the build tree as a pkg-config package, made
# by make (not configure) so that it follows the build directory it is in.
noinst_DATA = client/zoned-client-uninstalled.pc
client/zoned-client-uninstalled.pc: $(top_srcdir)/client/zoned-client-uninstalled.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) client && \
	sed -e 's|@abs_top_builddir[@]|$(abs_top_builddir)|g' \
	    -e 's|@abs_top_srcdir[@]|$(abs_top_srcdir)|g' \
	    -e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g' $< >$@
CLEANFILES += client/zoned-client-uninstalled.pc
EXTRA_DIST += client/zoned-client-uninstalled.pc.in

# An example in the tree: leases driven from a libuv loop through the
# non-blocking core (run by tests/test-async).
noinst_PROGRAMS += client/examples/uv-leases
client_examples_uv_leases_SOURCES = client/examples/uv-leases.c
client_examples_uv_leases_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS)
client_examples_uv_leases_LDADD = client/libzoned-client.la $(UV_LIBS)
