/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idle-backends.h"
#include "log.h"
#include "macro.h"
#include "nvml.h"

struct idle_nvml {
        struct idle_source source;      /* first: the interface */
        struct nvml *nvml;
};

static pid_t parent_of(pid_t pid) {
        char path[64], buf[512], *p;
        _cleanup_fclose_ FILE *f = NULL;
        int ppid;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f || !fgets(buf, sizeof(buf), f))
                return 0;
        /* The command name may contain spaces and parentheses: skip to the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
                return 0;
        return ppid;
}

/* Whether pid is swarmd or one of its descendants (our workers). */
static bool pid_is_ours(pid_t pid) {
        pid_t self = getpid();

        for (unsigned depth = 0; pid > 1 && depth < 64; depth++) {
                if (pid == self)
                        return true;
                pid = parent_of(pid);
        }
        return false;
}

/* 1 when a process that is not ours has a GPU open, 0 when none, negative
 * errno when NVML failed. */
static int gpu_busy(struct idle_nvml *n) {
        _cleanup_free_ struct nvml_process *list = NULL;
        size_t count = 0;
        int r;

        r = nvml_list_processes(n->nvml, &list, &count);
        if (r < 0)
                return r;
        for (size_t i = 0; i < count; i++)
                if (!pid_is_ours(list[i].pid))
                        return 1;
        return 0;
}

static void idle_nvml_poll(struct idle_source *s) {
        struct idle_nvml *n = (struct idle_nvml *) s;
        int r = gpu_busy(n);

        if (r < 0) {
                log_debug_errno(r, "NVML could not list the GPU's processes: %m");
                return;
        }
        if ((r > 0) != (s->state == IDLE_SOURCE_BUSY))
                idle_source_set(s, r > 0 ? IDLE_SOURCE_BUSY : IDLE_SOURCE_IDLE, NULL);
}

static void idle_nvml_free(struct idle_source *s) {
        struct idle_nvml *n = (struct idle_nvml *) s;

        nvml_free(n->nvml);
        free(n);
}

static const struct idle_source_ops idle_nvml_ops = {
        .name = "nvml",
        .poll = idle_nvml_poll,
        .free = idle_nvml_free,
};

int idle_nvml_new(idle_source_changed_fn changed, void *userdata, struct idle_source **ret) {
        struct idle_nvml *n;
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        r = nvml_new(&n->nvml);
        if (r < 0) {
                free(n);
                log_debug("The idle policy's GPU check sees no other GPU user: NVML is not available.");
                return -EOPNOTSUPP;
        }
        n->source = (struct idle_source) { .ops = &idle_nvml_ops, .state = IDLE_SOURCE_IDLE };
        if (gpu_busy(n) > 0)
                n->source.state = IDLE_SOURCE_BUSY;
        n->source.changed = changed;
        n->source.userdata = userdata;
        *ret = &n->source;
        return 0;
}
