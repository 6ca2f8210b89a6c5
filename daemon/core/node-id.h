/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Node ids: a node's Ed25519 public key written in lower-case RFC 4648
 * base32 without padding, so an id is self-certifying. */

#include <stdint.h>
#include <sodium.h>

#define NODE_ID_LEN 52          /* base32 of 32 bytes, no padding */
#define NODE_ID_SHORT_LEN 12    /* prefix shown in logs */

/* out receives NODE_ID_LEN characters and a NUL. */
void node_id_from_public_key(const uint8_t pk[crypto_sign_PUBLICKEYBYTES], char out[NODE_ID_LEN + 1]);

/* Parses a node id back into its public key; -EINVAL for anything that is not
 * exactly a node id (length, alphabet, non-zero padding bits). */
int node_id_to_public_key(const char *id, uint8_t pk[crypto_sign_PUBLICKEYBYTES]);
