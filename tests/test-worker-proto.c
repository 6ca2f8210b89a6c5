/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The worker message codec: round trips of every value type, and refusal
 * of everything a broken or hostile peer could send. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "shm.h"
#include "worker-proto.h"

static int pair[2];

static void setup(void) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
}

static void teardown(void) {
        close(pair[0]);
        close(pair[1]);
}

TestSuite(worker_proto, .init = setup, .fini = teardown, .timeout = 30);

Test(worker_proto, round_trip_of_every_value_type) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_EXECUTE, .job_id = 42, .number = 123456789, .status = -5 }, got;
        uint64_t shape[2] = { 3, 1000 };
        char big[10000];
        struct swarm_tensor t, t2;
        const char *reason, *s;
        const void *data;
        size_t size;
        int64_t x;

        memset(big, 'z', sizeof(big));
        cr_assert_eq(swarm_values_set_int(v, "n", -7), 0);
        cr_assert_eq(swarm_values_set_string(v, "s", "héllo"), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "small", "abc", 3), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "big", big, sizeof(big)), 0);
        cr_assert_eq(swarm_values_set_bytes(v, "empty", NULL, 0), 0);
        cr_assert_eq(swarm_values_add_tensor(v, "t", SWARM_DTYPE_F64, 2, shape, &t), 0);
        for (uint64_t i = 0; i < t.n_elements; i++)
                ((double *) t.data)[i] = (double) i * 0.5;
        m.values[0] = v;
        m.text[WMSG_TEXT_ERROR] = strdup("an error");

        cr_assert_eq(wmsg_send(pair[0], &m), 0);
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
        cr_assert_eq(got.type, WMSG_EXECUTE);
        cr_assert_eq(got.job_id, 42);
        cr_assert_eq(got.number, 123456789);
        cr_assert_eq(got.status, -5);
        cr_assert_str_eq(got.text[WMSG_TEXT_ERROR], "an error");
        cr_assert_null(got.text[WMSG_TEXT_NAME]);
        cr_assert_null(got.values[1]);
        cr_assert_eq(swarm_values_count(got.values[0]), 6);
        cr_assert_eq(swarm_values_get_int(got.values[0], "n", &x), 0);
        cr_assert_eq(x, -7);
        cr_assert_eq(swarm_values_get_string(got.values[0], "s", &s), 0);
        cr_assert_str_eq(s, "héllo");
        cr_assert_eq(swarm_values_get_bytes(got.values[0], "small", &data, &size), 0);
        cr_assert_eq(size, 3);
        cr_assert_eq(memcmp(data, "abc", 3), 0);
        cr_assert_eq(swarm_values_get_bytes(got.values[0], "big", &data, &size), 0);
        cr_assert_eq(size, sizeof(big));
        cr_assert_eq(memcmp(data, big, size), 0);
        cr_assert_eq(swarm_values_get_bytes(got.values[0], "empty", &data, &size), 0);
        cr_assert_eq(size, 0);
        cr_assert_eq(swarm_values_get_tensor(got.values[0], "t", &t2), 0);
        cr_assert_eq(t2.dtype, SWARM_DTYPE_F64);
        cr_assert_eq(t2.ndim, 2);
        cr_assert_eq(t2.shape[1], 1000);
        cr_assert_eq(memcmp(t.data, t2.data, t.size), 0);
        /* Received tensors are mappings of the sender's memfd. */
        cr_assert_not_null(shm_block_of(got.values[0], "t"));
        cr_assert_not_null(shm_block_of(got.values[0], "big"));

        wmsg_done(&got);
        wmsg_done(&m);
}

/* A plugin may return any negative number, and the worker passes it on;
 * the host negates what it gets (strerror(-status), a JobResult), which
 * for INT_MIN is undefined.  Found by fuzz-provider. */
Test(worker_proto, a_status_that_is_not_an_errno_is_received_as_a_protocol_error) {
        static const int32_t statuses[] = { INT32_MIN, -ERRNO_MAX - 1, -ERRNO_MAX, -EINVAL, 0 };
        static const int32_t expected[] = { -EPROTO, -EPROTO, -ERRNO_MAX, -EINVAL, 0 };
        const char *reason;

        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                struct wmsg m = { .type = WMSG_EXECUTE_REPLY, .job_id = 1, .status = statuses[i] }, got;

                cr_assert_eq(wmsg_send(pair[0], &m), 0);
                cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
                cr_assert_eq(got.status, expected[i], "%d read as %d", statuses[i], got.status);
                wmsg_done(&got);
        }
}

Test(worker_proto, shared_memory_tensors_are_passed_not_copied) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_EXECUTE_REPLY }, got;
        uint64_t n = 1024;
        struct swarm_tensor t, t2;
        const char *reason;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_add_tensor(v, "y", SWARM_DTYPE_F32, 1, &n, &t), 0);
        m.values[0] = v;
        cr_assert_eq(wmsg_send(pair[0], &m), 0);
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
        cr_assert_eq(swarm_values_get_tensor(got.values[0], "y", &t2), 0);
        /* Same pages, not a copy: the very memfd, sealed against change. */
        cr_assert_eq(fcntl(shm_block_of(got.values[0], "y")->fd, F_GET_SEALS) & SHM_SEALS, SHM_SEALS);
        cr_assert_eq(shm_block_of(got.values[0], "y")->size, shm_block_of(v, "y")->size);
        cr_assert_eq(memcmp(t.data, t2.data, t.size), 0);
        wmsg_done(&got);
        wmsg_done(&m);
}

/* The permissions of the mapping that holds addr, from /proc/self/maps
 * ("r--p", "rw-s", ...). */
static void mapping_perms(const void *addr, char perms[5]) {
        FILE *f = fopen("/proc/self/maps", "re");
        char line[512];

        cr_assert_not_null(f);
        perms[0] = '\0';
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                char p[5];

                if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && (unsigned long) addr >= lo &&
                    (unsigned long) addr < hi) {
                        memcpy(perms, p, 5);
                        break;
                }
        }
        fclose(f);
        cr_assert(perms[0], "no mapping holds %p", addr);
}

/* Once sent, a tensor is read-only for its sender too: a client that tries
 * to change its inputs after swarmd checked them cannot, neither through
 * its mapping (now read-only: a write faults) nor through the fd. */
Test(worker_proto, a_sender_cannot_write_what_it_sent) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_EXECUTE_REPLY };
        uint64_t n = 1024;
        struct swarm_tensor t;
        char perms[5];
        float x = 3.5f;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_add_tensor(v, "y", SWARM_DTYPE_F32, 1, &n, &t), 0);
        ((float *) t.data)[7] = 1.5f;   /* writable until sent */
        mapping_perms(t.data, perms);
        cr_assert_eq(perms[1], 'w');
        m.values[0] = v;
        cr_assert_eq(wmsg_send(pair[0], &m), 0);

        mapping_perms(t.data, perms);
        cr_assert_eq(perms[1], '-', "still writable after sending: %s", perms);
        cr_assert_float_eq(((const float *) t.data)[7], 1.5f, 0.0f);
        cr_assert_lt(pwrite(shm_block_of(v, "y")->fd, &x, sizeof(x), 7 * sizeof(float)), 0);
        cr_assert_eq(errno, EPERM);
        wmsg_done(&m);
}

/* A child forked after the block was made (a worker being started) must
 * not hold it writable: blocks are not inherited across fork(). */
Test(worker_proto, a_fork_does_not_keep_a_block_from_being_sealed) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_EXECUTE_REPLY }, got;
        uint64_t n = 1024;
        struct swarm_tensor t;
        const char *reason;
        pid_t child;
        int r;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_add_tensor(v, "y", SWARM_DTYPE_F32, 1, &n, &t), 0);
        child = fork();
        cr_assert_geq(child, 0);
        if (child == 0) {
                pause();        /* as a worker between fork() and exec() */
                _exit(0);
        }
        m.values[0] = v;
        r = wmsg_send(pair[0], &m);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        cr_assert_eq(r, 0, "sending failed: %s", strerror(-r));
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
        wmsg_done(&got);
        wmsg_done(&m);
}

/* And nobody can seal a block another writable mapping still holds. */
Test(worker_proto, a_block_mapped_writable_elsewhere_is_not_sent) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_EXECUTE_REPLY };
        uint64_t n = 1024;
        struct swarm_tensor t;
        void *other;

        swarm_values_set_allocator(v, shm_allocate, NULL);
        cr_assert_eq(swarm_values_add_tensor(v, "y", SWARM_DTYPE_F32, 1, &n, &t), 0);
        other = mmap(NULL, t.size, PROT_READ | PROT_WRITE, MAP_SHARED, shm_block_of(v, "y")->fd, 0);
        cr_assert_neq(other, MAP_FAILED);
        m.values[0] = v;
        cr_assert_eq(wmsg_send(pair[0], &m), -EBUSY);
        munmap(other, t.size);
        wmsg_done(&m);
}

Test(worker_proto, large_payload_travels_out_of_line) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_HELLO }, got;
        const char *reason;
        char name[16], value[1000];

        memset(value, 'v', sizeof(value) - 1);
        value[sizeof(value) - 1] = '\0';
        for (int i = 0; i < 100; i++) {        /* ~100 kB of strings, over the inline limit */
                snprintf(name, sizeof(name), "k%d", i);
                cr_assert_eq(swarm_values_set_string(v, name, value), 0);
        }
        m.values[0] = v;
        cr_assert_eq(wmsg_send(pair[0], &m), 0);
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
        cr_assert_eq(swarm_values_count(got.values[0]), 100);
        wmsg_done(&got);
        wmsg_done(&m);
}

Test(worker_proto, too_many_values_refused_by_sender) {
        struct swarm_values *v = swarm_values_new();
        struct wmsg m = { .type = WMSG_HELLO };
        char name[16];

        for (unsigned i = 0; i <= WMSG_VALUES_MAX; i++) {
                snprintf(name, sizeof(name), "k%u", i);
                cr_assert_eq(swarm_values_set_int(v, name, i), 0);
        }
        m.values[0] = v;
        cr_assert_eq(wmsg_send(pair[0], &m), -E2BIG);
        wmsg_done(&m);
}

/* Raw datagrams: header fields as worker-proto.c lays them out. */
struct raw_header {
        uint32_t magic;
        uint16_t type;
        uint16_t flags;
        uint64_t job_id;
        int32_t status;
        uint32_t n_fds;
        uint64_t number;
        uint32_t payload_size;
        uint32_t reserved;
} __attribute__((packed));

static int send_raw(const void *buf, size_t n, const int *fds, unsigned n_fds) {
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = n };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (n_fds) {
                struct cmsghdr *c;
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        return sendmsg(pair[0], &mh, 0) < 0 ? -1 : 0;
}

static void expect_bad(const char *what) {
        struct wmsg got;
        const char *reason;

        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), -EBADMSG, "%s accepted", what);
        cr_assert_not_null(reason);
        cr_log_info("%s: %s", what, reason);
}

/* A valid empty EXECUTE: four null texts and three absent value sets. */
static size_t empty_payload(uint8_t *p) {
        size_t n = 0;
        for (int i = 0; i < WMSG_TEXTS; i++) {
                memset(p + n, 0xff, 4);
                n += 4;
        }
        for (int i = 0; i < WMSG_VALUE_SETS; i++)
                p[n++] = 0;
        return n;
}

Test(worker_proto, malformed_messages_are_refused) {
        uint8_t buf[512];
        struct raw_header h = { .magic = WMSG_MAGIC, .type = WMSG_EXECUTE };
        size_t n;

        send_raw("xy", 2, NULL, 0);
        expect_bad("short datagram");

        h.magic = 0xdeadbeef;
        send_raw(&h, sizeof(h), NULL, 0);
        expect_bad("bad magic");

        h.magic = WMSG_MAGIC;
        h.type = 999;
        send_raw(&h, sizeof(h), NULL, 0);
        expect_bad("unknown type");

        h.type = WMSG_EXECUTE;
        n = empty_payload(buf + sizeof(h));
        h.payload_size = (uint32_t) n + 10;     /* lies about its length */
        memcpy(buf, &h, sizeof(h));
        send_raw(buf, sizeof(h) + n, NULL, 0);
        expect_bad("payload size mismatch");

        h.payload_size = (uint32_t) n - 1;       /* truncated payload */
        memcpy(buf, &h, sizeof(h));
        send_raw(buf, sizeof(h) + n - 1, NULL, 0);
        expect_bad("truncated payload");

        /* A text length far beyond the datagram. */
        n = empty_payload(buf + sizeof(h));
        memcpy(buf + sizeof(h), &(uint32_t) { 60000 }, 4);
        h.payload_size = (uint32_t) n;
        memcpy(buf, &h, sizeof(h));
        send_raw(buf, sizeof(h) + n, NULL, 0);
        expect_bad("text length beyond the message");

        /* A value set claiming 2^32-1 values. */
        n = empty_payload(buf + sizeof(h));
        buf[sizeof(h) + 16] = 1;
        memcpy(buf + sizeof(h) + 17, &(uint32_t) { UINT32_MAX }, 4);
        h.payload_size = (uint32_t) n + 4;
        memcpy(buf, &h, sizeof(h));
        send_raw(buf, sizeof(h) + n + 4, NULL, 0);
        expect_bad("huge value count");

        /* Trailing garbage after a valid payload. */
        n = empty_payload(buf + sizeof(h));
        h.payload_size = (uint32_t) n + 3;
        memcpy(buf, &h, sizeof(h));
        send_raw(buf, sizeof(h) + n + 3, NULL, 0);
        expect_bad("trailing bytes");
}

/* One f32[4] tensor "t" backed by fd index 0, built by hand. */
static size_t tensor_payload(uint8_t *p) {
        size_t n = 0;
        for (int i = 0; i < WMSG_TEXTS; i++) {
                memset(p + n, 0xff, 4);
                n += 4;
        }
        p[n++] = 1;                                     /* set present */
        memcpy(p + n, &(uint32_t) { 1 }, 4), n += 4;    /* one value */
        p[n++] = SWARM_VALUE_TENSOR;
        p[n++] = 1, p[n++] = 't';
        p[n++] = SWARM_DTYPE_F32, p[n++] = 1;
        memcpy(p + n, &(uint64_t) { 4 }, 8), n += 8;
        memcpy(p + n, &(uint16_t) { 0 }, 2), n += 2;
        p[n++] = 0, p[n++] = 0;
        return n;
}

static int memfd_with(size_t size, int seals) {
        int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        cr_assert_geq(fd, 0);
        cr_assert_eq(ftruncate(fd, (off_t) size), 0);
        if (seals)
                cr_assert_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
        return fd;
}

static int memfd_of(size_t size, bool seal) {
        return memfd_with(size, seal ? SHM_SEALS : 0);
}

Test(worker_proto, tensor_file_descriptors_are_checked) {
        uint8_t buf[512];
        struct raw_header h = { .magic = WMSG_MAGIC, .type = WMSG_EXECUTE };
        size_t n = tensor_payload(buf + sizeof(h));
        struct wmsg got;
        const char *reason;
        int fd;

        h.payload_size = (uint32_t) n;

        /* Good: sealed, 16 bytes. */
        h.n_fds = 1;
        memcpy(buf, &h, sizeof(h));
        fd = memfd_of(16, true);
        send_raw(buf, sizeof(h) + n, &fd, 1);
        close(fd);
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), 0, "reason: %s", reason);
        wmsg_done(&got);

        /* Too small for f32[4]. */
        fd = memfd_of(8, true);
        send_raw(buf, sizeof(h) + n, &fd, 1);
        close(fd);
        expect_bad("memfd smaller than the tensor");

        /* Unsealed: the sender could truncate it under us (SIGBUS). */
        fd = memfd_of(16, false);
        send_raw(buf, sizeof(h) + n, &fd, 1);
        close(fd);
        expect_bad("unsealed memfd");

        /* Sealed against resizing only: the sender could still rewrite the
         * tensor after swarmd checked it. */
        fd = memfd_with(16, F_SEAL_SHRINK | F_SEAL_GROW);
        send_raw(buf, sizeof(h) + n, &fd, 1);
        close(fd);
        cr_assert_lt(wmsg_recv(pair[1], &got, &reason), 0, "a writable memfd was accepted");
        cr_assert_str_eq(reason, "tensor memfd is not sealed against writing, shrinking and growing");

        /* Header says one fd, none attached. */
        send_raw(buf, sizeof(h) + n, NULL, 0);
        expect_bad("missing fd");

        /* Index beyond the fds that came. */
        buf[sizeof(h) + n - 4] = 5;
        fd = memfd_of(16, true);
        send_raw(buf, sizeof(h) + n, &fd, 1);
        close(fd);
        expect_bad("fd index out of range");

        /* A pipe is not shared memory. */
        buf[sizeof(h) + n - 4] = 0;
        {
                int p[2];
                cr_assert_eq(pipe(p), 0);
                send_raw(buf, sizeof(h) + n, &p[0], 1);
                close(p[0]);
                close(p[1]);
        }
        expect_bad("pipe instead of memfd");
}

Test(worker_proto, end_of_stream_and_nothing_waiting) {
        struct wmsg got;
        const char *reason;

        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), -EAGAIN);
        shutdown(pair[0], SHUT_WR);
        cr_assert_eq(wmsg_recv(pair[1], &got, &reason), -ECONNRESET);
}
