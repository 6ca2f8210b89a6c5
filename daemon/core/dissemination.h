/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Dissemination of transfers without double spending (issue 22, item 2):
 * Bracha's Byzantine reliable broadcast, one instance per (payer, seq)
 * slot, with quorums weighted by the credits each node holds.
 *
 * Weights.  In a node's book (transfer.h), a node's weight is the credits
 * it holds, balance + pending; the total W is the supply (Σ mints).  A
 * Sybil with no issued credits weighs nothing, however many of them there
 * are: what they could do with weight, they would have to buy.
 *
 * The protocol, for a slot (P, s):
 *   ECHO   a node echoes the first transfer of (P, s) it sees, to every
 *          peer, and never another one for that slot (the payer's own
 *          broadcast is its echo);
 *   READY  a node sends READY for a transfer once the echoes for it weigh
 *          more than 2W/3, or the READYs for it more than W/3 (an honest
 *          node has sent one), and never for another one;
 *   DELIVER once the READYs for it weigh more than 2W/3, the slot is
 *          decided: the transfer goes to the book as soon as the book can
 *          take it (its seq next, its dependencies delivered; -EAGAIN
 *          until then), or is refused by every node alike when the book
 *          says no for good (-EDQUOT, -EPERM).
 * While no credits circulate (W = 0 in a node's book), a mint needs only
 * the READY of its issuer: issuers are trusted to print, and nothing else
 * can be paid before a mint.
 *
 * Guarantee.  If the nodes that deviate hold less than a third of the
 * supply, less the credits in flight (whose weight two honest books may
 * count differently), no two honest nodes deliver different transfers for
 * one slot: two quorums of more than 2W/3 overlap in more than W/3, so in
 * an honest node, and an honest node sends READY for one transfer only.
 * Every honest node delivers what one honest node delivered (READYs
 * weighing W/3 make every honest node send its own).
 *
 * Fraud.  Two transfers for one slot, both signed by the payer, are a
 * proof of fraud.  A node that holds one sends it to every peer once, and
 * bans the payer: it echoes none of its transfers from then on.  It still
 * counts READYs and sends its own on W/3 of them, so what one honest node
 * delivered still reaches them all; a banned payer's conflicting transfers
 * deliver nowhere unless one had gathered its echoes before the proof.
 *
 * Cost per node per transfer: one ECHO and one READY to each peer, each
 * at most TRANSFER_MAX_SIZE plus a few bytes of framing; a slot that is
 * not delivered after retry_interval resends them to the peers whose READY
 * it has not heard, max_retries times every retry_interval, then with the
 * interval doubling up to 32 times (so a slot whose every message was lost
 * still completes, at a bounded cost).  A node that sees a gap in
 * a payer's seqs or a dependency it never saw pulls them (WANT), answered
 * with the peer's READY.  Memory: at most max_slots undecided slots, at
 * most seq_window per payer, and at most max_unfunded for payers that hold
 * no credits in this node's book; per transfer, the senders of ECHO and
 * READY, of which at most max_voters hold nothing here.
 *
 * Pure: the clock and the transport come through struct dissemination_io;
 * nothing here logs.  The book is the caller's; only the dissemination
 * delivers into it while it is attached. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transfer.h"

#define DISSEMINATION_VERSION 1
#define DISSEMINATION_WANT_MAX 64               /* slots, and ids, per WANT */
#define DISSEMINATION_PROBE_DEPTH 16            /* seqs per payer a probe asks for */
#define DISSEMINATION_MESSAGE_MAX (2 * TRANSFER_MAX_SIZE + 64)

struct dissemination;

struct dissemination_config {
        uint64_t retry_interval_usec;   /* resend an undecided slot's ECHO/READY, e.g. 1 s */
        unsigned max_retries;           /* per slot at retry_interval, e.g. 8; then backing off */
        size_t max_slots;               /* undecided slots held at once, e.g. 4096 */
        size_t seq_window;              /* a slot's seq is below the payer's next + this, e.g. 64 */
        size_t max_unfunded;            /* slots of payers holding no credits here, e.g. 256 */
        size_t max_candidates;          /* distinct transfers tracked per slot, >= 2, e.g. 4 */
        size_t max_voters;              /* ECHOs (READYs) listed per transfer from senders holding
                                         * nothing here (weightless), e.g. 1024; weighted ones always are */
};

/* retry 1 s, 8 retries, 4096 slots, window 64, 256 unfunded, 4 candidates,
 * 1024 voters. */
void dissemination_config_default(struct dissemination_config *c);

struct dissemination_io {
        void *userdata;
        uint64_t (*now_usec)(void *userdata);   /* monotonic */
        /* Sends one encoded CreditMessage to a peer; may drop it (a full
         * queue): the retries and WANTs cover loss. */
        void (*send)(void *userdata, const uint8_t to[TRANSFER_KEY_SIZE], const uint8_t *data, size_t size);
        /* Optional: t was delivered into the book (id is its id).  What
         * the caller persists, before anything depends on it. */
        void (*delivered)(void *userdata, const struct transfer *t, const uint8_t id[TRANSFER_ID_SIZE]);
        /* Optional: the broadcast decided t, and the book refuses it for
         * good (error, reason): its payer signed what it could not pay. */
        void (*refused)(void *userdata, const struct transfer *t, int error, const char *reason);
        /* Optional: a: and b prove that their payer signed two transfers for
         * one seq (checked); called once per payer, when it is banned. */
        void (*fraud)(void *userdata, const struct transfer *a, const struct transfer *b);
        /* Optional: why a message from peer (NULL: our own trouble) was
         * dropped or refused, for the caller's debug log. */
        void (*debug)(void *userdata, const uint8_t *peer, int error, const char *what);
};

/* self: our account.  book: borrowed, must outlive the dissemination.
 * 0, -EINVAL (a config out of range), -ENOMEM. */
int dissemination_new(const struct dissemination_config *config, const struct dissemination_io *io,
                      const uint8_t self[TRANSFER_KEY_SIZE], struct transfer_book *book,
                      struct dissemination **ret);
struct dissemination *dissemination_free(struct dissemination *d);
static inline void dissemination_freep(struct dissemination **d) {
        dissemination_free(*d);
}

/* The nodes ECHO and READY go to (copied; self and duplicates are
 * skipped).  Messages from others are taken too: weight is what counts. */
int dissemination_set_peers(struct dissemination *d, const uint8_t (*peers)[TRANSFER_KEY_SIZE], size_t n);

/* Broadcasts our own signed transfer (payer = self): the caller stored it
 * durably first, so that no restart ever signs another one for its seq.
 * 0; -EALREADY when it is delivered or being broadcast; -ENOTUNIQ when
 * another transfer holds its slot; -EINVAL when its payer is not us; the
 * errors of transfer_verify(); -ENOBUFS when no slot is free. */
int dissemination_broadcast(struct dissemination *d, const struct transfer *t);

/* Handles one message from the authenticated peer from.  0 when taken
 * (a harmless repeat or a replay of what is delivered included: nothing
 * counts twice); -EBADMSG (malformed: over the size limit, not a
 * CreditMessage, a transfer that does not decode or whose signature does
 * not verify, a WANT with bad fields, a fraud proof that proves nothing),
 * -EPROTONOSUPPORT (another version), -ENOBUFS (no room: max_slots,
 * max_unfunded, max_candidates, or max_voters for a weightless sender), -ERANGE (a seq at or beyond the
 * payer's next + seq_window), -ENOMEM; each reported to io->debug with
 * what was wrong. */
int dissemination_receive(struct dissemination *d, const uint8_t from[TRANSFER_KEY_SIZE], const uint8_t *data,
                          size_t size);

/* Checks a fraud proof from elsewhere (the ledger at start): bans the
 * payer and tells every peer.  0, or the errors of
 * transfer_fraud_proof_check(). */
int dissemination_add_fraud_proof(struct dissemination *d, const struct transfer *a, const struct transfer *b);

/* Anti-entropy: asks one peer for the next transfers of each of these
 * payers (from the next seq this book expects, as many as fit in one WANT
 * up to DISSEMINATION_PROBE_DEPTH, skipping those in flight here), at
 * most DISSEMINATION_WANT_MAX slots per call.  What the peer has comes back
 * as its READY; this node then echoes it to everyone, and those who
 * delivered it answer with theirs: so a node that was away (a partition,
 * a restart) catches up on every payer it knows of. */
void dissemination_probe(struct dissemination *d, const uint8_t to[TRANSFER_KEY_SIZE],
                         const uint8_t (*payers)[TRANSFER_KEY_SIZE], size_t n);

/* Runs the retries that are due. */
void dissemination_tick(struct dissemination *d);

uint64_t dissemination_next_deadline(const struct dissemination *d);   /* UINT64_MAX: nothing due */

bool dissemination_is_banned(const struct dissemination *d, const uint8_t account[TRANSFER_KEY_SIZE]);

enum dissemination_state {
        DISSEMINATION_UNKNOWN,          /* never seen, or dropped */
        DISSEMINATION_IN_FLIGHT,        /* echoed, not decided */
        DISSEMINATION_DECIDED,          /* decided, waiting for the book (an earlier seq, a dependency) */
        DISSEMINATION_REFUSED,          /* decided, refused by the book for good */
        DISSEMINATION_DELIVERED,        /* in the book */
};
const char *dissemination_state_to_string(enum dissemination_state s);

/* What became of the transfer with this id. */
enum dissemination_state dissemination_state(const struct dissemination *d, const uint8_t id[TRANSFER_ID_SIZE]);

struct dissemination_stats {
        uint64_t sent_messages, sent_bytes;
        uint64_t received_messages, received_bytes;
        uint64_t rejected_messages;     /* malformed, bad signature, out of window, no room */
        uint64_t delivered;             /* into the book */
        uint64_t refused;               /* decided, refused by the book */
        uint64_t fraud_proofs;          /* payers banned */
        uint64_t retries;               /* slots resent */
        uint64_t wants_sent, wants_answered;
        uint64_t signatures_verified;   /* ECHO/READY transfers checked with Ed25519: once per
                                         * transfer and signature, later copies are known */
};
const struct dissemination_stats *dissemination_get_stats(const struct dissemination *d);

/* Encodes a message: a transfer as ECHO or READY, a fraud proof, a WANT.
 * For tests, fuzzers and modified nodes; 0, -EINVAL, -ENOMEM. */
enum dissemination_kind {
        DISSEMINATION_ECHO,
        DISSEMINATION_READY,
};
int dissemination_encode_transfer(enum dissemination_kind kind, const struct transfer *t, uint8_t **ret,
                                  size_t *ret_size);
int dissemination_encode_fraud(const struct transfer *a, const struct transfer *b, uint8_t **ret,
                               size_t *ret_size);
