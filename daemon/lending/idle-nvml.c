/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idle-backends.h"
#include "log.h"
#include "macro.h"

/* The few NVML declarations we need, from the driver's stable C ABI. */
typedef int nvml_return;
typedef struct nvml_device *nvml_device;
#define NVML_SUCCESS 0
#define NVML_ERROR_INSUFFICIENT_SIZE 7

/* nvmlProcessInfo_v2_t, which the _v2 and _v3 calls fill (12.0's header
 * briefly declared a fifth field for _v3 that drivers never wrote). */
struct nvml_process_info {
        unsigned pid;
        unsigned long long used_gpu_memory;
        unsigned gpu_instance_id;
        unsigned compute_instance_id;
};
struct nvml_process_info_v1 {
        unsigned pid;
        unsigned long long used_gpu_memory;
};

typedef nvml_return (*nvml_init_fn)(void);
typedef nvml_return (*nvml_shutdown_fn)(void);
typedef nvml_return (*nvml_count_fn)(unsigned *count);
typedef nvml_return (*nvml_handle_fn)(unsigned index, nvml_device *device);
typedef nvml_return (*nvml_processes_fn)(nvml_device device, unsigned *count, void *infos);

struct nvml {
        struct idle_source source;      /* first: the interface */
        void *dl;
        nvml_shutdown_fn shutdown;
        nvml_count_fn count;
        nvml_handle_fn handle;
        nvml_processes_fn processes[2];         /* compute, graphics */
        size_t info_size;
};

static void nvml_free(struct nvml *n) {
        if (!n)
                return;
        if (n->shutdown)
                (void) n->shutdown();
        dlclose(n->dl);
        free(n);
}

static int nvml_open(struct nvml **ret) {
        struct nvml *n;
        nvml_init_fn init;
        nvml_return e;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->dl = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!n->dl) {
                log_debug("NVML is not available (%s): lending.gpu_check sees no other GPU user.", dlerror());
                free(n);
                return -ENOENT;
        }
        init = (nvml_init_fn) dlsym(n->dl, "nvmlInit_v2");
        n->shutdown = (nvml_shutdown_fn) dlsym(n->dl, "nvmlShutdown");
        n->count = (nvml_count_fn) dlsym(n->dl, "nvmlDeviceGetCount_v2");
        n->handle = (nvml_handle_fn) dlsym(n->dl, "nvmlDeviceGetHandleByIndex_v2");
        n->info_size = sizeof(struct nvml_process_info);
        n->processes[0] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses_v3");
        n->processes[1] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetGraphicsRunningProcesses_v3");
        if (!n->processes[0] || !n->processes[1]) {
                n->processes[0] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses_v2");
                n->processes[1] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetGraphicsRunningProcesses_v2");
        }
        if (!n->processes[0] || !n->processes[1]) {
                n->processes[0] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetComputeRunningProcesses");
                n->processes[1] = (nvml_processes_fn) dlsym(n->dl, "nvmlDeviceGetGraphicsRunningProcesses");
                n->info_size = sizeof(struct nvml_process_info_v1);
        }
        if (!init || !n->count || !n->handle || !n->processes[0] || !n->processes[1]) {
                log_warning("libnvidia-ml.so.1 lacks the functions we need: lending.gpu_check sees no other GPU user.");
                n->shutdown = NULL;
                nvml_free(n);
                return -EOPNOTSUPP;
        }
        e = init();
        if (e != NVML_SUCCESS) {
                log_warning("nvmlInit_v2() failed with NVML error %d: lending.gpu_check sees no other GPU user.", e);
                n->shutdown = NULL;
                nvml_free(n);
                return -EIO;
        }
        log_debug("NVML loaded: the idle policy also checks for other processes on the GPU.");
        *ret = n;
        return 0;
}

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
static int nvml_gpu_busy(struct nvml *n) {
        unsigned devices = 0;

        if (n->count(&devices) != NVML_SUCCESS)
                return -EIO;
        for (unsigned d = 0; d < devices; d++) {
                nvml_device dev;

                if (n->handle(d, &dev) != NVML_SUCCESS)
                        continue;
                for (size_t k = 0; k < ELEMENTSOF(n->processes); k++) {
                        _cleanup_free_ uint8_t *infos = NULL;
                        unsigned count = 0;
                        nvml_return e;

                        e = n->processes[k](dev, &count, NULL);
                        if (e == NVML_SUCCESS || count == 0)
                                continue;       /* none */
                        if (e != NVML_ERROR_INSUFFICIENT_SIZE)
                                return -EIO;
                        count += 8;     /* room for processes that start meanwhile */
                        infos = calloc(count, n->info_size);
                        if (!infos)
                                return -ENOMEM;
                        e = n->processes[k](dev, &count, infos);
                        if (e == NVML_ERROR_INSUFFICIENT_SIZE)
                                return 1;       /* many, and surely not all ours */
                        if (e != NVML_SUCCESS)
                                return -EIO;
                        for (unsigned i = 0; i < count; i++) {
                                unsigned pid;

                                memcpy(&pid, infos + i * n->info_size, sizeof(pid));
                                if (!pid_is_ours((pid_t) pid))
                                        return 1;
                        }
                }
        }
        return 0;
}

static void nvml_poll(struct idle_source *s) {
        struct nvml *n = (struct nvml *) s;
        int r = nvml_gpu_busy(n);

        if (r < 0) {
                log_debug_errno(r, "NVML could not list the GPU's processes: %m");
                return;
        }
        if ((r > 0) != (s->state == IDLE_SOURCE_BUSY))
                idle_source_set(s, r > 0 ? IDLE_SOURCE_BUSY : IDLE_SOURCE_IDLE, NULL);
}

static void nvml_source_free(struct idle_source *s) {
        nvml_free((struct nvml *) s);
}

static const struct idle_source_ops nvml_ops = {
        .name = "nvml",
        .poll = nvml_poll,
        .free = nvml_source_free,
};

int idle_nvml_new(idle_source_changed_fn changed, void *userdata, struct idle_source **ret) {
        struct nvml *n;
        int r;

        r = nvml_open(&n);
        if (r < 0)
                return -EOPNOTSUPP;
        n->source = (struct idle_source) { .ops = &nvml_ops, .state = IDLE_SOURCE_IDLE };
        r = nvml_gpu_busy(n);
        if (r > 0)
                n->source.state = IDLE_SOURCE_BUSY;
        n->source.changed = changed;
        n->source.userdata = userdata;
        *ret = &n->source;
        return 0;
}
