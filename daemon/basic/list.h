/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Intrusive doubly-linked lists, after systemd's list.h: an item holds
 * LIST_FIELDS(type, name) (name##_next, name##_prev) and a list is a
 * pointer to its first item.  O(1) prepend and remove; an item is in at
 * most one list per name at a time. */

#define LIST_FIELDS(t, name) t *name##_next, *name##_prev

#define LIST_PREPEND(name, head, item)                                  \
        do {                                                            \
                __typeof__(*(head)) **_head = &(head), *_item = (item); \
                _item->name##_prev = NULL;                              \
                _item->name##_next = *_head;                            \
                if (*_head)                                             \
                        (*_head)->name##_prev = _item;                  \
                *_head = _item;                                         \
        } while (0)

/* Safe for an item in no list (both links NULL and not the head). */
#define LIST_REMOVE(name, head, item)                                   \
        do {                                                            \
                __typeof__(*(head)) **_head = &(head), *_item = (item); \
                if (_item->name##_prev)                                 \
                        _item->name##_prev->name##_next = _item->name##_next; \
                else if (*_head == _item)                               \
                        *_head = _item->name##_next;                    \
                if (_item->name##_next)                                 \
                        _item->name##_next->name##_prev = _item->name##_prev; \
                _item->name##_next = _item->name##_prev = NULL;         \
        } while (0)

#define LIST_FOREACH(name, i, head) \
        for (__typeof__(head) i = (head); i; i = i->name##_next)

/* Where the body may remove i. */
#define LIST_FOREACH_SAFE(name, i, n, head) \
        for (__typeof__(head) i = (head), n = i ? i->name##_next : NULL; i; i = n, n = i ? i->name##_next : NULL)
