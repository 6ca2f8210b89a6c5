/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cheque.h"
#include "ledger.h"
#include "macro.h"

static int sign_with(const struct cheque *c, uint8_t **ret, size_t *ret_size, void *sk) {
        return cheque_sign(c, sk, ret, ret_size);
}

#define TMPDIR_TEMPLATE "/tmp/test-ledger-XXXXXX"
#define T0 1700000000000000ull          /* µs since the epoch */

struct node {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static char tmpdir[sizeof(TMPDIR_TEMPLATE)];
static struct node A, B, C;

static void setup(void) {
        memcpy(tmpdir, TMPDIR_TEMPLATE, sizeof(tmpdir));
        cr_assert_not_null(mkdtemp(tmpdir));
        cr_assert_geq(sodium_init(), 0);
        crypto_sign_keypair(A.pk, A.sk);
        crypto_sign_keypair(B.pk, B.sk);
        crypto_sign_keypair(C.pk, C.sk);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void teardown(void) {
        nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(ledger, .init = setup, .fini = teardown);

static void db_path(const char *name, char *out, size_t size) {
        snprintf(out, size, "%s/%s", tmpdir, name);
}

static struct ledger *open_as(const char *name, const struct node *n) {
        _cleanup_free_ char *error = NULL;
        struct ledger *l = NULL;
        char path[256];
        int r;

        db_path(name, path, sizeof(path));
        r = ledger_open(path, n->pk, &l, &error);
        cr_assert_eq(r, 0, "ledger_open(%s): %d %s", path, r, error ?: "");
        cr_assert_null(error);
        return l;
}

static void job_id(unsigned k, uint8_t out[CHEQUE_JOB_SIZE]) {
        memset(out, 0, CHEQUE_JOB_SIZE);
        memcpy(out, &k, sizeof(k));
        out[15] = 0xa5;
}

/* Pays job k and returns the amount of the cheque handed back. */
static uint64_t pay(struct ledger *l, const struct node *payer, const struct node *payee, unsigned k,
                    uint64_t price, uint64_t now) {
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t id[CHEQUE_JOB_SIZE];
        struct cheque c;
        size_t size;
        int r;

        job_id(k, id);
        r = ledger_pay(l, id, "gemm", payee->pk, price, sign_with, (void *) payer->sk, now, &buf, &size);
        cr_assert_eq(r, 0, "ledger_pay(job %u): %d", k, r);
        cr_assert_eq(cheque_open_bytes(buf, size, payee->pk, &c, NULL), 0);
        cr_assert_eq(memcmp(c.payer, payer->pk, 32), 0);
        cr_assert(c.has_last_job);
        cr_assert_eq(memcmp(c.last_job, id, CHEQUE_JOB_SIZE), 0);
        cr_assert_eq(c.issued_at, now);
        return c.amount;
}

static void served(struct ledger *l, const struct node *requester, unsigned k, uint64_t price, uint64_t now) {
        uint8_t id[CHEQUE_JOB_SIZE];

        job_id(k, id);
        cr_assert_eq(ledger_served(l, id, "gemm", requester->pk, price, now), 0);
}

static struct ledger_balance balance(struct ledger *l) {
        struct ledger_balance b;

        cr_assert_eq(ledger_get_balance(l, &b), 0);
        cr_assert_eq(b.balance, (int64_t) b.earned - (int64_t) b.spent - (int64_t) b.in_flight);
        return b;
}

static uint64_t debt(struct ledger *l, const struct node *n) {
        uint64_t d = UINT64_MAX;

        cr_assert_eq(ledger_debt(l, n->pk, &d), 0);
        return d;
}

Test(ledger, pay_is_idempotent_per_job_id) {
        struct ledger *l = open_as("a.db", &A);
        _cleanup_free_ uint8_t *first = NULL, *again = NULL, *latest = NULL, *resent = NULL;
        uint8_t id[CHEQUE_JOB_SIZE];
        size_t first_size, again_size, latest_size, resent_size;
        struct ledger_balance b;

        job_id(1, id);
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 100, sign_with, (void *) A.sk, T0, &first, &first_size), 0);
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 100, sign_with, (void *) A.sk, T0 + 1, &again, &again_size), -EALREADY);
        /* Nothing changed: the resend is the very cheque already issued. */
        cr_assert_eq(again_size, first_size);
        cr_assert_eq(memcmp(again, first, first_size), 0);
        b = balance(l);
        cr_assert_eq(b.cheques_issued, 100);
        cr_assert_eq(b.jobs_paid, 1);

        cr_assert_eq(pay(l, &A, &B, 2, 50, T0 + 2), 150);
        /* The latest cheque to that payee, which covers job 1 too. */
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 100, sign_with, (void *) A.sk, T0 + 3, &resent, &resent_size), -EALREADY);
        cr_assert_eq(ledger_latest_cheque(l, B.pk, &latest, &latest_size), 0);
        cr_assert_eq(resent_size, latest_size);
        cr_assert_eq(memcmp(resent, latest, latest_size), 0);

        b = balance(l);
        cr_assert_eq(b.cheques_issued, 150);
        cr_assert_eq(b.jobs_paid, 2);
        /* A cheque is a promise with nothing behind it: it moves no credit. */
        cr_assert_eq(b.balance, 0);
        ledger_free(l);
}

Test(ledger, amounts_are_cumulative_per_payee) {
        struct ledger *l = open_as("a.db", &A);
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t *none = NULL;
        size_t size, none_size;
        struct cheque c;

        cr_assert_eq(pay(l, &A, &B, 1, 10, T0), 10);
        cr_assert_eq(pay(l, &A, &C, 2, 20, T0 + 1), 20);
        cr_assert_eq(pay(l, &A, &B, 3, 30, T0 + 2), 40);
        cr_assert_eq(pay(l, &A, &B, 4, 0, T0 + 3), 40);
        cr_assert_eq(pay(l, &A, &C, 5, 5, T0 + 4), 25);

        cr_assert_eq(ledger_latest_cheque(l, B.pk, &buf, &size), 0);
        cr_assert_eq(cheque_open_bytes(buf, size, B.pk, &c, NULL), 0);
        cr_assert_eq(c.amount, 40);
        cr_assert_eq(ledger_latest_cheque(l, A.pk, &none, &none_size), -ENOENT);
        cr_assert_eq(balance(l).cheques_issued, 65);
        {
                /* Who gets resends: everyone paid, most recent first. */
                _cleanup_free_ uint8_t (*payees)[32] = NULL;
                size_t n = 0;

                cr_assert_eq(ledger_payees(l, &payees, &n), 0);
                cr_assert_eq(n, 2);
                cr_assert_eq(memcmp(payees[0], C.pk, 32), 0);
                cr_assert_eq(memcmp(payees[1], B.pk, 32), 0);
        }
        ledger_free(l);
}

Test(ledger, paying_with_a_key_that_is_not_ours_changes_nothing) {
        struct ledger *l = open_as("a.db", &A);
        uint8_t id[CHEQUE_JOB_SIZE], *buf = NULL;
        size_t size;
        struct ledger_balance b;

        job_id(1, id);
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 10, sign_with, (void *) C.sk, T0, &buf, &size), -EINVAL);
        cr_assert_null(buf);
        b = balance(l);
        cr_assert_eq(b.cheques_issued, 0);
        cr_assert_eq(b.jobs_paid, 0);
        /* And the job can still be paid properly. */
        cr_assert_eq(pay(l, &A, &B, 1, 10, T0), 10);
        ledger_free(l);
}

Test(ledger, invalid_arguments_are_refused) {
        struct ledger *l = open_as("a.db", &A);
        uint8_t id[CHEQUE_JOB_SIZE], *buf = NULL;
        char long_skill[80];
        size_t size;

        job_id(1, id);
        memset(long_skill, 'a', sizeof(long_skill) - 1);
        long_skill[sizeof(long_skill) - 1] = 0;
        cr_assert_eq(ledger_pay(l, id, "", B.pk, 10, sign_with, (void *) A.sk, T0, &buf, &size), -EINVAL);
        cr_assert_eq(ledger_pay(l, id, long_skill, B.pk, 10, sign_with, (void *) A.sk, T0, &buf, &size), -EINVAL);
        cr_assert_eq(ledger_pay(l, id, NULL, B.pk, 10, sign_with, (void *) A.sk, T0, &buf, &size), -EINVAL);
        cr_assert_eq(ledger_served(l, id, "\xff", B.pk, 10, T0), -EINVAL);
        cr_assert_eq(ledger_served(l, id, "gemm", B.pk, 10, (uint64_t) INT64_MAX + 1), -EINVAL);
        cr_assert_eq(balance(l).jobs_served, 0);
        ledger_free(l);
}

Test(ledger, two_ledgers_agree_on_received_issued_balance_and_debt) {
        struct ledger *a = open_as("a.db", &A), *b = open_as("b.db", &B);
        _cleanup_free_ uint8_t *c1 = NULL, *c2 = NULL, *c3 = NULL, *to_c = NULL;
        size_t s1, s2, s3, s_to_c;
        uint8_t id[CHEQUE_JOB_SIZE];
        const char *reason;
        struct ledger_balance ba, bb;

        /* B serves A three jobs (and a fourth A has not paid for yet). */
        served(b, &A, 1, 100, T0 + 1);
        served(b, &A, 2, 200, T0 + 2);
        served(b, &A, 3, 300, T0 + 3);
        served(b, &A, 4, 400, T0 + 4);
        job_id(4, id);
        cr_assert_eq(ledger_served(b, id, "gemm", A.pk, 400, T0 + 5), -EALREADY);
        cr_assert_eq(debt(b, &A), 1000);

        job_id(1, id);
        cr_assert_eq(ledger_pay(a, id, "gemm", B.pk, 100, sign_with, (void *) A.sk, T0 + 1, &c1, &s1), 0);
        job_id(2, id);
        cr_assert_eq(ledger_pay(a, id, "gemm", B.pk, 200, sign_with, (void *) A.sk, T0 + 2, &c2, &s2), 0);
        job_id(3, id);
        cr_assert_eq(ledger_pay(a, id, "gemm", B.pk, 300, sign_with, (void *) A.sk, T0 + 3, &c3, &s3), 0);

        cr_assert_eq(ledger_accept_cheque(b, c1, s1, T0 + 10, &reason), 1);
        cr_assert_null(reason);
        cr_assert_eq(debt(b, &A), 900);
        cr_assert_eq(ledger_accept_cheque(b, c2, s2, T0 + 11, &reason), 1);
        cr_assert_eq(debt(b, &A), 700);
        /* A resend is a harmless duplicate, an older one goes backwards. */
        cr_assert_eq(ledger_accept_cheque(b, c2, s2, T0 + 12, &reason), 0);
        cr_assert_eq(ledger_accept_cheque(b, c1, s1, T0 + 13, &reason), -ERANGE);
        cr_assert_not_null(reason);
        cr_assert_eq(ledger_accept_cheque(b, c3, s3, T0 + 14, &reason), 1);
        cr_assert_eq(debt(b, &A), 400);
        cr_assert_eq(ledger_accept_cheque(b, c1, s1, T0 + 15, &reason), -ERANGE);

        /* Another payee's cheque, a forged one, garbage. */
        job_id(9, id);
        cr_assert_eq(ledger_pay(a, id, "gemm", C.pk, 7, sign_with, (void *) A.sk, T0 + 16, &to_c, &s_to_c), 0);
        cr_assert_eq(ledger_accept_cheque(b, to_c, s_to_c, T0 + 17, &reason), -EXDEV);
        cr_assert_not_null(reason);
        c3[s3 - 3] ^= 0x10;
        cr_assert_eq(ledger_accept_cheque(b, c3, s3, T0 + 18, &reason), -EKEYREJECTED);
        cr_assert_eq(ledger_accept_cheque(b, c3, 5, T0 + 18, &reason), -EBADMSG);
        cr_assert_not_null(reason);

        ba = balance(a);
        cr_assert_eq(ba.cheques_issued, 607);
        cr_assert_eq(ba.cheques_received, 0);
        cr_assert_eq(ba.balance, 0);
        cr_assert_eq(ba.jobs_paid, 4);
        cr_assert_eq(ba.owed_to_us, 0);

        bb = balance(b);
        cr_assert_eq(bb.cheques_received, 600);
        cr_assert_eq(bb.cheques_issued, 0);
        cr_assert_eq(bb.balance, 0);
        cr_assert_eq(bb.jobs_served, 4);
        cr_assert_eq(bb.owed_to_us, 400);
        cr_assert_eq(debt(b, &C), 0);

        /* A pays ahead: no debt, never a negative one. */
        job_id(4, id);
        {
                _cleanup_free_ uint8_t *c4 = NULL;
                size_t s4;

                cr_assert_eq(ledger_pay(a, id, "gemm", B.pk, 450, sign_with, (void *) A.sk, T0 + 20, &c4, &s4), 0);
                cr_assert_eq(ledger_accept_cheque(b, c4, s4, T0 + 21, &reason), 1);
        }
        cr_assert_eq(debt(b, &A), 0);
        cr_assert_eq(balance(b).owed_to_us, 0);
        cr_assert_eq(balance(b).cheques_received, 1050);

        ledger_free(a);
        ledger_free(b);
}

Test(ledger, reopened_database_keeps_everything) {
        struct ledger *l = open_as("a.db", &A);
        struct ledger *b = open_as("b.db", &B);
        _cleanup_free_ struct ledger_job *h1 = NULL, *h2 = NULL;
        _cleanup_free_ struct ledger_peer *p1 = NULL, *p2 = NULL;
        _cleanup_free_ struct ledger_reputation *r2 = NULL;
        _cleanup_free_ uint8_t *cb = NULL;
        struct ledger_reputation rep = { .skill = "gemm", .successes = 3.5, .failures = 0.25,
                                         .latency_ewma_usec = 1200, .throughput_ratio = 0.9,
                                         .updated_at = T0 };
        struct ledger_balance before, after;
        size_t n1, n2, m1, m2, sb;
        uint8_t id[CHEQUE_JOB_SIZE];

        memcpy(rep.peer, B.pk, 32);
        pay(l, &A, &B, 1, 10, T0);
        pay(l, &A, &B, 2, 20, T0 + 1);
        served(l, &C, 3, 30, T0 + 2);
        job_id(7, id);
        cr_assert_eq(ledger_pay(b, id, "gemm", A.pk, 77, sign_with, (void *) B.sk, T0 + 3, &cb, &sb), 0);
        cr_assert_eq(ledger_accept_cheque(l, cb, sb, T0 + 4, NULL), 1);
        cr_assert_eq(ledger_save_reputation(l, &rep, 1), 0);
        before = balance(l);
        cr_assert_eq(ledger_history(l, NULL, 0, &h1, &n1), 0);
        cr_assert_eq(ledger_list_peers(l, &p1, &m1), 0);
        ledger_free(l);

        l = open_as("a.db", &A);
        after = balance(l);
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0);
        cr_assert_eq(after.cheques_issued, 30);
        cr_assert_eq(after.cheques_received, 77);
        cr_assert_eq(after.owed_to_us, 30);
        cr_assert_eq(ledger_history(l, NULL, 0, &h2, &n2), 0);
        cr_assert_eq(n2, n1);
        cr_assert_eq(n2, 3);
        cr_assert_eq(memcmp(h1, h2, n1 * sizeof(*h1)), 0);
        cr_assert_eq(ledger_list_peers(l, &p2, &m2), 0);
        cr_assert_eq(m2, m1);
        cr_assert_eq(memcmp(p1, p2, m1 * sizeof(*p1)), 0);
        cr_assert_eq(ledger_load_reputation(l, &r2, &n2), 0);
        cr_assert_eq(n2, 1);
        cr_assert_eq(memcmp(&r2[0], &rep, sizeof(rep)), 0);
        /* Still idempotent, and the duplicate cheque still a duplicate. */
        job_id(1, id);
        {
                _cleanup_free_ uint8_t *buf = NULL;
                size_t size;

                cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 10, sign_with, (void *) A.sk, T0 + 9, &buf, &size), -EALREADY);
        }
        cr_assert_eq(ledger_accept_cheque(l, cb, sb, T0 + 9, NULL), 0);
        cr_assert_eq(pay(l, &A, &B, 4, 1, T0 + 10), 31);
        ledger_free(l);
        ledger_free(b);
}

Test(ledger, database_of_another_node_is_refused_naming_the_file) {
        _cleanup_free_ char *error = NULL;
        struct ledger *l = open_as("a.db", &A);
        char path[256];

        pay(l, &A, &B, 1, 10, T0);
        ledger_free(l);
        l = NULL;

        db_path("a.db", path, sizeof(path));
        cr_assert_eq(ledger_open(path, B.pk, &l, &error), -EXDEV);
        cr_assert_null(l);
        cr_assert_not_null(error);
        cr_assert_not_null(strstr(error, path), "%s", error);
        cr_assert_not_null(strstr(error, "not this node"), "%s", error);

        /* Refused, not changed: A still opens it, with its payment. */
        l = open_as("a.db", &A);
        cr_assert_eq(balance(l).cheques_issued, 10);
        ledger_free(l);
}

Test(ledger, database_of_a_newer_schema_is_refused) {
        _cleanup_free_ char *error = NULL;
        struct ledger *l = open_as("a.db", &A);
        sqlite3 *db;
        char path[256];

        ledger_free(l);
        l = NULL;
        db_path("a.db", path, sizeof(path));
        cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 4242", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        cr_assert_eq(ledger_open(path, A.pk, &l, &error), -EPROTONOSUPPORT);
        cr_assert_null(l);
        cr_assert_not_null(error);
        cr_assert_not_null(strstr(error, path), "%s", error);
        cr_assert_not_null(strstr(error, "4242"), "%s", error);
}

/* A ledger of schema 1 (before the served totals) is migrated at open:
 * the totals are rebuilt from the job history and kept from then on. */
Test(ledger, schema_1_is_migrated_with_its_history) {
        struct ledger *l = open_as("a.db", &A);
        sqlite3 *db;
        char path[256];

        served(l, &B, 1, 30, 1000);
        served(l, &B, 2, 12, 1001);
        served(l, &C, 3, 5, 1002);
        ledger_free(l);
        db_path("a.db", path, sizeof(path));
        cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "ALTER TABLE jobs DROP COLUMN transfer; DROP TABLE transfers; DROP TABLE fraud_proofs; "
                                      "DROP TABLE kept_results; DROP TABLE write_offs; DROP TRIGGER served_totals_add; "
                                      "DROP TABLE served_totals; PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        l = open_as("a.db", &A);
        cr_assert_eq(debt(l, &B), 42);
        cr_assert_eq(debt(l, &C), 5);
        served(l, &B, 4, 8, 1003);
        cr_assert_eq(debt(l, &B), 50);
        cr_assert_eq(balance(l).owed_to_us, 55);
        cr_assert_eq(balance(l).jobs_served, 4);
        ledger_free(l);
}

Test(ledger, file_that_is_not_a_database_is_refused_naming_it) {
        _cleanup_free_ char *error = NULL;
        struct ledger *l = NULL;
        char path[256];
        FILE *f;

        db_path("junk.db", path, sizeof(path));
        f = fopen(path, "w");
        cr_assert_not_null(f);
        for (int i = 0; i < 200; i++)
                fputs("this is not an SQLite database, ", f);
        fclose(f);

        cr_assert_lt(ledger_open(path, A.pk, &l, &error), 0);
        cr_assert_null(l);
        cr_assert_not_null(error);
        cr_assert_not_null(strstr(error, path), "%s", error);

        free(error);
        error = NULL;
        db_path("no/such/dir/a.db", path, sizeof(path));
        cr_assert_eq(ledger_open(path, A.pk, &l, &error), -ENOENT);
        cr_assert_not_null(strstr(error, path), "%s", error);
}

Test(ledger, database_is_created_0600) {
        struct ledger *l;
        struct stat st;
        char path[256];
        mode_t old = umask(0);

        l = open_as("a.db", &A);
        umask(old);
        pay(l, &A, &B, 1, 10, T0);
        db_path("a.db", path, sizeof(path));
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
        db_path("a.db-wal", path, sizeof(path));
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0600, "-wal mode %o", st.st_mode & 07777);
        ledger_free(l);
}

Test(ledger, amounts_past_int64_max_are_refused) {
        struct ledger *l = open_as("a.db", &A), *b = open_as("b.db", &B);
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t id[CHEQUE_JOB_SIZE], *none = NULL;
        struct ledger_balance bal;
        struct cheque c = { .amount = (uint64_t) INT64_MAX + 1 };
        const char *reason;
        size_t size, none_size;

        job_id(1, id);
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, (uint64_t) INT64_MAX + 1, sign_with, (void *) A.sk, T0, &none, &none_size),
                     -EOVERFLOW);
        cr_assert_eq(pay(l, &A, &B, 1, INT64_MAX - 5, T0), INT64_MAX - 5);
        cr_assert_eq(pay(l, &A, &B, 2, 5, T0 + 1), INT64_MAX);
        job_id(3, id);
        cr_assert_eq(ledger_pay(l, id, "gemm", B.pk, 1, sign_with, (void *) A.sk, T0 + 2, &none, &none_size), -EOVERFLOW);
        cr_assert_null(none);
        /* Refused whole: job 3 is not recorded and can be paid elsewhere. */
        bal = balance(l);
        cr_assert_eq(bal.jobs_paid, 2);
        cr_assert_eq(bal.cheques_issued, INT64_MAX);
        cr_assert_eq(pay(l, &A, &C, 3, 1, T0 + 3), 1);
        /* Two payees at INT64_MAX together: history, added up in 64 bits. */
        cr_assert_eq(pay(l, &A, &C, 4, INT64_MAX - 1, T0 + 4), INT64_MAX);
        cr_assert_eq(ledger_get_balance(l, &bal), 0);
        cr_assert_eq(bal.cheques_issued, 2 * (uint64_t) INT64_MAX);

        served(b, &A, 1, INT64_MAX, T0);
        job_id(2, id);
        cr_assert_eq(ledger_served(b, id, "gemm", A.pk, 1, T0 + 1), -EOVERFLOW);
        cr_assert_eq(balance(b).jobs_served, 1);
        cr_assert_eq(debt(b, &A), INT64_MAX);

        /* A cheque beyond what SQLite can hold. */
        memcpy(c.payer, A.pk, 32);
        memcpy(c.payee, B.pk, 32);
        cr_assert_eq(cheque_sign(&c, A.sk, &buf, &size), 0);
        cr_assert_eq(ledger_accept_cheque(b, buf, size, T0, &reason), -EOVERFLOW);
        cr_assert_not_null(reason);
        cr_assert_eq(balance(b).cheques_received, 0);

        ledger_free(l);
        ledger_free(b);
}

Test(ledger, history_is_most_recent_first_and_filters_by_peer) {
        struct ledger *l = open_as("a.db", &A);
        _cleanup_free_ struct ledger_job *all = NULL, *of_b = NULL, *two = NULL, *none = NULL;
        size_t n_all, n_b, n_two, n_none;
        uint8_t id[CHEQUE_JOB_SIZE];

        pay(l, &A, &B, 1, 10, T0 + 30);
        served(l, &C, 2, 20, T0 + 10);
        pay(l, &A, &C, 3, 30, T0 + 50);
        served(l, &B, 4, 40, T0 + 20);
        pay(l, &A, &B, 5, 50, T0 + 40);
        /* The same job id in both roles is two rows. */
        served(l, &B, 5, 55, T0 + 45);

        cr_assert_eq(ledger_history(l, NULL, 0, &all, &n_all), 0);
        cr_assert_eq(n_all, 6);
        for (size_t i = 1; i < n_all; i++)
                cr_assert_geq(all[i - 1].at, all[i].at);
        cr_assert_eq(all[0].at, T0 + 50);
        cr_assert_eq(all[0].role, LEDGER_ROLE_PAID);
        cr_assert_eq(memcmp(all[0].peer, C.pk, 32), 0);
        cr_assert_eq(all[0].price, 30);
        cr_assert_str_eq(all[0].skill, "gemm");
        job_id(3, id);
        cr_assert_eq(memcmp(all[0].job_id, id, CHEQUE_JOB_SIZE), 0);
        cr_assert_eq(all[1].role, LEDGER_ROLE_SERVED);
        cr_assert_eq(all[1].price, 55);
        cr_assert_eq(all[5].at, T0 + 10);

        cr_assert_eq(ledger_history(l, B.pk, 0, &of_b, &n_b), 0);
        cr_assert_eq(n_b, 4);
        for (size_t i = 0; i < n_b; i++) {
                cr_assert_eq(memcmp(of_b[i].peer, B.pk, 32), 0);
                if (i > 0)
                        cr_assert_geq(of_b[i - 1].at, of_b[i].at);
        }
        cr_assert_eq(of_b[0].at, T0 + 45);
        cr_assert_eq(of_b[3].at, T0 + 20);

        cr_assert_eq(ledger_history(l, B.pk, 2, &two, &n_two), 0);
        cr_assert_eq(n_two, 2);
        cr_assert_eq(memcmp(two, of_b, 2 * sizeof(*two)), 0);

        cr_assert_eq(ledger_history(l, A.pk, 0, &none, &n_none), 0);
        cr_assert_eq(n_none, 0);
        ledger_free(l);
}

Test(ledger, peers_are_listed_most_recent_first_with_their_figures) {
        struct ledger *l = open_as("a.db", &A), *c = open_as("c.db", &C);
        _cleanup_free_ struct ledger_peer *peers = NULL;
        _cleanup_free_ uint8_t *cc = NULL;
        uint8_t id[CHEQUE_JOB_SIZE];
        struct node D;
        size_t n, sc;

        crypto_sign_keypair(D.pk, D.sk);
        pay(l, &A, &B, 1, 10, T0 + 10);
        pay(l, &A, &B, 2, 15, T0 + 20);
        served(l, &C, 3, 30, T0 + 5);
        served(l, &C, 4, 40, T0 + 6);
        job_id(3, id);
        cr_assert_eq(ledger_pay(c, id, "gemm", A.pk, 30, sign_with, (void *) C.sk, T0 + 7, &cc, &sc), 0);
        /* C's cheque arrives last: C becomes the most recent. */
        cr_assert_eq(ledger_accept_cheque(l, cc, sc, T0 + 30, NULL), 1);
        served(l, &D, 5, 1, T0 + 1);

        cr_assert_eq(ledger_list_peers(l, &peers, &n), 0);
        cr_assert_eq(n, 3);
        cr_assert_eq(memcmp(peers[0].id, C.pk, 32), 0);
        cr_assert_eq(peers[0].served, 70);
        cr_assert_eq(peers[0].received, 30);
        cr_assert_eq(peers[0].issued, 0);
        cr_assert_eq(peers[0].jobs_served, 2);
        cr_assert_eq(peers[0].jobs_paid, 0);
        cr_assert_eq(peers[0].last_at, T0 + 30);

        cr_assert_eq(memcmp(peers[1].id, B.pk, 32), 0);
        cr_assert_eq(peers[1].issued, 25);
        cr_assert_eq(peers[1].jobs_paid, 2);
        cr_assert_eq(peers[1].served, 0);
        cr_assert_eq(peers[1].last_at, T0 + 20);

        cr_assert_eq(memcmp(peers[2].id, D.pk, 32), 0);
        cr_assert_eq(peers[2].served, 1);
        cr_assert_eq(peers[2].last_at, T0 + 1);

        cr_assert_eq(balance(l).owed_to_us, 40 + 1);
        ledger_free(l);
        ledger_free(c);
}

Test(ledger, reputation_round_trips_and_upserts) {
        struct ledger *l = open_as("a.db", &A);
        _cleanup_free_ struct ledger_reputation *got = NULL, *empty = NULL;
        struct ledger_reputation rows[3] = {
                { .skill = "gemm", .successes = 10.5, .failures = 1.25, .latency_ewma_usec = 2500.75,
                  .throughput_ratio = 0.875, .updated_at = T0 },
                { .skill = "conv2d", .successes = 0, .failures = 3, .latency_ewma_usec = 0,
                  .throughput_ratio = 0, .updated_at = T0 + 1 },
                { .skill = "gemm", .successes = 1e-9, .failures = 0, .latency_ewma_usec = 1,
                  .throughput_ratio = 1.5, .updated_at = T0 + 2 },
        }, bad;
        size_t n;

        cr_assert_eq(ledger_load_reputation(l, &empty, &n), 0);
        cr_assert_eq(n, 0);

        memcpy(rows[0].peer, B.pk, 32);
        memcpy(rows[1].peer, B.pk, 32);
        memcpy(rows[2].peer, C.pk, 32);
        cr_assert_eq(ledger_save_reputation(l, rows, 3), 0);
        rows[0].successes = 11.5;
        rows[0].updated_at = T0 + 100;
        cr_assert_eq(ledger_save_reputation(l, rows, 1), 0);

        cr_assert_eq(ledger_load_reputation(l, &got, &n), 0);
        cr_assert_eq(n, 3);
        for (size_t i = 0; i < 3; i++) {
                bool found = false;

                for (size_t k = 0; k < n; k++)
                        if (memcmp(got[k].peer, rows[i].peer, 32) == 0 &&
                            strcmp(got[k].skill, rows[i].skill) == 0) {
                                cr_assert_eq(memcmp(&got[k], &rows[i], sizeof(rows[i])), 0, "row %zu", i);
                                found = true;
                        }
                cr_assert(found, "row %zu", i);
        }

        bad = rows[0];
        bad.failures = NAN;
        cr_assert_eq(ledger_save_reputation(l, &bad, 1), -EINVAL);
        bad = rows[0];
        bad.successes = -1;
        cr_assert_eq(ledger_save_reputation(l, &bad, 1), -EINVAL);
        bad = rows[0];
        bad.skill[0] = 0;
        cr_assert_eq(ledger_save_reputation(l, &bad, 1), -EINVAL);
        ledger_free(l);
}

/* SQLite calls these through the PLT: the test binary's own definitions
 * win, so they count what it makes durable. */
static unsigned syncs;

int fdatasync(int fd) {
        syncs++;
        return (int) syscall(SYS_fdatasync, fd);
}

int fsync(int fd) {
        syncs++;
        return (int) syscall(SYS_fsync, fd);
}

Test(ledger, money_is_synced_at_commit_and_reputation_is_not) {
        struct ledger *a = open_as("a.db", &A), *b = open_as("b.db", &B);
        struct ledger_reputation rep = { .skill = "gemm", .successes = 1, .updated_at = T0 };
        _cleanup_free_ uint8_t *buf = NULL;
        unsigned before;
        size_t size;

        memcpy(rep.peer, B.pk, 32);
        for (int round = 0; round < 2; round++) {
                before = syncs;
                pay(a, &A, &B, 1 + round, 10, T0);
                cr_assert_gt(syncs, before, "ledger_pay did not sync");

                before = syncs;
                served(b, &A, 1 + round, 10, T0);
                cr_assert_gt(syncs, before, "ledger_served did not sync");

                free(buf);
                buf = NULL;
                cr_assert_eq(ledger_latest_cheque(a, B.pk, &buf, &size), 0);
                before = syncs;
                cr_assert_eq(ledger_accept_cheque(b, buf, size, T0, NULL), 1);
                cr_assert_gt(syncs, before, "ledger_accept_cheque did not sync");

                before = syncs;
                cr_assert_eq(ledger_save_reputation(a, &rep, 1), 0);
                cr_assert_eq(syncs, before, "ledger_save_reputation synced");
        }
        ledger_free(a);
        ledger_free(b);
}

/* ---- Crash consistency ------------------------------------------------ */

#define CRASH_ROUNDS 20
#define CRASH_PAYEES 4

static struct node payees[CRASH_PAYEES];

/* The child: pays and serves as fast as the disk allows until killed. */
static _noreturn_ void crash_child(const char *path) {
        struct ledger *l = NULL;
        char *error = NULL;

        if (ledger_open(path, A.pk, &l, &error) < 0) {
                fprintf(stderr, "child: %s\n", error ?: "ledger_open failed");
                _exit(2);
        }
        for (unsigned i = 0;; i++) {
                uint8_t id[CHEQUE_JOB_SIZE], *buf = NULL;
                const struct node *p = &payees[randombytes_uniform(CRASH_PAYEES)];
                uint64_t price = randombytes_uniform(1000);
                size_t size;
                int r;

                randombytes_buf(id, sizeof(id));
                if (i % 3 == 2) {
                        r = ledger_served(l, id, "gemm", p->pk, price, T0 + i);
                } else {
                        r = ledger_pay(l, id, "gemm", p->pk, price, sign_with, (void *) A.sk, T0 + i, &buf, &size);
                        free(buf);
                        buf = NULL;
                        /* Paying the same job again must change nothing. */
                        if (r == 0 && i % 5 == 0) {
                                r = ledger_pay(l, id, "gemm", p->pk, price, sign_with, (void *) A.sk, T0 + i, &buf, &size);
                                free(buf);
                                if (r == -EALREADY)
                                        r = 0;
                                else
                                        r = r < 0 ? r : -EIO;
                        }
                }
                if (r < 0) {
                        fprintf(stderr, "child: round %u: %s\n", i, strerror(-r));
                        _exit(3);
                }
        }
}

static void check_invariants(const char *path, uint64_t *jobs_seen) {
        struct ledger *l = open_as("crash.db", &A);
        struct ledger_balance b = balance(l);
        sqlite3_stmt *s;
        sqlite3 *db;
        uint64_t issued = 0, paid_sum = 0;
        int rc;

        cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);

        cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_str_eq((const char *) sqlite3_column_text(s, 0), "ok");
        sqlite3_finalize(s);

        /* Every payee's cheque carries exactly what its paid jobs add up
         * to, and verifies. */
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT i.payee, i.amount, i.cheque, "
                                        "  (SELECT COALESCE(SUM(price), 0) FROM jobs WHERE role = 0 AND peer = i.payee), "
                                        "  (SELECT COUNT(*) FROM jobs WHERE role = 0 AND peer = i.payee AND job_id = ?1) "
                                        "FROM cheques_issued AS i", -1, &s, NULL), SQLITE_OK);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                const uint8_t *payee = sqlite3_column_blob(s, 0);
                uint64_t amount = (uint64_t) sqlite3_column_int64(s, 1);
                struct cheque c;
                const char *reason = NULL;

                cr_assert_eq(sqlite3_column_bytes(s, 0), 32);
                cr_assert_eq(amount, (uint64_t) sqlite3_column_int64(s, 3));
                cr_assert_eq(cheque_open_bytes(sqlite3_column_blob(s, 2), (size_t) sqlite3_column_bytes(s, 2),
                                               payee, &c, &reason), 0, "%s", reason ?: "");
                cr_assert_eq(c.amount, amount);
                cr_assert_eq(memcmp(c.payer, A.pk, 32), 0);
                cr_assert(c.has_last_job);
                issued += amount;
                {
                        /* The job it names is one of that payee's paid jobs. */
                        sqlite3_stmt *k;

                        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM jobs WHERE role = 0 AND "
                                                        "peer = ?1 AND job_id = ?2", -1, &k, NULL), SQLITE_OK);
                        sqlite3_bind_blob(k, 1, payee, 32, SQLITE_TRANSIENT);
                        sqlite3_bind_blob(k, 2, c.last_job, CHEQUE_JOB_SIZE, SQLITE_TRANSIENT);
                        cr_assert_eq(sqlite3_step(k), SQLITE_ROW);
                        cr_assert_eq(sqlite3_column_int(k, 0), 1);
                        sqlite3_finalize(k);
                }
        }
        cr_assert_eq(rc, SQLITE_DONE);
        sqlite3_finalize(s);

        /* No paid job without its cheque. */
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM jobs WHERE role = 0 AND peer NOT IN "
                                        "(SELECT payee FROM cheques_issued)", -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int64(s, 0), 0);
        sqlite3_finalize(s);

        /* Each job id at most once per role. */
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM (SELECT job_id, role FROM jobs GROUP BY job_id, role "
                                        "HAVING COUNT(*) > 1)", -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int64(s, 0), 0);
        sqlite3_finalize(s);

        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT COALESCE(SUM(price), 0), COUNT(*), "
                                        "  (SELECT COUNT(*) FROM jobs WHERE role = 1) FROM jobs WHERE role = 0",
                                        -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        paid_sum = (uint64_t) sqlite3_column_int64(s, 0);
        cr_assert_eq(b.jobs_paid, (uint64_t) sqlite3_column_int64(s, 1));
        cr_assert_eq(b.jobs_served, (uint64_t) sqlite3_column_int64(s, 2));
        sqlite3_finalize(s);
        sqlite3_close(db);

        cr_assert_eq(b.cheques_issued, issued);
        cr_assert_eq(b.cheques_issued, paid_sum);
        cr_assert_eq(b.cheques_received, 0);
        /* What was committed stays committed. */
        cr_assert_geq(b.jobs_paid + b.jobs_served, *jobs_seen);
        *jobs_seen = b.jobs_paid + b.jobs_served;
        ledger_free(l);
}

Test(ledger, killed_mid_payment_leaves_jobs_and_cheques_consistent, .timeout = 90) {
        uint64_t jobs_seen = 0;
        char path[256];

        for (size_t i = 0; i < CRASH_PAYEES; i++)
                crypto_sign_keypair(payees[i].pk, payees[i].sk);
        db_path("crash.db", path, sizeof(path));

        for (unsigned round = 0; round < CRASH_ROUNDS; round++) {
                /* From 2 ms (often inside ledger_open) to 80 ms. */
                unsigned delay_us = 2000 + randombytes_uniform(78000);
                int status;
                pid_t pid;

                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0)
                        crash_child(path);
                usleep(delay_us);
                cr_assert_eq(kill(pid, SIGKILL), 0);
                cr_assert_eq(waitpid(pid, &status, 0), pid);
                cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                          "round %u: the child ended by itself (status %d)", round, status);

                check_invariants(path, &jobs_seen);
        }
        /* The kills did land among writes. */
        cr_log_info("%" PRIu64 " jobs committed across %u kills", jobs_seen, CRASH_ROUNDS);
        cr_assert_gt(jobs_seen, CRASH_ROUNDS);
}

/* Kept results: per owner and key, replaced by a later keep of the same
 * key, gone once expired, durable across a reopen; bad keys refused. */
Test(ledger, kept_results_by_owner_and_key_expire_and_survive_a_reopen) {
        struct ledger *l = open_as("a.db", &A);
        const uint8_t job[16] = { 1 };
        void *blob = NULL;
        size_t size = 0;
        char long_key[200];

        cr_assert_eq(ledger_keep_result(l, 1000, "k", job, "first", 5, 100, 200), 0);
        cr_assert_eq(ledger_keep_result(l, 1000, "k", job, "second", 6, 110, 200), 0);
        cr_assert_eq(ledger_keep_result(l, 2000, "k", job, "other", 5, 110, 300), 0);
        cr_assert_eq(ledger_kept_result(l, 1000, "k", 150, &blob, &size), 0);
        cr_assert(size == 6 && memcmp(blob, "second", 6) == 0);
        free(blob);
        cr_assert_eq(ledger_kept_result(l, 3000, "k", 150, &blob, &size), -ENOENT, "another user's key");
        cr_assert_eq(ledger_kept_result(l, 1000, "k", 200, &blob, &size), -ENOENT, "expired");

        ledger_free(l);
        l = open_as("a.db", &A);
        cr_assert_eq(ledger_kept_result(l, 2000, "k", 250, &blob, &size), 0);
        cr_assert(size == 5 && memcmp(blob, "other", 5) == 0);
        free(blob);
        /* A later keep drops what has expired. */
        cr_assert_eq(ledger_keep_result(l, 1, "x", job, "", 0, 400, 500), 0);
        cr_assert_eq(ledger_kept_result(l, 2000, "k", 0, &blob, &size), -ENOENT);

        memset(long_key, 'a', sizeof(long_key) - 1);
        long_key[sizeof(long_key) - 1] = '\0';
        cr_assert_eq(ledger_keep_result(l, 1, long_key, job, "", 0, 1, 2), -EINVAL);
        cr_assert_eq(ledger_keep_result(l, 1, "", job, "", 0, 1, 2), -EINVAL);
        ledger_free(l);
}

/* A restarted requester's unpaid work is written off: only what it was
 * served lately (older debt stays), never what its cheques cover, and at
 * most the daily cap in 24 hours. */
Test(ledger, write_offs_take_only_recent_unpaid_work_up_to_a_daily_cap) {
        struct ledger *l = open_as("a.db", &A);
        uint64_t amount, total;

        served(l, &B, 1, 100, 1000);            /* old debt */
        served(l, &B, 2, 30, 5000000);          /* recent */
        served(l, &B, 3, 20, 5000001);
        cr_assert_eq(debt(l, &B), 150);
        cr_assert_eq(ledger_served_total(l, B.pk, &total), 0);
        cr_assert_eq(total, 150);

        cr_assert_eq(ledger_write_off(l, B.pk, &(struct ledger_write_off_rule) {
                .served_since = 4000000, .served_until = 5000002, .daily_cap = 1000 }, 5000002, &amount), 0);
        cr_assert_eq(amount, 50, "only the recent work: %llu", (unsigned long long) amount);
        cr_assert_eq(debt(l, &B), 100, "the old debt stays");

        /* Again at once: nothing more (already written off). */
        cr_assert_eq(ledger_write_off(l, B.pk, &(struct ledger_write_off_rule) {
                .served_since = 4000000, .served_until = 5000002, .daily_cap = 1000 }, 5000003, &amount), 0);
        cr_assert_eq(amount, 0);

        /* The cap: 50 written off today already, a cap of 60 leaves 10. */
        served(l, &B, 4, 40, 6000000);
        cr_assert_eq(ledger_write_off(l, B.pk, &(struct ledger_write_off_rule) {
                .served_since = 5500000, .served_until = 6000001, .daily_cap = 60 }, 6000001, &amount), 0);
        cr_assert_eq(amount, 10);
        cr_assert_eq(debt(l, &B), 130);
        ledger_free(l);
}

/* ---- Transfers ---- */

static void make_transfer(struct transfer *t, const struct node *payer, uint64_t seq, const struct node *payee,
                          uint64_t amount) {
        *t = (struct transfer) { .seq = seq, .amount = amount };
        memcpy(t->payer, payer->pk, 32);
        memcpy(t->payee, payee->pk, 32);
        cr_assert_eq(transfer_sign(t, payer->sk), 0);
}

struct loaded {
        struct transfer t[16];
        bool delivered[16];
        size_t n;
};

static int collect(const struct transfer *t, bool delivered, void *userdata) {
        struct loaded *l = userdata;

        cr_assert_lt(l->n, 16);
        cr_assert_eq(transfer_copy(t, &l->t[l->n]), 0);
        l->delivered[l->n++] = delivered;
        return 0;
}

static void loaded_clear(struct loaded *l) {
        for (size_t i = 0; i < l->n; i++)
                transfer_clear(&l->t[i]);
        l->n = 0;
}

Test(ledger, a_second_transfer_for_a_seq_of_ours_is_never_stored) {
        _cleanup_(transfer_clear) struct transfer t = {}, u = {}, theirs = {};
        struct ledger *l = open_as("a.db", &A);
        uint64_t next;

        cr_assert_eq(ledger_transfer_next_seq(l, &next), 0);
        cr_assert_eq(next, 1);
        make_transfer(&t, &A, 1, &B, 10);
        make_transfer(&u, &A, 1, &C, 10);
        cr_assert_eq(ledger_transfer_signed(l, &t, T0), 0);
        cr_assert_eq(ledger_transfer_signed(l, &t, T0), -EALREADY);
        cr_assert_eq(ledger_transfer_signed(l, &u, T0), -ENOTUNIQ);
        /* Not ours to sign. */
        make_transfer(&theirs, &B, 1, &C, 10);
        cr_assert_eq(ledger_transfer_signed(l, &theirs, T0), -EINVAL);

        /* A crash and a restart: the seq stays taken. */
        ledger_free(l);
        l = open_as("a.db", &A);
        cr_assert_eq(ledger_transfer_next_seq(l, &next), 0);
        cr_assert_eq(next, 2);
        cr_assert_eq(ledger_transfer_signed(l, &u, T0), -ENOTUNIQ);
        ledger_free(l);
}

Test(ledger, transfers_replay_in_delivery_order_then_ours_in_flight) {
        _cleanup_(transfer_clear) struct transfer m1 = {}, m2 = {}, own = {}, other = {};
        struct ledger *l = open_as("a.db", &A);
        struct loaded got = {};

        make_transfer(&m1, &C, 1, &A, 50);
        make_transfer(&m2, &C, 2, &B, 20);
        make_transfer(&own, &A, 1, &B, 5);
        make_transfer(&other, &C, 2, &A, 99);
        cr_assert_eq(ledger_transfer_signed(l, &own, T0), 0);
        cr_assert_eq(ledger_transfer_delivered(l, &m2, T0), 0);        /* any order the book chose */
        cr_assert_eq(ledger_transfer_delivered(l, &m1, T0), 0);
        cr_assert_eq(ledger_transfer_delivered(l, &m1, T0), -EALREADY);
        cr_assert_eq(ledger_transfer_delivered(l, &other, T0), -ENOTUNIQ);
        ledger_free(l);

        l = open_as("a.db", &A);
        cr_assert_eq(ledger_transfer_load(l, collect, &got), 0);
        cr_assert_eq(got.n, 3);
        cr_assert_eq(got.t[0].seq, 2);
        cr_assert(got.delivered[0]);
        cr_assert_eq(got.t[1].seq, 1);
        cr_assert_arr_eq(got.t[1].payer, C.pk, 32);
        cr_assert(got.delivered[1]);
        cr_assert_arr_eq(got.t[2].payer, A.pk, 32);
        cr_assert_not(got.delivered[2]);
        loaded_clear(&got);

        /* Ours delivered at last: it joins the delivery order. */
        cr_assert_eq(ledger_transfer_delivered(l, &own, T0), 0);
        cr_assert_eq(ledger_transfer_load(l, collect, &got), 0);
        cr_assert_eq(got.n, 3);
        cr_assert_arr_eq(got.t[2].payer, A.pk, 32);
        cr_assert(got.delivered[2]);
        loaded_clear(&got);
        ledger_free(l);
}

static int count_proof(const struct transfer *a, const struct transfer *b, void *userdata) {
        cr_assert_eq(transfer_fraud_proof_check(a, b, NULL), 0);
        (*(size_t *) userdata)++;
        return 0;
}

Test(ledger, fraud_proofs_are_kept_one_per_payer) {
        _cleanup_(transfer_clear) struct transfer a = {}, b = {}, c = {};
        struct ledger *l = open_as("a.db", &A);
        size_t n = 0;

        make_transfer(&a, &C, 1, &A, 5);
        make_transfer(&b, &C, 1, &B, 5);
        make_transfer(&c, &C, 1, &B, 6);
        cr_assert_eq(ledger_fraud_proof_add(l, &a, &a, T0), -EINVAL);
        cr_assert_eq(ledger_fraud_proof_add(l, &a, &b, T0), 0);
        cr_assert_eq(ledger_fraud_proof_add(l, &a, &c, T0), 0);
        ledger_free(l);
        l = open_as("a.db", &A);
        cr_assert_eq(ledger_fraud_proof_load(l, count_proof, &n), 0);
        cr_assert_eq(n, 1);
        ledger_free(l);
}

/* A ledger of schema 3 (cheques only) opens with its cheque history, and
 * takes transfers from then on. */
Test(ledger, schema_3_is_migrated_and_its_cheques_stay_readable) {
        _cleanup_(transfer_clear) struct transfer t = {};
        struct ledger *l = open_as("a.db", &A);
        struct ledger_job *jobs = NULL;
        size_t n = 0;
        sqlite3 *db;
        char path[256];
        uint64_t next;

        pay(l, &A, &B, 1, 30, 1000);
        ledger_free(l);
        db_path("a.db", path, sizeof(path));
        cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "ALTER TABLE jobs DROP COLUMN transfer; DROP TABLE transfers; DROP TABLE fraud_proofs; "
                                      "PRAGMA user_version = 3", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
        sqlite3_close(db);

        l = open_as("a.db", &A);
        cr_assert_eq(balance(l).cheques_issued, 30);
        cr_assert_eq(ledger_history(l, NULL, 0, &jobs, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(jobs[0].price, 30);
        cr_assert_not(jobs[0].paid_by_transfer, "paid by cheque");
        free(jobs);
        make_transfer(&t, &A, 1, &B, 10);
        cr_assert_eq(ledger_transfer_signed(l, &t, T0), 0);
        cr_assert_eq(ledger_transfer_next_seq(l, &next), 0);
        cr_assert_eq(next, 2);
        ledger_free(l);
}

/* ---- Jobs paid by transfers (issue 22, item 4) ---- */

struct sign_args {
        const struct node *payer, *payee;
        int fail;                       /* returned instead of signing when < 0 */
        unsigned calls;
};

/* What credits_sign() does, without the book: the seq given, the amount. */
static int sign_transfer_with(uint64_t seq, uint64_t amount, struct transfer *ret, void *userdata) {
        struct sign_args *a = userdata;

        a->calls++;
        if (a->fail < 0)
                return a->fail;
        *ret = (struct transfer) { .seq = seq, .amount = amount };
        memcpy(ret->payer, a->payer->pk, 32);
        memcpy(ret->payee, a->payee->pk, 32);
        return transfer_sign(ret, a->payer->sk);
}

static int pay_jobs(struct ledger *l, const struct node *payer, const struct node *payee, const unsigned *ks,
                    const uint64_t *prices, size_t n, int *statuses, struct transfer *ret) {
        struct ledger_pay_job jobs[8];
        uint8_t ids[8][CHEQUE_JOB_SIZE];
        struct sign_args a = { .payer = payer, .payee = payee };
        int r;

        cr_assert_leq(n, 8);
        for (size_t i = 0; i < n; i++) {
                job_id(ks[i], ids[i]);
                jobs[i] = (struct ledger_pay_job) { .job_id = ids[i], .skill = "gemm", .price = prices[i] };
        }
        r = ledger_pay_transfer(l, payee->pk, jobs, n, sign_transfer_with, &a, T0, ret);
        for (size_t i = 0; statuses && i < n; i++)
                statuses[i] = jobs[i].status;
        return r;
}

Test(ledger, jobs_are_paid_by_one_transfer_that_their_rows_name_and_only_once) {
        struct ledger *l = open_as("a.db", &A);
        _cleanup_free_ struct ledger_job *jobs = NULL;
        _cleanup_(transfer_clear) struct transfer t = {}, again = {};
        uint8_t id[TRANSFER_ID_SIZE];
        int st[3];
        size_t n;

        cr_assert_eq(pay_jobs(l, &A, &B, (unsigned[]) { 1, 2, 3 }, (uint64_t[]) { 10, 20, 30 }, 3, st, &t), 1);
        cr_assert(st[0] == 0 && st[1] == 0 && st[2] == 0);
        cr_assert_eq(t.amount, 60);
        cr_assert_eq(t.seq, 1);
        cr_assert_eq(transfer_verify(&t, NULL), 0);
        transfer_id(&t, id);

        /* In flight until delivered; the rows name it. */
        cr_assert_eq(balance(l).in_flight, 60);
        cr_assert_eq(balance(l).jobs_paid, 3);
        cr_assert_eq(ledger_history(l, NULL, 0, &jobs, &n), 0);
        cr_assert_eq(n, 3);
        for (size_t i = 0; i < n; i++) {
                cr_assert(jobs[i].paid_by_transfer);
                cr_assert_not(jobs[i].transfer_delivered);
                cr_assert_eq(memcmp(jobs[i].transfer, id, sizeof(id)), 0);
        }

        /* Paid before: nothing signed, nothing stored, the same jobs again
         * or with a new one (which alone is paid, by the next seq). */
        cr_assert_eq(pay_jobs(l, &A, &B, (unsigned[]) { 2, 1 }, (uint64_t[]) { 20, 10 }, 2, st, &again), 0);
        cr_assert(st[0] == -EALREADY && st[1] == -EALREADY);
        cr_assert_eq(pay_jobs(l, &A, &B, (unsigned[]) { 3, 4 }, (uint64_t[]) { 30, 5 }, 2, st, &again), 1);
        cr_assert(st[0] == -EALREADY && st[1] == 0);
        cr_assert_eq(again.amount, 5);
        cr_assert_eq(again.seq, 2);

        cr_assert_eq(ledger_transfer_delivered(l, &t, T0 + 1), 0);
        cr_assert_eq(balance(l).spent, 60);
        cr_assert_eq(balance(l).in_flight, 5);
        cr_assert_eq(balance(l).balance, -65);
        free(jobs);
        jobs = NULL;
        cr_assert_eq(ledger_history(l, NULL, 0, &jobs, &n), 0);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(jobs[i].transfer_delivered, memcmp(jobs[i].transfer, id, sizeof(id)) == 0);
        ledger_free(l);
}

Test(ledger, a_payment_that_cannot_be_signed_records_nothing) {
        struct ledger *l = open_as("a.db", &A);
        struct ledger_pay_job job;
        struct transfer t = {};
        struct sign_args a = { .payer = &A, .payee = &B, .fail = -EDQUOT };
        uint8_t id[CHEQUE_JOB_SIZE];

        job_id(1, id);
        job = (struct ledger_pay_job) { .job_id = id, .skill = "gemm", .price = 100 };
        cr_assert_eq(ledger_pay_transfer(l, B.pk, &job, 1, sign_transfer_with, &a, T0, &t), -EDQUOT);
        cr_assert_eq(balance(l).jobs_paid, 0, "the job is not paid: it may be, later");
        cr_assert_eq(balance(l).in_flight, 0);

        /* A sign that hands back another transfer than asked for is a bug,
         * and changes nothing either. */
        a = (struct sign_args) { .payer = &A, .payee = &C };
        cr_assert_eq(ledger_pay_transfer(l, B.pk, &job, 1, sign_transfer_with, &a, T0, &t), -EINVAL);
        cr_assert_eq(ledger_pay_transfer(l, A.pk, &job, 1, sign_transfer_with, &a, T0, &t), -EINVAL, "ourselves");
        cr_assert_eq(balance(l).jobs_paid, 0);

        a = (struct sign_args) { .payer = &A, .payee = &B };
        cr_assert_eq(ledger_pay_transfer(l, B.pk, &job, 1, sign_transfer_with, &a, T0, &t), 1);
        cr_assert_eq(balance(l).jobs_paid, 1);
        transfer_clear(&t);
        ledger_free(l);
}

/* The provider's side: what a requester owes is what it was served less
 * its transfers to us that this node delivered — not those to others, not
 * those it has not delivered; cheques of before still count. */
Test(ledger, debt_counts_the_requesters_delivered_transfers_to_us) {
        struct ledger *a = open_as("a.db", &A), *b = open_as("b.db", &B);
        _cleanup_(transfer_clear) struct transfer t = {}, to_c = {}, later = {};
        _cleanup_free_ struct ledger_peer *peers = NULL;
        size_t n;

        served(b, &A, 1, 300, T0);
        served(b, &A, 2, 200, T0);
        cr_assert_eq(debt(b, &A), 500);
        cr_assert_eq(balance(b).owed_to_us, 500);

        cr_assert_eq(pay_jobs(a, &A, &B, (unsigned[]) { 1 }, (uint64_t[]) { 300 }, 1, NULL, &t), 1);
        cr_assert_eq(pay_jobs(a, &A, &C, (unsigned[]) { 7 }, (uint64_t[]) { 1000 }, 1, NULL, &to_c), 1);
        cr_assert_eq(pay_jobs(a, &A, &B, (unsigned[]) { 2 }, (uint64_t[]) { 200 }, 1, NULL, &later), 1);
        /* Signed, not delivered at B: still owed. */
        cr_assert_eq(debt(b, &A), 500);

        cr_assert_eq(ledger_transfer_delivered(b, &t, T0 + 1), 0);
        cr_assert_eq(ledger_transfer_delivered(b, &to_c, T0 + 2), 0);
        cr_assert_eq(debt(b, &A), 200);
        cr_assert_eq(balance(b).owed_to_us, 200);
        cr_assert_eq(balance(b).earned, 300);
        cr_assert_eq(balance(b).balance, 300);

        cr_assert_eq(ledger_transfer_delivered(b, &later, T0 + 3), 0);
        cr_assert_eq(debt(b, &A), 0);
        cr_assert_eq(balance(b).owed_to_us, 0);
        cr_assert_eq(ledger_list_peers(b, &peers, &n), 0);
        cr_assert_eq(n, 1, "only A: the transfer to C is not ours");
        cr_assert_eq(peers[0].received, 500);
        cr_assert_eq(peers[0].served, 500);
        ledger_free(a);
        ledger_free(b);
}

/* ---- kill -9 in the middle of paying by transfer ---- */

static _noreturn_ void transfer_crash_child(const char *path) {
        struct ledger *l = NULL;
        char *error = NULL;

        if (ledger_open(path, A.pk, &l, &error) < 0) {
                fprintf(stderr, "child: %s\n", error ?: "ledger_open failed");
                _exit(2);
        }
        for (unsigned i = 0;; i++) {
                const struct node *p = &payees[randombytes_uniform(CRASH_PAYEES)];
                struct sign_args a = { .payer = &A, .payee = p };
                struct ledger_pay_job jobs[4];
                uint8_t ids[4][CHEQUE_JOB_SIZE];
                struct transfer t = {};
                size_t n = 1 + randombytes_uniform(4);
                bool batch = i % 2 == 0;
                int r;

                for (size_t k = 0; k < n; k++) {
                        randombytes_buf(ids[k], sizeof(ids[k]));
                        jobs[k] = (struct ledger_pay_job) { .job_id = ids[k], .skill = "gemm",
                                                            .price = 1 + randombytes_uniform(1000) };
                }
                /* As accounts.c does: inside a group commit, or alone. */
                if (batch && ledger_batch_begin(l, true) < 0)
                        _exit(3);
                r = ledger_pay_transfer(l, p->pk, jobs, n, sign_transfer_with, &a, T0 + i, &t);
                transfer_clear(&t);
                /* The same jobs again: paid already, nothing signed. */
                if (r == 1)
                        r = ledger_pay_transfer(l, p->pk, jobs, n, sign_transfer_with, &a, T0 + i, &t) == 0 ? 0 : -EIO;
                if (batch && r >= 0)
                        r = ledger_batch_commit(l);
                if (r < 0) {
                        fprintf(stderr, "child: round %u: %s\n", i, strerror(-r));
                        _exit(3);
                }
        }
}

static void check_transfer_invariants(const char *path, uint64_t *jobs_seen) {
        struct ledger *l = open_as("crash.db", &A);
        struct ledger_balance b = balance(l);
        uint64_t expected_seq = 1, sum = 0;
        sqlite3_stmt *s;
        sqlite3 *db;
        int rc;

        cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_str_eq((const char *) sqlite3_column_text(s, 0), "ok");
        sqlite3_finalize(s);

        /* Our transfers: seqs 1, 2, 3... without a gap, each verifies and
         * carries exactly the prices of the jobs that name it. */
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT t.body, t.seq, t.amount, "
                                        "  (SELECT COALESCE(SUM(price), 0) FROM jobs WHERE transfer = t.id AND role = 0 "
                                        "   AND peer = t.payee), "
                                        "  (SELECT COUNT(*) FROM jobs WHERE transfer = t.id) "
                                        "FROM transfers AS t WHERE t.payer = ?1 ORDER BY t.seq", -1, &s, NULL),
                     SQLITE_OK);
        sqlite3_bind_blob(s, 1, A.pk, 32, SQLITE_TRANSIENT);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                _cleanup_(transfer_clear) struct transfer t = {};

                cr_assert_eq(transfer_decode(sqlite3_column_blob(s, 0), (size_t) sqlite3_column_bytes(s, 0), &t, NULL),
                             0);
                cr_assert_eq((uint64_t) sqlite3_column_int64(s, 1), expected_seq++);
                cr_assert_eq(t.amount, (uint64_t) sqlite3_column_int64(s, 2));
                cr_assert_eq(t.amount, (uint64_t) sqlite3_column_int64(s, 3), "a transfer pays its jobs exactly");
                cr_assert_gt(sqlite3_column_int64(s, 4), 0, "a transfer with no job");
                sum += t.amount;
        }
        cr_assert_eq(rc, SQLITE_DONE);
        sqlite3_finalize(s);

        /* No paid job without the transfer that paid it. */
        cr_assert_eq(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM jobs WHERE role = 0 AND (transfer IS NULL OR transfer "
                                        "NOT IN (SELECT id FROM transfers))", -1, &s, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int64(s, 0), 0);
        sqlite3_finalize(s);
        sqlite3_close(db);

        cr_assert_eq(b.in_flight, sum);
        /* What was committed stays committed. */
        cr_assert_geq(b.jobs_paid, *jobs_seen);
        *jobs_seen = b.jobs_paid;
        ledger_free(l);
}

Test(ledger, killed_mid_transfer_payment_leaves_each_job_paid_once_by_a_stored_transfer, .timeout = 90) {
        uint64_t jobs_seen = 0;
        char path[256];

        for (size_t i = 0; i < CRASH_PAYEES; i++)
                crypto_sign_keypair(payees[i].pk, payees[i].sk);
        db_path("crash.db", path, sizeof(path));

        for (unsigned round = 0; round < CRASH_ROUNDS; round++) {
                unsigned delay_us = 2000 + randombytes_uniform(78000);
                int status;
                pid_t pid;

                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0)
                        transfer_crash_child(path);
                usleep(delay_us);
                cr_assert_eq(kill(pid, SIGKILL), 0);
                cr_assert_eq(waitpid(pid, &status, 0), pid);
                cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                          "round %u: the child ended by itself (status %d)", round, status);
                check_transfer_invariants(path, &jobs_seen);
        }
        cr_log_info("%" PRIu64 " jobs paid by transfer across %u kills", jobs_seen, CRASH_ROUNDS);
        cr_assert_gt(jobs_seen, CRASH_ROUNDS);
}
