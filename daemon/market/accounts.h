/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node's economy, between the pure modules and the network: owns the
 * ledger (ledger.h) and the reputation (reputation.h), and runs their
 * timers on the event loop.  (Prices follow demand in demand.h.)
 *
 *  - Paying (issue 22): a requester reserves what a job may cost before it
 *    asks a provider (accounts_reserve(): never beyond what it can
 *    spend), and after the result verifies calls accounts_pay(): in the
 *    group commit, the job's row and the transfer that pays it (one per
 *    payee for all the batch's jobs to it) are written in one
 *    transaction, then the transfer is broadcast (credits.h).  A job is
 *    paid once, even across kill -9: the row and the transfer go
 *    together, and a restart broadcasts again what was not delivered.
 *  - Being paid: a provider admits a job only while the requester's
 *    unpaid debt (served − its transfers delivered here) stays within
 *    ledger.debt_limit (accounts_admit()), the unsecured credit it
 *    extends, and records what it delivered (accounts_served()) before
 *    sending the result.  Cheques pay nothing any more.
 *  - Reputation: the requester observes through accounts_reputation();
 *    observations are saved to the ledger every few seconds and at exit;
 *    this node's signed opinion (and some it holds from others) goes to a
 *    few random peers every reputation.gossip_interval; trust is
 *    recomputed when new opinions arrived. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "ledger.h"
#include "reputation.h"
#include "swarm.pb-c.h"

struct accounts;
struct credits;
struct identity;
struct network;

struct accounts_config {
        uint64_t debt_limit;            /* micro-credits a requester may owe us; 0 = no limit */
        uint64_t half_life_usec;        /* reputation decay */
        uint64_t gossip_interval_usec;  /* opinions, restarts seen; 0 = never */
        bool withhold_payments;         /* testing: a freeloader that never pays */
};

/* Opens path (the ledger) and loads the saved reputation.  network may be
 * NULL (no gossip, nothing sent).  *error (malloc'd) says what failed,
 * naming the file. */
int accounts_new(sd_event *event, const struct accounts_config *config, const struct identity *identity,
                 struct network *network, const char *path, struct accounts **ret, char **error);
/* The goodbye: writes what is queued, broadcasts the transfers it signed,
 * saves the reputation.  Call it while the network and the credits still
 * exist. */
void accounts_stop(struct accounts *a);
/* Closes the ledger and frees; writes nothing (what accounts_stop() did
 * not write is dropped, with a warning, its callbacks told -ECANCELED). */
struct accounts *accounts_free(struct accounts *a);

struct ledger *accounts_ledger(struct accounts *a);
struct reputation *accounts_reputation(struct accounts *a);

/* What pays: the credits on this accounts' ledger (borrowed; NULL to stop
 * paying: every payment then fails with -ENOTCONN). */
void accounts_set_credits(struct accounts *a, struct credits *credits);

/* Requester: holds amount of what this node can spend for a job about to
 * ask a provider, so that the jobs running never cost more than it holds.
 * -EDQUOT when accounts_available() < amount.  accounts_unreserve() gives
 * it back (the job ended: paid, or not). */
int accounts_reserve(struct accounts *a, uint64_t amount);
void accounts_unreserve(struct accounts *a, uint64_t amount);
/* credits_spendable() less what is reserved; 0 without credits. */
uint64_t accounts_available(struct accounts *a);
uint64_t accounts_reserved(struct accounts *a);

/* Group commit: payments and served records are queued and written
 * together, one transaction and one fsync for all that the loop's pending
 * events queued (at most ACCOUNTS_FLUSH_USEC after the first when the loop
 * never runs dry, or at ACCOUNTS_FLUSH_MAX queued); what depends on them —
 * the transfer, the result, the job handed to its submitter — leaves only
 * after the commit. */
#define ACCOUNTS_FLUSH_USEC 500u
#define ACCOUNTS_FLUSH_MAX 256u

struct accounts_payment;
/* 0 once the payment is durable (or the job was paid before), else why it
 * could not be recorded. */
typedef void (*accounts_paid_fn)(int status, void *userdata);

/* Requester: pays a verified job; paid is called from the loop once the
 * payment is durable (its transfer then goes out), or with why not
 * (-EDQUOT: this node cannot pay; -ENOTCONN: no credits; the ledger's
 * errors).  The payment holds price reserved until it is signed.  A job
 * already paid is not paid again (0).  The handle stays valid until paid
 * is called; a caller that stops caring calls accounts_payment_forget()
 * (the payment still happens). */
int accounts_pay(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                 uint64_t price, accounts_paid_fn paid, void *userdata, struct accounts_payment **ret);
void accounts_payment_forget(struct accounts_payment *p);

/* A verified result to keep for its submitter (see ledger_keep_result()):
 * the local user owner gave it key; result is its encoding
 * (Swarm__KeptResult).  Kept ACCOUNTS_KEEP_USEC. */
#define ACCOUNTS_KEEP_USEC (24ull * 3600 * 1000 * 1000)
struct accounts_keep {
        uint32_t owner;
        const char *key;
        const void *result;
        size_t size;
};
/* accounts_pay(), and the result kept in the same transaction as the
 * payment: a result that was paid for is kept, and one that is kept was
 * paid for.  keep NULL: accounts_pay(). */
int accounts_pay_and_keep(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                          uint64_t price, const struct accounts_keep *keep, accounts_paid_fn paid, void *userdata,
                          struct accounts_payment **ret);
/* Keeps a result that is not paid for (run locally, or free), durably now. */
int accounts_keep(struct accounts *a, const struct accounts_keep *keep, const uint8_t job_id[16]);
/* The kept result of owner's key (malloc'd encoding); -ENOENT. */
int accounts_kept_result(struct accounts *a, uint32_t owner, const char *key, void **ret, size_t *ret_size);

/* Writes what is queued now (accounts_free() does too). */
void accounts_flush(struct accounts *a);

/* Provider: 0 when a job of price from requester may run; -EDQUOT when
 * its unpaid debt plus price would pass the limit, with the reason in
 * error. */
int accounts_admit(struct accounts *a, const uint8_t requester[32], uint64_t price, char *error, size_t size);
/* Provider: records the job as served at price and, once that is durable
 * (or failed: status < 0, logged), calls recorded, which sends the result.
 * Not called when this fails (-EINVAL, -ENOMEM); called with -ECANCELED,
 * to free what userdata holds, by accounts_free() for a write that
 * accounts_stop() did not make (as paid is). */
int accounts_served(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t requester[32],
                    uint64_t price, accounts_paid_fn recorded, void *userdata);

/* From the jobs channel.  Cheques are ignored (logged): they pay nothing
 * since transfers. */
void accounts_handle_cheque(struct accounts *a, const uint8_t from[32], const Swarm__SignedCheque *cheque);
void accounts_handle_opinions(struct accounts *a, const uint8_t from[32], const Swarm__OpinionBatch *batch);

/* Wall clock, µs since the epoch: what reputation and the ledger use. */
uint64_t accounts_now(void);
