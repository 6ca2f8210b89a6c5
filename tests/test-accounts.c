/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The accounts glue without a network: a requester's accounts pay jobs by
 * transfer (its credits alone hold every credit of its book, minted by a
 * test issuer, so its own word delivers them), a provider's accounts count
 * the delivered transfer and lift the debt limit; nothing is paid beyond
 * what is held; reputation survives a restart through the ledger; demand
 * pricing's defaults and the challenge's judgement and sizing. */

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "challenge-verdict.h"
#include "credits.h"
#include "demand.h"
#include "identity.h"
#include "macro.h"
#include "opinion.h"
#include "swarmd-harness.h"

static char root[64];
static sd_event *event;
static struct identity *req_id, *prov_id, *issuer_id;

static void setup(void) {
        char dir[128];
        bool created;

        cr_assert_geq(sodium_init(), 0);
        strcpy(root, "/tmp/accounts-test-XXXXXX");
        cr_assert_not_null(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/req", root);
        cr_assert_eq(identity_load_or_create(dir, &req_id, &created), 0);
        snprintf(dir, sizeof(dir), "%s/prov", root);
        cr_assert_eq(identity_load_or_create(dir, &prov_id, &created), 0);
        snprintf(dir, sizeof(dir), "%s/issuer", root);
        cr_assert_eq(identity_load_or_create(dir, &issuer_id, &created), 0);
        cr_assert_geq(sd_event_new(&event), 0);
}

static void teardown(void) {
        identity_free(req_id);
        identity_free(prov_id);
        identity_free(issuer_id);
        sd_event_unref(event);
        rm_rf(root);
}

static struct accounts *open_accounts(const char *name, const struct identity *id, uint64_t debt_limit) {
        struct accounts_config c = {
                .debt_limit = debt_limit,
                .half_life_usec = 3600ULL * 1000 * 1000,
        };
        struct accounts *a = NULL;
        char path[128], *error = NULL;
        int r;

        snprintf(path, sizeof(path), "%s/%s.db", root, name);
        r = accounts_new(event, &c, id, NULL, path, &a, &error);
        cr_assert_eq(r, 0, "%s", error ?: strerror(-r));
        return a;
}

/* The issuer's mint #seq of amount to id, delivered in path's ledger as a
 * broadcast would have: the genesis of a test book. */
static void mint_into(const char *name, const struct identity *id, uint64_t seq, uint64_t amount) {
        _cleanup_(transfer_clear) struct transfer t = { .seq = seq, .amount = amount };
        struct ledger *l = NULL;
        char path[128], *error = NULL;

        memcpy(t.payer, issuer_id->public_key, 32);
        memcpy(t.payee, id->public_key, 32);
        cr_assert_eq(transfer_sign(&t, issuer_id->secret_key), 0);
        snprintf(path, sizeof(path), "%s/%s.db", root, name);
        cr_assert_eq(ledger_open(path, id->public_key, &l, &error), 0, "%s", error ?: "");
        cr_assert_eq(ledger_transfer_delivered(l, &t, accounts_now()), 0);
        ledger_free(l);
}

/* Accounts that pay: credits on their ledger, without a network. */
static struct credits *open_credits(struct accounts *a, const struct identity *id) {
        struct credits *c = NULL;

        cr_assert_eq(credits_new(event, id, NULL, accounts_ledger(a),
                                 (const uint8_t (*)[TRANSFER_KEY_SIZE]) issuer_id->public_key, 1, &c), 0);
        accounts_set_credits(a, c);
        return c;
}

static void close_paying(struct accounts *a, struct credits *c) {
        accounts_stop(a);
        accounts_set_credits(a, NULL);
        credits_free(c);
        accounts_free(a);
}

/* Every transfer of payer's in from's ledger, delivered into to's, as the
 * broadcast would. */
struct copy_args {
        struct ledger *to;
        const uint8_t *payer;
        unsigned copied;
};

static int copy_one(const struct transfer *t, bool delivered, void *userdata) {
        struct copy_args *a = userdata;

        if (!delivered || memcmp(t->payer, a->payer, 32) != 0)
                return 0;
        if (ledger_transfer_delivered(a->to, t, accounts_now()) == 0)
                a->copied++;
        return 0;
}

static unsigned deliver_transfers(struct accounts *from, struct accounts *to, const uint8_t payer[32]) {
        struct copy_args a = { .to = accounts_ledger(to), .payer = payer };

        cr_assert_eq(ledger_transfer_load(accounts_ledger(from), copy_one, &a), 0);
        return a.copied;
}

static void job_id(uint8_t id[16], unsigned k) {
        memset(id, 0, 16);
        memcpy(id, &k, sizeof(k));
}

Test(accounts, debt_limit_refuses_then_resumes_when_paid_by_transfer, .init = setup, .fini = teardown) {
        struct accounts *req, *prov = open_accounts("prov", prov_id, 300);
        struct credits *credits;
        char error[256] = "";
        uint64_t debt = 0;
        uint8_t id[16];

        mint_into("req", req_id, 1, 1000);
        req = open_accounts("req", req_id, 0);
        credits = open_credits(req, req_id);
        for (unsigned k = 0; k < 4; k++) {
                cr_assert_eq(accounts_admit(prov, req_id->public_key, 64, error, sizeof(error)), 0, "%s", error);
                job_id(id, k);
                cr_assert_eq(accounts_served(prov, id, "gemm", req_id->public_key, 64, NULL, NULL), 0);
        }
        /* Recording the same job again does not count it twice. */
        cr_assert_eq(accounts_served(prov, id, "gemm", req_id->public_key, 64, NULL, NULL), 0);
        /* Queued, not written yet: the loop (or a flush) writes them together. */
        cr_assert_eq(ledger_debt(accounts_ledger(prov), req_id->public_key, &debt), 0);
        cr_assert_eq(debt, 0);
        accounts_flush(prov);
        cr_assert_eq(ledger_debt(accounts_ledger(prov), req_id->public_key, &debt), 0);
        cr_assert_eq(debt, 256);
        cr_assert_eq(accounts_admit(prov, req_id->public_key, 64, error, sizeof(error)), -EDQUOT);
        cr_assert(strstr(error, "unpaid debt of 256") && strstr(error, "limit of 300"), "%s", error);

        /* The requester pays for two of them: one transfer, delivered (it
         * holds every credit of its book), lifts the block once the
         * provider delivered it too. */
        for (unsigned k = 0; k < 2; k++) {
                job_id(id, k);
                cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 64, NULL, NULL, NULL), 0);
        }
        /* Paying the same job again changes nothing. */
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 64, NULL, NULL, NULL), 0);
        accounts_flush(req);
        cr_assert_eq(deliver_transfers(req, prov, req_id->public_key), 1, "one transfer for the batch");
        cr_assert_eq(ledger_debt(accounts_ledger(prov), req_id->public_key, &debt), 0);
        cr_assert_eq(debt, 128);
        cr_assert_eq(accounts_admit(prov, req_id->public_key, 64, error, sizeof(error)), 0, "%s", error);
        {
                struct ledger_balance b;
                struct credits_view v;

                cr_assert_eq(ledger_get_balance(accounts_ledger(req), &b), 0);
                cr_assert_eq(b.earned, 1000);
                cr_assert_eq(b.spent, 128);
                cr_assert_eq(b.in_flight, 0);
                cr_assert_eq(b.balance, 1000 - 128);
                credits_get_view(credits, &v);
                cr_assert_eq(v.balance + v.pending, 1000 - 128, "the book agrees with the ledger");
                cr_assert_eq(ledger_get_balance(accounts_ledger(prov), &b), 0);
                cr_assert_eq(b.earned, 128);
                cr_assert_eq(b.balance, 128);
                cr_assert_eq(b.owed_to_us, 128);
        }
        close_paying(req, credits);
        accounts_stop(prov);
        accounts_free(prov);
}

static void count_paid(int status, void *userdata) {
        cr_assert_eq(status, 0);
        (*(int *) userdata)++;
}

Test(accounts, payments_are_written_together_one_transfer_per_payee_and_reported_from_the_loop, .init = setup,
     .fini = teardown) {
        struct accounts *req;
        struct credits *credits;
        struct credits_view v;
        struct ledger_balance b;
        uint8_t id[16], other[32];
        int paid = 0;

        mint_into("req", req_id, 1, 1000);
        req = open_accounts("req", req_id, 0);
        credits = open_credits(req, req_id);
        randombytes_buf(other, sizeof(other));
        for (unsigned k = 0; k < 5; k++) {
                job_id(id, k);
                cr_assert_eq(accounts_pay(req, id, "gemm", k % 2 ? other : prov_id->public_key, 10, count_paid,
                                          &paid, NULL), 0);
        }
        /* A job paid twice in one batch counts once. */
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 10, count_paid, &paid, NULL), 0);
        cr_assert_eq(paid, 0, "reported paid before anything was written");
        cr_assert_eq(accounts_reserved(req), 60, "queued payments hold what they will spend");
        cr_assert_eq(ledger_get_balance(accounts_ledger(req), &b), 0);
        cr_assert_eq(b.spent + b.in_flight, 0);
        for (int i = 0; i < 100 && paid < 6; i++)
                cr_assert_geq(sd_event_run(event, 100 * 1000), 0);
        cr_assert_eq(paid, 6);
        cr_assert_eq(accounts_reserved(req), 0);
        cr_assert_eq(ledger_get_balance(accounts_ledger(req), &b), 0);
        cr_assert_eq(b.spent + b.in_flight, 50);
        cr_assert_eq(b.jobs_paid, 5);
        credits_get_view(credits, &v);
        cr_assert_eq(v.next_seq, 3, "one transfer to each of the two payees");
        close_paying(req, credits);
}

static void record_status(int status, void *userdata) {
        *(int *) userdata = status;
}

Test(accounts, a_requester_never_reserves_nor_pays_beyond_what_it_holds, .init = setup, .fini = teardown) {
        struct accounts *req;
        struct credits *credits;
        struct ledger_balance b;
        uint8_t id[16];
        int status = 1;

        mint_into("req", req_id, 1, 100);
        req = open_accounts("req", req_id, 0);
        cr_assert_eq(accounts_reserve(req, 1), -EDQUOT, "no credits attached: nothing can be paid");
        credits = open_credits(req, req_id);
        cr_assert_eq(accounts_available(req), 100);
        cr_assert_eq(accounts_reserve(req, 60), 0);
        cr_assert_eq(accounts_reserve(req, 50), -EDQUOT);
        cr_assert_eq(accounts_available(req), 40);
        accounts_unreserve(req, 60);
        cr_assert_eq(accounts_available(req), 100);

        /* A payment past the balance fails whole: the job is not recorded
         * as paid, nothing is signed. */
        job_id(id, 1);
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 101, record_status, &status, NULL), 0);
        accounts_flush(req);
        cr_assert_eq(status, -EDQUOT);
        cr_assert_eq(ledger_get_balance(accounts_ledger(req), &b), 0);
        cr_assert_eq(b.jobs_paid, 0);
        cr_assert_eq(b.spent + b.in_flight, 0);
        cr_assert_eq(accounts_reserved(req), 0);

        /* Exactly what it holds is fine; then nothing is left. */
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 100, record_status, &status, NULL), 0);
        accounts_flush(req);
        cr_assert_eq(status, 0);
        cr_assert_eq(accounts_available(req), 0);
        cr_assert_eq(ledger_get_balance(accounts_ledger(req), &b), 0);
        cr_assert_eq(b.balance, 0);
        close_paying(req, credits);
}

Test(accounts, a_job_paid_before_a_restart_is_not_paid_again, .init = setup, .fini = teardown) {
        struct accounts *req;
        struct credits *credits;
        struct credits_view v;
        uint8_t id[16];
        int status = 1;

        mint_into("req", req_id, 1, 1000);
        req = open_accounts("req", req_id, 0);
        credits = open_credits(req, req_id);
        job_id(id, 7);
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 30, NULL, NULL, NULL), 0);
        accounts_flush(req);
        close_paying(req, credits);

        req = open_accounts("req", req_id, 0);
        credits = open_credits(req, req_id);
        cr_assert_eq(accounts_pay(req, id, "gemm", prov_id->public_key, 30, record_status, &status, NULL), 0);
        accounts_flush(req);
        cr_assert_eq(status, 0, "paid: before");
        credits_get_view(credits, &v);
        cr_assert_eq(v.next_seq, 2, "no second transfer");
        cr_assert_eq(v.balance + v.pending, 970);
        close_paying(req, credits);
}

Test(accounts, cheques_pay_nothing_any_more, .init = setup, .fini = teardown) {
        struct accounts *prov = open_accounts("prov", prov_id, 0);
        struct cheque c = { .amount = 500, .issued_at = accounts_now() };
        Swarm__SignedCheque *s;
        uint8_t id[16], *buf = NULL;
        uint64_t debt;
        size_t size;

        job_id(id, 1);
        cr_assert_eq(accounts_served(prov, id, "gemm", req_id->public_key, 500, NULL, NULL), 0);
        accounts_flush(prov);
        /* A valid cheque from the requester: a promise with nothing behind
         * it. */
        memcpy(c.payer, req_id->public_key, 32);
        memcpy(c.payee, prov_id->public_key, 32);
        cr_assert_eq(cheque_sign(&c, req_id->secret_key, &buf, &size), 0);
        s = swarm__signed_cheque__unpack(NULL, size, buf);
        cr_assert_not_null(s);
        accounts_handle_cheque(prov, req_id->public_key, s);
        swarm__signed_cheque__free_unpacked(s, NULL);
        free(buf);
        accounts_flush(prov);
        cr_assert_eq(ledger_debt(accounts_ledger(prov), req_id->public_key, &debt), 0);
        cr_assert_eq(debt, 500);
        accounts_stop(prov);
        accounts_free(prov);
}

Test(accounts, reputation_survives_a_restart, .init = setup, .fini = teardown) {
        struct accounts *a = open_accounts("req", req_id, 0);
        struct reputation_view v;
        uint64_t now = accounts_now();

        for (int i = 0; i < 5; i++)
                cr_assert_eq(reputation_observe(accounts_reputation(a), prov_id->public_key, "gemm", true, now), 0);
        cr_assert_eq(reputation_observe(accounts_reputation(a), prov_id->public_key, "gemm", false, now), 0);
        cr_assert_eq(reputation_observe_throughput(accounts_reputation(a), prov_id->public_key, "gemm", 1e9, 3e9,
                                                   now), 0);
        accounts_stop(a);
        accounts_free(a);       /* saves */

        a = open_accounts("req", req_id, 0);
        reputation_get(accounts_reputation(a), prov_id->public_key, "gemm", accounts_now(), &v);
        cr_assert_float_eq(v.own_successes, 5.0, 0.01);
        cr_assert_float_eq(v.own_failures, 1.0, 0.01);
        cr_assert_float_eq(v.throughput_ratio, 1.0 / 3.0, 0.01);
        accounts_stop(a);
        accounts_free(a);
}

Test(accounts, a_ledger_of_another_node_is_refused, .init = setup, .fini = teardown) {
        struct accounts_config c = { .half_life_usec = 1000000 };
        struct accounts *a = open_accounts("req", req_id, 0), *b = NULL;
        char path[128], *error = NULL;

        accounts_stop(a);
        accounts_free(a);
        snprintf(path, sizeof(path), "%s/req.db", root);
        cr_assert_lt(accounts_new(event, &c, prov_id, NULL, path, &b, &error), 0);
        cr_assert_not_null(error);
        cr_assert(strstr(error, path), "the error does not name the file: %s", error);
        free(error);
}

Test(accounts, signed_opinions_from_peers_are_kept_and_forgeries_dropped, .init = setup, .fini = teardown) {
        struct accounts *a = open_accounts("req", req_id, 0);
        struct reputation_opinion_entry e = { .skill = "gemm", .successes = 9, .failures = 1 };
        Swarm__SignedOpinion good, *list[1] = { &good };
        Swarm__OpinionBatch batch = SWARM__OPINION_BATCH__INIT;
        uint8_t saved;

        memset(e.subject, 7, sizeof(e.subject));
        cr_assert_eq(opinion_sign(prov_id->public_key, 42, 1, &e, 1, prov_id->secret_key, &good), 0);
        batch.opinions = list;
        batch.n_opinions = 1;

        /* Tampered in transit: dropped. */
        saved = good.body.data[good.body.len - 1];
        good.body.data[good.body.len - 1] ^= 1;
        accounts_handle_opinions(a, prov_id->public_key, &batch);
        cr_assert_eq(reputation_opinion_version(accounts_reputation(a), prov_id->public_key), 0);
        good.body.data[good.body.len - 1] = saved;

        /* Relayed by anyone, it counts as its issuer's. */
        accounts_handle_opinions(a, req_id->public_key, &batch);
        cr_assert_eq(reputation_opinion_version(accounts_reputation(a), prov_id->public_key), 42);
        opinion_signed_clear(&good);
        accounts_stop(a);
        accounts_free(a);
}

Test(demand, unknown_skills_are_priced_at_base, .init = setup, .fini = teardown) {
        struct pricing_params p;
        struct demand *d = NULL;

        pricing_params_default(&p);
        cr_assert_float_eq(demand_multiplier(NULL, "gemm"), 1.0, 1e-12);
        cr_assert_eq(demand_new(event, NULL, &p, 1000000, &d), 0);
        cr_assert_float_eq(demand_multiplier(d, "gemm"), 1.0, 1e-12);
        demand_free(d);
        p.floor = -1;
        cr_assert_eq(demand_new(event, NULL, &p, 1000000, &d), -EINVAL);
}

Test(challenge, judged_by_the_signed_execution_time_checked_against_the_round_trip) {
        struct challenge_verdict v;

        /* 2 GFLOP in 20 ms on the provider, 120 ms round trip (a slow
         * link): 100 GFLOP/s, as advertised; 16.7 delivered. */
        challenge_judge(2e9, 120000, 1000, 20000, 100e9, &v);
        cr_assert_not(v.liar);
        cr_assert_float_eq(v.measured, 100e9, 1e6);
        cr_assert_float_eq(v.delivered, 2e9 / 0.12, 1e6);
        cr_assert_float_eq(v.ratio, 1.0, 1e-6);

        /* The same hardware advertising 3×: a third, under the line. */
        challenge_judge(2e9, 120000, 1000, 20000, 300e9, &v);
        cr_assert(v.liar);
        cr_assert_not(v.inconsistent);
        cr_assert_float_eq(v.ratio, 1.0 / 3.0, 1e-6);

        /* Times that do not fit the round trip: judged on the round trip. */
        challenge_judge(2e9, 20000, 15000, 10000, 100e9, &v);
        cr_assert(v.inconsistent);
        cr_assert(v.liar);
        cr_assert_float_eq(v.measured, 1e11, 1e6);
        challenge_judge(2e9, 20000, 0, 0, 100e9, &v);
        cr_assert(v.inconsistent);
}

Test(challenge, matrices_take_about_the_target_time_within_bounds) {
        /* 1 TFLOP/s for 100 ms: 2n³ = 1e11, n ≈ 3684, capped. */
        cr_assert_eq(challenge_size(1e12, 1ULL << 30), CHALLENGE_N_MAX);
        /* 10 GFLOP/s: 2n³ = 1e9, n ≈ 793. */
        cr_assert_eq(challenge_size(1e10, 1ULL << 30), 793);
        /* Unknown or tiny throughput: the smallest challenge. */
        cr_assert_eq(challenge_size(0, 1ULL << 30), CHALLENGE_N_MIN);
        cr_assert_eq(challenge_size(1e3, 1ULL << 30), CHALLENGE_N_MIN);
        /* Three n×n f32 matrices within half of a 1 MiB message: n ≤ 209. */
        cr_assert_eq(challenge_size(1e12, 1ULL << 20), 209);
}
