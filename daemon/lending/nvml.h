/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The few NVML calls swarmd makes, through the NVIDIA driver's stable C
 * ABI, dlopen()ed at run time so that swarmd neither links nor needs the
 * driver: which processes have a GPU open, and how much device memory each
 * holds.  The idle policy asks it whether someone else uses the GPU
 * (idle-nvml.c); lending asks it how much memory the skills' workers hold
 * and whether it was given back (lending.c).
 *
 * The library is libnvidia-ml.so.1, or the path in $SWARM_NVML_LIBRARY
 * (honoured only outside set-uid contexts: secure_getenv()) — the tests
 * load a fake one with the same symbols this way. */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct nvml;

/* NVML reports no figure for this process (NVML_VALUE_NOT_AVAILABLE:
 * some drivers, or not enough privileges). */
#define NVML_MEMORY_UNKNOWN UINT64_MAX

struct nvml_process {
        pid_t pid;
        uint64_t memory;        /* bytes of device memory; NVML_MEMORY_UNKNOWN */
};

/* Loads and initialises NVML.  -ENOENT when the library is not there (no
 * NVIDIA driver), -EOPNOTSUPP when it lacks the calls, -EIO when
 * nvmlInit_v2() fails; each logged at debug level (not having NVML is
 * normal).  Free with nvml_free(). */
int nvml_new(struct nvml **ret);
struct nvml *nvml_free(struct nvml *n);
static inline void nvml_freep(struct nvml **n) {
        nvml_free(*n);
}

/* Every process that has a GPU open, on every GPU, compute and graphics
 * alike; a process on several GPUs, or in both lists, comes once with its
 * memory added up.  *ret (free()) may be NULL when *ret_n is 0.  -EIO when
 * NVML fails, -ENOMEM. */
int nvml_list_processes(struct nvml *n, struct nvml_process **ret, size_t *ret_n);

/* The library's path, for messages. */
const char *nvml_library(void);
