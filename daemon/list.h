/* Intrusive doubly linked lists, the daemon's one container. */
#ifndef ZONED_LIST_H
#define ZONED_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct zd_list {
	struct zd_list *prev, *next;
};
static inline void zd_list_init(struct zd_list *l) { l->prev = l->next = l; }
static inline bool zd_list_empty(const struct zd_list *l) { return l->next == l; }
static inline void zd_list_add_tail(struct zd_list *head, struct zd_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}
static inline void zd_list_add(struct zd_list *head, struct zd_list *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}
static inline void zd_list_del(struct zd_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}
/* Moves every entry of `from` to the front of `head`, in order; O(1). */
static inline void zd_list_splice_head(struct zd_list *head, struct zd_list *from)
{
	if (zd_list_empty(from))
		return;
	from->prev->next = head->next;
	head->next->prev = from->prev;
	head->next = from->next;
	from->next->prev = head;
	zd_list_init(from);
}
/* Moves every entry of `from` to the end of `head`, in order; O(1). */
static inline void zd_list_splice_tail(struct zd_list *head, struct zd_list *from)
{
	if (zd_list_empty(from))
		return;
	from->next->prev = head->prev;
	head->prev->next = from->next;
	head->prev = from->prev;
	from->prev->next = head;
	zd_list_init(from);
}
#define zd_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define zd_list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
