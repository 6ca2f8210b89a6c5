/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "nn-pool.h"

/* How many polls a worker makes for the next loop before it sleeps. */
#define SPIN_POLLS 20000
/* Every this many polls a spinning thread yields its CPU: when there are
 * more runnable threads than cores (other processes, other pools), the
 * thread being waited for may be the one that needs it.  Without this, a
 * caller waiting on a descheduled worker burnt its whole time slice, and
 * small loops on a busy 2-core machine took ten times longer. */
#define SPIN_YIELD_EVERY 64

struct nn_pool {
        unsigned n_threads;
        pthread_t *threads;

        pthread_mutex_t lock;
        pthread_cond_t wake;

        /* Bumped for every loop; workers run each generation once. */
        atomic_uint generation;
        atomic_uint pending;            /* workers still inside this loop */
        atomic_bool stopping;
        void (*fn)(void *arg, unsigned ith, unsigned nth);
        void *arg;
};

struct worker_arg {
        struct nn_pool *pool;
        unsigned ith;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

static void *worker_main(void *userdata) {
        struct worker_arg *wa = userdata;
        struct nn_pool *p = wa->pool;
        unsigned ith = wa->ith;
        unsigned seen = 0;

        free(wa);
        for (;;) {
                unsigned gen;
                int spins = 0;

                while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                       !atomic_load_explicit(&p->stopping, memory_order_acquire)) {
                        if (++spins < SPIN_POLLS) {
                                if (spins % SPIN_YIELD_EVERY == 0)
                                        sched_yield();
                                else
                                        cpu_relax();
                                continue;
                        }
                        pthread_mutex_lock(&p->lock);
                        while (atomic_load(&p->generation) == seen && !atomic_load(&p->stopping))
                                pthread_cond_wait(&p->wake, &p->lock);
                        pthread_mutex_unlock(&p->lock);
                }
                if (atomic_load_explicit(&p->stopping, memory_order_acquire))
                        return NULL;
                seen = gen;
                p->fn(p->arg, ith, p->n_threads);
                atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
        }
}

struct nn_pool *nn_pool_new(unsigned n_threads) {
        struct nn_pool *p;

        if (n_threads == 0) {
                errno = EINVAL;
                return NULL;
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->n_threads = n_threads;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);
        if (n_threads > 1) {
                p->threads = calloc(n_threads - 1, sizeof(pthread_t));
                if (!p->threads)
                        goto fail;
        }
        for (unsigned i = 1; i < n_threads; i++) {
                struct worker_arg *wa = malloc(sizeof(*wa));
                int r;

                if (!wa)
                        goto fail_threads;
                *wa = (struct worker_arg) { .pool = p, .ith = i };
                r = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
                if (r != 0) {
                        free(wa);
                        errno = r;
                        goto fail_threads;
                }
                continue;
fail_threads:
                p->n_threads = i;       /* only these were started */
                nn_pool_free(p);
                return NULL;
        }
        return p;
fail:
        free(p);
        return NULL;
}

void nn_pool_free(struct nn_pool *p) {
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->stopping, true);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 1; i < p->n_threads; i++)
                pthread_join(p->threads[i - 1], NULL);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
}

unsigned nn_pool_threads(const struct nn_pool *p) {
        return p->n_threads;
}

void nn_pool_run(struct nn_pool *p, void (*fn)(void *arg, unsigned ith, unsigned nth), void *arg) {
        if (p->n_threads == 1) {
                fn(arg, 0, 1);
                return;
        }
        p->fn = fn;
        p->arg = arg;
        atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
        pthread_mutex_lock(&p->lock);
        atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);

        fn(arg, 0, p->n_threads);
        for (unsigned spins = 1; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; spins++)
                if (spins % SPIN_YIELD_EVERY == 0)
                        sched_yield();
                else
                        cpu_relax();
}
