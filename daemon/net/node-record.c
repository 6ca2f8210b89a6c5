/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "macro.h"
#include "node-record.h"
#include "pricing.h"
#include "skill-pool.h"
#include "skills.h"
#include "time-util.h"

static void skill_offers_free(Swarm__SkillOffer **offers, size_t n) {
        for (size_t i = 0; i < n; i++) {
                Swarm__SkillOffer *o = offers[i];
                free(o->name);
                free(o->version);
                free(o->unit);
                free(o->device);
                free(o->price_unit);
                free(o->variant);
                free(o->model);
                free(o);
        }
        free(offers);
}

static void relay_refs_free(Swarm__RelayRef **refs, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(refs[i]->node_id.data);
                free(refs[i]->endpoint);
                free(refs[i]);
        }
        free(refs);
}

void node_record_free(Swarm__NodeRecord *r) {
        if (!r)
                return;
        relay_refs_free(r->relays, r->n_relays);
        skill_offers_free(r->skills, r->n_skills);
        for (size_t i = 0; i < r->n_endpoints; i++)
                free(r->endpoints[i]);
        free(r->endpoints);
        free(r->name);
        free(r->boot_id.data);
        free(r);
}

Swarm__NodeRecord *node_record_new(const uint8_t public_key[WIRE_NODE_ID_SIZE], const char *endpoint,
                                   const char *name) {
        Swarm__NodeRecord *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        swarm__node_record__init(r);
        r->node_id.data = (uint8_t *) public_key;
        r->node_id.len = WIRE_NODE_ID_SIZE;
        /* Both start from the wall clock so that a restarted node outranks
         * what the swarm remembers of its previous life without keeping a
         * counter on disk; membership raises them from there. */
        r->version = now(CLOCK_REALTIME);
        r->incarnation = now(CLOCK_REALTIME) / 1000u;      /* ms: a restart always outranks */
        r->issued_at = now(CLOCK_REALTIME);
        r->lending = true;
        r->boot_id.data = malloc(WIRE_BOOT_ID_SIZE);
        if (r->boot_id.data) {
                randombytes_buf(r->boot_id.data, WIRE_BOOT_ID_SIZE);
                r->boot_id.len = WIRE_BOOT_ID_SIZE;
        }
        r->endpoints = calloc(1, sizeof(char *));
        r->name = strdup(name ?: "");
        if (!r->endpoints || !r->name || !(r->endpoints[0] = strdup(endpoint))) {
                node_record_free(r);
                return NULL;
        }
        r->n_endpoints = 1;
        return r;
}

static char *advert_string(const struct swarm_values *advert, const char *key) {
        const char *s = "";

        (void) swarm_values_get_string(advert, key, &s);
        return strdup(s);
}

static uint64_t advert_int(const struct swarm_values *advert, const char *key) {
        int64_t x = 0;

        (void) swarm_values_get_int(advert, key, &x);
        return x > 0 ? (uint64_t) x : 0;
}

int node_record_update(Swarm__NodeRecord *r, struct skills *skills, bool lending, node_record_demand_fn demand,
                       void *userdata, uint64_t throughput_factor) {
        Swarm__SkillOffer **offers;
        size_t count = skills_count(skills), k = 0;
        uint32_t capacity = 0, load = 0;

        offers = calloc(count ? count : 1, sizeof(*offers));
        if (!offers)
                return -ENOMEM;
        for (size_t i = 0; i < count; i++) {
                struct skill_pool *p = skills_pool(skills, i);
                const struct skill_info *info = skill_pool_info(p);
                Swarm__SkillOffer *o;

                capacity += skill_pool_workers_alive(p);
                load += skill_pool_workers_busy(p);
                if (!info)
                        continue;       /* not up: not offered */
                o = calloc(1, sizeof(*o));
                if (!o)
                        break;
                swarm__skill_offer__init(o);
                o->name = strdup(skills_name(skills, i));
                o->version = strdup(info->version ?: "");
                o->unit = advert_string(info->advert, "unit");
                o->device = advert_string(info->advert, "device");
                o->throughput = advert_int(info->advert, "throughput");
                if (throughput_factor > 1)
                        o->throughput = o->throughput > UINT64_MAX / throughput_factor ? UINT64_MAX :
                                        o->throughput * throughput_factor;
                o->demand = demand ? demand(o->name ?: "", userdata) : 1.0;
                o->list_price = advert_int(info->advert, "price");
                o->price = pricing_apply(o->list_price, o->demand);
                o->price_unit = advert_string(info->advert, "price-unit");
                o->variant = advert_string(info->advert, "variant");
                o->model = advert_string(info->advert, "model");
                o->workers = skill_pool_workers_alive(p);
                offers[k++] = o;
                if (!o->name || !o->version || !o->unit || !o->device || !o->price_unit || !o->variant || !o->model)
                        break;
        }

        /* Unchanged: no new version. */
        if (k == r->n_skills && capacity == r->capacity && load == r->load && lending == r->lending) {
                bool same = true;
                for (size_t i = 0; i < k && same; i++)
                        same = offers[i]->name && strcmp(offers[i]->name, r->skills[i]->name) == 0 &&
                               offers[i]->price == r->skills[i]->price &&
                               offers[i]->workers == r->skills[i]->workers &&
                               offers[i]->throughput == r->skills[i]->throughput;
                if (same) {
                        skill_offers_free(offers, k);
                        return 0;
                }
        }

        skill_offers_free(r->skills, r->n_skills);
        r->skills = offers;
        r->n_skills = k;
        r->capacity = capacity;
        r->load = load;
        r->lending = lending;
        r->issued_at = now(CLOCK_REALTIME);
        return 1;
}

int node_record_set_reach(Swarm__NodeRecord *r, Swarm__Reachability reachability, bool relay_offered,
                          const uint8_t *const *relay_ids, const char *const *relay_endpoints, size_t n_relays) {
        Swarm__RelayRef **refs = NULL;
        bool same = r->reachability == reachability && r->relay_offered == relay_offered && r->n_relays == n_relays;

        for (size_t i = 0; same && i < n_relays; i++)
                same = memcmp(r->relays[i]->node_id.data, relay_ids[i], WIRE_NODE_ID_SIZE) == 0 &&
                       strcmp(r->relays[i]->endpoint, relay_endpoints[i]) == 0;
        if (same)
                return 0;

        if (n_relays > 0) {
                refs = calloc(n_relays, sizeof(*refs));
                if (!refs)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n_relays; i++) {
                refs[i] = calloc(1, sizeof(**refs));
                if (!refs[i]) {
                        relay_refs_free(refs, i);
                        return -ENOMEM;
                }
                swarm__relay_ref__init(refs[i]);
                refs[i]->node_id.data = malloc(WIRE_NODE_ID_SIZE);
                refs[i]->endpoint = strdup(relay_endpoints[i]);
                if (!refs[i]->node_id.data || !refs[i]->endpoint) {
                        relay_refs_free(refs, i + 1);
                        return -ENOMEM;
                }
                memcpy(refs[i]->node_id.data, relay_ids[i], WIRE_NODE_ID_SIZE);
                refs[i]->node_id.len = WIRE_NODE_ID_SIZE;
        }
        relay_refs_free(r->relays, r->n_relays);
        r->relays = refs;
        r->n_relays = n_relays;
        r->reachability = reachability;
        r->relay_offered = relay_offered;
        return 1;
}
