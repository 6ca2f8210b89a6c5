/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How many payments per second the ledger makes durable: ledger_pay()
 * (one BEGIN IMMEDIATE transaction per cheque, synchronous=FULL: a job
 * row, a signed cheque, an upsert) against the reference measured in the
 * same run on the same file system: bare SQLite inserts of a similar row,
 * one transaction each, in WAL mode with synchronous=FULL and with
 * synchronous=NORMAL.  Then ledger_accept_cheque() (open, verify, compare,
 * store, synchronous=FULL), and the pure cheque costs (sign, open) that
 * both include.
 *
 * Figures depend on what fsync costs where DIR lives: run it on the disk
 * that will hold /var/lib/swarmd.
 *
 * Usage: bench-ledger [DIR [SECONDS_PER_ROW]]   (default: $TMPDIR or
 * /var/tmp, 1 second) */

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "cheque.h"
#include "ledger.h"
#include "macro.h"

#define BATCH 256

static int sign_with(const struct cheque *c, uint8_t **ret, size_t *ret_size, void *sk) {
        return cheque_sign(c, sk, ret, ret_size);
}

static char dir[4096];
static double seconds = 1.0;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t wall_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void row(const char *what, uint64_t ops, uint64_t usec) {
        double per_s = usec > 0 ? (double) ops * 1e6 / (double) usec : 0;

        printf("%-58s %12.0f %10.1f %8" PRIu64 "\n", what, per_s, ops > 0 ? (double) usec / (double) ops : 0.0,
               ops);
        fflush(stdout);
}

static _noreturn_ void die(const char *what, const char *why) {
        fprintf(stderr, "bench-ledger: %s: %s\n", what, why);
        exit(EXIT_FAILURE);
}

static bool time_left(uint64_t start, uint64_t ops) {
        return ops < 10 || (double) (now_usec() - start) < seconds * 1e6;
}

/* The reference: a row about the size of a job plus a cheque, one
 * transaction each, in WAL mode like the ledger. */
static void bench_raw(const char *sync) {
        char path[4200], label[128], *err = NULL;
        sqlite3_stmt *s;
        sqlite3 *db;
        uint8_t id[16], blob[180];
        uint64_t start, ops = 0;
        char pragma[64];

        snprintf(path, sizeof(path), "%s/raw-%s.db", dir, sync);
        if (sqlite3_open(path, &db) != SQLITE_OK)
                die(path, sqlite3_errmsg(db));
        snprintf(pragma, sizeof(pragma), "PRAGMA synchronous = %s", sync);
        if (sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, pragma, NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, "CREATE TABLE t (id BLOB PRIMARY KEY, peer BLOB, v INTEGER, b BLOB)", NULL, NULL,
                         &err) != SQLITE_OK)
                die(path, err);
        if (sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?1, ?2, ?3, ?4)", -1, &s, NULL) != SQLITE_OK)
                die(path, sqlite3_errmsg(db));
        randombytes_buf(blob, sizeof(blob));

        start = now_usec();
        while (time_left(start, ops)) {
                randombytes_buf(id, sizeof(id));
                if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK)
                        die(path, err);
                sqlite3_bind_blob(s, 1, id, sizeof(id), SQLITE_STATIC);
                sqlite3_bind_blob(s, 2, blob, 32, SQLITE_STATIC);
                sqlite3_bind_int64(s, 3, (sqlite3_int64) ops);
                sqlite3_bind_blob(s, 4, blob, sizeof(blob), SQLITE_STATIC);
                if (sqlite3_step(s) != SQLITE_DONE)
                        die(path, sqlite3_errmsg(db));
                sqlite3_reset(s);
                if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK)
                        die(path, err);
                ops++;
        }
        row((snprintf(label, sizeof(label), "reference: SQLite INSERT, 1 txn each, synchronous=%s", sync), label),
            ops, now_usec() - start);
        sqlite3_finalize(s);
        sqlite3_close(db);
}

static struct ledger *open_ledger(const char *name, const uint8_t pk[32]) {
        _cleanup_free_ char *error = NULL;
        struct ledger *l = NULL;
        char path[4200];
        int r;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        r = ledger_open(path, pk, &l, &error);
        if (r < 0)
                die("ledger_open", error ?: strerror(-r));
        return l;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

int main(int argc, char *argv[]) {
        uint8_t a_pk[32], a_sk[64], payees[8][32], b_pk[32], b_sk[64];
        uint8_t *cheques[BATCH];
        size_t sizes[BATCH];
        struct ledger *a, *b;
        struct statfs sfs;
        const char *base;
        uint64_t start, ops, spent, amount = 0;
        int r;

        if (argc > 3 || (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
                fprintf(stderr, "Usage: %s [DIR [SECONDS_PER_ROW]]\n", argv[0]);
                return argc > 3 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        base = argc > 1 ? argv[1] : getenv("TMPDIR") ?: "/var/tmp";
        if (argc > 2) {
                seconds = strtod(argv[2], NULL);
                if (!(seconds > 0 && seconds <= 60))
                        die(argv[2], "seconds per row must be in (0, 60]");
        }
        if (sodium_init() < 0)
                die("sodium_init", "failed");
        snprintf(dir, sizeof(dir), "%s/bench-ledger-XXXXXX", base);
        if (!mkdtemp(dir))
                die(dir, strerror(errno));

        printf("Ledger writes, durable, in %s (file system type 0x%lx), %.1f s a row\n", dir,
               statfs(dir, &sfs) == 0 ? (unsigned long) sfs.f_type : 0ul, seconds);
        printf("%-58s %12s %10s %8s\n", "", "per s", "µs each", "ops");

        bench_raw("FULL");
        bench_raw("NORMAL");

        crypto_sign_keypair(a_pk, a_sk);
        crypto_sign_keypair(b_pk, b_sk);
        for (size_t i = 0; i < ELEMENTSOF(payees); i++)
                randombytes_buf(payees[i], 32);

        a = open_ledger("a.db", a_pk);
        start = now_usec();
        for (ops = 0; time_left(start, ops); ops++) {
                uint8_t id[CHEQUE_JOB_SIZE], *buf = NULL;
                size_t size;

                randombytes_buf(id, sizeof(id));
                r = ledger_pay(a, id, "gemm", payees[ops % ELEMENTSOF(payees)], 1000, sign_with, a_sk,
                               wall_usec(), &buf, &size);
                if (r < 0)
                        die("ledger_pay", strerror(-r));
                free(buf);
        }
        row("ledger_pay: job + signed cheque, 1 txn, synchronous=FULL", ops, now_usec() - start);

        /* Group commit, as swarmd writes under load (accounts.h): 16
         * payments, one transaction, one fsync. */
        start = now_usec();
        for (ops = 0; time_left(start, ops);) {
                if ((r = ledger_batch_begin(a, true)) < 0)
                        die("ledger_batch_begin", strerror(-r));
                for (size_t i = 0; i < 16; i++, ops++) {
                        uint8_t id[CHEQUE_JOB_SIZE], *buf = NULL;
                        size_t size;

                        randombytes_buf(id, sizeof(id));
                        r = ledger_pay(a, id, "gemm", payees[ops % ELEMENTSOF(payees)], 1000, sign_with,
                                       a_sk, wall_usec(), &buf, &size);
                        if (r < 0)
                                die("ledger_pay", strerror(-r));
                        free(buf);
                }
                if ((r = ledger_batch_commit(a)) < 0)
                        die("ledger_batch_commit", strerror(-r));
        }
        row("ledger_pay: 16 per txn (group commit), synchronous=FULL", ops, now_usec() - start);
        ledger_free(a);

        /* Cheques from A to B, made in batches outside the clock. */
        b = open_ledger("b.db", b_pk);
        ops = spent = 0;
        start = now_usec();
        while (time_left(start, ops)) {
                uint64_t t;

                for (size_t i = 0; i < BATCH; i++) {
                        struct cheque c = { .amount = (amount += 1000), .issued_at = wall_usec() };

                        memcpy(c.payer, a_pk, 32);
                        memcpy(c.payee, b_pk, 32);
                        if ((r = cheque_sign(&c, a_sk, &cheques[i], &sizes[i])) < 0)
                                die("cheque_sign", strerror(-r));
                }
                t = now_usec();
                for (size_t i = 0; i < BATCH; i++) {
                        const char *reason = NULL;

                        r = ledger_accept_cheque(b, cheques[i], sizes[i], wall_usec(), &reason);
                        if (r != 1)
                                die("ledger_accept_cheque", reason ?: strerror(-r));
                        free(cheques[i]);
                }
                spent += now_usec() - t;
                ops += BATCH;
        }
        row("ledger_accept_cheque: verify + store, synchronous=FULL", ops, spent);
        ledger_free(b);

        /* What the cheque itself costs, without the database. */
        {
                struct cheque c = { .amount = 1, .issued_at = wall_usec() }, got;
                uint8_t *buf = NULL;
                size_t size = 0;

                memcpy(c.payer, a_pk, 32);
                memcpy(c.payee, b_pk, 32);
                start = now_usec();
                for (ops = 0; time_left(start, ops) && ops < 200000; ops++) {
                        free(buf);
                        if (cheque_sign(&c, a_sk, &buf, &size) < 0)
                                die("cheque_sign", "failed");
                }
                row("cheque_sign alone (no database)", ops, now_usec() - start);
                start = now_usec();
                for (ops = 0; time_left(start, ops) && ops < 200000; ops++)
                        if (cheque_open_bytes(buf, size, b_pk, &got, NULL) < 0)
                                die("cheque_open_bytes", "failed");
                row("cheque_open_bytes alone (no database)", ops, now_usec() - start);
                free(buf);
        }

        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        return EXIT_SUCCESS;
}
