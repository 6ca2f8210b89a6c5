/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A fixed set of threads that run one parallel loop at a time: the caller
 * takes part as thread 0, so a pool of one thread is no threads at all.
 * Workers spin briefly between loops before sleeping, because a decoding
 * step issues a few hundred short loops one after another and a futex wake
 * per loop would cost more than the work. */

#include <stddef.h>

struct nn_pool;

/* n_threads ≥ 1 (the caller included).  NULL on failure (errno set). */
struct nn_pool *nn_pool_new(unsigned n_threads);
void nn_pool_free(struct nn_pool *p);
unsigned nn_pool_threads(const struct nn_pool *p);

/* Calls fn(arg, ith, nth) on every thread (ith = 0 … nth-1, 0 is the
 * caller) and returns when all have returned.  Not reentrant. */
void nn_pool_run(struct nn_pool *p, void (*fn)(void *arg, unsigned ith, unsigned nth), void *arg);
