/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pool-harness.h. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "pool-harness.h"

_Noreturn void pool_harness_die(const char *what, int r) {
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

static void on_done(struct pool_request *req, struct pool_result *res, void *userdata) {
        struct pool_wait *w = userdata;

        w->done = true;
        w->copy = *res;
        if (res->status < 0)
                pool_harness_die(res->error ?: "request failed", res->status);
        w->outputs = TAKE_PTR(res->outputs);
}

struct pool_wait pool_harness_run(sd_event *event, struct skill_pool *p, enum pool_op op,
                                  const struct swarm_values *in, const struct swarm_values *out) {
        struct pool_wait w = {};
        int r = skill_pool_submit(p, op, in, out, NULL, 0, on_done, &w, NULL);

        if (r < 0)
                pool_harness_die("submit", r);
        while (!w.done)
                if (sd_event_run(event, UINT64_MAX) < 0)
                        pool_harness_die("event loop", -EIO);
        return w;
}

struct skill_pool *pool_harness_start(sd_event *event, const char *worker, const char *plugin,
                                      const struct swarm_values *config) {
        struct skill_pool_config c = {
                .name = "bench",
                .plugin_path = plugin,
                .worker_path = worker,
                .workers = 1,
                .skill_config = config,
        };
        struct skill_pool *p;
        int r = skill_pool_new(event, &c, &p);

        if (r < 0)
                pool_harness_die("pool", r);
        while (!skill_pool_info(p)) {
                if (skill_pool_restarts(p) > 0)
                        pool_harness_die(skill_pool_last_error(p) ?: "worker failed to start", -EIO);
                sd_event_run(event, 100 * 1000);
        }
        return p;
}
