/*
 * common/list.h - an intrusive doubly-linked list: the element type has
 * `prev` and `next` pointers; the list is a pointer to its first element
 * (NULL when empty). Used for the connections of every server.
 *
 *     typedef struct conn { struct conn *prev, *next; ... } conn;
 *     conn *conns = NULL;
 *     DPR_LIST_PREPEND(conns, c);
 *     DPR_LIST_REMOVE(conns, c);
 */
#ifndef COMMON_LIST_H
#define COMMON_LIST_H

#include <stddef.h>

#define DPR_LIST_PREPEND(head, item)                                                              \
    do {                                                                                          \
        (item)->prev = NULL;                                                                      \
        (item)->next = (head);                                                                    \
        if (head)                                                                                 \
            (head)->prev = (item);                                                                \
        (head) = (item);                                                                          \
    } while (0)

#define DPR_LIST_REMOVE(head, item)                                                               \
    do {                                                                                          \
        if ((item)->prev)                                                                         \
            (item)->prev->next = (item)->next;                                                    \
        else                                                                                      \
            (head) = (item)->next;                                                                \
        if ((item)->next)                                                                         \
            (item)->next->prev = (item)->prev;                                                    \
        (item)->prev = (item)->next = NULL;                                                       \
    } while (0)

#endif
