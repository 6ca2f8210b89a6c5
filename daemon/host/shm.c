/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "shm.h"

void shm_block_free(struct shm_block *b) {
        if (!b)
                return;
        if (b->addr && b->addr != MAP_FAILED)
                munmap(b->addr, b->size);
        if (b->fd >= 0)
                close(b->fd);
        free(b);
}

/* Tensors are touched page by page on both sides of the socket, and every
 * shmem page fault costs about a microsecond: a 4 MiB operand spends more
 * in faults than a GEMM of it spends in arithmetic at n = 1024.  Ask for
 * transparent huge pages; the kernel honours it when
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise" or
 * "within_size", and ignores it otherwise. */
static void advise_huge(void *addr, uint64_t size) {
        if (size >= SHM_HUGE_THRESHOLD)
                (void) madvise(addr, size, MADV_HUGEPAGE);
}

/* A worker forked between the allocation and the sending of a block would
 * hold a writable mapping of it until its exec(), and sealing against
 * writes fails while any exists: forks never inherit blocks (nor need
 * them). */
static void advise(void *addr, uint64_t size) {
        advise_huge(addr, size);
        (void) madvise(addr, size, MADV_DONTFORK);
}

void shm_release(void *data, uint64_t size, void *userdata) {
        shm_block_free(userdata);
}

static int block_new(uint64_t size, struct shm_block **ret) {
        struct shm_block *b;

        if (size == 0 || size > (uint64_t) SIZE_MAX / 2)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->size = size;
        b->fd = memfd_create("swarm-tensor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (b->fd < 0 || ftruncate(b->fd, (off_t) size) < 0) {
                int r = negative_errno();
                shm_block_free(b);
                return r;
        }
        /* Fresh memfd pages read as zeroes: nothing to clear. */
        b->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
        if (b->addr == MAP_FAILED) {
                int r = negative_errno();
                shm_block_free(b);
                return r;
        }
        advise(b->addr, size);
        *ret = b;
        return 0;
}

int shm_allocate(uint64_t size, void **data,
                 void (**release)(void *data, uint64_t size, void *userdata),
                 void **release_userdata, void *userdata) {
        struct shm_block *b;
        int r = block_new(size, &b);

        if (r < 0)
                return r;
        *data = b->addr;
        *release = shm_release;
        *release_userdata = b;
        return 0;
}

int shm_seal(struct shm_block *b) {
        int seals = fcntl(b->fd, F_GET_SEALS);
        void *addr;

        if (seals < 0)
                return negative_errno();
        if ((seals & SHM_SEALS) == SHM_SEALS)
                return 0;       /* sent before */
        /* F_SEAL_WRITE needs every shared mapping that could write gone,
         * ours included, and before Linux 6.7 a read-only MAP_SHARED one of
         * a writable fd still counts: map the same pages read-only and
         * private over it, in one step, so the values pointing into it stay
         * valid for reading (a private mapping nobody writes reads the
         * file's pages). */
        addr = mmap(b->addr, b->size, PROT_READ, MAP_PRIVATE | MAP_FIXED, b->fd, 0);
        if (addr == MAP_FAILED)
                return negative_errno();
        advise(b->addr, b->size);
        if (fcntl(b->fd, F_ADD_SEALS, SHM_SEALS) < 0)
                return negative_errno();        /* EBUSY: someone else still maps it writable */
        return 0;
}

int shm_seal_size(struct shm_block *b) {
        if (fcntl(b->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return negative_errno();
        return 0;
}

int shm_copy(const void *data, uint64_t size, struct shm_block **ret) {
        struct shm_block *b;
        int r = block_new(size, &b);

        if (r < 0)
                return r;
        memcpy(b->addr, data, size);
        r = shm_seal(b);
        if (r < 0) {
                shm_block_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

static int map_received(int fd, uint64_t size, int need_seals, struct shm_block **ret) {
        _cleanup_close_ int owned = fd;
        struct shm_block *b;
        struct stat st;
        int seals;

        if (size == 0 || size > (uint64_t) SIZE_MAX / 2)
                return -EINVAL;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size < size)
                return -EBADMSG;
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || (seals & need_seals) != need_seals)
                return -EPERM;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->size = size;
        b->fd = TAKE_FD(owned);
        b->addr = mmap(NULL, size, PROT_READ, MAP_SHARED, b->fd, 0);
        if (b->addr == MAP_FAILED) {
                int r = negative_errno();
                shm_block_free(b);
                return r;
        }
        advise_huge(b->addr, size);
        *ret = b;
        return 0;
}

int shm_map_received(int fd, uint64_t size, struct shm_block **ret) {
        return map_received(fd, size, SHM_SEALS, ret);
}

int shm_map_control(int fd, uint64_t size, struct shm_block **ret) {
        return map_received(fd, size, F_SEAL_SHRINK, ret);
}

struct shm_block *shm_block_of(const struct swarm_values *v, const char *name) {
        void (*release)(void *, uint64_t, void *);
        void *userdata;

        if (swarm_values_get_backing(v, name, &release, &userdata) < 0 || release != shm_release)
                return NULL;
        return userdata;
}
