/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "credits.h"
#include "identity.h"
#include "job-wire.h"
#include "log.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "opinion.h"
#include "time-util.h"

/* Reputation goes to the ledger this often (and at exit). */
#define SAVE_INTERVAL_USEC (10 * USEC_PER_SEC)
/* Peers each gossip round goes to. */
#define GOSSIP_FANOUT 3
/* Others' signed opinions kept for relaying. */
#define RELAY_MAX 64
/* An opinion batch is small; this is the envelope's limit. */
#define SMALL_MESSAGE_MAX (OPINION_BATCH_MAX * (OPINION_MAX_SIZE + 128u) + 1024u)

struct relayed {
        uint8_t issuer[32];
        uint64_t version;
        uint8_t *body, *signature;
        size_t body_size;
};

/* A requester's boot, as its node record says (boot_id): when another
 * appears it restarted, and what it had been served by then and not paid
 * is written off once its transfers have had time to be delivered
 * (RESTART_GRACE gossip rounds: it broadcasts again at start what it signed
 * and did not see delivered). */
struct boot_seen {
        uint8_t id[32];
        uint8_t boot[WIRE_BOOT_ID_SIZE];
        uint64_t seen_at;               /* accounts_now() then */
        uint64_t settle_usec;           /* CLOCK_MONOTONIC; 0: nothing pending */
};
#define RESTART_GRACE 3
/* What a restart may leave unpaid: work served this long before it was
 * seen (results in flight and payments in their group commit). */
#define RESTART_WINDOW_USEC (120ull * 1000 * 1000)

struct accounts {
        sd_event *event;
        struct accounts_config config;
        const struct identity *identity;
        struct network *network;
        struct ledger *ledger;
        struct reputation *reputation;
        struct credits *credits;        /* pays; NULL: nothing can be paid */
        uint64_t reserved;              /* for jobs running and payments queued */
        char *path;

        struct accounts_payment *pending, **pending_tail;
        size_t n_pending;
        sd_event_source *flush_defer, *flush_timer;

        struct relayed relay[RELAY_MAX];
        size_t n_relay;
        bool trust_dirty;

        sd_event_source *save_timer, *gossip_timer;
        struct boot_seen *boots;
        size_t n_boots;
};

uint64_t accounts_now(void) {
        return now(CLOCK_REALTIME);
}

static void short_id(const uint8_t id[32], char out[13]) {
        char b[NODE_ID_LEN + 1];

        node_id_from_public_key(id, b);
        snprintf(out, 13, "%.12s", b);
}

static int rearm(sd_event_source *s, uint64_t interval) {
        uint64_t now;
        int r;

        r = sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(s, now + interval);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* ---- Sending ---- */

static int send_envelope(struct accounts *a, const uint8_t to[32], Swarm__JobEnvelope *e) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;
        int r;

        if (!a->network)
                return -ENETDOWN;
        r = job_encode(e, SMALL_MESSAGE_MAX, &data, &size);
        if (r < 0)
                return r;
        return network_send_job(a->network, to, data, size);
}

/* ---- Paying and being paid: the queue and its group commit ---- */

enum op_kind {
        OP_PAY,
        OP_SERVED,
};

/* struct accounts_payment is an OP_PAY. */
struct accounts_payment {
        enum op_kind kind;
        struct accounts_payment *next;
        uint8_t job_id[16];
        uint8_t peer[32];
        char skill[64];
        uint64_t price;
        uint8_t *data;                  /* OP_PAY: the result to keep */
        size_t size;
        accounts_paid_fn paid;          /* NULL once forgotten */
        void *userdata;
        int status;
        bool ran;                       /* OP_PAY: in the transfer of an earlier payment to its payee */
        /* OP_PAY with a result to keep (data, size) for its submitter. */
        char *keep_key;
        uint32_t keep_owner;
};

static char *mfree_str(char *p) {
        free(p);
        return NULL;
}

static void op_free(struct accounts_payment *op) {
        free(op->data);
        free(op->keep_key);
        free(op);
}

struct pay_context {
        struct accounts *a;
        const uint8_t *payee;
};

static int sign_transfer(uint64_t seq, uint64_t amount, struct transfer *ret, void *userdata) {
        struct pay_context *p = userdata;

        return credits_sign(p->a->credits, p->payee, amount, seq, ret);
}

/* first and every later payment of the batch to its payee: one transfer for
 * all (ledger_pay_transfer()), and the results to keep, in the batch. */
static void pay_run(struct accounts *a, struct accounts_payment *first, uint64_t now) {
        _cleanup_(transfer_clear) struct transfer t = {};
        _cleanup_free_ struct ledger_pay_job *jobs = NULL;
        _cleanup_free_ struct accounts_payment **ops = NULL;
        struct pay_context ctx = { .a = a, .payee = first->peer };
        uint64_t total = 0;
        size_t n = 0;
        char who[13];
        int r;

        for (struct accounts_payment *o = first; o; o = o->next)
                n += o->kind == OP_PAY && !o->ran && memcmp(o->peer, first->peer, 32) == 0;
        jobs = calloc(n, sizeof(*jobs));
        ops = calloc(n, sizeof(*ops));
        n = 0;
        for (struct accounts_payment *o = first; o; o = o->next) {
                if (o->kind != OP_PAY || o->ran || memcmp(o->peer, first->peer, 32) != 0)
                        continue;
                o->ran = true;
                total = total + o->price < total ? UINT64_MAX : total + o->price;
                if (jobs && ops) {
                        jobs[n] = (struct ledger_pay_job) { .job_id = o->job_id, .skill = o->skill, .price = o->price };
                        ops[n++] = o;
                } else
                        o->status = -ENOMEM;
        }
        /* Their reservations end here: signed now, or never. */
        a->reserved -= total < a->reserved ? total : a->reserved;
        if (n == 0)
                return;

        short_id(first->peer, who);
        r = a->credits ? ledger_pay_transfer(a->ledger, first->peer, jobs, n, sign_transfer, &ctx, now, &t)
                       : -ENOTCONN;
        if (r < 0) {
                if (r == -EDQUOT)
                        log_error("Cannot pay %s for %zu %s job%s: this node holds too few credits (it can spend "
                                  "%" PRIu64 " µcredits); the results are not handed over.", who, n, first->skill,
                                  n == 1 ? "" : "s", a->credits ? credits_spendable(a->credits) : 0);
                else
                        log_error_errno(r, "Cannot pay %s for %zu %s job%s: %m", who, n, first->skill,
                                        n == 1 ? "" : "s");
                for (size_t i = 0; i < n; i++)
                        ops[i]->status = r;
                return;
        }
        if (r > 0) {
                log_debug("Paying %s %" PRIu64 " µcredits for %zu job%s: transfer #%" PRIu64 ".", who, t.amount, n,
                          n == 1 ? "" : "s", t.seq);
                if (credits_stage(a->credits, &t) < 0)
                        log_warning("Out of memory: our transfer #%" PRIu64 " to %s is stored and goes out at the "
                                    "next start.", t.seq, who);
        }
        for (size_t i = 0; i < n; i++) {
                struct accounts_payment *op = ops[i];

                op->status = 0;         /* paid now, or before: not twice */
                /* In the same transaction: kept if and only if paid. */
                if (op->keep_key) {
                        int k = ledger_keep_result(a->ledger, op->keep_owner, op->keep_key, op->job_id, op->data,
                                                   op->size, now, now + ACCOUNTS_KEEP_USEC);
                        if (k < 0)
                                log_warning_errno(k, "Cannot keep the result of a %s job for its submitter: %m",
                                                  op->skill);
                }
        }
}

static void op_run(struct accounts *a, struct accounts_payment *op, uint64_t now) {
        char who[13];

        switch (op->kind) {
        case OP_PAY:
                if (!op->ran)
                        pay_run(a, op, now);
                break;
        case OP_SERVED:
                op->status = ledger_served(a->ledger, op->job_id, op->skill, op->peer, op->price, now);
                if (op->status < 0 && op->status != -EALREADY) {
                        short_id(op->peer, who);
                        log_error_errno(op->status, "Cannot record a %s job served to %s in the ledger: %m",
                                        op->skill, who);
                }
                break;
        }
}

/* Writes everything queued in one transaction, then lets out what waited
 * for it: our transfers (broadcast), results, paid callbacks. */
static void flush(struct accounts *a) {
        struct accounts_payment *ops = TAKE_PTR(a->pending);
        uint64_t now = accounts_now();
        bool full;
        int r;

        a->pending_tail = &a->pending;
        a->n_pending = 0;
        a->flush_timer = sd_event_source_disable_unref(a->flush_timer);
        if (a->flush_defer)
                (void) sd_event_source_set_enabled(a->flush_defer, SD_EVENT_OFF);
        if (!ops)
                return;

        /* Money (our transfers) is synced; a batch of served records
         * alone is not: losing the last of them to a power cut only
         * understates what requesters owe us. */
        full = false;
        for (struct accounts_payment *op = ops; op; op = op->next)
                full = full || op->kind != OP_SERVED;
        r = ledger_batch_begin(a->ledger, full);
        if (r < 0)
                /* The payments' reservations end, as after a failed commit. */
                for (struct accounts_payment *op = ops; op; op = op->next)
                        if (op->kind == OP_PAY && !op->ran) {
                                op->ran = true;
                                a->reserved -= op->price < a->reserved ? op->price : a->reserved;
                        }
        if (r >= 0) {
                for (struct accounts_payment *op = ops; op; op = op->next)
                        op_run(a, op, now);
                r = ledger_batch_commit(a->ledger);
        }
        if (r < 0) {
                log_error_errno(r, "Cannot write to the ledger %s: %m", a->path);
                for (struct accounts_payment *op = ops; op; op = op->next)
                        op->status = r;
                /* Not stored, so never seen: their seqs are free again. */
                credits_staged_abort(a->credits);
        } else
                /* Durable: now they may leave. */
                credits_staged_commit(a->credits);

        while (ops) {
                struct accounts_payment *op = ops;

                ops = op->next;
                if (op->paid)
                        op->paid(op->status, op->userdata);
                op_free(op);
        }
}

void accounts_flush(struct accounts *a) {
        if (a)
                flush(a);
}

static int on_flush(sd_event_source *s, void *userdata) {
        flush(userdata);
        return 0;
}

static int on_flush_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        flush(userdata);
        return 0;
}

static int enqueue(struct accounts *a, struct accounts_payment *op) {
        int r;

        /* In arrival order: payments to one payee go in one transfer. */
        *a->pending_tail = op;
        a->pending_tail = &op->next;
        if (a->n_pending++ == 0) {
                uint64_t now;

                /* As soon as the loop has nothing more urgent to do (what
                 * the events before it queued shares the write), or after
                 * ACCOUNTS_FLUSH_USEC when it never runs dry. */
                r = sd_event_now(a->event, CLOCK_MONOTONIC, &now);
                if (r >= 0)
                        r = sd_event_add_time(a->event, &a->flush_timer, CLOCK_MONOTONIC, now + ACCOUNTS_FLUSH_USEC,
                                              1, on_flush_timer, a);
                if (r >= 0)
                        r = sd_event_source_set_enabled(a->flush_defer, SD_EVENT_ON);
                if (r < 0) {
                        log_warning_errno(r, "Cannot schedule a ledger write, writing now: %m");
                        flush(a);
                }
        } else if (a->n_pending >= ACCOUNTS_FLUSH_MAX)
                flush(a);
        return 0;
}

static struct accounts_payment *op_new(enum op_kind kind, const uint8_t *job_id, const char *skill,
                                       const uint8_t peer[32], uint64_t price) {
        struct accounts_payment *op = calloc(1, sizeof(*op));

        if (!op)
                return NULL;
        op->kind = kind;
        if (job_id)
                memcpy(op->job_id, job_id, 16);
        memcpy(op->peer, peer, 32);
        snprintf(op->skill, sizeof(op->skill), "%s", skill ?: "");
        op->price = price;
        return op;
}


int accounts_pay_and_keep(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                          uint64_t price, const struct accounts_keep *keep, accounts_paid_fn paid, void *userdata,
                          struct accounts_payment **ret) {
        struct accounts_payment *op;
        char who[13];

        if (!a || !job_id || !skill || !payee || (keep && (!keep->key || (!keep->result && keep->size > 0))))
                return -EINVAL;
        if (a->config.withhold_payments) {
                short_id(payee, who);
                log_debug("Not paying %s for a %s job: testing.withhold_payments.", who, skill);
                /* Not paid: kept on its own (a freeloader's results still
                 * come back once). */
                if (keep)
                        (void) accounts_keep(a, keep, job_id);
                return -EALREADY;       /* nothing to wait for */
        }
        /* Whole before it is queued: a full queue is written at once. */
        op = op_new(OP_PAY, job_id, skill, payee, price);
        if (!op)
                return -ENOMEM;
        op->paid = paid;
        op->userdata = userdata;
        /* Held for it until it is signed (pay_run()). */
        a->reserved = a->reserved + price < a->reserved ? UINT64_MAX : a->reserved + price;
        if (keep) {
                op->keep_key = strdup(keep->key);
                op->data = keep->size ? malloc(keep->size) : NULL;
                if (!op->keep_key || (keep->size && !op->data)) {
                        /* The payment stands; the result is not kept. */
                        op->keep_key = mfree_str(op->keep_key);
                        log_warning("Out of memory: the result of a %s job is not kept for its submitter.", skill);
                } else {
                        if (keep->size)
                                memcpy(op->data, keep->result, keep->size);
                        op->size = keep->size;
                        op->keep_owner = keep->owner;
                }
        }
        if (ret)
                *ret = op;
        return enqueue(a, op);
}

int accounts_pay(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                 uint64_t price, accounts_paid_fn paid, void *userdata, struct accounts_payment **ret) {
        return accounts_pay_and_keep(a, job_id, skill, payee, price, NULL, paid, userdata, ret);
}

int accounts_keep(struct accounts *a, const struct accounts_keep *keep, const uint8_t job_id[16]) {
        uint64_t now = accounts_now();

        if (!a || !keep || !job_id)
                return -EINVAL;
        return ledger_keep_result(a->ledger, keep->owner, keep->key, job_id, keep->result, keep->size, now,
                                  now + ACCOUNTS_KEEP_USEC);
}

int accounts_kept_result(struct accounts *a, uint32_t owner, const char *key, void **ret, size_t *ret_size) {
        if (!a)
                return -ENOENT;
        return ledger_kept_result(a->ledger, owner, key, accounts_now(), ret, ret_size);
}

void accounts_payment_forget(struct accounts_payment *p) {
        if (p)
                p->paid = NULL;
}

int accounts_served(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t requester[32],
                    uint64_t price, accounts_paid_fn recorded, void *userdata) {
        struct accounts_payment *op;

        if (!a || !job_id || !requester)
                return -EINVAL;
        op = op_new(OP_SERVED, job_id, skill, requester, price);
        if (!op)
                return -ENOMEM;
        op->paid = recorded;
        op->userdata = userdata;
        return enqueue(a, op);
}

void accounts_handle_cheque(struct accounts *a, const uint8_t from[32], const Swarm__SignedCheque *cheque) {
        char who[13];

        if (!a || !cheque)
                return;
        /* A cheque is its payer's promise, with nothing behind it: it pays
         * nothing since transfers (issue 22).  Those received before stay
         * counted. */
        short_id(from, who);
        log_debug("Ignoring a cheque from %s: jobs are paid by transfer (a swarmd from before issue 22?).", who);
}

static struct boot_seen *boot_note(struct accounts *a, const uint8_t id[32], const Swarm__NodeRecord *record,
                                   bool *added);

/* The boot of a requester we serve is noted as we serve it, so that a
 * restart right after (before the next gossip round) is still seen. */
static void boot_note_requester(struct accounts *a, const uint8_t requester[32]) {
        struct member_info m;
        bool added;

        if (a->network && membership_find(network_membership(a->network), requester, &m) >= 0)
                (void) boot_note(a, requester, m.record, &added);
}

int accounts_admit(struct accounts *a, const uint8_t requester[32], uint64_t price, char *error, size_t size) {
        uint64_t debt;
        int r;

        if (!a)
                return 0;
        boot_note_requester(a, requester);
        if (a->config.debt_limit == 0)
                return 0;
        r = ledger_debt(a->ledger, requester, &debt);
        if (r < 0) {
                snprintf(error, size, "cannot read the ledger: %s", strerror(-r));
                return r;
        }
        if (debt > a->config.debt_limit || price > a->config.debt_limit - debt) {
                snprintf(error, size,
                         "unpaid debt of %" PRIu64 " micro-credits plus this job's %" PRIu64
                         " would pass this provider's limit of %" PRIu64,
                         debt, price, a->config.debt_limit);
                return -EDQUOT;
        }
        return 0;
}

/* ---- Reputation ---- */

static int save_reputation(struct accounts *a) {
        _cleanup_free_ struct reputation_row *rows = NULL;
        _cleanup_free_ struct ledger_reputation *out = NULL;
        size_t n = 0;
        int r;

        r = reputation_export(a->reputation, accounts_now(), &rows, &n);
        if (r < 0 || n == 0)
                return r;
        out = calloc(n, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                memcpy(out[i].peer, rows[i].peer, 32);
                snprintf(out[i].skill, sizeof(out[i].skill), "%s", rows[i].skill);
                out[i].successes = rows[i].successes;
                out[i].failures = rows[i].failures;
                out[i].latency_ewma_usec = rows[i].latency_ewma_usec;
                out[i].throughput_ratio = rows[i].throughput_ratio;
                out[i].updated_at = rows[i].updated_at;
        }
        r = ledger_save_reputation(a->ledger, out, n);
        if (r < 0)
                log_warning_errno(r, "Cannot save reputation to %s: %m", a->path);
        return r;
}

static int load_reputation(struct accounts *a) {
        _cleanup_free_ struct ledger_reputation *rows = NULL;
        size_t n = 0;
        int r;

        r = ledger_load_reputation(a->ledger, &rows, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct reputation_row row = {
                        .successes = rows[i].successes,
                        .failures = rows[i].failures,
                        .latency_ewma_usec = rows[i].latency_ewma_usec,
                        .throughput_ratio = rows[i].throughput_ratio,
                        .updated_at = rows[i].updated_at,
                };
                memcpy(row.peer, rows[i].peer, 32);
                snprintf(row.skill, sizeof(row.skill), "%s", rows[i].skill);
                (void) reputation_import(a->reputation, &row);
        }
        return 0;
}

static void relay_keep(struct accounts *a, const uint8_t issuer[32], uint64_t version,
                       const Swarm__SignedOpinion *s) {
        struct relayed *slot = NULL;

        for (size_t i = 0; i < a->n_relay; i++)
                if (memcmp(a->relay[i].issuer, issuer, 32) == 0)
                        slot = &a->relay[i];
        if (!slot) {
                if (a->n_relay < RELAY_MAX)
                        slot = &a->relay[a->n_relay++];
                else
                        slot = &a->relay[randombytes_uniform(RELAY_MAX)];
        }
        free(slot->body);
        free(slot->signature);
        *slot = (struct relayed) { .version = version };
        memcpy(slot->issuer, issuer, 32);
        slot->body = malloc(s->body.len);
        slot->signature = malloc(s->signature.len);
        if (!slot->body || !slot->signature) {
                free(slot->body);
                free(slot->signature);
                slot->body = slot->signature = NULL;
                return;
        }
        memcpy(slot->body, s->body.data, s->body.len);
        memcpy(slot->signature, s->signature.data, s->signature.len);
        slot->body_size = s->body.len;
}

void accounts_handle_opinions(struct accounts *a, const uint8_t from[32], const Swarm__OpinionBatch *batch) {
        char who[13];

        if (!a || !batch)
                return;
        short_id(from, who);
        for (size_t i = 0; i < batch->n_opinions; i++) {
                _cleanup_free_ struct reputation_opinion_entry *entries = NULL;
                const char *reason = NULL;
                uint8_t issuer[32];
                uint64_t version;
                size_t n = 0;
                int r;

                r = opinion_open(batch->opinions[i], issuer, &version, &entries, &n, &reason);
                if (r < 0) {
                        log_debug("Dropping an opinion relayed by %s: %s.", who, reason ?: strerror(-r));
                        continue;
                }
                if (memcmp(issuer, a->identity->public_key, 32) == 0)
                        continue;
                r = reputation_add_opinion(a->reputation, issuer, version, entries, n, accounts_now());
                if (r < 0)
                        continue;       /* not newer than what we hold */
                relay_keep(a, issuer, version, batch->opinions[i]);
                a->trust_dirty = true;
        }
}

/* Our own signed opinion and up to OPINION_BATCH_MAX - 1 others', to a
 * few random alive peers. */
static void gossip_opinions(struct accounts *a) {
        _cleanup_free_ struct reputation_opinion_entry *entries = NULL;
        Swarm__SignedOpinion own = SWARM__SIGNED_OPINION__INIT, relayed[OPINION_BATCH_MAX - 1];
        Swarm__SignedOpinion *list[OPINION_BATCH_MAX];
        Swarm__OpinionBatch batch = SWARM__OPINION_BATCH__INIT;
        Swarm__JobEnvelope e = SWARM__JOB_ENVELOPE__INIT;
        struct membership *ms;
        size_t n = 0, n_list = 0, count;
        uint64_t now = accounts_now();
        bool have_own = false;

        if (!a->network)
                return;
        ms = network_membership(a->network);
        count = membership_count(ms);
        if (count < 2)
                return;

        if (reputation_build_opinion(a->reputation, now, &entries, &n) >= 0 && n > 0 &&
            opinion_sign(a->identity->public_key, now, now, entries, n, a->identity->secret_key, &own) >= 0) {
                list[n_list++] = &own;
                have_own = true;
        }
        for (size_t i = 0; i < a->n_relay && n_list < OPINION_BATCH_MAX; i++) {
                /* A random sample when there are more than fit. */
                size_t j = a->n_relay <= OPINION_BATCH_MAX - 1 ? i : randombytes_uniform((uint32_t) a->n_relay);
                struct relayed *r = &a->relay[j];

                if (!r->body)
                        continue;
                relayed[n_list - have_own] = (Swarm__SignedOpinion) SWARM__SIGNED_OPINION__INIT;
                relayed[n_list - have_own].body = (ProtobufCBinaryData) { .len = r->body_size, .data = r->body };
                relayed[n_list - have_own].signature = (ProtobufCBinaryData) { .len = 64, .data = r->signature };
                list[n_list] = &relayed[n_list - have_own];
                n_list++;
        }
        if (n_list == 0)
                return;
        batch.opinions = list;
        batch.n_opinions = n_list;
        e.body_case = SWARM__JOB_ENVELOPE__BODY_OPINIONS;
        e.opinions = &batch;

        for (unsigned k = 0; k < GOSSIP_FANOUT; k++) {
                size_t start = randombytes_uniform((uint32_t) count);

                for (size_t i = 0; i < count; i++) {
                        struct member_info m;

                        if (membership_get(ms, (start + i) % count, &m) < 0 || m.self || m.state != MEMBER_ALIVE)
                                continue;
                        (void) send_envelope(a, m.id, &e);
                        break;
                }
        }
        if (have_own)
                opinion_signed_clear(&own);
}

/* ---- Timers ---- */

/* The boot of requester id we know, added (as its record says now) when
 * new; NULL without memory or a boot_id in its record. */
static struct boot_seen *boot_note(struct accounts *a, const uint8_t id[32], const Swarm__NodeRecord *record,
                                   bool *added) {
        struct boot_seen *grown;

        *added = false;
        for (size_t k = 0; k < a->n_boots; k++)
                if (memcmp(a->boots[k].id, id, 32) == 0)
                        return &a->boots[k];
        if (!record || record->boot_id.len != WIRE_BOOT_ID_SIZE)
                return NULL;
        grown = reallocarray(a->boots, a->n_boots + 1, sizeof(*grown));
        if (!grown)
                return NULL;
        a->boots = grown;
        grown = &a->boots[a->n_boots++];
        *grown = (struct boot_seen) {};
        memcpy(grown->id, id, 32);
        memcpy(grown->boot, record->boot_id.data, WIRE_BOOT_ID_SIZE);
        *added = true;
        return grown;
}

/* Provider: notices requesters that restarted (another boot_id in their
 * record) and, RESTART_GRACE rounds later, writes off what they had been
 * served by then and did not pay: delivered to a process that died before
 * paying, never to be paid, so not debt (it would count against their
 * debt limit for ever). */
static void reconcile_restarts(struct accounts *a, uint64_t now_mono) {
        struct membership *ms = a->network ? network_membership(a->network) : NULL;

        for (size_t i = 0; ms && i < membership_count(ms); i++) {
                struct member_info m;
                struct boot_seen *b = NULL;

                if (membership_get(ms, i, &m) < 0 || m.self || m.record->boot_id.len != WIRE_BOOT_ID_SIZE)
                        continue;

                bool added;

                b = boot_note(a, m.id, m.record, &added);
                if (!b || added)
                        continue;       /* first sight: nothing to compare with */
                if (memcmp(b->boot, m.record->boot_id.data, WIRE_BOOT_ID_SIZE) != 0) {
                        memcpy(b->boot, m.record->boot_id.data, WIRE_BOOT_ID_SIZE);
                        uint64_t served;

                        b->seen_at = accounts_now();
                        /* Only a requester we ever served can owe us. */
                        if (ledger_served_total(a->ledger, b->id, &served) >= 0 && served > 0)
                                b->settle_usec = now_mono + RESTART_GRACE * a->config.gossip_interval_usec;
                }
        }

        for (size_t k = 0; k < a->n_boots; k++) {
                struct boot_seen *b = &a->boots[k];
                uint64_t amount = 0;
                char who[13];
                int r;

                if (b->settle_usec == 0 || now_mono < b->settle_usec)
                        continue;
                b->settle_usec = 0;
                r = ledger_write_off(a->ledger, b->id, &(struct ledger_write_off_rule) {
                                             .served_since = b->seen_at > RESTART_WINDOW_USEC ?
                                                             b->seen_at - RESTART_WINDOW_USEC : 0,
                                             .served_until = b->seen_at,
                                             /* No debt limit: nothing to protect. */
                                             .daily_cap = a->config.debt_limit ?: UINT64_MAX,
                                     }, accounts_now(), &amount);
                short_id(b->id, who);
                if (r < 0)
                        log_warning_errno(r, "Cannot write off what %s left unpaid when it restarted: %m", who);
                else if (amount > 0)
                        log_info("Requester %s restarted: %" PRIu64 " µcredits of work it was served and never paid "
                                 "for (its results died with it) written off; it is not debt.", who, amount);
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct accounts *a = userdata;
        uint64_t interval;

        if (s == a->save_timer) {
                (void) save_reputation(a);
                interval = SAVE_INTERVAL_USEC;
        } else if (s == a->gossip_timer) {
                if (a->trust_dirty) {
                        reputation_update_trust(a->reputation, accounts_now());
                        a->trust_dirty = false;
                }
                gossip_opinions(a);
                reconcile_restarts(a, usec);
                interval = a->config.gossip_interval_usec;
        } else
                return 0;
        (void) rearm(s, interval);
        return 0;
}

static int add_timer(struct accounts *a, sd_event_source **s, uint64_t interval) {
        uint64_t now;
        int r;

        if (interval == 0)
                return 0;
        r = sd_event_now(a->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        return sd_event_add_time(a->event, s, CLOCK_MONOTONIC, now + interval, 0, on_timer, a);
}

/* ---- Life cycle ---- */

int accounts_new(sd_event *event, const struct accounts_config *config, const struct identity *identity,
                 struct network *network, const char *path, struct accounts **ret, char **error) {
        struct reputation_params rp;
        struct accounts *a;
        int r;

        *error = NULL;
        if (!event || !config || !identity || !path || !ret)
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        *a = (struct accounts) {
                .event = event,
                .config = *config,
                .identity = identity,
                .network = network,
                .path = strdup(path),
        };
        if (!a->path) {
                free(a);
                return -ENOMEM;
        }
        r = ledger_open(path, identity->public_key, &a->ledger, error);
        if (r < 0)
                goto fail;
        reputation_params_default(&rp);
        if (config->half_life_usec > 0)
                rp.half_life_usec = (double) config->half_life_usec;
        r = reputation_new(identity->public_key, &rp, &a->reputation);
        if (r < 0)
                goto fail;
        r = load_reputation(a);
        if (r < 0)
                log_warning_errno(r, "Cannot load the saved reputation from %s, starting afresh: %m", path);
        reputation_update_trust(a->reputation, accounts_now());

        a->pending_tail = &a->pending;
        r = sd_event_add_defer(event, &a->flush_defer, on_flush, a);
        if (r >= 0)
                /* After the events that may queue more: see enqueue(). */
                r = sd_event_source_set_priority(a->flush_defer, SD_EVENT_PRIORITY_NORMAL + 50);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->flush_defer, SD_EVENT_OFF);
        if (r < 0)
                goto fail;
        r = add_timer(a, &a->save_timer, SAVE_INTERVAL_USEC);
        if (r >= 0 && network)
                r = add_timer(a, &a->gossip_timer, config->gossip_interval_usec);
        if (r < 0)
                goto fail;
        if (config->withhold_payments)
                log_warning("testing.withhold_payments is on: this node does not pay for the work it gets "
                            "(a fault-injection switch). Providers will stop serving it at their debt limit.");
        *ret = a;
        return 0;
fail:
        if (!*error && asprintf(error, "%s: %s", path, strerror(-r)) < 0)
                *error = NULL;
        accounts_free(a);
        return r;
}

void accounts_stop(struct accounts *a) {
        if (!a || !a->ledger)
                return;
        flush(a);       /* what is queued is owed: write it, and send the transfers */
        if (a->reputation)
                (void) save_reputation(a);
}

struct accounts *accounts_free(struct accounts *a) {
        if (!a)
                return NULL;
        if (a->pending)
                log_warning("Dropping %zu ledger writes: the accounts were freed without accounts_stop().",
                            a->n_pending);
        while (a->pending) {
                struct accounts_payment *op = a->pending;

                a->pending = op->next;
                if (op->paid)
                        op->paid(-ECANCELED, op->userdata);
                op_free(op);
        }
        a->flush_defer = sd_event_source_disable_unref(a->flush_defer);
        a->flush_timer = sd_event_source_disable_unref(a->flush_timer);
        free(a->boots);
        a->save_timer = sd_event_source_disable_unref(a->save_timer);
        a->gossip_timer = sd_event_source_disable_unref(a->gossip_timer);
        for (size_t i = 0; i < a->n_relay; i++) {
                free(a->relay[i].body);
                free(a->relay[i].signature);
        }
        reputation_free(a->reputation);
        ledger_free(a->ledger);
        free(a->path);
        free(a);
        return NULL;
}

struct ledger *accounts_ledger(struct accounts *a) {
        return a ? a->ledger : NULL;
}

struct reputation *accounts_reputation(struct accounts *a) {
        return a ? a->reputation : NULL;
}

void accounts_set_credits(struct accounts *a, struct credits *credits) {
        if (a)
                a->credits = credits;
}

uint64_t accounts_available(struct accounts *a) {
        uint64_t spendable;

        if (!a || !a->credits)
                return 0;
        spendable = credits_spendable(a->credits);
        return spendable > a->reserved ? spendable - a->reserved : 0;
}

uint64_t accounts_reserved(struct accounts *a) {
        return a ? a->reserved : 0;
}

int accounts_reserve(struct accounts *a, uint64_t amount) {
        if (!a)
                return -EINVAL;
        if (accounts_available(a) < amount)
                return -EDQUOT;
        a->reserved += amount;
        return 0;
}

void accounts_unreserve(struct accounts *a, uint64_t amount) {
        if (a)
                a->reserved -= amount < a->reserved ? amount : a->reserved;
}
