/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl balance and swarmctl ledger: what this node paid, earned and is
 * owed, per peer and job by job.  Amounts travel in micro-credits and are
 * shown in credits with all six decimals, so that nothing is rounded
 * away; --json keeps the exact integers. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "node-id.h"
#include "ledger-cmd.h"
#include "log.h"

#define LIMIT_MAX 10000u                /* swarmd returns at most as many jobs */

/* Local time of t (µs since the epoch), or "-". */
static const char *when(uint64_t t, char *buf, size_t size) {
        time_t s = (time_t) (t / 1000000u);
        struct tm tm;

        if (t == 0 || !localtime_r(&s, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
        return buf;
}

static void node_id(const ProtobufCBinaryData *b, char out[NODE_ID_LEN + 1]) {
        if (b->len == 32)
                node_id_from_public_key(b->data, out);
        else
                snprintf(out, NODE_ID_LEN + 1, "?");
}

static void hex(const ProtobufCBinaryData *b, char *out, size_t size) {
        size_t k = 0;

        out[0] = '\0';
        for (size_t i = 0; i < b->len && k + 3 <= size; i++)
                k += (size_t) snprintf(out + k, size - k, "%02x", b->data[i]);
}

/* What a requester owes us; negative when it paid ahead. */
static int64_t debt(const Swarm__LedgerPeer *p) {
        return (int64_t) p->served - (int64_t) p->received;
}

static const char *role_name(Swarm__LedgerEntry__Role role) {
        return role == SWARM__LEDGER_ENTRY__ROLE__SERVED ? "served" : "paid";
}

/* --socket, --json and --help, shared by both verbs; leaves the operands
 * at argv[optind..].  Returns -1 to go on, or an exit status. */
static int parse_options(int argc, char *argv[], const char *usage, const char **path, bool *json,
                         uint32_t *limit) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "limit", required_argument, NULL, 'n' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        *path = control_socket_default();
        while ((c = getopt_long(argc, argv, limit ? "s:jn:h" : "s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        *path = optarg;
                        break;
                case 'j':
                        *json = true;
                        break;
                case 'n': {
                        char *end;
                        unsigned long long v;

                        if (!limit) {
                                log_error("%s: --limit is not an option here.\nUsage: %s", argv[0], usage);
                                return SWARMCTL_EXIT_BAD_ARGS;
                        }
                        errno = 0;
                        v = strtoull(optarg, &end, 10);
                        if (errno != 0 || end == optarg || *end || optarg[0] == '-' || v == 0 || v > LIMIT_MAX) {
                                log_error("%s: --limit wants a number of jobs from 1 to %u, not \"%s\".", argv[0],
                                          LIMIT_MAX, optarg);
                                return SWARMCTL_EXIT_BAD_ARGS;
                        }
                        *limit = (uint32_t) v;
                        break;
                }
                case 'h':
                        printf("%s\n", usage);
                        return 0;
                default:
                        return SWARMCTL_EXIT_BAD_ARGS;
                }
        return -1;
}

/* ---- balance ---- */

static void print_balance(const Swarm__Balance *b) {
        char c[CREDITS_MAX], d[CREDITS_MAX];

        printf("          Balance: %s credits (%" PRId64 " micro-credits): earned − spent − in flight\n",
               format_credits(b->balance, c), b->balance);
        printf("           Earned: %s (transfers to this node, delivered)\n", format_ucredits(b->earned, c));
        printf("            Spent: %s (its transfers, delivered)\n", format_ucredits(b->spent, c));
        printf("        In flight: %s (its transfers signed, not delivered yet)\n", format_ucredits(b->in_flight, c));
        printf("Reserved for jobs: %s (jobs running, payments queued)\n",
               format_ucredits(b->reserved_for_jobs, c));
        printf(" Pending delivery: %s (served, not yet paid by a delivered transfer)\n",
               format_ucredits(b->owed_to_us, c));
        if (b->cheques_received > 0 || b->cheques_issued > 0)
                printf("  Cheques (before transfers): %s received, %s issued\n",
                       format_ucredits(b->cheques_received, c), format_ucredits(b->cheques_issued, d));
        printf("             Jobs: %" PRIu64 " paid, %" PRIu64 " served\n", b->jobs_paid, b->jobs_served);
}

static void print_balance_json(const Swarm__Balance *b) {
        printf("{\"balance\": %" PRId64 ", \"earned\": %" PRIu64 ", \"spent\": %" PRIu64 ", \"in_flight\": %" PRIu64
               ", \"reserved\": %" PRIu64 ", \"pending_delivery\": %" PRIu64 ", \"cheques_received\": %" PRIu64
               ", \"cheques_issued\": %" PRIu64 ", \"jobs_paid\": %" PRIu64 ", \"jobs_served\": %" PRIu64
               ", \"unit\": \"micro-credits\"}\n",
               b->balance, b->earned, b->spent, b->in_flight, b->reserved_for_jobs, b->owed_to_us,
               b->cheques_received, b->cheques_issued, b->jobs_paid, b->jobs_served);
}

int verb_balance(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__BalanceRequest balance = SWARM__BALANCE_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path, *usage = "swarmctl balance [--socket PATH] [--json]";
        bool json = false;
        int r;

        r = parse_options(argc, argv, usage, &path, &json, NULL);
        if (r >= 0)
                return r;
        if (optind != argc) {
                log_error("balance: unexpected argument \"%s\".\nUsage: %s", argv[optind], usage);
                return SWARMCTL_EXIT_BAD_ARGS;
        }

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_BALANCE;
        req.balance = &balance;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        if (!reply->balance) {
                log_error("swarmd sent no balance (is it older than this swarmctl?).");
                swarm__control_reply__free_unpacked(reply, NULL);
                return SWARMCTL_EXIT_FAILURE;
        }
        if (json)
                print_balance_json(reply->balance);
        else
                print_balance(reply->balance);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}

/* ---- ledger ---- */

static void print_ledger(const Swarm__ControlReply *reply, bool filtered) {
        if (reply->n_ledger_peers == 0)
                printf("No payments or jobs %s.\n", filtered ? "with this peer" : "yet");
        else
                printf("%-12s  %-15s %-15s %-15s %-15s %-13s %s\n", "PEER", "PAID TO", "RECEIVED FROM", "SERVED TO",
                       "DEBT", "JOBS PAID/SRV", "LAST");
        for (size_t i = 0; i < reply->n_ledger_peers; i++) {
                const Swarm__LedgerPeer *p = reply->ledger_peers[i];
                char id[NODE_ID_LEN + 1], a[CREDITS_MAX], b[CREDITS_MAX], c[CREDITS_MAX], d[CREDITS_MAX], jobs[48], last[32];

                node_id(&p->node_id, id);
                snprintf(jobs, sizeof(jobs), "%" PRIu64 "/%" PRIu64, p->jobs_paid, p->jobs_served);
                printf("%-12.12s  %-15s %-15s %-15s %-15s %-13s %s\n", id, format_ucredits(p->issued, a),
                       format_ucredits(p->received, b), format_ucredits(p->served, c),
                       format_credits(debt(p), d), jobs, when(p->last_at, last, sizeof(last)));
        }
        if (reply->n_ledger_entries == 0)
                return;
        printf("\nThe %zu most recent job%s:\n", reply->n_ledger_entries, reply->n_ledger_entries == 1 ? "" : "s");
        printf("%-19s  %-6s  %-12s  %-16s %-15s %s\n", "TIME", "ROLE", "PEER", "SKILL", "PRICE", "PAYMENT");
        for (size_t i = 0; i < reply->n_ledger_entries; i++) {
                const Swarm__LedgerEntry *e = reply->ledger_entries[i];
                char id[NODE_ID_LEN + 1], at[32], price[CREDITS_MAX];

                node_id(&e->peer, id);
                printf("%-19s  %-6s  %-12.12s  %-16s %-15s %s\n", when(e->at, at, sizeof(at)), role_name(e->role), id,
                       e->skill, format_ucredits(e->price, price),
                       e->transfer.len == 32 ? (e->delivered ? "delivered" : "in flight") :
                       e->role == SWARM__LEDGER_ENTRY__ROLE__PAID ? "cheque" : "-");
        }
}

static void print_ledger_json(const Swarm__ControlReply *reply) {
        printf("{\"unit\": \"micro-credits\", \"peers\": [");
        for (size_t i = 0; i < reply->n_ledger_peers; i++) {
                const Swarm__LedgerPeer *p = reply->ledger_peers[i];
                char id[NODE_ID_LEN + 1];

                node_id(&p->node_id, id);
                printf("%s\n  {\"id\": ", i ? "," : "");
                json_string(id);
                printf(", \"paid\": %" PRIu64 ", \"received\": %" PRIu64 ", \"served\": %" PRIu64 ", \"debt\": %" PRId64
                       ", \"jobs_paid\": %" PRIu64 ", \"jobs_served\": %" PRIu64 ", \"last_at\": %" PRIu64 "}",
                       p->issued, p->received, p->served, debt(p), p->jobs_paid, p->jobs_served, p->last_at);
        }
        printf("%s], \"jobs\": [", reply->n_ledger_peers ? "\n" : "");
        for (size_t i = 0; i < reply->n_ledger_entries; i++) {
                const Swarm__LedgerEntry *e = reply->ledger_entries[i];
                char id[NODE_ID_LEN + 1], job[2 * 16 + 1];

                node_id(&e->peer, id);
                hex(&e->job_id, job, sizeof(job));
                printf("%s\n  {\"job\": \"%s\", \"role\": \"%s\", \"peer\": ", i ? "," : "", job, role_name(e->role));
                json_string(id);
                printf(", \"skill\": ");
                json_string(e->skill);
                printf(", \"price\": %" PRIu64 ", \"at\": %" PRIu64, e->price, e->at);
                if (e->transfer.len == 32) {
                        char transfer[2 * 32 + 1];

                        hex(&e->transfer, transfer, sizeof(transfer));
                        printf(", \"transfer\": \"%s\", \"delivered\": %s", transfer, e->delivered ? "true" : "false");
                }
                printf("}");
        }
        printf("%s]}\n", reply->n_ledger_entries ? "\n" : "");
}

/* PEER on the command line: a whole node id, or the start of one that
 * matches exactly one peer in the ledger (as the tables show them). */
static int resolve_peer(const char *path, const char *arg, uint8_t ret[32]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__LedgerRequest ledger = SWARM__LEDGER_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        size_t matches = 0;
        int r;

        if (node_id_to_public_key(arg, ret) == 0)
                return 0;
        if (strlen(arg) < 4 || strlen(arg) >= NODE_ID_LEN) {
                log_error("ledger: \"%s\" is not a node id (52 characters, or the first 4 or more of one).", arg);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_LEDGER;
        req.ledger = &ledger;
        ledger.limit = 1;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        for (size_t i = 0; i < reply->n_ledger_peers; i++) {
                char id[NODE_ID_LEN + 1];

                node_id(&reply->ledger_peers[i]->node_id, id);
                if (strncmp(id, arg, strlen(arg)) == 0 && reply->ledger_peers[i]->node_id.len == 32) {
                        memcpy(ret, reply->ledger_peers[i]->node_id.data, 32);
                        matches++;
                }
        }
        swarm__control_reply__free_unpacked(reply, NULL);
        if (matches == 1)
                return 0;
        log_error("ledger: %s peer in the ledger starts with \"%s\"%s.", matches ? "more than one" : "no", arg,
                  matches ? "; give more of its id" : "");
        return SWARMCTL_EXIT_BAD_ARGS;
}

int verb_ledger(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__LedgerRequest ledger = SWARM__LEDGER_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path, *usage = "swarmctl ledger [PEER] [--limit N] [--socket PATH] [--json]";
        uint8_t peer[32];
        uint32_t limit = 0;
        bool json = false;
        int r;

        r = parse_options(argc, argv, usage, &path, &json, &limit);
        if (r >= 0)
                return r;
        if (argc - optind > 1) {
                log_error("ledger: unexpected argument \"%s\".\nUsage: %s", argv[optind + 1], usage);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        if (optind < argc) {
                r = resolve_peer(path, argv[optind], peer);
                if (r > 0)
                        return r;
                ledger.peer.data = peer;
                ledger.peer.len = sizeof(peer);
        }

        ledger.limit = limit;           /* 0: swarmd's default, 50 */
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_LEDGER;
        req.ledger = &ledger;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        if (json)
                print_ledger_json(reply);
        else
                print_ledger(reply, ledger.peer.len > 0);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}
