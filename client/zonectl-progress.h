/* zonectl's progress bar: one line on stderr for long work, drawn only when
 * stderr is a terminal, redrawn at most ten times a second, cleared at the
 * end so that what follows starts on a clean line. */
#ifndef ZONECTL_PROGRESS_H
#define ZONECTL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct zprogress {
	bool on;
	bool drawn;
	bool bytes;         /* done/total are bytes: shown in binary units */
	const char *what;   /* "reset emu0" */
	uint64_t total;     /* 0: unknown, the count alone is shown */
	uint64_t last_ns;   /* of the last redraw */
};

/* total 0 when unknown; bytes selects the units of done and total. */
void zprogress_start(struct zprogress *p, const char *what, uint64_t total, bool bytes);
/* Redraws with `done` if the last redraw is 100 ms old. */
void zprogress_update(struct zprogress *p, uint64_t done);
/* Clears the line (if anything was drawn). Safe to call twice. */
void zprogress_end(struct zprogress *p);
/* Clears the bar being drawn, if any, for a message (an error) to take the
 * line; the next update draws it again below. */
void zprogress_interrupt(void);

#endif
