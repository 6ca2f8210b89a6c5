/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wmsg_recv() on any datagram: the input is sent as one SOCK_SEQPACKET
 * message (without file descriptors, so the memfd paths are only reached
 * as far as their checks) and received.  A message that decodes must
 * survive wmsg_send() and another wmsg_recv(). */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "macro.h"
#include "worker-proto.h"

static int pair[2] = { -1, -1 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        int sndbuf = 4 * 1024 * 1024;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
                abort();
        /* Room for the largest datagram wmsg_recv() takes, and then some. */
        (void) setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        (void) setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct wmsg m = {}, again = {};
        const char *reason = NULL;
        ssize_t n;
        int r;

        if (pair[0] < 0)
                LLVMFuzzerInitialize(NULL, NULL);
        /* An empty datagram reads as end of stream; over 128 KiB the
         * kernel may refuse it: neither reaches the decoder. */
        if (size == 0 || size > 128 * 1024)
                return 0;

        n = send(pair[0], data, size, MSG_NOSIGNAL);
        if (n < 0)
                return 0;
        FUZZ_CHECK((size_t) n == size);

        r = wmsg_recv(pair[1], &m, &reason);
        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                FUZZ_CHECK(reason || r == -ENOMEM);
                wmsg_done(&m);
                return 0;
        }

        r = wmsg_send(pair[0], &m);
        if (r >= 0) {
                r = wmsg_recv(pair[1], &again, &reason);
                if (r < 0)
                        fprintf(stderr, "re-received message refused: %s\n", reason ?: "?");
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(again.type == m.type && again.job_id == m.job_id && again.number == m.number);
                FUZZ_CHECK(again.status == m.status);
                for (size_t i = 0; i < WMSG_TEXTS; i++)
                        FUZZ_CHECK(!m.text[i] == !again.text[i] &&
                                   (!m.text[i] || strcmp(m.text[i], again.text[i]) == 0));
        } else
                /* Only what the sender refuses by its own limits. */
                FUZZ_CHECK(r == -E2BIG || r == -ENOMEM || r == -EMFILE);

        wmsg_done(&again);
        wmsg_done(&m);
        return 0;
}
