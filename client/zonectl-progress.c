/* zonectl's progress bar (see zonectl-progress.h). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client/zonectl-progress.h"

#define REDRAW_NS 100000000ull

/* The bar on the screen, if any, for zprogress_interrupt(). */
static struct zprogress *active;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void amount(char *buf, size_t cap, uint64_t v, bool bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	if (!bytes) {
		snprintf(buf, cap, "%" PRIu64, v);
		return;
	}
	while (u + 1 < sizeof(units) / sizeof(units[0]) && v >= (1ull << (10 * (u + 1))))
		u++;
	if (u == 0)
		snprintf(buf, cap, "%" PRIu64 " B", v);
	else
		snprintf(buf, cap, "%.1f %s", (double)v / (double)(1ull << (10 * u)), units[u]);
}

void zprogress_start(struct zprogress *p, const char *what, uint64_t total, bool bytes)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(STDERR_FILENO);
	p->what = what;
	p->total = total;
	p->bytes = bytes;
	if (p->on)
		active = p;
}

void zprogress_update(struct zprogress *p, uint64_t done)
{
	struct winsize ws;
	char d[32], t[32], line[512];
	unsigned cols = 80;
	uint64_t now;
	int n;

	if (!p->on)
		return;
	now = mono_ns();
	if (p->drawn && now - p->last_ns < REDRAW_NS)
		return;
	p->last_ns = now;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		cols = ws.ws_col;
	amount(d, sizeof(d), done, p->bytes);
	if (!p->total) {
		n = snprintf(line, sizeof(line), "zonectl: %s: %s", p->what, d);
	} else {
		uint64_t pct = done >= p->total ? 100 : done * 100 / p->total;
		char bar[64];
		/* The bar takes what the text leaves, 10 to 40 cells. */
		int text, w;

		amount(t, sizeof(t), p->total, p->bytes);
		text = snprintf(NULL, 0, "zonectl: %s: [] %3" PRIu64 "%% %s/%s", p->what, pct, d, t);
		w = (int)cols - 1 - text;
		w = w > 40 ? 40 : w;
		if (w < 10)
			w = 0;
		for (int i = 0; i < w; i++)
			bar[i] = (uint64_t)i < pct * (uint64_t)w / 100 ? '#' : '.';
		bar[w] = '\0';
		n = snprintf(line, sizeof(line), "zonectl: %s: [%s] %3" PRIu64 "%% %s/%s", p->what, bar,
			     pct, d, t);
	}
	/* Never wrap: a wrapped line cannot be cleared with \r. */
	if (n > 0 && (unsigned)n >= cols && cols - 1 < sizeof(line))
		line[cols - 1] = '\0';
	fprintf(stderr, "\r%s\033[K", line);
	fflush(stderr);
	p->drawn = true;
}

void zprogress_end(struct zprogress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = false;
	p->on = false;
	if (active == p)
		active = NULL;
}

void zprogress_interrupt(void)
{
	if (active && active->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		active->drawn = false;
	}
}
