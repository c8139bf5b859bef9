/* What the libFuzzer targets in fuzz/ share: libFuzzer's entry points, a
 * private scratch directory, and the fd count that must not grow. */
#ifndef ZONED_FUZZ_H
#define ZONED_FUZZ_H

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: abort() so libFuzzer saves the input as a crash. */
static inline void fuzz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void fuzz_die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* A fresh directory: on tmpfs when there is one (the emulated devices
 * fdatasync their metadata), else under $TMPDIR. */
static inline void fuzz_tmpdir(char *dir, size_t size, const char *what)
{
	const char *base = getenv("TMPDIR");

	if (access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	else if (!base)
		base = "/tmp";
	snprintf(dir, size, "%s/zoned-fuzz-%s-XXXXXX", base, what);
	if (!mkdtemp(dir))
		fuzz_die("mkdtemp %s: %m", dir);
}

/* Open fds of this process other than pipes: the daemon makes none, while
 * the sanitizer runtime keeps one to llvm-symbolizer once libFuzzer has
 * printed a new function. The fd reading /proc/self/fd counts. */
static inline int fuzz_count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	char link[300], target[16];
	int n = 0;

	if (!dir)
		fuzz_die("opendir /proc/self/fd: %m");
	while ((e = readdir(dir))) {
		ssize_t k;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		k = readlink(link, target, sizeof(target));
		if (k >= 5 && memcmp(target, "pipe:", 5) == 0)
			continue;
		n++;
	}
	closedir(dir);
	return n;
}

/* Dies when more fds are open than `baseline`. The sanitizers' and
 * libFuzzer's own threads open files for a moment (LeakSanitizer reads
 * /proc/self/maps), so only a count that stays up is a leak. */
static inline void fuzz_check_fds(int baseline)
{
	int n = 0;

	for (int i = 0; i < 50; i++) {
		n = fuzz_count_fds();
		if (n <= baseline)
			return;
		usleep(1000);
	}
	{
		DIR *dir = opendir("/proc/self/fd");
		struct dirent *e;
		char link[300], target[256];

		while (dir && (e = readdir(dir))) {
			ssize_t k;

			if (e->d_name[0] == '.')
				continue;
			snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
			k = readlink(link, target, sizeof(target) - 1);
			target[k < 0 ? 0 : k] = '\0';
			fprintf(stderr, "fuzz: fd %s -> %s\n", e->d_name, target);
		}
		if (dir)
			closedir(dir);
	}
	fuzz_die("%d fds open, %d before the input: an fd leaked", n, baseline);
}

#endif
