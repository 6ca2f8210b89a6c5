/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ledger (ledger.h) on SQLite.  One connection, used from one thread.
 *
 * Durability: WAL mode.  Every transaction that moves money runs with
 * synchronous=FULL (the WAL is fsync'ed at each commit); reputation saves
 * run with synchronous=NORMAL (synced at checkpoints only).  The setting
 * belongs to the connection, so it is switched between transactions, only
 * when it differs from what the last one used.
 *
 * Amounts are uint64 micro-credits in SQLite's signed 64-bit integers:
 * anything that would take a stored amount, or a per-peer sum of prices,
 * past INT64_MAX is refused with -EOVERFLOW, so the sums SQLite computes
 * never overflow either; totals over all peers are added up here, with
 * overflow checks.
 *
 * Errors: ledger_open() explains every failure in *error, naming the file;
 * afterwards, an SQLite failure is logged here, once, with the file name
 * and SQLite's message, and returned as a negative errno.  Refusals that
 * are the caller's business (-EALREADY, -EOVERFLOW, a bad cheque) are not
 * logged. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "ledger.h"
#include "log.h"
#include "macro.h"
#include "pb-util.h"
#include "utf8-valid.h"

#define LEDGER_BUSY_TIMEOUT_MS 5000
#define LEDGER_SKILL_MAX 63     /* struct ledger_job/ledger_reputation: char skill[64] */

/* Schema migrations: step i takes user_version i to i + 1.  Append, never
 * edit a step that has shipped. */
static const char *const migrations[] = {
        /* 1: the first schema. */
        "CREATE TABLE meta ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value BLOB NOT NULL"
        ");"
        "CREATE TABLE jobs ("
        "  job_id BLOB NOT NULL CHECK (length(job_id) = 16),"
        "  role INTEGER NOT NULL CHECK (role IN (0, 1)),"          /* enum ledger_role */
        "  peer BLOB NOT NULL CHECK (length(peer) = 32),"
        "  skill TEXT NOT NULL,"
        "  price INTEGER NOT NULL CHECK (price >= 0),"
        "  at INTEGER NOT NULL,"
        "  PRIMARY KEY (job_id, role)"
        ");"
        "CREATE INDEX jobs_by_peer ON jobs (peer, role, price);"
        "CREATE INDEX jobs_by_at ON jobs (at);"
        "CREATE TABLE cheques_issued ("
        "  payee BLOB PRIMARY KEY NOT NULL CHECK (length(payee) = 32),"
        "  amount INTEGER NOT NULL CHECK (amount >= 0),"
        "  cheque BLOB NOT NULL,"
        "  at INTEGER NOT NULL"
        ");"
        "CREATE TABLE cheques_received ("
        "  payer BLOB PRIMARY KEY NOT NULL CHECK (length(payer) = 32),"
        "  amount INTEGER NOT NULL CHECK (amount >= 0),"
        "  cheque BLOB NOT NULL,"
        "  at INTEGER NOT NULL"
        ");"
        "CREATE TABLE reputation ("
        "  peer BLOB NOT NULL CHECK (length(peer) = 32),"
        "  skill TEXT NOT NULL,"
        "  successes REAL NOT NULL,"
        "  failures REAL NOT NULL,"
        "  latency REAL NOT NULL,"
        "  ratio REAL NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  PRIMARY KEY (peer, skill)"
        ");",
        /* 2: what each requester was served, kept as a running total by a
         * trigger: the debt check runs before every job, and adding up
         * the job history there grew with it. */
        "CREATE TABLE served_totals ("
        "  peer BLOB PRIMARY KEY NOT NULL CHECK (length(peer) = 32),"
        "  amount INTEGER NOT NULL CHECK (amount >= 0),"
        "  jobs INTEGER NOT NULL CHECK (jobs >= 0)"
        ");"
        "INSERT INTO served_totals (peer, amount, jobs) "
        "  SELECT peer, SUM(price), COUNT(*) FROM jobs WHERE role = 1 GROUP BY peer;"
        "CREATE TRIGGER served_totals_add AFTER INSERT ON jobs WHEN NEW.role = 1 BEGIN"
        "  INSERT INTO served_totals (peer, amount, jobs) VALUES (NEW.peer, NEW.price, 1)"
        "    ON CONFLICT (peer) DO UPDATE SET amount = amount + NEW.price, jobs = jobs + 1;"
        "END;",
        /* 3: verified results kept for their submitter, by the key it gave
         * (exactly-once delivery: written with the payment, handed back
         * instead of a second job when the key comes again). */
        "CREATE TABLE kept_results ("
        "  owner INTEGER NOT NULL,"
        "  key TEXT NOT NULL,"
        "  job_id BLOB NOT NULL CHECK (length(job_id) = 16),"
        "  result BLOB NOT NULL,"
        "  at INTEGER NOT NULL,"
        "  expires_at INTEGER NOT NULL,"
        "  PRIMARY KEY (owner, key)"
        ");"
        "CREATE INDEX kept_results_by_expiry ON kept_results (expires_at);"
        /* What a requester was served and will never pay: it restarted,
         * and what it had not paid for died with it (its results too). */
        "ALTER TABLE served_totals ADD COLUMN written_off INTEGER NOT NULL DEFAULT 0 CHECK (written_off >= 0);"
        "CREATE TABLE write_offs ("
        "  peer BLOB NOT NULL CHECK (length(peer) = 32),"
        "  amount INTEGER NOT NULL CHECK (amount > 0),"
        "  at INTEGER NOT NULL"
        ");"
        "CREATE INDEX write_offs_by_peer ON write_offs (peer, at);",
        /* 4: transfers (issue 22): every transfer this node delivered, in
         * the order it did (its book is rebuilt from them at start), and
         * those it signed and has not seen delivered yet.  One transfer
         * per (payer, seq), whatever its state: the index is what makes
         * signing a second one for a seq impossible, even across a crash.
         * Fraud proofs: one per banned payer.  The cheque tables stay, as
         * history. */
        "CREATE TABLE transfers ("
        "  id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
        "  payer BLOB NOT NULL CHECK (length(payer) = 32),"
        "  seq INTEGER NOT NULL CHECK (seq >= 1),"
        "  payee BLOB NOT NULL CHECK (length(payee) = 32),"
        "  amount INTEGER NOT NULL CHECK (amount >= 1),"
        "  body BLOB NOT NULL,"
        "  delivered INTEGER CHECK (delivered IS NULL OR delivered >= 1),"  /* delivery order; NULL: not yet */
        "  at INTEGER NOT NULL"
        ");"
        "CREATE UNIQUE INDEX transfers_by_slot ON transfers (payer, seq);"
        "CREATE UNIQUE INDEX transfers_by_delivery ON transfers (delivered);"
        "CREATE TABLE fraud_proofs ("
        "  payer BLOB PRIMARY KEY NOT NULL CHECK (length(payer) = 32),"
        "  a BLOB NOT NULL,"
        "  b BLOB NOT NULL,"
        "  at INTEGER NOT NULL"
        ");",
        /* 5: jobs paid by transfers (issue 22): a paid job names the
         * transfer that paid it (NULL: paid by cheque, before this schema,
         * or served); what a peer paid us, or we it, is found by payee. */
        "ALTER TABLE jobs ADD COLUMN transfer BLOB "
        "  CHECK (transfer IS NULL OR length(transfer) = 32);"
        "CREATE INDEX transfers_by_payee ON transfers (payee, payer);",
};

enum {
        STMT_BEGIN,
        STMT_BEGIN_READ,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        STMT_JOB_INSERT,
        STMT_JOB_PEER,
        STMT_SERVED_SUM,
        STMT_ISSUED_GET,
        STMT_ISSUED_PUT,
        STMT_RECEIVED_GET,
        STMT_RECEIVED_PUT,
        STMT_DEBT,
        STMT_ISSUED_AMOUNTS,
        STMT_PAYEES,
        STMT_RECEIVED_AMOUNTS,
        STMT_JOB_COUNTS,
        STMT_OWED,
        STMT_PEERS,
        STMT_HISTORY_ALL,
        STMT_HISTORY_PEER,
        STMT_REPUTATION_PUT,
        STMT_REPUTATION_ALL,
        STMT_KEEP_PUT,
        STMT_KEEP_GET,
        STMT_KEEP_EXPIRE,
        STMT_WRITE_OFF_GET,
        STMT_WRITE_OFF_ADD,
        STMT_WRITE_OFF_LOG,
        STMT_WRITE_OFF_RECENT,
        STMT_SERVED_SINCE,
        STMT_TRANSFER_SLOT,
        STMT_TRANSFER_INSERT,
        STMT_TRANSFER_DELIVER,
        STMT_TRANSFER_NEXT_SEQ,
        STMT_TRANSFER_ALL,
        STMT_FRAUD_PUT,
        STMT_FRAUD_ALL,
        STMT_JOB_SET_TRANSFER,
        STMT_TRANSFER_TOTALS,
        _STMT_MAX,
};

static const char *const stmt_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_BEGIN_READ] = "BEGIN",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_SAVEPOINT] = "SAVEPOINT op",
        [STMT_RELEASE] = "RELEASE op",
        [STMT_ROLLBACK_TO] = "ROLLBACK TO op",
        [STMT_JOB_INSERT] =
                "INSERT INTO jobs (job_id, role, peer, skill, price, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                "ON CONFLICT (job_id, role) DO NOTHING",
        [STMT_JOB_PEER] = "SELECT peer FROM jobs WHERE job_id = ?1 AND role = ?2",
        [STMT_SERVED_SUM] = "SELECT COALESCE((SELECT amount FROM served_totals WHERE peer = ?1), 0)",
        [STMT_ISSUED_GET] = "SELECT amount, cheque FROM cheques_issued WHERE payee = ?1",
        [STMT_ISSUED_PUT] =
                "INSERT INTO cheques_issued (payee, amount, cheque, at) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT (payee) DO UPDATE SET amount = excluded.amount, cheque = excluded.cheque, "
                "at = excluded.at",
        [STMT_RECEIVED_GET] = "SELECT amount FROM cheques_received WHERE payer = ?1",
        [STMT_RECEIVED_PUT] =
                "INSERT INTO cheques_received (payer, amount, cheque, at) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT (payer) DO UPDATE SET amount = excluded.amount, cheque = excluded.cheque, "
                "at = excluded.at",
        /* One statement, so one snapshot.  Paid: the cheques of before
         * transfers, and the transfers from it to us (?2) delivered here. */
        [STMT_DEBT] =
                "SELECT COALESCE((SELECT amount - written_off FROM served_totals WHERE peer = ?1), 0), "
                "(SELECT COALESCE(MAX(amount), 0) FROM cheques_received WHERE payer = ?1), "
                "(SELECT COALESCE(SUM(amount), 0) FROM transfers "
                " WHERE payee = ?2 AND payer = ?1 AND delivered IS NOT NULL)",
        [STMT_ISSUED_AMOUNTS] = "SELECT amount FROM cheques_issued",
        [STMT_PAYEES] = "SELECT payee FROM cheques_issued ORDER BY at DESC",
        [STMT_RECEIVED_AMOUNTS] = "SELECT amount FROM cheques_received",
        [STMT_JOB_COUNTS] =
                "SELECT (SELECT COUNT(*) FROM jobs WHERE role = 0), (SELECT COUNT(*) FROM jobs WHERE role = 1)",
        /* Per requester: served − written off − its cheques − its
         * transfers to us (?1) delivered, when positive. */
        [STMT_OWED] =
                "SELECT s.served - COALESCE(r.amount, 0) - "
                "  (SELECT COALESCE(SUM(amount), 0) FROM transfers "
                "   WHERE payee = ?1 AND payer = s.peer AND delivered IS NOT NULL) AS owed "
                "FROM (SELECT peer, amount - written_off AS served FROM served_totals) AS s "
                "LEFT JOIN cheques_received AS r ON r.payer = s.peer "
                "WHERE owed > 0",
        /* Every peer of ours (?1): issued is our cheque to it and our
         * transfers to it, signed; received its cheque to us and its
         * transfers to us, delivered. */
        [STMT_PEERS] =
                "WITH p (id) AS (SELECT peer FROM jobs UNION SELECT payee FROM cheques_issued "
                "                UNION SELECT payer FROM cheques_received "
                "                UNION SELECT payee FROM transfers WHERE payer = ?1 "
                "                UNION SELECT payer FROM transfers WHERE payee = ?1 AND delivered IS NOT NULL) "
                "SELECT p.id, "
                "  COALESCE((SELECT amount FROM cheques_issued WHERE payee = p.id), 0) + "
                "  (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE payer = ?1 AND payee = p.id), "
                "  COALESCE((SELECT amount FROM cheques_received WHERE payer = p.id), 0) + "
                "  (SELECT COALESCE(SUM(amount), 0) FROM transfers "
                "   WHERE payee = ?1 AND payer = p.id AND delivered IS NOT NULL), "
                "  COALESCE((SELECT amount FROM served_totals WHERE peer = p.id), 0), "
                "  (SELECT COUNT(*) FROM jobs WHERE peer = p.id AND role = 0), "
                "  COALESCE((SELECT jobs FROM served_totals WHERE peer = p.id), 0), "
                "  MAX((SELECT COALESCE(MAX(at), 0) FROM jobs WHERE peer = p.id), "
                "      COALESCE((SELECT at FROM cheques_issued WHERE payee = p.id), 0), "
                "      COALESCE((SELECT at FROM cheques_received WHERE payer = p.id), 0), "
                "      (SELECT COALESCE(MAX(at), 0) FROM transfers WHERE payer = ?1 AND payee = p.id), "
                "      (SELECT COALESCE(MAX(at), 0) FROM transfers WHERE payee = ?1 AND payer = p.id)) AS last_at "
                "FROM p WHERE p.id != ?1 ORDER BY last_at DESC, p.id",
        [STMT_HISTORY_ALL] =
                "SELECT j.job_id, j.role, j.peer, j.skill, j.price, j.at, j.transfer, t.delivered IS NOT NULL "
                "FROM jobs AS j LEFT JOIN transfers AS t ON t.id = j.transfer "
                "ORDER BY j.at DESC, j.rowid DESC LIMIT ?1",
        [STMT_HISTORY_PEER] =
                "SELECT j.job_id, j.role, j.peer, j.skill, j.price, j.at, j.transfer, t.delivered IS NOT NULL "
                "FROM jobs AS j LEFT JOIN transfers AS t ON t.id = j.transfer WHERE j.peer = ?2 "
                "ORDER BY j.at DESC, j.rowid DESC LIMIT ?1",
        [STMT_REPUTATION_PUT] =
                "INSERT INTO reputation (peer, skill, successes, failures, latency, ratio, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                "ON CONFLICT (peer, skill) DO UPDATE SET successes = excluded.successes, "
                "failures = excluded.failures, latency = excluded.latency, ratio = excluded.ratio, "
                "updated_at = excluded.updated_at",
        [STMT_REPUTATION_ALL] =
                "SELECT peer, skill, successes, failures, latency, ratio, updated_at FROM reputation "
                "ORDER BY peer, skill",
        [STMT_KEEP_PUT] =
                "INSERT INTO kept_results (owner, key, job_id, result, at, expires_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                "ON CONFLICT (owner, key) DO UPDATE SET job_id = excluded.job_id, result = excluded.result, "
                "at = excluded.at, expires_at = excluded.expires_at",
        [STMT_KEEP_GET] = "SELECT result FROM kept_results WHERE owner = ?1 AND key = ?2 AND expires_at > ?3",
        [STMT_KEEP_EXPIRE] = "DELETE FROM kept_results WHERE expires_at <= ?1",
        [STMT_WRITE_OFF_GET] =
                "SELECT COALESCE((SELECT amount FROM served_totals WHERE peer = ?1), 0), "
                "COALESCE((SELECT written_off FROM served_totals WHERE peer = ?1), 0), "
                "(SELECT COALESCE(MAX(amount), 0) FROM cheques_received WHERE payer = ?1), "
                "(SELECT COALESCE(SUM(amount), 0) FROM transfers "
                " WHERE payee = ?2 AND payer = ?1 AND delivered IS NOT NULL)",
        [STMT_WRITE_OFF_ADD] = "UPDATE served_totals SET written_off = written_off + ?2 WHERE peer = ?1",
        [STMT_WRITE_OFF_LOG] = "INSERT INTO write_offs (peer, amount, at) VALUES (?1, ?2, ?3)",
        [STMT_WRITE_OFF_RECENT] =
                "SELECT COALESCE(SUM(amount), 0) FROM write_offs WHERE peer = ?1 AND at >= ?2 AND at < ?3",
        [STMT_SERVED_SINCE] =
                "SELECT COALESCE(SUM(price), 0) FROM jobs WHERE role = 1 AND peer = ?1 AND at >= ?2 AND at < ?3",
        [STMT_TRANSFER_SLOT] = "SELECT id, delivered FROM transfers WHERE payer = ?1 AND seq = ?2",
        [STMT_TRANSFER_INSERT] =
                "INSERT INTO transfers (id, payer, seq, payee, amount, body, delivered, at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                "        CASE WHEN ?7 THEN (SELECT COALESCE(MAX(delivered), 0) + 1 FROM transfers) END, ?8)",
        [STMT_TRANSFER_DELIVER] =
                "UPDATE transfers SET delivered = (SELECT COALESCE(MAX(delivered), 0) + 1 FROM transfers) "
                "WHERE id = ?1 AND delivered IS NULL",
        [STMT_TRANSFER_NEXT_SEQ] = "SELECT COALESCE(MAX(seq), 0) + 1 FROM transfers WHERE payer = ?1",
        [STMT_TRANSFER_ALL] =
                "SELECT body, delivered IS NOT NULL FROM transfers "
                "ORDER BY delivered IS NULL, delivered, payer, seq",
        [STMT_FRAUD_PUT] =
                "INSERT INTO fraud_proofs (payer, a, b, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (payer) DO NOTHING",
        [STMT_FRAUD_ALL] = "SELECT a, b FROM fraud_proofs ORDER BY payer",
        [STMT_JOB_SET_TRANSFER] = "UPDATE jobs SET transfer = ?2 WHERE job_id = ?1 AND role = 0",
        /* Ours (?1): received and delivered, spent and delivered, signed
         * and not delivered yet. */
        [STMT_TRANSFER_TOTALS] =
                "SELECT (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE payee = ?1 AND delivered IS NOT NULL), "
                "(SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE payer = ?1 AND delivered IS NOT NULL), "
                "(SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE payer = ?1 AND delivered IS NULL)",
};

struct ledger {
        sqlite3 *db;
        char *path;
        uint8_t self[32];
        bool sync_full;                 /* what PRAGMA synchronous is now */
        bool batch;                     /* in ledger_batch_begin(): operations are savepoints */
        sqlite3_stmt *stmts[_STMT_MAX];
};

/* ---- SQLite plumbing ------------------------------------------------- */

static int errno_from_sqlite(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
        case SQLITE_FORMAT:
        case SQLITE_SCHEMA:
        case SQLITE_MISMATCH:
                return -EBADMSG;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

/* Logs an SQLite failure once, naming the file; returns it as -errno. */
static int ledger_fail(struct ledger *l, int rc, const char *what) {
        int r = errno_from_sqlite(rc);

        if (r == 0)     /* a step that returned a row where none was expected */
                r = -EIO;
        return log_error_errno(r, "%s: %s: %s", l->path, what, sqlite3_errmsg(l->db));
}

static void stmt_finalizep(sqlite3_stmt **s) {
        sqlite3_finalize(*s);
}
#define _cleanup_finalize_ _cleanup_(stmt_finalizep)

static void stmt_resetp(sqlite3_stmt **s) {
        if (*s) {
                sqlite3_reset(*s);
                sqlite3_clear_bindings(*s);
        }
}
#define _cleanup_reset_ _cleanup_(stmt_resetp)

static int stmt_run(struct ledger *l, unsigned id) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[id];
        int rc;

        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return ledger_fail(l, rc, stmt_sql[id]);
        return 0;
}

static void ledger_rollback(struct ledger *l) {
        if (l && l->batch) {
                /* Undo this operation only; the batch goes on. */
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_ROLLBACK_TO], *t = l->stmts[STMT_RELEASE];
                (void) sqlite3_step(s);
                (void) sqlite3_step(t);
                return;
        }
        if (l && !sqlite3_get_autocommit(l->db)) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_ROLLBACK];
                (void) sqlite3_step(s);
        }
}

/* Rolls back whatever transaction is still open when it goes out of
 * scope; ledger_commit() leaves nothing to roll back. */
static void ledger_rollbackp(struct ledger **l) {
        ledger_rollback(*l);
}
#define _cleanup_transaction_ _cleanup_(ledger_rollbackp)

/* A write transaction, taking the write lock at once; full: fsync the WAL
 * at commit (money) or not (reputation). */
static int ledger_begin(struct ledger *l, bool full) {
        if (l->batch)
                return stmt_run(l, STMT_SAVEPOINT);
        /* Not a prepared statement: SQLite applies PRAGMA synchronous
         * when it compiles it, so preparing one for later would switch
         * the connection there and then. */
        if (l->sync_full != full) {
                const char *sql = full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
                int rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);

                if (rc != SQLITE_OK)
                        return ledger_fail(l, rc, sql);
                l->sync_full = full;
        }
        return stmt_run(l, STMT_BEGIN);
}

static int ledger_commit(struct ledger *l) {
        int r;

        r = stmt_run(l, l->batch ? STMT_RELEASE : STMT_COMMIT);
        if (r < 0)
                ledger_rollback(l);
        return r;
}

static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n) {
        return sqlite3_bind_blob(s, i, p, (int) n, SQLITE_STATIC);
}

/* Values the schema keeps within int64. */
static int column_u64(sqlite3_stmt *s, int i, uint64_t *ret) {
        sqlite3_int64 v;

        if (sqlite3_column_type(s, i) != SQLITE_INTEGER)
                return -EBADMSG;
        v = sqlite3_column_int64(s, i);
        if (v < 0)
                return -EBADMSG;
        *ret = (uint64_t) v;
        return 0;
}

static int column_blob(sqlite3_stmt *s, int i, void *ret, size_t size) {
        const void *p;

        if (sqlite3_column_type(s, i) != SQLITE_BLOB || (size_t) sqlite3_column_bytes(s, i) != size)
                return -EBADMSG;
        p = sqlite3_column_blob(s, i);
        if (!p)
                return -EBADMSG;
        memcpy(ret, p, size);
        return 0;
}

static int column_skill(sqlite3_stmt *s, int i, char ret[LEDGER_SKILL_MAX + 1]) {
        const unsigned char *t;
        int n;

        if (sqlite3_column_type(s, i) != SQLITE_TEXT)
                return -EBADMSG;
        t = sqlite3_column_text(s, i);
        n = sqlite3_column_bytes(s, i);
        if (!t || n <= 0 || n > LEDGER_SKILL_MAX)
                return -EBADMSG;
        memcpy(ret, t, (size_t) n);
        ret[n] = 0;
        return 0;
}

static int column_double(sqlite3_stmt *s, int i, double *ret) {
        int t = sqlite3_column_type(s, i);

        if (t != SQLITE_FLOAT && t != SQLITE_INTEGER)
                return -EBADMSG;
        *ret = sqlite3_column_double(s, i);
        return 0;
}

/* A corrupt row: logged like an SQLite failure. */
static int ledger_bad_row(struct ledger *l, const char *table) {
        return log_error_errno(-EBADMSG, "%s: a row in %s is not what this swarmd wrote; the database is damaged",
                               l->path, table);
}

static bool skill_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, LEDGER_SKILL_MAX + 1);
        return n > 0 && n <= LEDGER_SKILL_MAX && utf8_valid(s, n);
}

static int add_u64(uint64_t *sum, uint64_t v) {
        if (__builtin_add_overflow(*sum, v, sum))
                return -EOVERFLOW;
        return 0;
}

/* ---- Open and close -------------------------------------------------- */

static _printf_(2, 3) int set_error(char **error, const char *format, ...) {
        va_list ap;

        if (!error)
                return 0;
        free(*error);
        *error = NULL;
        va_start(ap, format);
        if (vasprintf(error, format, ap) < 0)
                *error = NULL;
        va_end(ap);
        return 0;
}

static void hex_prefix(const uint8_t id[32], char out[17]) {
        sodium_bin2hex(out, 17, id, 8);
}

static int user_version(struct ledger *l, int *ret, char **error) {
        _cleanup_finalize_ sqlite3_stmt *s = NULL;
        int rc;

        rc = sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &s, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                set_error(error, "%s: cannot read the schema version: %s", l->path, sqlite3_errmsg(l->db));
                return errno_from_sqlite(rc) ?: -EIO;
        }
        *ret = sqlite3_column_int(s, 0);
        return 0;
}

/* Brings the schema up to date and checks (or records) whose ledger this
 * is, in one transaction: a refusal leaves the file as it was. */
static int ledger_migrate(struct ledger *l, char **error) {
        _cleanup_finalize_ sqlite3_stmt *get = NULL, *put = NULL;
        const int known = (int) ELEMENTSOF(migrations);
        char *sql = NULL;
        int version, rc, r;

        r = user_version(l, &version, error);
        if (r < 0)
                return r;
        if (version > known)
                goto too_new;

        rc = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                goto sqlite_fail;
        /* Again, now that nobody else can change it. */
        r = user_version(l, &version, error);
        if (r < 0)
                goto fail;
        if (version > known) {
                sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
                goto too_new;
        }
        if (version < 0) {
                set_error(error, "%s: schema version %d is not one swarmd ever wrote", l->path, version);
                r = -EBADMSG;
                goto fail;
        }

        for (int v = version; v < known; v++) {
                rc = sqlite3_exec(l->db, migrations[v], NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        set_error(error, "%s: schema migration %d → %d failed: %s", l->path, v, v + 1,
                                  sqlite3_errmsg(l->db));
                        r = errno_from_sqlite(rc) ?: -EIO;
                        goto fail;
                }
        }
        if (version < known) {
                if (asprintf(&sql, "PRAGMA user_version = %d", known) < 0) {
                        set_error(error, "%s: out of memory", l->path);
                        r = -ENOMEM;
                        goto fail;
                }
                rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);
                free(sql);
                if (rc != SQLITE_OK)
                        goto sqlite_fail;
        }

        rc = sqlite3_prepare_v2(l->db, "SELECT value FROM meta WHERE key = 'node_id'", -1, &get, NULL);
        if (rc != SQLITE_OK)
                goto sqlite_fail;
        rc = sqlite3_step(get);
        if (rc == SQLITE_ROW) {
                const void *id = sqlite3_column_blob(get, 0);
                char theirs[17], ours[17];

                if (sqlite3_column_type(get, 0) != SQLITE_BLOB || sqlite3_column_bytes(get, 0) != 32 || !id) {
                        set_error(error, "%s: the node id in its meta table is not 32 bytes; the database is damaged",
                                  l->path);
                        r = -EBADMSG;
                        goto fail;
                }
                if (memcmp(id, l->self, 32) != 0) {
                        hex_prefix(id, theirs);
                        hex_prefix(l->self, ours);
                        set_error(error, "%s: made for node %s…, not this node (%s…); move it away or point "
                                  "the state directory elsewhere", l->path, theirs, ours);
                        r = -EXDEV;
                        goto fail;
                }
        } else if (rc == SQLITE_DONE) {
                rc = sqlite3_prepare_v2(l->db, "INSERT INTO meta (key, value) VALUES ('node_id', ?1)", -1, &put,
                                        NULL);
                if (rc != SQLITE_OK)
                        goto sqlite_fail;
                bind_blob(put, 1, l->self, 32);
                rc = sqlite3_step(put);
                if (rc != SQLITE_DONE)
                        goto sqlite_fail;
        } else
                goto sqlite_fail;

        /* A statement still stepping would keep COMMIT from ending the
         * transaction. */
        sqlite3_reset(get);
        if (put)
                sqlite3_reset(put);
        rc = sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                goto sqlite_fail;
        return 0;

too_new:
        set_error(error, "%s: schema version %d is newer than this swarmd knows (%d); refusing to guess at it",
                  l->path, version, known);
        return -EPROTONOSUPPORT;

sqlite_fail:
        set_error(error, "%s: cannot set up the schema: %s", l->path, sqlite3_errmsg(l->db));
        r = errno_from_sqlite(rc) ?: -EIO;
fail:
        if (!sqlite3_get_autocommit(l->db))
                sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static void ledger_freep(struct ledger **l) {
        ledger_free(*l);
}

int ledger_open(const char *path, const uint8_t self[32], struct ledger **ret, char **error) {
        _cleanup_(ledger_freep) struct ledger *l = NULL;
        _cleanup_finalize_ sqlite3_stmt *wal = NULL;
        int fd, rc, r;

        if (error)
                *error = NULL;
        if (!path || !self || !ret) {
                set_error(error, "%s: invalid arguments to ledger_open()", path ?: "(null)");
                return -EINVAL;
        }
        if (sodium_init() < 0) {
                set_error(error, "%s: libsodium does not initialise", path);
                return -EIO;
        }

        /* Created here, so that it is 0600 whatever the umask (SQLite
         * gives the -wal and -shm files the mode of the database).  Only
         * when it does not exist: closing a descriptor of a database
         * would drop the POSIX locks of any connection to it in this
         * process. */
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd >= 0) {
                if (fchmod(fd, 0600) < 0) {
                        r = negative_errno();
                        close(fd);
                        set_error(error, "%s: cannot make it 0600: %s", path, strerror(-r));
                        return r;
                }
                close(fd);
        } else if (errno != EEXIST) {
                r = negative_errno();
                set_error(error, "%s: cannot create it: %s", path, strerror(-r));
                return r;
        }

        l = calloc(1, sizeof(*l));
        if (!l || !(l->path = strdup(path))) {
                set_error(error, "%s: out of memory", path);
                return -ENOMEM;
        }
        memcpy(l->self, self, 32);

        rc = sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                set_error(error, "%s: cannot open it: %s", path, l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc));
                return errno_from_sqlite(rc) ?: -EIO;
        }
        sqlite3_busy_timeout(l->db, LEDGER_BUSY_TIMEOUT_MS);

        rc = sqlite3_prepare_v2(l->db, "PRAGMA journal_mode = WAL", -1, &wal, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(wal);
        if (rc != SQLITE_ROW) {
                set_error(error, "%s: cannot switch it to WAL mode: %s", path, sqlite3_errmsg(l->db));
                return errno_from_sqlite(rc) ?: -EIO;
        }
        if (sqlite3_column_type(wal, 0) != SQLITE_TEXT ||
            strcmp((const char *) sqlite3_column_text(wal, 0), "wal") != 0) {
                set_error(error, "%s: stays in journal mode %s, not WAL (a file system without shared memory?)",
                          path, (const char *) sqlite3_column_text(wal, 0) ?: "(none)");
                return -EOPNOTSUPP;
        }
        sqlite3_reset(wal);
        rc = sqlite3_exec(l->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                set_error(error, "%s: cannot set synchronous=FULL: %s", path, sqlite3_errmsg(l->db));
                return errno_from_sqlite(rc) ?: -EIO;
        }
        l->sync_full = true;

        r = ledger_migrate(l, error);
        if (r < 0)
                return r;

        for (unsigned i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(l->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &l->stmts[i], NULL);
                if (rc != SQLITE_OK) {
                        set_error(error, "%s: cannot prepare \"%s\": %s", path, stmt_sql[i], sqlite3_errmsg(l->db));
                        return errno_from_sqlite(rc) ?: -EIO;
                }
        }

        *ret = TAKE_PTR(l);
        return 0;
}

struct ledger *ledger_free(struct ledger *l) {
        if (!l)
                return NULL;
        ledger_rollback(l->stmts[STMT_ROLLBACK] ? l : NULL);
        for (unsigned i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(l->stmts[i]);
        if (l->db && sqlite3_close(l->db) != SQLITE_OK)
                log_warning("%s: closing: %s", l->path, sqlite3_errmsg(l->db));
        free(l->path);
        free(l);
        return NULL;
}

/* ---- Shared steps ---------------------------------------------------- */

/* 1 when the row went in, 0 when (job_id, role) was already there. */
static int job_insert(struct ledger *l, const uint8_t job_id[CHEQUE_JOB_SIZE], enum ledger_role role,
                      const uint8_t peer[32], const char *skill, uint64_t price, uint64_t now) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_JOB_INSERT];
        int rc;

        bind_blob(s, 1, job_id, CHEQUE_JOB_SIZE);
        sqlite3_bind_int(s, 2, (int) role);
        bind_blob(s, 3, peer, 32);
        sqlite3_bind_text(s, 4, skill, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) price);
        sqlite3_bind_int64(s, 6, (sqlite3_int64) now);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, "recording a job");
        return sqlite3_changes(l->db) > 0;
}

/* What we issued to payee so far (0, no cheque, when nothing); *ret_cheque
 * malloc'd when asked for. */
static int issued_get(struct ledger *l, const uint8_t payee[32], uint64_t *ret_amount, uint8_t **ret_cheque,
                      size_t *ret_size) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_ISSUED_GET];
        const void *p;
        int rc, n;

        bind_blob(s, 1, payee, 32);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
                *ret_amount = 0;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "reading the cheque issued to a peer");
        if (column_u64(s, 0, ret_amount) < 0 || sqlite3_column_type(s, 1) != SQLITE_BLOB)
                return ledger_bad_row(l, "cheques_issued");
        if (ret_cheque) {
                n = sqlite3_column_bytes(s, 1);
                p = sqlite3_column_blob(s, 1);
                if (n <= 0 || !p)
                        return ledger_bad_row(l, "cheques_issued");
                *ret_cheque = malloc((size_t) n);
                if (!*ret_cheque)
                        return -ENOMEM;
                memcpy(*ret_cheque, p, (size_t) n);
                *ret_size = (size_t) n;
        }
        return 1;
}

/* Keeps cheque (the encoded SignedCheque) as the highest issued to or
 * received from peer: id is STMT_ISSUED_PUT or STMT_RECEIVED_PUT. */
static int cheque_put(struct ledger *l, unsigned id, const uint8_t peer[32], uint64_t amount,
                      const uint8_t *cheque, size_t size, uint64_t now, const char *what) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[id];
        int rc;

        bind_blob(s, 1, peer, 32);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) amount);
        bind_blob(s, 3, cheque, size);
        sqlite3_bind_int64(s, 4, (sqlite3_int64) now);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, what);
        return 0;
}

static int served_sum(struct ledger *l, const uint8_t peer[32], uint64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_SERVED_SUM];
        int rc;

        bind_blob(s, 1, peer, 32);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "adding up what a peer was served");
        if (column_u64(s, 0, ret) < 0)
                return ledger_bad_row(l, "jobs");
        return 0;
}

/* ---- Requester side -------------------------------------------------- */

/* Makes room for element n of an array of *allocated, doubling it. */
static int grow(void **array, size_t *allocated, size_t n, size_t size) {
        size_t k = *allocated ? *allocated * 2 : 16;
        void *m;

        if (n < *allocated)
                return 0;
        m = reallocarray(*array, k, size);
        if (!m)
                return -ENOMEM;
        *array = m;
        *allocated = k;
        return 0;
}

/* Reads one row of s into row (zeroed); false for a row that breaks the
 * schema. */
typedef bool (*row_read_fn)(sqlite3_stmt *s, void *row);

/* Steps s to its end, one element of size bytes per row, into a malloc'd
 * array.  A bad row is ledger_bad_row(table); a failed step is
 * ledger_fail(doing). */
static int collect_rows(struct ledger *l, sqlite3_stmt *s, size_t size, row_read_fn read, const char *table,
                        const char *doing, void **ret, size_t *ret_n) {
        _cleanup_free_ uint8_t *rows = NULL;
        size_t n = 0, allocated = 0;
        int rc;

        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (grow((void **) &rows, &allocated, n, size) < 0)
                        return -ENOMEM;
                memset(rows + n * size, 0, size);
                if (!read(s, rows + n * size))
                        return ledger_bad_row(l, table);
                n++;
        }
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, doing);
        *ret = TAKE_PTR(rows);
        *ret_n = n;
        return 0;
}

static bool payee_read(sqlite3_stmt *s, void *row) {
        return column_blob(s, 0, row, 32) >= 0;
}

int ledger_payees(struct ledger *l, uint8_t (**ret)[32], size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;

        if (!l || !ret || !ret_n)
                return -EINVAL;
        s = l->stmts[STMT_PAYEES];
        return collect_rows(l, s, sizeof(**ret), payee_read, "cheques_issued", "listing payees", (void **) ret,
                            ret_n);
}

int ledger_latest_cheque(struct ledger *l, const uint8_t payee[32], uint8_t **ret, size_t *ret_size) {
        uint64_t amount;
        int r;

        if (!l || !payee || !ret || !ret_size)
                return -EINVAL;
        r = issued_get(l, payee, &amount, ret, ret_size);
        if (r < 0)
                return r;
        return r == 0 ? -ENOENT : 0;
}

int ledger_pay(struct ledger *l, const uint8_t job_id[CHEQUE_JOB_SIZE], const char *skill,
               const uint8_t payee[32], uint64_t price, ledger_sign_fn sign, void *userdata, uint64_t now,
               uint8_t **ret, size_t *ret_size) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        struct cheque c;
        uint64_t held;
        size_t size;
        int r;

        if (!l || !job_id || !skill_is_valid(skill) || !payee || !sign || !ret || !ret_size || now > INT64_MAX)
                return -EINVAL;
        if (price > INT64_MAX)
                return -EOVERFLOW;

        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;

        r = job_insert(l, job_id, LEDGER_ROLE_PAID, payee, skill, price, now);
        if (r < 0)
                return r;
        if (r == 0) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_JOB_PEER];
                uint8_t paid_to[32];
                int rc;

                /* Paid before: the cheque that covers it is the latest to
                 * whoever it was paid to (payee, unless the caller mixed
                 * them up). */
                bind_blob(s, 1, job_id, CHEQUE_JOB_SIZE);
                sqlite3_bind_int(s, 2, LEDGER_ROLE_PAID);
                rc = sqlite3_step(s);
                if (rc != SQLITE_ROW)
                        return ledger_fail(l, rc, "looking up a paid job");
                if (column_blob(s, 0, paid_to, sizeof(paid_to)) < 0)
                        return ledger_bad_row(l, "jobs");
                r = issued_get(l, paid_to, &held, ret, ret_size);
                if (r < 0)
                        return r;
                if (r == 0)
                        return ledger_bad_row(l, "cheques_issued");
                return -EALREADY;
        }

        r = issued_get(l, payee, &held, NULL, NULL);
        if (r < 0)
                return r;
        if (price > (uint64_t) INT64_MAX - held)
                return -EOVERFLOW;

        c = (struct cheque) {
                .amount = held + price,
                .has_last_job = true,
                .issued_at = now,
        };
        memcpy(c.payer, l->self, sizeof(c.payer));
        memcpy(c.payee, payee, sizeof(c.payee));
        memcpy(c.last_job, job_id, sizeof(c.last_job));
        r = sign(&c, &buf, &size, userdata);
        if (r < 0)
                return r;

        r = cheque_put(l, STMT_ISSUED_PUT, payee, c.amount, buf, size, now, "storing an issued cheque");
        if (r < 0)
                return r;

        txn = NULL;
        r = ledger_commit(l);
        if (r < 0)
                return r;

        /* Only now, with the payment durable, does the cheque leave. */
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* ---- Provider side --------------------------------------------------- */

int ledger_served(struct ledger *l, const uint8_t job_id[CHEQUE_JOB_SIZE], const char *skill,
                  const uint8_t requester[32], uint64_t price, uint64_t now) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        uint64_t served = 0;
        int r;

        if (!l || !job_id || !skill_is_valid(skill) || !requester || now > INT64_MAX)
                return -EINVAL;
        if (price > INT64_MAX)
                return -EOVERFLOW;

        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;

        /* Before the insert, so that SUM() never sees more than INT64_MAX. */
        r = served_sum(l, requester, &served);
        if (r < 0)
                return r;
        r = job_insert(l, job_id, LEDGER_ROLE_SERVED, requester, skill, price, now);
        if (r < 0)
                return r;
        if (r == 0)
                return -EALREADY;
        if (price > (uint64_t) INT64_MAX - served)
                return -EOVERFLOW;

        txn = NULL;
        return ledger_commit(l);
}

int ledger_accept_cheque(struct ledger *l, const uint8_t *data, size_t size, uint64_t now, const char **reason) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        const char *dummy;
        struct cheque c;
        uint64_t held = 0;
        int r, rc;

        if (!reason)
                reason = &dummy;
        *reason = "invalid arguments";
        if (!l || (!data && size > 0) || now > INT64_MAX)
                return -EINVAL;

        r = cheque_open_bytes(data, size, l->self, &c, reason);
        if (r < 0)
                return r;
        if (c.amount > INT64_MAX) {
                *reason = "cheque amount is over what the ledger can hold";
                return -EOVERFLOW;
        }

        *reason = "the ledger database failed (see the log)";
        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;

        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_RECEIVED_GET];

                bind_blob(s, 1, c.payer, sizeof(c.payer));
                rc = sqlite3_step(s);
                if (rc == SQLITE_ROW) {
                        if (column_u64(s, 0, &held) < 0)
                                return ledger_bad_row(l, "cheques_received");
                } else if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "reading the cheque held from a peer");
        }

        r = cheque_compare(held, c.amount);
        if (r == -ERANGE) {
                *reason = "cheque amount is lower than one already held (goes backwards)";
                return r;
        }
        if (r == 0) {
                *reason = NULL;
                return 0;
        }

        r = cheque_put(l, STMT_RECEIVED_PUT, c.payer, c.amount, data, size, now, "storing a received cheque");
        if (r < 0)
                return r;

        txn = NULL;
        r = ledger_commit(l);
        if (r < 0)
                return r;
        *reason = NULL;
        return 1;
}

int ledger_debt(struct ledger *l, const uint8_t requester[32], uint64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        uint64_t served, cheques, transfers, paid;
        int rc;

        if (!l || !requester || !ret)
                return -EINVAL;

        s = l->stmts[STMT_DEBT];
        bind_blob(s, 1, requester, 32);
        bind_blob(s, 2, l->self, 32);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "adding up a peer's debt");
        if (column_u64(s, 0, &served) < 0 || column_u64(s, 1, &cheques) < 0 || column_u64(s, 2, &transfers) < 0)
                return ledger_bad_row(l, "jobs, cheques_received or transfers");

        paid = cheques + transfers < cheques ? UINT64_MAX : cheques + transfers;
        *ret = served > paid ? served - paid : 0;
        return 0;
}

/* ---- Views ----------------------------------------------------------- */

static int sum_column(struct ledger *l, unsigned id, const char *table, uint64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[id];
        uint64_t sum = 0, v;
        int rc;

        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (column_u64(s, 0, &v) < 0)
                        return ledger_bad_row(l, table);
                if (add_u64(&sum, v) < 0)
                        return -EOVERFLOW;
        }
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, "adding up amounts");
        *ret = sum;
        return 0;
}

static int ledger_get_balance_locked(struct ledger *l, struct ledger_balance *b) {
        int64_t balance;
        int r, rc;

        r = sum_column(l, STMT_ISSUED_AMOUNTS, "cheques_issued", &b->cheques_issued);
        if (r < 0)
                return r;
        r = sum_column(l, STMT_RECEIVED_AMOUNTS, "cheques_received", &b->cheques_received);
        if (r < 0)
                return r;
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_OWED];
                uint64_t sum = 0, v;

                bind_blob(s, 1, l->self, 32);
                while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                        if (column_u64(s, 0, &v) < 0)
                                return ledger_bad_row(l, "jobs");
                        if (add_u64(&sum, v) < 0)
                                return -EOVERFLOW;
                }
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "adding up what requesters owe");
                b->owed_to_us = sum;
        }
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_TRANSFER_TOTALS];

                bind_blob(s, 1, l->self, 32);
                rc = sqlite3_step(s);
                if (rc != SQLITE_ROW)
                        return ledger_fail(l, rc, "adding up our transfers");
                if (column_u64(s, 0, &b->earned) < 0 || column_u64(s, 1, &b->spent) < 0 ||
                    column_u64(s, 2, &b->in_flight) < 0)
                        return ledger_bad_row(l, "transfers");
        }
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_JOB_COUNTS];

                rc = sqlite3_step(s);
                if (rc != SQLITE_ROW)
                        return ledger_fail(l, rc, "counting jobs");
                if (column_u64(s, 0, &b->jobs_paid) < 0 || column_u64(s, 1, &b->jobs_served) < 0)
                        return ledger_bad_row(l, "jobs");
        }

        /* Each sum ≤ INT64_MAX (SQLite's SUM() fails past it). */
        if (__builtin_sub_overflow((int64_t) b->earned, (int64_t) b->spent, &balance) ||
            __builtin_sub_overflow(balance, (int64_t) b->in_flight, &balance))
                return -EOVERFLOW;
        b->balance = balance;
        return 0;
}

int ledger_get_balance(struct ledger *l, struct ledger_balance *ret) {
        struct ledger_balance b = {};
        int r;

        if (!l || !ret)
                return -EINVAL;

        /* One read transaction: every figure from the same snapshot. */
        r = stmt_run(l, l->batch ? STMT_SAVEPOINT : STMT_BEGIN_READ);
        if (r < 0)
                return r;
        r = ledger_get_balance_locked(l, &b);
        ledger_rollback(l);
        if (r < 0)
                return r;

        *ret = b;
        return 0;
}

static bool peer_read(sqlite3_stmt *s, void *row) {
        struct ledger_peer *p = row;

        return column_blob(s, 0, p->id, sizeof(p->id)) >= 0 &&
               column_u64(s, 1, &p->issued) >= 0 &&
               column_u64(s, 2, &p->received) >= 0 &&
               column_u64(s, 3, &p->served) >= 0 &&
               column_u64(s, 4, &p->jobs_paid) >= 0 &&
               column_u64(s, 5, &p->jobs_served) >= 0 &&
               column_u64(s, 6, &p->last_at) >= 0;
}

int ledger_list_peers(struct ledger *l, struct ledger_peer **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;

        if (!l || !ret || !ret_n)
                return -EINVAL;
        s = l->stmts[STMT_PEERS];
        bind_blob(s, 1, l->self, 32);
        return collect_rows(l, s, sizeof(**ret), peer_read, "jobs or cheques", "listing peers", (void **) ret,
                            ret_n);
}

static bool job_read(sqlite3_stmt *s, void *row) {
        struct ledger_job *j = row;
        int role = sqlite3_column_int(s, 1);

        if (role != LEDGER_ROLE_PAID && role != LEDGER_ROLE_SERVED)
                return false;
        j->role = (enum ledger_role) role;
        if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
                if (column_blob(s, 6, j->transfer, sizeof(j->transfer)) < 0)
                        return false;
                j->paid_by_transfer = true;
                j->transfer_delivered = sqlite3_column_int(s, 7) != 0;
        }
        return column_blob(s, 0, j->job_id, sizeof(j->job_id)) >= 0 &&
               column_blob(s, 2, j->peer, sizeof(j->peer)) >= 0 &&
               column_skill(s, 3, j->skill) >= 0 &&
               column_u64(s, 4, &j->price) >= 0 &&
               column_u64(s, 5, &j->at) >= 0;
}

int ledger_history(struct ledger *l, const uint8_t *peer, size_t limit, struct ledger_job **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;

        if (!l || !ret || !ret_n)
                return -EINVAL;

        s = l->stmts[peer ? STMT_HISTORY_PEER : STMT_HISTORY_ALL];
        sqlite3_bind_int64(s, 1, limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64) limit);
        if (peer)
                bind_blob(s, 2, peer, 32);
        return collect_rows(l, s, sizeof(**ret), job_read, "jobs", "reading the job history", (void **) ret,
                            ret_n);
}

/* ---- Reputation ------------------------------------------------------ */

static bool reputation_is_valid(const struct ledger_reputation *r) {
        size_t n = strnlen(r->skill, sizeof(r->skill));

        /* NaN would be stored as NULL; infinities mean a bug upstream. */
        return n > 0 && n < sizeof(r->skill) && utf8_valid(r->skill, n) &&
               isfinite(r->successes) && r->successes >= 0 &&
               isfinite(r->failures) && r->failures >= 0 &&
               isfinite(r->latency_ewma_usec) && r->latency_ewma_usec >= 0 &&
               isfinite(r->throughput_ratio) && r->throughput_ratio >= 0 &&
               r->updated_at <= INT64_MAX;
}

int ledger_save_reputation(struct ledger *l, const struct ledger_reputation *rows, size_t n) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        int r, rc;

        if (!l || (!rows && n > 0))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!reputation_is_valid(&rows[i]))
                        return -EINVAL;
        if (n == 0)
                return 0;

        r = ledger_begin(l, false);
        if (r < 0)
                return r;
        txn = l;

        for (size_t i = 0; i < n; i++) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_REPUTATION_PUT];

                bind_blob(s, 1, rows[i].peer, 32);
                sqlite3_bind_text(s, 2, rows[i].skill, (int) strnlen(rows[i].skill, sizeof(rows[i].skill)),
                                  SQLITE_STATIC);
                sqlite3_bind_double(s, 3, rows[i].successes);
                sqlite3_bind_double(s, 4, rows[i].failures);
                sqlite3_bind_double(s, 5, rows[i].latency_ewma_usec);
                sqlite3_bind_double(s, 6, rows[i].throughput_ratio);
                sqlite3_bind_int64(s, 7, (sqlite3_int64) rows[i].updated_at);
                rc = sqlite3_step(s);
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "saving reputation");
        }

        txn = NULL;
        return ledger_commit(l);
}

static bool reputation_read(sqlite3_stmt *s, void *row) {
        struct ledger_reputation *p = row;

        return column_blob(s, 0, p->peer, sizeof(p->peer)) >= 0 &&
               column_skill(s, 1, p->skill) >= 0 &&
               column_double(s, 2, &p->successes) >= 0 &&
               column_double(s, 3, &p->failures) >= 0 &&
               column_double(s, 4, &p->latency_ewma_usec) >= 0 &&
               column_double(s, 5, &p->throughput_ratio) >= 0 &&
               column_u64(s, 6, &p->updated_at) >= 0;
}

int ledger_load_reputation(struct ledger *l, struct ledger_reputation **ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;

        if (!l || !ret || !ret_n)
                return -EINVAL;
        s = l->stmts[STMT_REPUTATION_ALL];
        return collect_rows(l, s, sizeof(**ret), reputation_read, "reputation", "loading reputation", (void **) ret,
                            ret_n);
}

/* ---- Group commit ---------------------------------------------------- */

int ledger_batch_begin(struct ledger *l, bool full) {
        int r;

        if (!l || l->batch)
                return -EINVAL;
        r = ledger_begin(l, full);
        if (r < 0)
                return r;
        l->batch = true;
        return 0;
}

int ledger_batch_commit(struct ledger *l) {
        if (!l || !l->batch)
                return -EINVAL;
        l->batch = false;
        return ledger_commit(l);
}

void ledger_batch_abort(struct ledger *l) {
        if (!l || !l->batch)
                return;
        l->batch = false;
        ledger_rollback(l);
}

/* ---- Kept results ---- */

static bool keep_key_is_valid(const char *key) {
        size_t n = key ? strnlen(key, LEDGER_KEEP_KEY_MAX + 1) : 0;

        return n > 0 && n <= LEDGER_KEEP_KEY_MAX && utf8_valid(key, n);
}

int ledger_keep_result(struct ledger *l, uint32_t owner, const char *key, const uint8_t job_id[CHEQUE_JOB_SIZE],
                       const void *result, size_t size, uint64_t now, uint64_t expires_at) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        int r, rc;

        if (!l || !keep_key_is_valid(key) || !job_id || (!result && size > 0) || size > LEDGER_KEEP_RESULT_MAX ||
            now > INT64_MAX || expires_at > INT64_MAX)
                return -EINVAL;
        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_KEEP_PUT];

                sqlite3_bind_int64(s, 1, owner);
                sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
                bind_blob(s, 3, job_id, CHEQUE_JOB_SIZE);
                sqlite3_bind_blob(s, 4, size ? result : "", (int) size, SQLITE_STATIC);
                sqlite3_bind_int64(s, 5, (sqlite3_int64) now);
                sqlite3_bind_int64(s, 6, (sqlite3_int64) expires_at);
                rc = sqlite3_step(s);
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "keeping a result");
        }
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_KEEP_EXPIRE];

                sqlite3_bind_int64(s, 1, (sqlite3_int64) now);
                rc = sqlite3_step(s);
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "dropping expired results");
        }
        txn = NULL;
        return ledger_commit(l);
}

int ledger_kept_result(struct ledger *l, uint32_t owner, const char *key, uint64_t now, void **ret, size_t *ret_size) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        const void *p;
        int rc, n;

        if (!l || !keep_key_is_valid(key) || !ret || !ret_size || now > INT64_MAX)
                return -EINVAL;
        s = l->stmts[STMT_KEEP_GET];
        sqlite3_bind_int64(s, 1, owner);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64) now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "looking up a kept result");
        p = sqlite3_column_blob(s, 0);
        n = sqlite3_column_bytes(s, 0);
        if (n < 0 || (n > 0 && !p))
                return ledger_bad_row(l, "kept_results");
        *ret = malloc(n > 0 ? (size_t) n : 1);
        if (!*ret)
                return -ENOMEM;
        if (n > 0)
                memcpy(*ret, p, (size_t) n);
        *ret_size = (size_t) n;
        return 0;
}

/* ---- Write-offs (provider side) ---- */

int ledger_served_total(struct ledger *l, const uint8_t requester[32], uint64_t *ret) {
        if (!l || !requester || !ret)
                return -EINVAL;
        return served_sum(l, requester, ret);
}

/* A sum over [since, until) of peer's rows (STMT_SERVED_SINCE: jobs served;
 * STMT_WRITE_OFF_RECENT: write-offs). */
static int sum_since(struct ledger *l, unsigned id, const uint8_t peer[32], uint64_t since, uint64_t until,
                     uint64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[id];
        int rc;

        bind_blob(s, 1, peer, 32);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) since);
        sqlite3_bind_int64(s, 3, (sqlite3_int64) until);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "adding up recent amounts");
        return column_u64(s, 0, ret) < 0 ? ledger_bad_row(l, "jobs or write_offs") : 0;
}

int ledger_write_off(struct ledger *l, const uint8_t requester[32], const struct ledger_write_off_rule *rule,
                     uint64_t now, uint64_t *ret) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        uint64_t served, written_off, received, transfers, covered, recent, recent_written_off, today, amount = 0;
        int r, rc;

        if (!l || !requester || !rule || !ret || now > INT64_MAX || rule->served_since > INT64_MAX ||
            rule->served_until > INT64_MAX)
                return -EINVAL;
        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_WRITE_OFF_GET];

                bind_blob(s, 1, requester, 32);
                bind_blob(s, 2, l->self, 32);
                rc = sqlite3_step(s);
                if (rc != SQLITE_ROW)
                        return ledger_fail(l, rc, "reading what a peer owes");
                if (column_u64(s, 0, &served) < 0 || column_u64(s, 1, &written_off) < 0 ||
                    column_u64(s, 2, &received) < 0 || column_u64(s, 3, &transfers) < 0)
                        return ledger_bad_row(l, "served_totals, cheques_received or transfers");
                received = received + transfers < received ? UINT64_MAX : received + transfers;
        }
        r = sum_since(l, STMT_SERVED_SINCE, requester, rule->served_since, rule->served_until, &recent);
        /* What was written off of that recent work already. */
        if (r >= 0)
                r = sum_since(l, STMT_WRITE_OFF_RECENT, requester, rule->served_since, INT64_MAX,
                              &recent_written_off);
        if (r >= 0)
                r = sum_since(l, STMT_WRITE_OFF_RECENT, requester, now > 24ull * 3600 * 1000000 ?
                              now - 24ull * 3600 * 1000000 : 0, INT64_MAX, &today);
        if (r < 0)
                return r;

        /* What it owes now (neither a cheque nor an earlier write-off
         * covers it) ... */
        covered = written_off + received < written_off ? UINT64_MAX : written_off + received;
        if (served > covered)
                amount = served - covered;
        /* ... but no more than it was served just before the restart: an
         * honest requester pays within moments of a result, so what it had
         * not paid when it died is recent; older debt stays debt, and work
         * since the restart is its new life's.  At most daily_cap a day:
         * restarting is no way to work for free. */
        recent = recent > recent_written_off ? recent - recent_written_off : 0;
        if (amount > recent)
                amount = recent;
        if (today >= rule->daily_cap)
                amount = 0;
        else if (amount > rule->daily_cap - today)
                amount = rule->daily_cap - today;
        if (amount > INT64_MAX)
                amount = INT64_MAX;
        if (amount > 0) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_WRITE_OFF_ADD];
                _cleanup_reset_ sqlite3_stmt *t = l->stmts[STMT_WRITE_OFF_LOG];

                bind_blob(s, 1, requester, 32);
                sqlite3_bind_int64(s, 2, (sqlite3_int64) amount);
                rc = sqlite3_step(s);
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "writing off a debt");
                bind_blob(t, 1, requester, 32);
                sqlite3_bind_int64(t, 2, (sqlite3_int64) amount);
                sqlite3_bind_int64(t, 3, (sqlite3_int64) now);
                rc = sqlite3_step(t);
                if (rc != SQLITE_DONE)
                        return ledger_fail(l, rc, "logging a write-off");
        }
        txn = NULL;
        r = ledger_commit(l);
        if (r < 0)
                return r;
        *ret = amount;
        return 0;
}

/* ---- Transfers -------------------------------------------------------- */

int ledger_transfer_next_seq(struct ledger *l, uint64_t *ret) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc;

        if (!l || !ret)
                return -EINVAL;
        s = l->stmts[STMT_TRANSFER_NEXT_SEQ];
        bind_blob(s, 1, l->self, 32);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "reading our next transfer seq");
        if (column_u64(s, 0, ret) < 0 || *ret == 0)
                return ledger_bad_row(l, "transfers");
        return 0;
}

/* What holds t's slot: 0 nothing, 1 t itself (*ret_delivered says
 * whether delivered), -ENOTUNIQ another transfer. */
static int transfer_slot(struct ledger *l, const uint8_t id[32], const struct transfer *t, bool *ret_delivered) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_TRANSFER_SLOT];
        uint8_t held[32];
        int rc;

        bind_blob(s, 1, t->payer, 32);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) t->seq);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return ledger_fail(l, rc, "looking up a transfer");
        if (column_blob(s, 0, held, 32) < 0)
                return ledger_bad_row(l, "transfers");
        if (memcmp(held, id, 32) != 0)
                return -ENOTUNIQ;
        *ret_delivered = sqlite3_column_type(s, 1) != SQLITE_NULL;
        return 1;
}

static int transfer_insert(struct ledger *l, const uint8_t id[32], const struct transfer *t, bool delivered,
                           uint64_t now) {
        _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_TRANSFER_INSERT];
        _cleanup_free_ uint8_t *body = NULL;
        size_t n;
        int r;

        if (t->seq > INT64_MAX || t->amount > INT64_MAX || now > INT64_MAX)
                return -EOVERFLOW;
        r = transfer_encode(t, &body, &n);
        if (r < 0)
                return r == -EBADMSG ? -EINVAL : r;
        bind_blob(s, 1, id, 32);
        bind_blob(s, 2, t->payer, 32);
        sqlite3_bind_int64(s, 3, (sqlite3_int64) t->seq);
        bind_blob(s, 4, t->payee, 32);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) t->amount);
        bind_blob(s, 6, body, n);
        sqlite3_bind_int(s, 7, delivered);
        sqlite3_bind_int64(s, 8, (sqlite3_int64) now);
        r = sqlite3_step(s);
        if (r != SQLITE_DONE)
                return ledger_fail(l, r, "storing a transfer");
        return 0;
}

int ledger_transfer_signed(struct ledger *l, const struct transfer *t, uint64_t now) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        uint8_t id[32];
        bool delivered;
        int r;

        if (!l || !t || transfer_validate(t, NULL) < 0 || memcmp(t->payer, l->self, 32) != 0)
                return -EINVAL;
        transfer_id(t, id);
        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;
        r = transfer_slot(l, id, t, &delivered);
        if (r < 0)
                return r;
        if (r > 0)
                return -EALREADY;
        r = transfer_insert(l, id, t, false, now);
        if (r < 0)
                return r;
        r = ledger_commit(l);
        txn = NULL;
        return r;
}

int ledger_pay_transfer(struct ledger *l, const uint8_t payee[32], struct ledger_pay_job *jobs, size_t n,
                        ledger_transfer_sign_fn sign, void *userdata, uint64_t now, struct transfer *ret) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        _cleanup_(transfer_clear) struct transfer t = {};
        uint64_t amount = 0, seq;
        uint8_t id[32];
        bool delivered;
        int r;

        if (!l || !payee || !jobs || n == 0 || !sign || !ret || now > INT64_MAX ||
            memcmp(payee, l->self, 32) == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!jobs[i].job_id || !skill_is_valid(jobs[i].skill))
                        return -EINVAL;
                if (jobs[i].price > INT64_MAX)
                        return -EOVERFLOW;
        }

        r = ledger_begin(l, true);
        if (r < 0)
                return r;
        txn = l;

        for (size_t i = 0; i < n; i++) {
                r = job_insert(l, jobs[i].job_id, LEDGER_ROLE_PAID, payee, jobs[i].skill, jobs[i].price, now);
                if (r < 0)
                        return r;
                jobs[i].status = r > 0 ? 0 : -EALREADY;
                if (r > 0 && (add_u64(&amount, jobs[i].price) < 0 || amount > INT64_MAX))
                        return -EOVERFLOW;
        }
        if (amount == 0) {
                /* Paid before, or free: nothing to sign. */
                txn = NULL;
                r = ledger_commit(l);
                return r < 0 ? r : 0;
        }

        r = ledger_transfer_next_seq(l, &seq);
        if (r < 0)
                return r;
        r = sign(seq, amount, &t, userdata);
        if (r < 0)
                return r;
        if (transfer_validate(&t, NULL) < 0 || memcmp(t.payer, l->self, 32) != 0 ||
            memcmp(t.payee, payee, 32) != 0 || t.amount != amount || t.seq < seq)
                return -EINVAL;         /* not the transfer asked for: a bug of sign */
        transfer_id(&t, id);
        r = transfer_slot(l, id, &t, &delivered);
        if (r < 0)
                return r;
        if (r > 0)
                return -ENOTUNIQ;
        r = transfer_insert(l, id, &t, false, now);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_JOB_SET_TRANSFER];

                if (jobs[i].status < 0)
                        continue;
                bind_blob(s, 1, jobs[i].job_id, CHEQUE_JOB_SIZE);
                bind_blob(s, 2, id, 32);
                r = sqlite3_step(s);
                if (r != SQLITE_DONE)
                        return ledger_fail(l, r, "naming the transfer that paid a job");
        }

        txn = NULL;
        r = ledger_commit(l);
        if (r < 0)
                return r;
        *ret = t;
        t = (struct transfer) {};
        return 1;
}

int ledger_transfer_delivered(struct ledger *l, const struct transfer *t, uint64_t now) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        uint8_t id[32];
        bool delivered = false;
        int r;

        if (!l || !t || transfer_validate(t, NULL) < 0)
                return -EINVAL;
        transfer_id(t, id);
        /* Losing the last deliveries in a power cut costs a WANT to a
         * peer; what we sign ourselves is stored with a full sync. */
        r = ledger_begin(l, false);
        if (r < 0)
                return r;
        txn = l;
        r = transfer_slot(l, id, t, &delivered);
        if (r < 0)
                return r;
        if (r > 0 && delivered)
                return -EALREADY;
        if (r > 0) {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_TRANSFER_DELIVER];

                bind_blob(s, 1, id, 32);
                r = sqlite3_step(s);
                if (r != SQLITE_DONE)
                        return ledger_fail(l, r, "marking a transfer delivered");
        } else {
                r = transfer_insert(l, id, t, true, now);
                if (r < 0)
                        return r;
        }
        r = ledger_commit(l);
        txn = NULL;
        return r;
}

int ledger_transfer_load(struct ledger *l, ledger_transfer_fn fn, void *userdata) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc, r;

        if (!l || !fn)
                return -EINVAL;
        s = l->stmts[STMT_TRANSFER_ALL];
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                _cleanup_(transfer_clear) struct transfer t = {};
                const void *body = sqlite3_column_blob(s, 0);
                int n = sqlite3_column_bytes(s, 0);
                const char *reason;

                if (sqlite3_column_type(s, 0) != SQLITE_BLOB || !body || n <= 0 ||
                    transfer_decode(body, (size_t) n, &t, &reason) < 0)
                        return ledger_bad_row(l, "transfers");
                r = fn(&t, sqlite3_column_int(s, 1) != 0, userdata);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, "reading transfers");
        return 0;
}

int ledger_fraud_proof_add(struct ledger *l, const struct transfer *a, const struct transfer *b, uint64_t now) {
        _cleanup_transaction_ struct ledger *txn = NULL;
        _cleanup_free_ uint8_t *ba = NULL, *bb = NULL;
        size_t na, nb;
        int r;

        if (!l || !a || !b || now > INT64_MAX || transfer_fraud_proof_check(a, b, NULL) < 0)
                return -EINVAL;
        r = transfer_encode(a, &ba, &na);
        if (r >= 0)
                r = transfer_encode(b, &bb, &nb);
        if (r < 0)
                return r;
        r = ledger_begin(l, false);
        if (r < 0)
                return r;
        txn = l;
        {
                _cleanup_reset_ sqlite3_stmt *s = l->stmts[STMT_FRAUD_PUT];

                bind_blob(s, 1, a->payer, 32);
                bind_blob(s, 2, ba, na);
                bind_blob(s, 3, bb, nb);
                sqlite3_bind_int64(s, 4, (sqlite3_int64) now);
                r = sqlite3_step(s);
                if (r != SQLITE_DONE)
                        return ledger_fail(l, r, "storing a fraud proof");
        }
        r = ledger_commit(l);
        txn = NULL;
        return r;
}

int ledger_fraud_proof_load(struct ledger *l, ledger_fraud_proof_fn fn, void *userdata) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int rc, r;

        if (!l || !fn)
                return -EINVAL;
        s = l->stmts[STMT_FRAUD_ALL];
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                _cleanup_(transfer_clear) struct transfer a = {}, b = {};
                const void *pa = sqlite3_column_blob(s, 0), *pb = sqlite3_column_blob(s, 1);
                int na = sqlite3_column_bytes(s, 0), nb = sqlite3_column_bytes(s, 1);

                if (!pa || !pb || na <= 0 || nb <= 0 || transfer_decode(pa, (size_t) na, &a, NULL) < 0 ||
                    transfer_decode(pb, (size_t) nb, &b, NULL) < 0 || transfer_fraud_proof_check(&a, &b, NULL) < 0)
                        return ledger_bad_row(l, "fraud_proofs");
                r = fn(&a, &b, userdata);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return ledger_fail(l, rc, "reading fraud proofs");
        return 0;
}
