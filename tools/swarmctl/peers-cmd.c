/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl peers: the swarm as the local swarmd sees it. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control-client.h"
#include "identity.h"
#include "log.h"
#include "macro.h"
#include "peers-cmd.h"

#define DEFAULT_SOCKET "/run/swarmharness/control.sock"

static const char *state_name(Swarm__MemberState s) {
        switch (s) {
        case SWARM__MEMBER_STATE__ALIVE: return "alive";
        case SWARM__MEMBER_STATE__SUSPECT: return "suspect";
        case SWARM__MEMBER_STATE__DEAD: return "dead";
        case SWARM__MEMBER_STATE__LEFT: return "left";
        default: return "?";
        }
}

static void json_string(const char *s) {
        putchar('"');
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

static void print_json(const Swarm__ControlReply *reply) {
        printf("[");
        for (size_t i = 0; i < reply->n_peers; i++) {
                const Swarm__PeerInfo *p = reply->peers[i];
                char id[NODE_ID_LEN + 1] = "";

                if (p->node_id.len == 32)
                        node_id_from_public_key(p->node_id.data, id);
                printf("%s\n  {\"id\": ", i ? "," : "");
                json_string(id);
                printf(", \"name\": ");
                json_string(p->name);
                printf(", \"endpoints\": [");
                for (size_t e = 0; e < p->n_endpoints; e++) {
                        printf("%s", e ? ", " : "");
                        json_string(p->endpoints[e]);
                }
                printf("], \"state\": \"%s\", \"incarnation\": %" PRIu64 ", \"version\": %" PRIu64
                       ", \"last_heard_ms\": %" PRIu64 ", \"capacity\": %u, \"load\": %u, \"lending\": %s"
                       ", \"self\": %s, \"faults\": %u, \"skills\": [",
                       state_name(p->state), p->incarnation, p->version, p->last_heard_ms_ago, p->capacity,
                       p->load, p->lending ? "true" : "false", p->self ? "true" : "false", p->faults);
                for (size_t s = 0; s < p->n_skills; s++) {
                        printf("%s{\"name\": ", s ? ", " : "");
                        json_string(p->skills[s]->name);
                        printf(", \"version\": ");
                        json_string(p->skills[s]->version);
                        printf(", \"price\": %" PRIu64 ", \"price_unit\": ", p->skills[s]->price);
                        json_string(p->skills[s]->price_unit);
                        printf(", \"unit\": ");
                        json_string(p->skills[s]->unit);
                        printf(", \"throughput\": %" PRIu64 ", \"workers\": %u, \"device\": ",
                               p->skills[s]->throughput, p->skills[s]->workers);
                        json_string(p->skills[s]->device);
                        printf("}");
                }
                printf("]}");
        }
        printf("%s]\n", reply->n_peers ? "\n" : "");
}

static void print_table(const Swarm__ControlReply *reply) {
        printf("%-14s %-14s %-24s %-8s %-12s %-9s %-6s %s\n", "NODE", "NAME", "ENDPOINT", "STATE", "INCARNATION",
               "HEARD", "LOAD", "SKILLS (price)");
        for (size_t i = 0; i < reply->n_peers; i++) {
                const Swarm__PeerInfo *p = reply->peers[i];
                char id[NODE_ID_LEN + 1] = "?", heard[16], load[16], skills[256] = "";
                size_t used = 0;

                if (p->node_id.len == 32)
                        node_id_from_public_key(p->node_id.data, id);
                if (p->self)
                        snprintf(heard, sizeof(heard), "(self)");
                else
                        snprintf(heard, sizeof(heard), "%.1fs ago", (double) p->last_heard_ms_ago / 1e3);
                snprintf(load, sizeof(load), "%u/%u", p->load, p->capacity);
                for (size_t s = 0; s < p->n_skills && used < sizeof(skills); s++)
                        used += (size_t) snprintf(skills + used, sizeof(skills) - used, "%s%s(%" PRIu64 "/%s)",
                                                  s ? ", " : "", p->skills[s]->name, p->skills[s]->price,
                                                  p->skills[s]->price_unit[0] ? p->skills[s]->price_unit : "job");
                printf("%-.12s%-2s %-14.14s %-24.24s %-8s %-12" PRIu64 " %-9s %-6s %s%s\n", id,
                       p->self ? " *" : "", p->name, p->n_endpoints ? p->endpoints[0] : "-", state_name(p->state),
                       p->incarnation, heard, load, p->n_skills ? skills : "-",
                       p->lending ? "" : " [not lending]");
        }
}

int verb_peers(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path = getenv("SWARM_CONTROL_SOCKET") ?: DEFAULT_SOCKET;
        bool json = false;
        int c, r;
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };

        while ((c = getopt_long(argc, argv, "s:jh", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        path = optarg;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        printf("swarmctl peers [--socket PATH] [--json]\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind != argc) {
                log_error("peers: unexpected argument \"%s\".", argv[optind]);
                return 2;
        }

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        r = control_client_call(path, &req, &reply);
        if (r == -ENOTCONN) {
                log_error("swarmd is not running (nothing listens on %s).", path);
                return 3;
        }
        if (r < 0) {
                log_error_errno(r, "Talking to swarmd at %s failed: %m", path);
                return 1;
        }
        if (reply->error < 0) {
                log_error("swarmd: %s", reply->message);
                swarm__control_reply__free_unpacked(reply, NULL);
                return 1;
        }
        if (json)
                print_json(reply);
        else
                print_table(reply);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}
