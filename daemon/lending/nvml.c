/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "nvml.h"

/* The few NVML declarations we need, from the driver's stable C ABI. */
typedef int nvml_return;
typedef struct nvml_device *nvml_device;
#define NVML_SUCCESS 0
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_VALUE_NOT_AVAILABLE_ULL (~0ULL)

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
        void *dl;
        nvml_shutdown_fn shutdown;
        nvml_count_fn count;
        nvml_handle_fn handle;
        nvml_processes_fn processes[2];         /* compute, graphics */
        size_t info_size;
};

/* Processes that appear between the two calls of a listing. */
#define NVML_SLACK 8
#define NVML_TRIES 3

const char *nvml_library(void) {
        const char *path = secure_getenv("SWARM_NVML_LIBRARY");

        return path && path[0] ? path : "libnvidia-ml.so.1";
}

struct nvml *nvml_free(struct nvml *n) {
        if (!n)
                return NULL;
        if (n->shutdown)
                (void) n->shutdown();
        if (n->dl)
                dlclose(n->dl);
        free(n);
        return NULL;
}

static void *symbol(struct nvml *n, const char *name) {
        return dlsym(n->dl, name);
}

int nvml_new(struct nvml **ret) {
        _cleanup_free_ struct nvml *n = NULL;
        const char *path = nvml_library();
        nvml_init_fn init;
        nvml_return e;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!n->dl) {
                log_debug("NVML is not available (%s).", dlerror());
                return -ENOENT;
        }
        init = (nvml_init_fn) symbol(n, "nvmlInit_v2");
        n->count = (nvml_count_fn) symbol(n, "nvmlDeviceGetCount_v2");
        n->handle = (nvml_handle_fn) symbol(n, "nvmlDeviceGetHandleByIndex_v2");
        n->info_size = sizeof(struct nvml_process_info);
        n->processes[0] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetComputeRunningProcesses_v3");
        n->processes[1] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetGraphicsRunningProcesses_v3");
        if (!n->processes[0] || !n->processes[1]) {
                n->processes[0] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetComputeRunningProcesses_v2");
                n->processes[1] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetGraphicsRunningProcesses_v2");
        }
        if (!n->processes[0] || !n->processes[1]) {
                n->processes[0] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetComputeRunningProcesses");
                n->processes[1] = (nvml_processes_fn) symbol(n, "nvmlDeviceGetGraphicsRunningProcesses");
                n->info_size = sizeof(struct nvml_process_info_v1);
        }
        if (!init || !n->count || !n->handle || !n->processes[0] || !n->processes[1]) {
                log_warning("%s lacks the NVML functions swarmd needs: no GPU process or memory figures.", path);
                dlclose(TAKE_PTR(n->dl));
                return -EOPNOTSUPP;
        }
        e = init();
        if (e != NVML_SUCCESS) {
                log_warning("nvmlInit_v2() failed with NVML error %d: no GPU process or memory figures.", e);
                dlclose(TAKE_PTR(n->dl));
                return -EIO;
        }
        n->shutdown = (nvml_shutdown_fn) symbol(n, "nvmlShutdown");
        log_debug("NVML loaded from %s.", path);
        *ret = TAKE_PTR(n);
        return 0;
}

/* Adds one process's figure, merging a pid seen before. */
static int add_process(struct nvml_process **list, size_t *n, size_t *allocated, pid_t pid, uint64_t memory) {
        for (size_t i = 0; i < *n; i++)
                if ((*list)[i].pid == pid) {
                        if ((*list)[i].memory == NVML_MEMORY_UNKNOWN || memory == NVML_MEMORY_UNKNOWN)
                                (*list)[i].memory = NVML_MEMORY_UNKNOWN;
                        else
                                (*list)[i].memory += memory;
                        return 0;
                }
        if (*n == *allocated) {
                size_t want = *allocated ? *allocated * 2 : 16;
                struct nvml_process *grown = reallocarray(*list, want, sizeof(**list));

                if (!grown)
                        return -ENOMEM;
                *list = grown;
                *allocated = want;
        }
        (*list)[(*n)++] = (struct nvml_process) { .pid = pid, .memory = memory };
        return 0;
}

/* One list (compute or graphics) of one device. */
static int list_one(struct nvml *n, nvml_processes_fn fn, nvml_device dev, struct nvml_process **list,
                    size_t *count, size_t *allocated) {
        for (unsigned tries = 0; tries < NVML_TRIES; tries++) {
                _cleanup_free_ uint8_t *infos = NULL;
                unsigned want = 0;
                nvml_return e;

                e = fn(dev, &want, NULL);
                if (e == NVML_SUCCESS || want == 0)
                        return 0;       /* none */
                if (e != NVML_ERROR_INSUFFICIENT_SIZE)
                        return -EIO;
                want += NVML_SLACK;
                infos = calloc(want, n->info_size);
                if (!infos)
                        return -ENOMEM;
                e = fn(dev, &want, infos);
                if (e == NVML_ERROR_INSUFFICIENT_SIZE)
                        continue;       /* more started meanwhile: again */
                if (e != NVML_SUCCESS)
                        return -EIO;
                for (unsigned i = 0; i < want; i++) {
                        struct nvml_process_info info = {};
                        int r;

                        memcpy(&info, infos + i * n->info_size, n->info_size < sizeof(info) ? n->info_size : sizeof(info));
                        r = add_process(list, count, allocated, (pid_t) info.pid,
                                        info.used_gpu_memory == NVML_VALUE_NOT_AVAILABLE_ULL ?
                                        NVML_MEMORY_UNKNOWN : (uint64_t) info.used_gpu_memory);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        return -EIO;
}

int nvml_list_processes(struct nvml *n, struct nvml_process **ret, size_t *ret_n) {
        _cleanup_free_ struct nvml_process *list = NULL;
        size_t count = 0, allocated = 0;
        unsigned devices = 0;

        if (!n || !ret || !ret_n)
                return -EINVAL;
        if (n->count(&devices) != NVML_SUCCESS)
                return -EIO;
        for (unsigned d = 0; d < devices; d++) {
                nvml_device dev;

                if (n->handle(d, &dev) != NVML_SUCCESS)
                        continue;
                for (size_t k = 0; k < ELEMENTSOF(n->processes); k++) {
                        int r = list_one(n, n->processes[k], dev, &list, &count, &allocated);
                        if (r < 0)
                                return r;
                }
        }
        *ret = TAKE_PTR(list);
        *ret_n = count;
        return 0;
}
