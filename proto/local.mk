noinst_LTLIBRARIES += proto/libzoned-proto.la
proto_libzoned_proto_la_SOURCES = \
	proto/proto.h \
	proto/wire.c \
	proto/jsonrpc.c \
	proto/json.c
proto_libzoned_proto_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) -fvisibility=hidden
proto_libzoned_proto_la_LIBADD = $(JSONC_LIBS)
EXTRA_DIST += proto/PROTOCOL.md
