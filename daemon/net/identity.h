/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node's long-term identity: an Ed25519 key pair (libsodium) kept in the
 * state directory as IDENTITY_FILE.  The node id is the public key itself,
 * written in lower-case RFC 4648 base32 without padding, so an id is
 * self-certifying: anyone holding it can check the node's signatures (and,
 * later, derive its CurveZMQ key) without a directory service. */

#include <stdbool.h>
#include <stdint.h>
#include <sodium.h>

#include "node-id.h"

#define IDENTITY_FILE "identity.key"

struct identity {
        uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
        uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
        char node_id[NODE_ID_LEN + 1];
};

/* Loads DIR/identity.key.  The file must be a regular file (not a symlink)
 * owned by the effective user, with no access for group or others, of the
 * exact format identity_load_or_create() writes, and its public key must
 * match its secret key.  Returns 0 and a struct from sodium_malloc() (guarded
 * and locked memory) to be freed with identity_free(); -ENOENT, not logged,
 * when there is none (or no DIR); -EPERM for a symlink, a non-regular file, a
 * file others can access or that is not ours; -EBADMSG for a corrupt file.
 * Logs the reason for every refusal, naming the file and what to do. */
int identity_load(const char *dir, struct identity **ret);

/* As identity_load(), but when DIR/identity.key does not exist it creates a
 * new key pair and writes it atomically (temporary file, fsync, link into
 * place, fsync of DIR) with mode 0600.  DIR is created with mode 0700 if
 * missing.  An existing file is never replaced, even a corrupt one.
 * *created (may be NULL) tells whether a new identity was made. */
int identity_load_or_create(const char *dir, struct identity **ret, bool *created);

/* Wipes the secret key and frees. NULL is fine. */
void identity_free(struct identity *id);
static inline void identity_freep(struct identity **id) {
        identity_free(*id);
}
