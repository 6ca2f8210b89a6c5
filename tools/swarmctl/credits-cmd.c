/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl credits and swarmctl pay (credits-cmd.h).  Amounts travel in
 * micro-credits; --json keeps the exact integers. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "credits-cmd.h"
#include "log.h"
#include "node-id.h"

/* --socket, --json and --help; leaves the operands at argv[optind..].
 * Returns -1 to go on, or an exit status. */
static int parse_options(int argc, char *argv[], const char *usage, const char **path, bool *json) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        *path = control_socket_default();
        while ((c = getopt_long(argc, argv, "s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        *path = optarg;
                        break;
                case 'j':
                        *json = true;
                        break;
                case 'h':
                        printf("%s\n", usage);
                        return 0;
                default:
                        return SWARMCTL_EXIT_BAD_ARGS;
                }
        return -1;
}

static void print_credits(const Swarm__Credits *v) {
        char c[CREDITS_MAX];

        printf("   Balance: %s (counted by this node's transfers)\n", format_ucredits(v->balance, c));
        printf("   Pending: %s (delivered to us, counted by our next transfer)\n", format_ucredits(v->pending, c));
        printf(" In flight: %s (our transfers not yet delivered)\n", format_ucredits(v->in_flight, c));
        printf("    Supply: %s (all mints this node delivered)\n", format_ucredits(v->supply, c));
        printf(" Transfers: %" PRIu64 " delivered here, our next seq %" PRIu64 "\n", v->delivered, v->next_seq);
        printf("    Banned: %" PRIu64 " payer%s (double spends)\n", v->fraud_proofs, v->fraud_proofs == 1 ? "" : "s");
        if (v->issuer)
                printf("This node is an issuer: what it pays is minted.\n");
}

static void print_credits_json(const Swarm__Credits *v) {
        printf("{\"balance\": %" PRIu64 ", \"pending\": %" PRIu64 ", \"in_flight\": %" PRIu64 ", \"supply\": %" PRIu64
               ", \"delivered\": %" PRIu64 ", \"next_seq\": %" PRIu64 ", \"fraud_proofs\": %" PRIu64
               ", \"issuer\": %s, \"unit\": \"micro-credits\"}\n",
               v->balance, v->pending, v->in_flight, v->supply, v->delivered, v->next_seq, v->fraud_proofs,
               v->issuer ? "true" : "false");
}

int verb_credits(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__CreditsRequest credits = SWARM__CREDITS_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path, *usage = "swarmctl credits [--socket PATH] [--json]";
        bool json = false;
        int r;

        r = parse_options(argc, argv, usage, &path, &json);
        if (r >= 0)
                return r;
        if (optind != argc) {
                log_error("credits: unexpected argument \"%s\".\nUsage: %s", argv[optind], usage);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_CREDITS;
        req.credits = &credits;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        if (!reply->credits) {
                log_error("swarmd sent no credits (is it older than this swarmctl?).");
                swarm__control_reply__free_unpacked(reply, NULL);
                return SWARMCTL_EXIT_FAILURE;
        }
        if (json)
                print_credits_json(reply->credits);
        else
                print_credits(reply->credits);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}

int verb_pay(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PayRequest pay = SWARM__PAY_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path, *usage = "swarmctl pay NODEID MICROCREDITS [--socket PATH] [--json]";
        uint8_t payee[32];
        unsigned long long amount;
        char *end;
        bool json = false;
        int r;

        r = parse_options(argc, argv, usage, &path, &json);
        if (r >= 0)
                return r;
        if (argc - optind != 2) {
                log_error("pay: wants a node id and an amount in micro-credits.\nUsage: %s", usage);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        if (node_id_to_public_key(argv[optind], payee) < 0) {
                log_error("pay: \"%s\" is not a node id (what swarmd --show-identity prints).", argv[optind]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }
        errno = 0;
        amount = strtoull(argv[optind + 1], &end, 10);
        if (errno != 0 || end == argv[optind + 1] || *end || argv[optind + 1][0] == '-' || amount == 0) {
                log_error("pay: the amount is a number of micro-credits from 1, not \"%s\".", argv[optind + 1]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }

        pay.payee = (ProtobufCBinaryData) { .len = 32, .data = payee };
        pay.amount = amount;
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PAY;
        req.pay = &pay;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        if (reply->transfer_id.len != 32) {
                log_error("swarmd sent no transfer id (is it older than this swarmctl?).");
                swarm__control_reply__free_unpacked(reply, NULL);
                return SWARMCTL_EXIT_FAILURE;
        }
        if (json)
                printf("{\"transfer\": \"");
        else
                printf("Transfer ");
        for (size_t i = 0; i < 32; i++)
                printf("%02x", reply->transfer_id.data[i]);
        printf(json ? "\", \"amount\": %llu}\n" : " signed and broadcast: %llu micro-credits.\n", amount);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}
