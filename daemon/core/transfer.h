/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Accounts and transfers: credits without a chain (issue 22, item 1, and
 * item 3's rule that credits enter only through issuers).  Pure: no clock,
 * no I/O, no logging.
 *
 * An account is a node id, an Ed25519 public key.  A transfer
 * (payer, seq, payee, amount, dependencies) is signed by its payer:
 *
 *  - seq counts the payer's transfers one by one, from 1.  Two different
 *    transfers with the same (payer, seq) are a proof of fraud
 *    (transfer_fraud_proof_check()): no honest payer signs both.
 *  - dependencies name incoming transfers to the payer (by transfer id) that
 *    the payer has not counted yet; delivering the transfer counts them into
 *    the payer's balance.  So a node that has delivered the payer's earlier
 *    transfers and these dependencies knows the payer's balance exactly and
 *    checks balance >= amount by itself, with no one to ask.
 *  - a mint is a transfer whose payer is one of the issuers the book was
 *    configured with: it creates `amount` credits for the payee, with no
 *    balance behind it, and names no dependencies (credits paid to an issuer
 *    stay pending to it: out of circulation, redeemed).  An issuer signs for
 *    its own key only: it cannot spend anyone else's credits, and nothing
 *    reverses a delivered transfer.  Its transfers have seqs and conflicts
 *    like everyone's.
 *
 * The guarantee of the book: whether a transfer is deliverable depends only
 * on the payer's delivered transfers and on which of its dependencies are
 * delivered, never on the order of unrelated deliveries.  Books that deliver
 * the same transfers, in any order that respects "-EAGAIN: later", reach the
 * same balances; total supply = Σ mints = Σ balances + Σ pending amounts,
 * always.  Books diverge only if they deliver two conflicting transfers;
 * preventing that (Byzantine reliable broadcast, the fraud proofs' gossip
 * and bans) is the dissemination module's job, a separate, later module.
 *
 * Canonical encoding (what is signed, and on the wire), little-endian:
 *   u8 version (1) | payer[32] | u64 seq | payee[32] | u64 amount |
 *   u16 n_deps | dep[n_deps][32], strictly increasing (memcmp) |
 *   signature[64] over "swarm-transfer-v1" || everything before it.
 * A transfer's id is BLAKE2b-256 over "swarm-transfer-id-v1" || the bytes
 * before the signature: a re-signature of the same content is the same
 * transfer, a replay. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRANSFER_KEY_SIZE 32    /* Ed25519 public key: the account */
#define TRANSFER_ID_SIZE 32
#define TRANSFER_SIG_SIZE 64
#define TRANSFER_MAX_DEPS 256
#define TRANSFER_VERSION 1
#define TRANSFER_HEADER_SIZE (1 + 32 + 8 + 32 + 8 + 2)
#define TRANSFER_MIN_SIZE (TRANSFER_HEADER_SIZE + TRANSFER_SIG_SIZE)
#define TRANSFER_MAX_SIZE (TRANSFER_MIN_SIZE + TRANSFER_MAX_DEPS * TRANSFER_ID_SIZE)

struct transfer {
        uint8_t payer[TRANSFER_KEY_SIZE];
        uint64_t seq;                   /* >= 1 */
        uint8_t payee[TRANSFER_KEY_SIZE];
        uint64_t amount;                /* micro-credits, >= 1 */
        size_t n_deps;                  /* <= TRANSFER_MAX_DEPS */
        uint8_t (*deps)[TRANSFER_ID_SIZE]; /* malloc'd, strictly increasing; owned */
        uint8_t signature[TRANSFER_SIG_SIZE];
};

/* Frees t->deps and zeroes *t; t may be a zeroed struct. */
void transfer_clear(struct transfer *t);

/* Deep copy into *ret (zeroed on failure): 0 or -ENOMEM. */
int transfer_copy(const struct transfer *t, struct transfer *ret);

/* The rules on the content alone, without the signature: seq >= 1,
 * amount >= 1, payer != payee, n_deps <= TRANSFER_MAX_DEPS, deps strictly
 * increasing (so no duplicate).  0 or -EBADMSG with *reason. */
int transfer_validate(const struct transfer *t, const char **reason);

/* Sorts t->deps in place, checks transfer_validate() (-EBADMSG on failure:
 * a duplicate dependency, a zero amount... is a bug of the caller here) and
 * signs with the payer's secret key, whose public half must be t->payer
 * (-EINVAL otherwise). */
int transfer_sign(struct transfer *t, const uint8_t payer_sk[64]);

/* transfer_validate(), then the signature against t->payer: 0, -EBADMSG,
 * -EKEYREJECTED (bad signature), each with *reason. */
int transfer_verify(const struct transfer *t, const char **reason);

/* The id: BLAKE2b-256 of the canonical content (signature excluded); t must
 * pass transfer_validate() (an id of all zeroes otherwise). */
void transfer_id(const struct transfer *t, uint8_t ret[TRANSFER_ID_SIZE]);

/* Bytes of the canonical encoding of a valid t. */
size_t transfer_encoded_size(const struct transfer *t);

/* The canonical encoding, malloc'd into *ret.  t must pass
 * transfer_validate() (-EBADMSG otherwise); the signature is copied as is. */
int transfer_encode(const struct transfer *t, uint8_t **ret, size_t *ret_size);

/* Decodes and checks bytes from anyone: the exact size, the version, every
 * rule of transfer_validate() and the signature.  0 with *ret filled (free
 * with transfer_clear()); -EBADMSG (malformed) or -EKEYREJECTED (bad
 * signature) with *reason, a static string, and *ret zeroed. */
int transfer_decode(const uint8_t *data, size_t size, struct transfer *ret, const char **reason);

/* transfer_decode() less the signature: the size, the version and the rules
 * of transfer_validate() only.  For a caller that knows it verified these
 * very bytes before (dissemination.c: the same id and signature as a
 * transfer it holds) and calls transfer_verify() otherwise.  0, -EBADMSG
 * with *reason, -ENOMEM, -EINVAL. */
int transfer_decode_unverified(const uint8_t *data, size_t size, struct transfer *ret, const char **reason);

/* Whether a and b prove that their payer signed two transfers for one seq:
 * 0 when both verify, they name the same payer and seq, and their contents
 * differ.  -EBADMSG / -EKEYREJECTED when one does not verify, -EINVAL when
 * they are not a conflict (other payer, other seq, the same transfer); with
 * *reason. */
int transfer_fraud_proof_check(const struct transfer *a, const struct transfer *b, const char **reason);

/* The ledger state as one node counts it, from the transfers it has
 * delivered.  In memory; not thread-safe. */
struct transfer_book;

/* A book that accepts mints from the n_issuers keys in issuers (copied;
 * duplicates are harmless).  NULL on -ENOMEM. */
struct transfer_book *transfer_book_new(const uint8_t (*issuers)[TRANSFER_KEY_SIZE], size_t n_issuers);
struct transfer_book *transfer_book_free(struct transfer_book *b);
static inline void transfer_book_freep(struct transfer_book **b) {
        transfer_book_free(*b);
}

/* Whether t may be delivered now, checked in this order:
 *   -EBADMSG / -EKEYREJECTED   malformed / bad signature (transfer_verify())
 *   -EALREADY    this very transfer is delivered (a replay)
 *   -ENOTUNIQ    another transfer with the same (payer, seq) is delivered:
 *                *ret_conflict (when not NULL) points at it, owned by the
 *                book, valid until the book is freed; with t it is a fraud
 *                proof
 *   -EAGAIN      seq is ahead of the payer's next
 *   -EPERM       an issuer names dependencies, or a dependency is delivered
 *                but is not to the payer or the payer counted it already
 *   -EAGAIN      no dependency is refused but one is not delivered yet:
 *                try again after more deliveries
 *   -EDQUOT      balance + the dependencies' amounts < amount
 *   -EOVERFLOW   a mint would take the supply past UINT64_MAX
 * -EALREADY, -ENOTUNIQ, -EPERM and -EDQUOT are final: they depend only on
 * the payer's own delivered transfers, which t's seq pins.  *reason (may be
 * NULL) is set on failure, a static string. */
int transfer_book_check(const struct transfer_book *b, const struct transfer *t,
                        const struct transfer **ret_conflict, const char **reason);

/* transfer_book_check(), then applies t: the payer's seq advances, its
 * dependencies are counted into its balance and the amount leaves it (a
 * mint adds it to the supply instead), and t becomes pending to the payee.
 * t is copied.  0, the errors of transfer_book_check(), or -ENOMEM (the
 * book is unchanged). */
int transfer_book_deliver(struct transfer_book *b, const struct transfer *t,
                          const struct transfer **ret_conflict, const char **reason);

struct transfer_account {
        uint64_t next_seq;      /* the seq its next transfer must carry */
        uint64_t balance;       /* counted: what it may spend without deps */
        uint64_t pending;       /* Σ amounts delivered to it, not counted */
        size_t n_pending;
        bool issuer;
};

/* The state of an account; an unknown one is empty (next_seq 1). */
void transfer_book_account(const struct transfer_book *b, const uint8_t account[TRANSFER_KEY_SIZE],
                           struct transfer_account *ret);

/* Copies up to max ids of the transfers pending to account (delivered to it,
 * not counted by it) into ids, in increasing order; returns how many there
 * are in all.  What a payer names as dependencies. */
size_t transfer_book_pending(const struct transfer_book *b, const uint8_t account[TRANSFER_KEY_SIZE],
                             uint8_t (*ids)[TRANSFER_ID_SIZE], size_t max);

/* Whether a transfer with this id is delivered. */
bool transfer_book_has(const struct transfer_book *b, const uint8_t id[TRANSFER_ID_SIZE]);

/* The delivered transfer with this id, owned by the book and valid until it
 * is freed; NULL when none is. */
const struct transfer *transfer_book_get(const struct transfer_book *b, const uint8_t id[TRANSFER_ID_SIZE]);

/* The delivered transfer of payer with this seq, owned by the book and
 * valid until it is freed; NULL when none is. */
const struct transfer *transfer_book_get_by_seq(const struct transfer_book *b,
                                                const uint8_t payer[TRANSFER_KEY_SIZE], uint64_t seq);

/* The credits minted by delivered mints. */
uint64_t transfer_book_supply(const struct transfer_book *b);
size_t transfer_book_n_delivered(const struct transfer_book *b);

/* Recounts everything from the delivered transfers: supply = Σ mints =
 * Σ balances + Σ pending; each account's pending sums and next_seq match its
 * transfers; issuers hold no balance.  0, or -EUCLEAN with *reason. */
int transfer_book_check_invariants(const struct transfer_book *b, const char **reason);

/* BLAKE2b-256 over every account's state (sorted by key: next_seq, balance,
 * the pending ids) and the supply: equal digests, equal books. */
void transfer_book_digest(const struct transfer_book *b, uint8_t ret[32]);
