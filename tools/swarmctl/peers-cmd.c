/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* swarmctl peers: the swarm as the local swarmd sees it. */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "node-id.h"
#include "log.h"
#include "peers-cmd.h"

static const char *state_name(Swarm__MemberState s) {
        switch (s) {
        case SWARM__MEMBER_STATE__ALIVE: return "alive";
        case SWARM__MEMBER_STATE__SUSPECT: return "suspect";
        case SWARM__MEMBER_STATE__DEAD: return "dead";
        case SWARM__MEMBER_STATE__LEFT: return "left";
        default: return "?";
        }
}

/* How the local swarmd rates p for skill; NULL for ourselves or when the
 * ledger is not open (matched by name: a skill may be offered once). */
static const Swarm__PeerSkillView *reputation_of(const Swarm__PeerInfo *p, const char *skill) {
        for (size_t i = 0; i < p->n_reputation; i++)
                if (skill && strcmp(p->reputation[i]->skill, skill) == 0)
                        return p->reputation[i];
        return NULL;
}

static const char *price_unit(const Swarm__SkillOffer *o) {
        return o->price_unit && o->price_unit[0] ? o->price_unit : "job";
}

static void print_reputation_json(const Swarm__PeerSkillView *v) {
        if (!v) {
                printf("null");
                return;
        }
        printf("{\"mean\": %.4f, \"successes\": %.3f, \"failures\": %.3f, \"trust\": %.4f, \"latency_ms\": ",
               v->mean, v->successes, v->failures, v->trust);
        if (v->latency_ms > 0)
                printf("%.3f", v->latency_ms);
        else
                printf("null");
        printf(", \"throughput_ratio\": ");
        if (v->throughput_ratio > 0)
                printf("%.4f", v->throughput_ratio);
        else
                printf("null");
        printf(", \"checked\": %" PRIu64 ", \"unchecked\": %" PRIu64 ", \"check_failed\": %" PRIu64
               ", \"check_percent\": %" PRIu32 ", \"sampled\": %s}", v->checked, v->unchecked, v->check_failed,
               v->check_percent, v->sampled ? "true" : "false");
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
                       ", \"self\": %s, \"faults\": %u, ",
                       state_name(p->state), p->incarnation, p->version, p->last_heard_ms_ago, p->capacity,
                       p->load, p->lending ? "true" : "false", p->self ? "true" : "false", p->faults);
                printf("\"reachability\": ");
                json_string(p->reachability);
                printf(", \"relays\": [");
                for (size_t r = 0; r < p->n_relays; r++) {
                        char rid[NODE_ID_LEN + 1] = "";
                        if (p->relays[r].len == 32)
                                node_id_from_public_key(p->relays[r].data, rid);
                        printf("%s", r ? ", " : "");
                        json_string(rid);
                }
                printf("], \"route\": ");
                json_string(p->self ? "self" : p->route[0] ? p->route : "direct");
                printf(", \"via\": ");
                if (p->via.len == 32) {
                        char vid[NODE_ID_LEN + 1];
                        node_id_from_public_key(p->via.data, vid);
                        json_string(vid);
                } else
                        printf("null");
                printf(", \"skills\": [");
                for (size_t s = 0; s < p->n_skills; s++) {
                        printf("%s{\"name\": ", s ? ", " : "");
                        json_string(p->skills[s]->name);
                        printf(", \"version\": ");
                        json_string(p->skills[s]->version);
                        printf(", \"price\": %" PRIu64 ", \"list_price\": %" PRIu64 ", \"price_unit\": ",
                               p->skills[s]->price, p->skills[s]->list_price);
                        json_string(p->skills[s]->price_unit);
                        printf(", \"unit\": ");
                        json_string(p->skills[s]->unit);
                        printf(", \"throughput\": %" PRIu64 ", \"workers\": %u, \"demand\": %.4f, \"device\": ",
                               p->skills[s]->throughput, p->skills[s]->workers, p->skills[s]->demand);
                        json_string(p->skills[s]->device);
                        printf(", \"reputation\": ");
                        print_reputation_json(reputation_of(p, p->skills[s]->name));
                        printf("}");
                }
                printf("]}");
        }
        printf("%s]\n", reply->n_peers ? "\n" : "");
}

/* One line per peer, then one per skill it offers: the price, and how
 * this node rates the peer for it (mean of the Beta, decayed successes /
 * failures, measured ÷ advertised throughput once challenged). */
static void print_table(const Swarm__ControlReply *reply) {
        printf("%-14s %-14s %-24s %-8s %-12s %-9s %-8s %s\n", "NODE", "NAME", "ENDPOINT", "STATE", "INCARNATION",
               "HEARD", "LOAD", "REACHED");
        printf("  %-22s %-34s %-6s %-15s %s\n", "SKILL", "PRICE NOW", "MEAN", "OK/FAILED", "THROUGHPUT");
        for (size_t i = 0; i < reply->n_peers; i++) {
                const Swarm__PeerInfo *p = reply->peers[i];
                char id[NODE_ID_LEN + 1] = "?", heard[16], load[16], reached[32];

                if (p->node_id.len == 32)
                        node_id_from_public_key(p->node_id.data, id);
                if (p->self)
                        snprintf(heard, sizeof(heard), "(self)");
                else
                        snprintf(heard, sizeof(heard), "%.1fs ago", (double) p->last_heard_ms_ago / 1e3);
                snprintf(load, sizeof(load), "%u/%u", p->load, p->capacity);
                /* How we send to it: directly, through a relay it lists,
                 * or back over its own connection to us (issue 21). */
                if (p->self)
                        snprintf(reached, sizeof(reached), "(%s)", p->reachability[0] ? p->reachability : "?");
                else if (p->via.len == 32) {
                        char vid[NODE_ID_LEN + 1];
                        node_id_from_public_key(p->via.data, vid);
                        snprintf(reached, sizeof(reached), "relay via %.12s", vid);
                } else
                        snprintf(reached, sizeof(reached), "%s", p->route[0] ? p->route : "direct");
                printf("%-.12s%-2s %-14.14s %-24.24s %-8s %-12" PRIu64 " %-9s %-8s %s%s%s\n", id,
                       p->self ? " *" : "", p->name, p->n_endpoints ? p->endpoints[0] : "-", state_name(p->state),
                       p->incarnation, heard, load, reached, p->lending ? "" : " [not lending]",
                       p->n_skills ? "" : " (no skills)");
                for (size_t s = 0; s < p->n_skills; s++) {
                        const Swarm__SkillOffer *o = p->skills[s];
                        const Swarm__PeerSkillView *v = reputation_of(p, o->name);
                        char skill[64], price[PRICE_MAX], mean[16] = "-", counts[32] = "-", ratio[16] = "-";

                        snprintf(skill, sizeof(skill), "%s%s%s", o->name, o->version[0] ? " " : "", o->version);
                        format_price(o->price, o->list_price, price_unit(o), price, sizeof(price));
                        if (v) {
                                snprintf(mean, sizeof(mean), "%.2f", v->mean);
                                snprintf(counts, sizeof(counts), "%.1f/%.1f", v->successes, v->failures);
                                if (v->throughput_ratio > 0)
                                        snprintf(ratio, sizeof(ratio), "%.2fx", v->throughput_ratio);
                        }
                        printf("  %-22.22s %-34s %-6s %-15s %s", skill, price, mean, counts, ratio);
                        /* Sampled verification (verification.sampled_skills):
                         * what this node checked of the peer's results. */
                        if (v && (v->sampled || v->checked || v->unchecked || v->check_failed))
                                printf("  checks %" PRIu32 "%%: %" PRIu64 " passed, %" PRIu64 " failed, %" PRIu64
                                       " unchecked", v->check_percent, v->checked, v->check_failed, v->unchecked);
                        putchar('\n');
                }
        }
}

int verb_peers(int argc, char *argv[]) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PeersRequest peers = SWARM__PEERS_REQUEST__INIT;
        Swarm__ControlReply *reply = NULL;
        const char *path = control_socket_default();
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
                        return SWARMCTL_EXIT_BAD_ARGS;
                }
        if (optind != argc) {
                log_error("peers: unexpected argument \"%s\".", argv[optind]);
                return SWARMCTL_EXIT_BAD_ARGS;
        }

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PEERS;
        req.peers = &peers;
        r = control_call(path, &req, &reply);
        if (r > 0)
                return r;
        if (json)
                print_json(reply);
        else
                print_table(reply);
        swarm__control_reply__free_unpacked(reply, NULL);
        return 0;
}
