# systemd integration: the units, sysusers.d and tmpfiles.d entries, the
# example configuration and the bash completion of zonectl.
#
# The unit directory comes from configure (--with-systemdsystemunitdir, else
# pkg-config's systemd module). The other directories are what pkg-config's
# systemd and bash-completion modules name, with their base ($(prefix), or
# $(datadir) for bash-completion) replaced by ours: with --prefix=/usr they
# are exactly the distribution's, and a /usr/local or distcheck install stays
# under its prefix. Without the modules they default to the same places.
# Each may be set on the make command line (make install sysusersdir=...).

# $(call zoned_pc,MODULE,VARIABLE,BASEVAR=VALUE,DEFAULT)
zoned_pc_get = $(shell $(PKG_CONFIG) --define-variable=$(3) --variable=$(2) $(1) 2>/dev/null)
zoned_pc = $(strip $(or $(call zoned_pc_get,$(1),$(2),$(3)),$(4)))

sysusersdir = $(call zoned_pc,systemd,sysusersdir,prefix=$(prefix),$(prefix)/lib/sysusers.d)
tmpfilesdir = $(call zoned_pc,systemd,tmpfilesdir,prefix=$(prefix),$(prefix)/lib/tmpfiles.d)
bashcompletiondir = $(call zoned_pc,bash-completion,completionsdir,datadir=$(datadir),\
	$(datadir)/bash-completion/completions)

nodist_systemdsystemunit_DATA = systemd/zonedd.service
dist_systemdsystemunit_DATA = systemd/zonedd.socket
dist_sysusers_DATA = systemd/sysusers.d/zoned.conf
dist_tmpfiles_DATA = systemd/tmpfiles.d/zoned.conf
dist_bashcompletion_DATA = completion/zonectl

EXTRA_DIST += systemd/zonedd.service.in systemd/zonedd.conf
CLEANFILES += systemd/zonedd.service

# Substituted at make time, not by configure, so that "make prefix=..."
# and "make install sbindir=..." agree with the unit they install.
systemd/zonedd.service: $(srcdir)/systemd/zonedd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
		$(srcdir)/systemd/zonedd.service.in > $@.tmp && mv -f $@.tmp $@

# The example configuration is installed once: an administrator's edited
# /etc/zoned/zonedd.conf is never overwritten, and uninstall removes the file
# only while it is still the shipped one.
zonedconfdir = $(sysconfdir)/zoned
install-data-local: install-zonedd-conf
uninstall-local: uninstall-zonedd-conf
install-zonedd-conf:
	$(MKDIR_P) '$(DESTDIR)$(zonedconfdir)'
	@if test -e '$(DESTDIR)$(zonedconfdir)/zonedd.conf'; then \
		echo "$(DESTDIR)$(zonedconfdir)/zonedd.conf exists; not replaced"; \
	else \
		echo " $(INSTALL_DATA) zonedd.conf '$(DESTDIR)$(zonedconfdir)/zonedd.conf'"; \
		$(INSTALL_DATA) $(srcdir)/systemd/zonedd.conf '$(DESTDIR)$(zonedconfdir)/zonedd.conf'; \
	fi
uninstall-zonedd-conf:
	@if cmp -s $(srcdir)/systemd/zonedd.conf '$(DESTDIR)$(zonedconfdir)/zonedd.conf'; then \
		echo " rm -f '$(DESTDIR)$(zonedconfdir)/zonedd.conf'"; \
		rm -f '$(DESTDIR)$(zonedconfdir)/zonedd.conf'; \
	fi
.PHONY: install-zonedd-conf uninstall-zonedd-conf

# distcheck installs as a user, under a scratch prefix: keep the units there.
AM_DISTCHECK_CONFIGURE_FLAGS = --with-systemdsystemunitdir='$${prefix}/lib/systemd/system'
