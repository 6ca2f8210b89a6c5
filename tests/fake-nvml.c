/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A stand-in for libnvidia-ml.so.1 with the few symbols swarmd uses
 * (daemon/lending/nvml.c), for the tests: swarmd loads it by path from
 * $SWARM_NVML_LIBRARY.  One GPU; its processes are whatever the file named
 * by $SWARM_FAKE_NVML_STATE lists when asked, one a line:
 *
 *   compute PID BYTES
 *   graphics PID BYTES
 *
 * (BYTES "na": NVML gives no figure).  No file: no processes.  The test
 * rewrites the file (atomically, by rename) to change what the "driver"
 * sees. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvml_return;
typedef struct nvml_device *nvml_device;

#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define FAKE_MAX 64

struct nvml_process_info {
        unsigned pid;
        unsigned long long used_gpu_memory;
        unsigned gpu_instance_id;
        unsigned compute_instance_id;
};

nvml_return nvmlInit_v2(void);
nvml_return nvmlShutdown(void);
nvml_return nvmlDeviceGetCount_v2(unsigned *count);
nvml_return nvmlDeviceGetHandleByIndex_v2(unsigned index, nvml_device *device);
nvml_return nvmlDeviceGetComputeRunningProcesses_v3(nvml_device device, unsigned *count,
                                                    struct nvml_process_info *infos);
nvml_return nvmlDeviceGetGraphicsRunningProcesses_v3(nvml_device device, unsigned *count,
                                                     struct nvml_process_info *infos);

static int initialised;
static struct nvml_device *const the_device = (struct nvml_device *) &initialised;

nvml_return nvmlInit_v2(void) {
        initialised++;
        return NVML_SUCCESS;
}

nvml_return nvmlShutdown(void) {
        if (initialised == 0)
                return NVML_ERROR_UNINITIALIZED;
        initialised--;
        return NVML_SUCCESS;
}

nvml_return nvmlDeviceGetCount_v2(unsigned *count) {
        if (!initialised)
                return NVML_ERROR_UNINITIALIZED;
        *count = 1;
        return NVML_SUCCESS;
}

nvml_return nvmlDeviceGetHandleByIndex_v2(unsigned index, nvml_device *device) {
        if (!initialised)
                return NVML_ERROR_UNINITIALIZED;
        if (index != 0)
                return NVML_ERROR_INVALID_ARGUMENT;
        *device = the_device;
        return NVML_SUCCESS;
}

/* The processes of one kind ("compute", "graphics") the state file lists. */
static unsigned read_state(const char *kind, struct nvml_process_info *out) {
        const char *path = getenv("SWARM_FAKE_NVML_STATE");
        char line[256];
        unsigned n = 0;
        FILE *f;

        if (!path || !(f = fopen(path, "re")))
                return 0;
        while (n < FAKE_MAX && fgets(line, sizeof(line), f)) {
                char k[16], bytes[32];
                unsigned pid;

                if (sscanf(line, "%15s %u %31s", k, &pid, bytes) != 3 || strcmp(k, kind) != 0)
                        continue;
                out[n++] = (struct nvml_process_info) {
                        .pid = pid,
                        .used_gpu_memory = strcmp(bytes, "na") == 0 ? ~0ULL : strtoull(bytes, NULL, 10),
                };
        }
        fclose(f);
        return n;
}

static nvml_return list(const char *kind, nvml_device device, unsigned *count, struct nvml_process_info *infos) {
        struct nvml_process_info found[FAKE_MAX];
        unsigned n;

        if (!initialised)
                return NVML_ERROR_UNINITIALIZED;
        if (device != the_device || !count)
                return NVML_ERROR_INVALID_ARGUMENT;
        n = read_state(kind, found);
        if (*count < n || (!infos && n > 0)) {
                *count = n;
                return NVML_ERROR_INSUFFICIENT_SIZE;
        }
        *count = n;
        if (n > 0)
                memcpy(infos, found, n * sizeof(*found));
        return NVML_SUCCESS;
}

nvml_return nvmlDeviceGetComputeRunningProcesses_v3(nvml_device device, unsigned *count,
                                                    struct nvml_process_info *infos) {
        return list("compute", device, count, infos);
}

nvml_return nvmlDeviceGetGraphicsRunningProcesses_v3(nvml_device device, unsigned *count,
                                                     struct nvml_process_info *infos) {
        return list("graphics", device, count, infos);
}
