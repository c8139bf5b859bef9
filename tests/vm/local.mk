# tests/vm: the VM suite (issue #4). tests/vm/check-vm.sh boots the installed
# Debian kernel in QEMU with two real zoned devices and runs vm-inner.sh in it;
# it skips (77) with the reason when QEMU, the kernel or busybox-static is
# missing. `make check-vm` runs it alone.
check_PROGRAMS += tests/vm/vm-kernel-test
tests_vm_vm_kernel_test_SOURCES = tests/vm/vm-kernel-test.c
tests_vm_vm_kernel_test_CFLAGS = $(TEST_CFLAGS)
tests_vm_vm_kernel_test_LDADD = $(TEST_LIBS)

# -no-install: a real binary, not libtool's wrapper script, which costs a
# second a start under the VM's software emulation.
check_PROGRAMS += tests/vm/vm-lease-test
tests_vm_vm_lease_test_SOURCES = tests/vm/vm-lease-test.c
tests_vm_vm_lease_test_CFLAGS = $(TEST_CFLAGS)
tests_vm_vm_lease_test_LDADD = client/libzoned-client.la $(CHECK_LIBS)
tests_vm_vm_lease_test_LDFLAGS = $(AM_LDFLAGS) -no-install

TESTS += tests/vm/check-vm.sh
dist_check_SCRIPTS += tests/vm/check-vm.sh
EXTRA_DIST += tests/vm/vm-init.sh tests/vm/vm-inner.sh tests/vm/vm-daemon-test.py \
	tests/vm/vm-faults-test.py tests/vm/vm-validate-test.py
CLEANFILES += tests/vm/initramfs.cpio tests/vm/zns.img tests/vm/plain.img \
	tests/vm/console.log tests/vm/results.log

check-vm: all tests/vm/vm-kernel-test tests/vm/vm-lease-test
	@$(AM_TESTS_ENVIRONMENT) $(SHELL) $(srcdir)/tests/vm/check-vm.sh
.PHONY: check-vm

# Automake's summary shows only "SKIP"; say plainly why the VM suite did not run.
check-local: check-TESTS
	@if test -f tests/vm/check-vm.sh.log && grep -q '^SKIP: VM suite:' tests/vm/check-vm.sh.log; then \
		echo "=== NOTE: the QEMU VM suite (real kernel zoned devices) did not run:"; \
		grep '^SKIP: VM suite:' tests/vm/check-vm.sh.log | sed 's/^SKIP: VM suite: /===   /'; \
	fi
