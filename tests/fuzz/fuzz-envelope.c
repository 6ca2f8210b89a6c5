/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wire_decode() on anything.  What it accepts must survive a round trip:
 * re-encoding succeeds, decodes again, and encodes to the same bytes (the
 * encoding of a decoded envelope is canonical). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(wire_envelope_freep) Swarm__Envelope *e = NULL, *again = NULL;
        _cleanup_free_ uint8_t *first = NULL, *second = NULL;
        size_t first_size, second_size, allocated;
        const char *reason = NULL;
        int r;

        r = wire_decode_counted(data, size, &e, &reason, &allocated);
        FUZZ_CHECK(allocated <= WIRE_DECODE_BUDGET(size));
        if (r < 0) {
                FUZZ_CHECK(!e);
                FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EMSGSIZE || r == -ENOMEM);
                FUZZ_CHECK(reason || r == -ENOMEM);
                return 0;
        }
        FUZZ_CHECK(e && e->version == WIRE_VERSION);

        /* Canonical re-encoding is never larger than what was decoded. */
        FUZZ_CHECK(wire_encoded_size(e) <= size);
        FUZZ_CHECK(wire_encode(e, &first, &first_size) == 0);
        FUZZ_CHECK(first_size == wire_encoded_size(e));

        r = wire_decode(first, first_size, &again, &reason);
        if (r < 0)
                fprintf(stderr, "re-decoding failed: %s\n", reason ?: "?");
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(again->body_case == e->body_case);
        FUZZ_CHECK(wire_encode(again, &second, &second_size) == 0);
        FUZZ_CHECK(first_size == second_size);
        FUZZ_CHECK(memcmp(first, second, first_size) == 0);
        return 0;
}
