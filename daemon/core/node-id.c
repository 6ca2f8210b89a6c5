/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "node-id.h"

_Static_assert(crypto_sign_PUBLICKEYBYTES == 32, "node ids are 52 characters of base32 of 32 bytes");

static const char base32_alphabet[32] = "abcdefghijklmnopqrstuvwxyz234567";

void node_id_from_public_key(const uint8_t pk[crypto_sign_PUBLICKEYBYTES], char out[NODE_ID_LEN + 1]) {
        unsigned bits = 0, nbits = 0;
        size_t n = 0;

        for (size_t i = 0; i < crypto_sign_PUBLICKEYBYTES; i++) {
                bits = (bits << 8) | pk[i];
                nbits += 8;
                while (nbits >= 5) {
                        nbits -= 5;
                        out[n++] = base32_alphabet[(bits >> nbits) & 0x1f];
                }
        }
        /* 256 bits leave one bit over; it goes out padded with four zero bits. */
        if (nbits > 0)
                out[n++] = base32_alphabet[(bits << (5 - nbits)) & 0x1f];

        assert(n == NODE_ID_LEN);
        out[n] = '\0';
}

static int base32_char_value(char c) {
        if (c >= 'a' && c <= 'z')
                return c - 'a';
        if (c >= '2' && c <= '7')
                return c - '2' + 26;
        return -EINVAL;
}

int node_id_to_public_key(const char *id, uint8_t pk[crypto_sign_PUBLICKEYBYTES]) {
        uint8_t buf[crypto_sign_PUBLICKEYBYTES];
        unsigned bits = 0, nbits = 0;
        size_t n = 0;

        if (!id || strnlen(id, NODE_ID_LEN + 1) != NODE_ID_LEN)
                return -EINVAL;

        for (size_t i = 0; i < NODE_ID_LEN; i++) {
                int v = base32_char_value(id[i]);
                if (v < 0)
                        return v;

                bits = (bits << 5) | (unsigned) v;
                nbits += 5;
                if (nbits >= 8) {
                        nbits -= 8;
                        buf[n++] = (uint8_t) (bits >> nbits);
                }
                bits &= (1u << nbits) - 1;
        }

        /* The leftover bits are padding; requiring them to be zero gives
         * every key exactly one id. */
        assert(n == sizeof(buf) && nbits == 4);
        if (bits != 0)
                return -EINVAL;

        memcpy(pk, buf, sizeof(buf));
        return 0;
}
