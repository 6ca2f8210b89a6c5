/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Credits on the network (issue 22): this node's book of transfers
 * (core/transfer.h), kept in the ledger and spread by the dissemination
 * (core/dissemination.h) on the network's credits channel.
 *
 *  - At start, the ledger's delivered transfers are replayed into the book
 *    in the order they were delivered, fraud proofs ban their payers again,
 *    and our own transfers not yet delivered are broadcast again.
 *  - A transfer this node signs (credits_pay()) is stored with a full sync
 *    before it leaves: no restart ever signs a second one for its seq.
 *    Several may be in flight at once: each names as dependencies only
 *    what the earlier ones did not, and spends only what they left.
 *  - Every delivery is written to the ledger as it happens; a fraud proof
 *    is kept and its payer banned on the network.
 *  - Every second the peers are refreshed from the membership and the
 *    dissemination's retries run; every CREDITS_PROBE_USEC one random peer
 *    is asked for what follows each known payer's last transfer here
 *    (anti-entropy: how a node that was away catches up).
 *
 * Issuers are the node ids of credits.issuers: only their mints create
 * credits in this node's book.  Nobody gets credits for free. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "transfer.h"

struct credits;
struct identity;
struct ledger;
struct network;

#define CREDITS_TICK_USEC (1000u * 1000u)
#define CREDITS_PROBE_USEC (5u * 1000u * 1000u)

/* issuers: n_issuers node ids.  The ledger and the network are borrowed
 * and must outlive the credits.  network may be NULL (tests): nothing is
 * sent, and only what this node's own weight decides is delivered (it
 * holds more than 2/3 of the supply).  0, or a negative errno logged here
 * (a damaged ledger: its row named). */
int credits_new(sd_event *event, const struct identity *identity, struct network *network, struct ledger *ledger,
                const uint8_t (*issuers)[TRANSFER_KEY_SIZE], size_t n_issuers, struct credits **ret);
struct credits *credits_free(struct credits *c);

/* Pays amount micro-credits to payee from what this node holds: signs its
 * next transfer, naming as dependencies the transfers pending to it that
 * none of ours in flight names, stores it durably and broadcasts it.  An
 * issuer mints instead (no balance behind it, no dependencies).  -EDQUOT
 * when balance + pending - what our transfers in flight spend < amount
 * (never beyond the balance); -EINVAL for a zero amount or ourselves as
 * payee; -ENOBUFS when TRANSFER_MAX_DEPS would not name them all; -EPERM
 * when we are banned; the ledger's errors.  ret_id (may be NULL): the
 * transfer's id. */
int credits_pay(struct credits *c, const uint8_t payee[TRANSFER_KEY_SIZE], uint64_t amount,
                uint8_t ret_id[TRANSFER_ID_SIZE]);

/* What this node may still pay: balance + pending − what our transfers in
 * flight spend (at most what TRANSFER_MAX_DEPS dependencies bring in);
 * UINT64_MAX for an issuer, 0 when banned. */
uint64_t credits_spendable(struct credits *c);

/* Payments inside the caller's ledger transaction (accounts.c pays jobs so,
 * the job rows and the transfer in one commit):
 *  - credits_sign(): our next transfer of amount to payee, signed, into
 *    *ret (free with transfer_clear()), funded as credits_pay() funds it,
 *    counting the staged ones as in flight; its seq is at least seq (the
 *    ledger's next, in that transaction) and after every one of ours.
 *    Nothing is stored.  -EDQUOT, -EPERM, -EINVAL as credits_pay().
 *  - credits_stage(): once the caller's transaction holds t, it is in
 *    flight (t is taken, zeroed), not sent.
 *  - credits_staged_commit(): the transaction is durable: what is staged
 *    goes out.  credits_staged_abort(): it failed: forgotten (no one saw
 *    them, so their seqs are free again). */
int credits_sign(struct credits *c, const uint8_t payee[TRANSFER_KEY_SIZE], uint64_t amount, uint64_t seq,
                 struct transfer *ret);
int credits_stage(struct credits *c, struct transfer *t);
void credits_staged_commit(struct credits *c);
void credits_staged_abort(struct credits *c);

struct credits_view {
        uint64_t balance;               /* counted: spendable without dependencies */
        uint64_t pending;               /* delivered to us, not yet counted by a transfer of ours */
        uint64_t in_flight;             /* ours signed, not yet delivered here */
        uint64_t supply;                /* Σ mints delivered here */
        uint64_t next_seq;
        uint64_t delivered;             /* transfers in the book */
        uint64_t fraud_proofs;          /* payers banned */
        bool issuer;                    /* we are one of our issuers */
};
void credits_get_view(struct credits *c, struct credits_view *ret);

/* Testing (testing.double_spend_to): a double spender.  Every transfer
 * credits_pay() signs gets a twin with the same seq and amount to
 * twin_payee (NULL: off), never stored, whose ECHO goes to every other
 * peer just before the real one's broadcast: honest nodes must deliver at
 * most one, prove the fraud and ban this node. */
void credits_set_double_spend(struct credits *c, const uint8_t twin_payee[TRANSFER_KEY_SIZE]);

/* The book, read-only (views, tests through the control socket). */
const struct transfer_book *credits_book(struct credits *c);
