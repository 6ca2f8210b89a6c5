/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared-memory blocks for tensors and large byte strings: each one a
 * memfd, mapped once, so that swarmd and a worker hand data to each other
 * by passing the file descriptor instead of copying the bytes.
 *
 * shm_allocate() is a swarm_values allocator: tensors a plugin adds to its
 * outputs land in memfds the worker can send back as they are. */

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>

#include "swarm-host.h"

/* Blocks from this size up ask for transparent huge pages. */
#define SHM_HUGE_THRESHOLD (2u * 1024u * 1024u)

struct shm_block {
        int fd;
        void *addr;
        uint64_t size;
};

/* swarm_values_allocator_fn: a fresh, zeroed, writable block. */
int shm_allocate(uint64_t size, void **data,
                 void (**release)(void *data, uint64_t size, void *userdata),
                 void **release_userdata, void *userdata);

/* The release function of every block; userdata is the struct shm_block. */
void shm_release(void *data, uint64_t size, void *userdata);

/* What a block must carry to be read: the sender can no longer shrink it
 * (reading a truncated mapping would kill us with SIGBUS), grow it, or
 * write to it (a value could change after it was checked). */
#define SHM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

/* A new block holding a copy of size bytes of data, sealed (SHM_SEALS). */
int shm_copy(const void *data, uint64_t size, struct shm_block **ret);

/* Maps size bytes of a received memfd read-only.  Takes fd in all cases.
 * -EPERM for a file without SHM_SEALS, -EBADMSG for one smaller than size
 * or not a regular file. */
int shm_map_received(int fd, uint64_t size, struct shm_block **ret);

/* As shm_map_received() for the one block meant to change while shared,
 * a worker's control page (the cancel flag swarmd writes): sealed against
 * shrinking only. */
int shm_map_control(int fd, uint64_t size, struct shm_block **ret);

/* Seals the block (SHM_SEALS) before it is sent: from here on it is
 * read-only here too, and a write to the values behind it faults.
 * -EBUSY when another writable mapping of it exists. */
int shm_seal(struct shm_block *b);

/* Seals the control page against shrinking and growing only. */
int shm_seal_size(struct shm_block *b);

/* The block behind value name of v, or NULL when it is not in shared
 * memory. */
struct shm_block *shm_block_of(const struct swarm_values *v, const char *name);

void shm_block_free(struct shm_block *b);
