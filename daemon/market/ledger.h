/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The node's ledger: one SQLite database in the state directory
 * (ledger.db), in WAL mode; every write that moves money commits with
 * synchronous=FULL.  Schema migrations are numbered steps in ledger.c,
 * applied in order at open (PRAGMA user_version); a database from a newer
 * swarmd is refused rather than guessed at.
 *
 * What it holds:
 *  - jobs: one row per (job id, role): what we paid for as a requester
 *    ("paid") and what we delivered as a provider ("served"), with peer,
 *    skill, price and time.  A job id is paid at most once: that row and
 *    the transfer that pays for it (ledger_pay_transfer()) are written in
 *    one transaction, so a crash at any point leaves either both or
 *    neither; the row names the transfer.
 *  - transfers (issue 22): every transfer this node delivered, in order,
 *    and its own signed and not delivered yet; fraud proofs.
 *  - cheques: the history of before transfers (schema 3 and older): per
 *    payee, the highest cheque we issued; per payer, the highest we
 *    received.  Still counted as paid; swarmd writes no new ones.
 *  - reputation: our own observations per (peer, skill), saved now and
 *    then by the daemon (reputation.h), loaded at start.
 *
 * Nobody gets credits for free: what this node holds is what transfers to
 * it brought (mints of the issuers included), less its own.  Balance =
 * earned − spent − in flight (ledger_get_balance()).  What a requester
 * owes us ("debt") = what we served it − written off − its cheques − its
 * transfers to us delivered here. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cheque.h"
#include "transfer.h"

struct ledger;

/* Opens (creating, mode 0600) the database at path for the node self (32
 * bytes).  A database made for another node id is refused (-EXDEV), as is
 * one of a newer schema (-EPROTONOSUPPORT); *error (malloc'd, may be NULL)
 * says why, naming the file, for every failure.
 *
 * Throughout: skill is 1-63 bytes of UTF-8 (-EINVAL otherwise), times are
 * at most INT64_MAX µs, and amounts are refused with -EOVERFLOW rather
 * than taken past INT64_MAX (SQLite integers are signed 64-bit): a price,
 * the cumulative amount issued to one payee, what one requester was
 * served, a cheque's amount. */
int ledger_open(const char *path, const uint8_t self[32], struct ledger **ret, char **error);
struct ledger *ledger_free(struct ledger *l);

/* ---- Requester side ---- */

/* Signs c (this node's cheque) into an encoded SignedCheque (malloc'd), as
 * cheque_sign() does: the ledger never holds the secret key. */
typedef int (*ledger_sign_fn)(const struct cheque *c, uint8_t **ret, size_t *ret_size, void *userdata);

/* The cheque era (schema 3 and older; swarmd pays by transfer now,
 * ledger_pay_transfer()): kept so that old ledgers and their tests still
 * read and write as they did.
 *
 * Pays price for job_id to payee: in one durable transaction, records the
 * job as paid, raises the cumulative amount issued to payee by price and
 * stores the new cheque, signed by sign.  Returns the encoded SignedCheque
 * to send (malloc'd).  -EALREADY when job_id was already paid (nothing
 * changes, *ret is the latest cheque to the payee it was paid to, which
 * covers it, to resend).  What sign returns otherwise (cheque_sign():
 * -EINVAL when the key is not this node's).  now: µs since the epoch. */
int ledger_pay(struct ledger *l, const uint8_t job_id[CHEQUE_JOB_SIZE], const char *skill,
               const uint8_t payee[32], uint64_t price, ledger_sign_fn sign, void *userdata, uint64_t now,
               uint8_t **ret, size_t *ret_size);

/* Everyone we ever issued a cheque to (malloc'd array of ids), the most
 * recently paid first. */
int ledger_payees(struct ledger *l, uint8_t (**ret)[32], size_t *ret_n);

/* The latest cheque we issued to payee (malloc'd encoded SignedCheque);
 * -ENOENT when none. */
int ledger_latest_cheque(struct ledger *l, const uint8_t payee[32], uint8_t **ret, size_t *ret_size);

/* ---- Provider side ---- */

/* Records that we delivered job_id to requester at price (durable).
 * -EALREADY when that job was already recorded as served; -EOVERFLOW when
 * what requester was served in all would pass INT64_MAX. */
int ledger_served(struct ledger *l, const uint8_t job_id[CHEQUE_JOB_SIZE], const char *skill,
                  const uint8_t requester[32], uint64_t price, uint64_t now);

/* A cheque from a peer (the encoded SignedCheque): checked with
 * cheque_open_bytes()/cheque_compare() against the highest we hold from
 * its payer and kept, durably, when higher.  1 kept, 0 duplicate, or the
 * negative errno of the rule it breaks with *reason (static string):
 * those of cheque_open_bytes() and cheque_compare(), and -EOVERFLOW for
 * an amount over INT64_MAX. */
int ledger_accept_cheque(struct ledger *l, const uint8_t *data, size_t size, uint64_t now, const char **reason);

/* What requester owes us: served − written off − its cheques − its
 * transfers to us delivered here, 0 when it paid ahead. */
int ledger_debt(struct ledger *l, const uint8_t requester[32], uint64_t *ret);

/* Everything we served requester, in micro-credits. */
int ledger_served_total(struct ledger *l, const uint8_t requester[32], uint64_t *ret);
/* requester restarted: what it owes (what its cheques and earlier
 * write-offs do not cover) is written off, durably, as never to be paid
 * (its results died with it) — but no more than it was served in the
 * window just before the restart (an honest requester's unpaid work is
 * recent; older debt stays debt, later work is its new life's), less what
 * was already written off of that window, nor past daily_cap in 24 hours
 * (so that restarting is no way to work for free).  *ret: how much (0:
 * nothing).  now: µs since the epoch, as the jobs' times. */
struct ledger_write_off_rule {
        uint64_t served_since;          /* the window of work it may have left unpaid: */
        uint64_t served_until;          /* [since, until), µs since the epoch; until: the restart */
        uint64_t daily_cap;             /* micro-credits */
};
int ledger_write_off(struct ledger *l, const uint8_t requester[32], const struct ledger_write_off_rule *rule,
                     uint64_t now, uint64_t *ret);

/* ---- Kept results (requester side) ---- */

/* A verified result kept for the local user (owner, a uid) who submitted
 * it under key, so that the same key gets it back instead of a second job
 * and payment: exactly-once delivery from the submitter's view.  Inside a
 * batch with the payment it is durable with it or not at all.  Results
 * past expires_at are dropped on the next keep.  -EINVAL for a key that is
 * not 1-128 bytes of UTF-8 or a result over LEDGER_KEEP_RESULT_MAX. */
#define LEDGER_KEEP_KEY_MAX 128
#define LEDGER_KEEP_RESULT_MAX (256u * 1024u * 1024u)
int ledger_keep_result(struct ledger *l, uint32_t owner, const char *key, const uint8_t job_id[CHEQUE_JOB_SIZE],
                       const void *result, size_t size, uint64_t now, uint64_t expires_at);
/* The kept result (malloc'd) of owner's key, unless expired by now;
 * -ENOENT. */
int ledger_kept_result(struct ledger *l, uint32_t owner, const char *key, uint64_t now, void **ret, size_t *ret_size);

/* ---- Group commit ---- */

/* Every write (ledger_pay_transfer(), ledger_served(), ...) between
 * these two is one transaction with one fsync at the commit (full) or
 * none (WAL with synchronous=NORMAL: durable when the process dies, not
 * when the machine does): a burst of payments costs one disk flush
 * instead of one each.  Each call inside
 * still succeeds or fails on its own (a savepoint); nothing of the batch
 * is durable, and nothing it returned may leave the node (a cheque, a
 * result), before ledger_batch_commit() returns 0.  After a failed commit
 * nothing of the batch happened.  Reads inside a batch see its writes. */
int ledger_batch_begin(struct ledger *l, bool full);
int ledger_batch_commit(struct ledger *l);
void ledger_batch_abort(struct ledger *l);

/* ---- Views ---- */

struct ledger_balance {
        int64_t balance;                /* earned − spent − in_flight: what this node may still spend */
        uint64_t earned;                /* transfers to us, delivered (mints to us included) */
        uint64_t spent;                 /* our transfers, delivered (an issuer's mints included) */
        uint64_t in_flight;             /* our transfers signed and stored, not delivered yet */
        uint64_t owed_to_us;            /* pending delivery: Σ over requesters of max(0, served −
                                         * written off − paid), what our work earned and no
                                         * delivered transfer paid yet */
        uint64_t cheques_received, cheques_issued;      /* history: the cheque era */
        uint64_t jobs_paid, jobs_served;
};
/* -EOVERFLOW when a total does not fit. */
int ledger_get_balance(struct ledger *l, struct ledger_balance *ret);

struct ledger_peer {
        uint8_t id[32];
        uint64_t issued;                /* we paid them, in all: our cheque and our transfers, signed */
        uint64_t received;              /* they paid us: their cheque and their transfers, delivered */
        uint64_t served;                /* we delivered to them, priced */
        uint64_t jobs_paid, jobs_served;
        uint64_t last_at;               /* µs since the epoch, last job or cheque */
};
/* Every peer we ever paid, served or got a cheque from, most recent first. */
int ledger_list_peers(struct ledger *l, struct ledger_peer **ret, size_t *ret_n);

enum ledger_role {
        LEDGER_ROLE_PAID,               /* we requested it and paid */
        LEDGER_ROLE_SERVED,             /* we ran it for a peer */
};

struct ledger_job {
        uint8_t job_id[CHEQUE_JOB_SIZE];
        enum ledger_role role;
        uint8_t peer[32];
        char skill[64];
        uint64_t price;
        uint64_t at;                    /* µs since the epoch */
        bool paid_by_transfer;          /* LEDGER_ROLE_PAID since transfers: */
        uint8_t transfer[TRANSFER_ID_SIZE];     /* the transfer that paid it */
        bool transfer_delivered;        /* delivered here, or still in flight */
};
/* Job history, most recent first; peer NULL for all peers; limit 0 for
 * no limit. */
int ledger_history(struct ledger *l, const uint8_t *peer, size_t limit, struct ledger_job **ret, size_t *ret_n);

/* ---- Reputation (our own observations; see reputation.h) ---- */

struct ledger_reputation {
        uint8_t peer[32];
        char skill[64];
        double successes, failures;     /* decayed as of updated_at */
        double latency_ewma_usec;       /* 0 = unknown */
        double throughput_ratio;        /* measured / advertised EWMA, 0 = unknown */
        uint64_t updated_at;            /* µs since the epoch */
};
/* Upserts n rows in one transaction (synchronous=NORMAL: losing the last
 * few seconds of reputation in a power cut is acceptable, money is not). */
int ledger_save_reputation(struct ledger *l, const struct ledger_reputation *rows, size_t n);
int ledger_load_reputation(struct ledger *l, struct ledger_reputation **ret, size_t *ret_n);

/* ---- Transfers (issue 22; transfer.h, dissemination.h) ---- */

/* The seq our next transfer must carry: one above the highest of ours
 * stored, delivered or not (1 when none). */
int ledger_transfer_next_seq(struct ledger *l, uint64_t *ret);

/* Stores a transfer this node signed (its payer is self; -EINVAL
 * otherwise, or when t breaks transfer_validate()), durably
 * (synchronous=FULL), before it may leave the node.  -EALREADY when t is
 * stored already; -ENOTUNIQ when another transfer holds its (payer, seq):
 * nothing then lets a second one for a seq out, even across a crash. */
int ledger_transfer_signed(struct ledger *l, const struct transfer *t, uint64_t now);

/* Requester: pays the jobs of jobs[] (n >= 1) to payee with one transfer,
 * in one durable transaction: each job is recorded as paid (status 0), or
 * was paid before (status -EALREADY, not paid again); when some were not,
 * sign is called with the seq our next transfer takes (one above every one
 * of ours stored) and the sum of their prices, and returns our transfer of
 * that amount to payee, signed, with a seq at least that one; it is stored
 * as ours, not delivered yet, and the jobs' rows name it.  1 with *ret
 * (free with transfer_clear()) to broadcast once the transaction is
 * durable (inside a batch: once ledger_batch_commit() returned 0); 0 when
 * nothing was to pay (paid before, or free); -EINVAL (payee is us, a bad
 * skill, or sign returned another transfer), -EOVERFLOW, -ENOTUNIQ (its
 * slot is taken), sign's errors (-EDQUOT: we cannot pay), the database's:
 * then nothing happened. */
struct ledger_pay_job {
        const uint8_t *job_id;          /* CHEQUE_JOB_SIZE bytes */
        const char *skill;
        uint64_t price;
        int status;                     /* out */
};
typedef int (*ledger_transfer_sign_fn)(uint64_t seq, uint64_t amount, struct transfer *ret, void *userdata);
int ledger_pay_transfer(struct ledger *l, const uint8_t payee[32], struct ledger_pay_job *jobs, size_t n,
                        ledger_transfer_sign_fn sign, void *userdata, uint64_t now, struct transfer *ret);

/* Records that the book delivered t, as the next in this node's delivery
 * order (the order ledger_transfer_load() replays).  -EALREADY when it is
 * recorded delivered already; -ENOTUNIQ when another transfer holds its
 * slot. */
int ledger_transfer_delivered(struct ledger *l, const struct transfer *t, uint64_t now);

/* Every stored transfer, decoded and verified: the delivered ones first, in
 * delivery order, then ours not yet delivered, by seq.  Stops at fn's
 * first negative return, and returns it; a row that does not decode is
 * -EBADMSG (logged: the database is damaged). */
typedef int (*ledger_transfer_fn)(const struct transfer *t, bool delivered, void *userdata);
int ledger_transfer_load(struct ledger *l, ledger_transfer_fn fn, void *userdata);

/* Keeps a fraud proof (checked: -EINVAL when a and b are not one), one per
 * payer; the first stays. */
int ledger_fraud_proof_add(struct ledger *l, const struct transfer *a, const struct transfer *b, uint64_t now);
typedef int (*ledger_fraud_proof_fn)(const struct transfer *a, const struct transfer *b, void *userdata);
int ledger_fraud_proof_load(struct ledger *l, ledger_fraud_proof_fn fn, void *userdata);
