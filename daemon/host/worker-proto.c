/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "macro.h"
#include "shm.h"
#include "worker-proto.h"

/* The fixed part of every datagram, in host byte order: both ends run on
 * the same machine, usually from the same build. */
struct wire_header {
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

#define WIRE_PAYLOAD_IN_FD 0x1  /* the last fd is a memfd holding the payload */

enum {
        BYTES_INLINE = 0,
        BYTES_SHM = 1,
};

const char *wmsg_type_to_string(enum wmsg_type t) {
        static const char *const names[_WMSG_TYPE_MAX] = {
                [WMSG_INIT] = "init",
                [WMSG_HELLO] = "hello",
                [WMSG_PRICE] = "price",
                [WMSG_PRICE_REPLY] = "price-reply",
                [WMSG_EXECUTE] = "execute",
                [WMSG_EXECUTE_REPLY] = "execute-reply",
                [WMSG_VERIFY] = "verify",
                [WMSG_VERIFY_REPLY] = "verify-reply",
                [WMSG_ADVERTISE] = "advertise",
                [WMSG_ADVERTISE_REPLY] = "advertise-reply",
                [WMSG_SUBMIT] = "submit",
                [WMSG_SUBMIT_REPLY] = "submit-reply",
                [WMSG_CHUNK] = "chunk",
                [WMSG_CANCEL] = "cancel",
        };
        if ((unsigned) t >= _WMSG_TYPE_MAX || !names[t])
                return "unknown";
        return names[t];
}

void wmsg_done(struct wmsg *m) {
        for (size_t i = 0; i < WMSG_TEXTS; i++)
                free(m->text[i]);
        for (size_t i = 0; i < WMSG_VALUE_SETS; i++)
                swarm_values_free(m->values[i]);
        *m = (struct wmsg) {};
}

/* ---- Encoding ---- */

struct encoder {
        uint8_t *buf;
        size_t size, allocated;
        int fds[WMSG_FDS_MAX + 1];
        unsigned n_fds;
        /* Blocks made for this message only (copies), freed after sending. */
        struct shm_block *temporary[WMSG_FDS_MAX];
        unsigned n_temporary;
        int error;
};

static void encoder_done(struct encoder *e) {
        free(e->buf);
        for (unsigned i = 0; i < e->n_temporary; i++)
                shm_block_free(e->temporary[i]);
}

static void put(struct encoder *e, const void *p, size_t n) {
        if (e->error || n == 0)
                return;
        if (e->size + n > WMSG_PAYLOAD_MAX) {
                e->error = -E2BIG;
                return;
        }
        if (e->size + n > e->allocated) {
                size_t k = e->allocated ? e->allocated : 4096;
                uint8_t *b;

                while (k < e->size + n)
                        k *= 2;
                b = realloc(e->buf, k);
                if (!b) {
                        e->error = -ENOMEM;
                        return;
                }
                e->buf = b;
                e->allocated = k;
        }
        memcpy(e->buf + e->size, p, n);
        e->size += n;
}

#define PUT(e, type, v) do { type _v_ = (v); put(e, &_v_, sizeof(_v_)); } while (0)

static void put_text(struct encoder *e, const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n > WMSG_TEXT_MAX) {
                e->error = e->error ?: -E2BIG;
                return;
        }
        /* UINT32_MAX stands for NULL. */
        PUT(e, uint32_t, s ? (uint32_t) n : UINT32_MAX);
        put(e, s, n);
}

static void put_name(struct encoder *e, const char *name) {
        size_t n = strlen(name);

        PUT(e, uint8_t, (uint8_t) n);
        put(e, name, n);
}

/* Appends the fd of the shared block behind a value (or of a new copy). */
static void put_block(struct encoder *e, const struct swarm_values *v, const char *name,
                      const void *data, uint64_t size) {
        struct shm_block *b = shm_block_of(v, name);

        if (e->error)
                return;
        if (e->n_fds >= WMSG_FDS_MAX) {
                e->error = -E2BIG;
                return;
        }
        if (b) {
                int r = shm_seal(b);
                if (r < 0) {
                        e->error = r;
                        return;
                }
        } else {
                int r = shm_copy(data, size, &b);
                if (r < 0) {
                        e->error = r;
                        return;
                }
                e->temporary[e->n_temporary++] = b;
        }
        PUT(e, uint16_t, (uint16_t) e->n_fds);
        e->fds[e->n_fds++] = b->fd;
}

static void put_values(struct encoder *e, const struct swarm_values *v) {
        size_t n = swarm_values_count(v);

        PUT(e, uint8_t, v ? 1 : 0);
        if (!v)
                return;
        if (n > WMSG_VALUES_MAX) {
                e->error = e->error ?: -E2BIG;
                return;
        }
        PUT(e, uint32_t, (uint32_t) n);
        for (size_t i = 0; i < n; i++) {
                struct swarm_value x;

                (void) swarm_values_at(v, i, &x);
                PUT(e, uint8_t, (uint8_t) x.type);
                put_name(e, x.name);
                switch (x.type) {
                case SWARM_VALUE_INT:
                        PUT(e, int64_t, x.integer);
                        break;
                case SWARM_VALUE_STRING:
                        put_text(e, x.string);
                        break;
                case SWARM_VALUE_BYTES:
                        if (x.size <= WMSG_INLINE_BYTES_MAX) {
                                PUT(e, uint8_t, BYTES_INLINE);
                                PUT(e, uint32_t, (uint32_t) x.size);
                                put(e, x.data, x.size);
                        } else {
                                PUT(e, uint8_t, BYTES_SHM);
                                PUT(e, uint64_t, x.size);
                                put_block(e, v, x.name, x.data, x.size);
                        }
                        break;
                case SWARM_VALUE_TENSOR:
                        PUT(e, uint8_t, (uint8_t) x.tensor.dtype);
                        PUT(e, uint8_t, (uint8_t) x.tensor.ndim);
                        for (uint32_t d = 0; d < x.tensor.ndim; d++)
                                PUT(e, uint64_t, x.tensor.shape[d]);
                        put_block(e, v, x.name, x.tensor.data, x.tensor.size);
                        break;
                }
        }
}

int wmsg_send(int fd, const struct wmsg *m) {
        _cleanup_(encoder_done) struct encoder e = {};
        struct shm_block *payload_block = NULL;
        struct wire_header h;
        struct iovec iov[2];
        struct msghdr mh = {};
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * (WMSG_FDS_MAX + 1))];
        } control;
        ssize_t n;
        int r;

        for (size_t i = 0; i < WMSG_TEXTS; i++)
                put_text(&e, m->text[i]);
        for (size_t i = 0; i < WMSG_VALUE_SETS; i++)
                put_values(&e, m->values[i]);
        if (e.error)
                return e.error;

        h = (struct wire_header) {
                .magic = WMSG_MAGIC,
                .type = (uint16_t) m->type,
                .job_id = m->job_id,
                .status = m->status,
                .number = m->number,
                .payload_size = (uint32_t) e.size,
        };

        if (e.size > WMSG_INLINE_MAX) {
                r = shm_copy(e.buf, e.size, &payload_block);
                if (r < 0)
                        return r;
                e.temporary[e.n_temporary++] = payload_block;
                e.fds[e.n_fds++] = payload_block->fd;
                h.flags |= WIRE_PAYLOAD_IN_FD;
        }
        h.n_fds = e.n_fds;

        iov[0] = (struct iovec) { .iov_base = &h, .iov_len = sizeof(h) };
        iov[1] = (struct iovec) { .iov_base = e.buf, .iov_len = payload_block ? 0 : e.size };
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        if (e.n_fds > 0) {
                struct cmsghdr *c;

                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * e.n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * e.n_fds);
                memcpy(CMSG_DATA(c), e.fds, sizeof(int) * e.n_fds);
        }

        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EPIPE ? -ECONNRESET : negative_errno();
        return 0;
}

/* ---- Decoding ---- */

struct decoder {
        const uint8_t *p;
        size_t left;
        int *fds;
        unsigned n_fds;
        bool *fd_used;
        const char *reason;
};

static int fail(struct decoder *d, const char *reason) {
        if (!d->reason)
                d->reason = reason;
        return -EBADMSG;
}

static int get(struct decoder *d, void *out, size_t n, const char *what) {
        if (d->left < n)
                return fail(d, what);
        memcpy(out, d->p, n);
        d->p += n;
        d->left -= n;
        return 0;
}

static int get_text(struct decoder *d, char **ret) {
        uint32_t n;
        char *s;

        if (get(d, &n, sizeof(n), "truncated text length") < 0)
                return -EBADMSG;
        if (n == UINT32_MAX) {
                *ret = NULL;
                return 0;
        }
        if (n > WMSG_TEXT_MAX || n > d->left)
                return fail(d, "text longer than the message");
        if (memchr(d->p, '\0', n))
                return fail(d, "text contains a NUL byte");
        s = strndup((const char *) d->p, n);
        if (!s)
                return -ENOMEM;
        d->p += n;
        d->left -= n;
        *ret = s;
        return 0;
}

/* Takes the fd with index i out of the message: each fd may back only one
 * value. */
static int take_fd(struct decoder *d, int *ret) {
        uint16_t i;

        if (get(d, &i, sizeof(i), "truncated fd index") < 0)
                return -EBADMSG;
        if (i >= d->n_fds || d->fd_used[i])
                return fail(d, "fd index out of range or used twice");
        d->fd_used[i] = true;
        *ret = TAKE_FD(d->fds[i]);
        return 0;
}

static int get_values(struct decoder *d, struct swarm_values **ret) {
        struct swarm_values *v;
        uint8_t present;
        uint32_t n;
        int r;

        if (get(d, &present, 1, "truncated value set") < 0)
                return -EBADMSG;
        if (!present) {
                *ret = NULL;
                return 0;
        }
        if (get(d, &n, sizeof(n), "truncated value count") < 0)
                return -EBADMSG;
        if (n > WMSG_VALUES_MAX)
                return fail(d, "too many values");

        v = swarm_values_new();
        if (!v)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
                char name[SWARM_VALUE_NAME_MAX + 1];
                uint8_t type, len;

                if (get(d, &type, 1, "truncated value type") < 0 ||
                    get(d, &len, 1, "truncated value name") < 0)
                        goto bad;
                if (len == 0 || len > SWARM_VALUE_NAME_MAX) {
                        fail(d, "bad value name length");
                        goto bad;
                }
                if (get(d, name, len, "truncated value name") < 0)
                        goto bad;
                name[len] = '\0';

                switch (type) {
                case SWARM_VALUE_INT: {
                        int64_t x;
                        if (get(d, &x, sizeof(x), "truncated integer") < 0)
                                goto bad;
                        r = swarm_values_set_int(v, name, x);
                        break;
                }
                case SWARM_VALUE_STRING: {
                        _cleanup_free_ char *s = NULL;
                        if (get_text(d, &s) < 0)
                                goto bad;
                        if (!s) {
                                fail(d, "string value is null");
                                goto bad;
                        }
                        r = swarm_values_set_string(v, name, s);
                        break;
                }
                case SWARM_VALUE_BYTES: {
                        uint8_t mode;
                        if (get(d, &mode, 1, "truncated bytes") < 0)
                                goto bad;
                        if (mode == BYTES_INLINE) {
                                uint32_t size;
                                if (get(d, &size, sizeof(size), "truncated bytes length") < 0)
                                        goto bad;
                                if (size > WMSG_INLINE_BYTES_MAX || size > d->left) {
                                        fail(d, "inline bytes longer than the message");
                                        goto bad;
                                }
                                r = swarm_values_set_bytes(v, name, d->p, size);
                                d->p += size;
                                d->left -= size;
                        } else if (mode == BYTES_SHM) {
                                struct shm_block *b;
                                uint64_t size;
                                int fd;
                                if (get(d, &size, sizeof(size), "truncated bytes length") < 0 ||
                                    take_fd(d, &fd) < 0)
                                        goto bad;
                                r = shm_map_received(fd, size, &b);
                                if (r < 0) {
                                        fail(d, r == -EPERM ? "bytes memfd is not sealed against writing, "
                                                              "shrinking and growing"
                                                            : "bytes memfd is too small or unmappable");
                                        goto bad;
                                }
                                r = swarm_values_add_bytes_borrowed(v, name, b->addr, size, shm_release, b);
                                if (r < 0)
                                        shm_block_free(b);
                        } else {
                                fail(d, "unknown bytes encoding");
                                goto bad;
                        }
                        break;
                }
                case SWARM_VALUE_TENSOR: {
                        uint64_t shape[SWARM_TENSOR_MAX_DIMS], n_elements, size;
                        struct shm_block *b;
                        uint8_t dtype, ndim;
                        int fd;

                        if (get(d, &dtype, 1, "truncated tensor") < 0 ||
                            get(d, &ndim, 1, "truncated tensor") < 0)
                                goto bad;
                        if (ndim > SWARM_TENSOR_MAX_DIMS) {
                                fail(d, "tensor has too many dimensions");
                                goto bad;
                        }
                        if (get(d, shape, sizeof(uint64_t) * ndim, "truncated tensor shape") < 0)
                                goto bad;
                        if (swarm_tensor_shape_check(dtype, ndim, shape, &n_elements, &size) < 0) {
                                fail(d, "bad tensor dtype or shape");
                                goto bad;
                        }
                        if (take_fd(d, &fd) < 0)
                                goto bad;
                        r = shm_map_received(fd, size, &b);
                        if (r < 0) {
                                fail(d, r == -EPERM ? "tensor memfd is not sealed against writing, shrinking "
                                                      "and growing"
                                                    : "tensor memfd is too small or unmappable");
                                goto bad;
                        }
                        r = swarm_values_add_tensor_borrowed(v, name, dtype, ndim, shape, b->addr,
                                                             shm_release, b);
                        if (r < 0)
                                shm_block_free(b);
                        break;
                }
                default:
                        fail(d, "unknown value type");
                        goto bad;
                }
                if (r == -ENOMEM) {
                        swarm_values_free(v);
                        return -ENOMEM;
                }
                if (r < 0) {
                        fail(d, r == -EEXIST ? "duplicate value name" : "invalid value");
                        goto bad;
                }
        }
        *ret = v;
        return 0;
bad:
        swarm_values_free(v);
        return -EBADMSG;
}

static void close_fds(int *fds, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int wmsg_recv(int fd, struct wmsg *m, const char **reason) {
        uint8_t buf[sizeof(struct wire_header) + WMSG_INLINE_MAX];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * (WMSG_FDS_MAX + 1))];
        } control;
        int fds[WMSG_FDS_MAX + 1];
        bool fd_used[WMSG_FDS_MAX + 1] = {};
        unsigned n_fds = 0;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        struct shm_block *payload_block = NULL;
        struct wire_header h;
        struct decoder d = {};
        ssize_t n;
        int r;

        *reason = NULL;
        *m = (struct wmsg) {};

        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EAGAIN ? -EAGAIN : negative_errno();
        if (n == 0)
                return -ECONNRESET;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                unsigned k = (unsigned) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                if (n_fds + k > ELEMENTSOF(fds))
                        k = (unsigned) ELEMENTSOF(fds) - n_fds;
                memcpy(fds + n_fds, CMSG_DATA(c), k * sizeof(int));
                n_fds += k;
        }

        r = -EBADMSG;
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
                *reason = "message or its file descriptors truncated";
                goto finish;
        }
        if ((size_t) n < sizeof(h)) {
                *reason = "message shorter than its header";
                goto finish;
        }
        memcpy(&h, buf, sizeof(h));
        if (h.magic != WMSG_MAGIC) {
                *reason = "bad magic";
                goto finish;
        }
        if (h.type == 0 || h.type >= _WMSG_TYPE_MAX) {
                *reason = "unknown message type";
                goto finish;
        }
        if (h.n_fds != n_fds) {
                *reason = "file descriptor count does not match the header";
                goto finish;
        }

        d = (struct decoder) { .fds = fds, .n_fds = n_fds, .fd_used = fd_used };
        if (h.flags & WIRE_PAYLOAD_IN_FD) {
                if (n_fds == 0 || (size_t) n != sizeof(h) || h.payload_size == 0 ||
                    h.payload_size > WMSG_PAYLOAD_MAX) {
                        *reason = "bad out-of-line payload";
                        goto finish;
                }
                d.n_fds--;
                fd_used[d.n_fds] = true;
                r = shm_map_received(TAKE_FD(fds[d.n_fds]), h.payload_size, &payload_block);
                if (r < 0) {
                        *reason = r == -EPERM ? "payload memfd is not sealed against writing, shrinking and growing"
                                              : "payload memfd is too small or unmappable";
                        r = -EBADMSG;
                        goto finish;
                }
                d.p = payload_block->addr;
                d.left = h.payload_size;
        } else {
                if ((size_t) n - sizeof(h) != h.payload_size) {
                        *reason = "payload size does not match the header";
                        goto finish;
                }
                d.p = buf + sizeof(h);
                d.left = h.payload_size;
        }

        m->type = h.type;
        m->job_id = h.job_id;
        /* Whatever the plugin returned, passed on: the SDK says a
         * negative errno, and the host negates it (strerror(), a peer's
         * JobResult).  Anything else reads as a protocol error. */
        m->status = h.status < -ERRNO_MAX ? -EPROTO : h.status;
        m->number = h.number;
        for (size_t i = 0; i < WMSG_TEXTS; i++) {
                r = get_text(&d, &m->text[i]);
                if (r < 0)
                        goto finish;
        }
        for (size_t i = 0; i < WMSG_VALUE_SETS; i++) {
                r = get_values(&d, &m->values[i]);
                if (r < 0)
                        goto finish;
        }
        r = -EBADMSG;
        if (d.left != 0) {
                d.reason = "trailing bytes after the payload";
                goto finish;
        }
        for (unsigned i = 0; i < n_fds; i++)
                if (!fd_used[i]) {
                        d.reason = "file descriptor not referenced by any value";
                        goto finish;
                }
        r = 0;

finish:
        if (!*reason)
                *reason = d.reason;
        shm_block_free(payload_block);
        close_fds(fds, n_fds);
        if (r < 0)
                wmsg_done(m);
        return r;
}
