/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reputation (reputation.h).  Three tables, each an array in insertion
 * order (so every result is independent of hashing) with an open-addressed
 * index over it:
 *
 *   peers    every id we heard of: ourselves, providers we used, issuers
 *            and the subjects of their opinions; holds the global trust;
 *   cells    one per (peer, skill): our own decayed counts and EWMAs, and
 *            what each issuer reported of it (so reputation_get() is one
 *            lookup and a walk over the reports of that cell);
 *   issuers  the latest opinion of each issuer, as the cells it touches.
 *
 * The index is keyed with a random SipHash key: ids and skill names come
 * from peers, who must not be able to pick colliding ones. */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "macro.h"
#include "reputation.h"

/* Below this (decayed) count an observation is too faded to publish. */
#define OPINION_MIN_COUNT 1e-3
/* Another's report of one (peer, skill) counts as at most this many
 * observations (scaled down, keeping its ratio).  Trust caps how much of
 * a report we take, but not the counts in it: without this, a clique
 * that gained a sliver of trust (one good job done for us) could publish
 * 10⁹ failures of every honest provider and outweigh everything we saw.
 * An honest requester's decayed count of one provider rarely exceeds it
 * (one job a minute for a 1 h half-life is ~87). */
#define REPORT_MAX_COUNT 100.0

struct report {
        uint32_t issuer;                /* peer index */
        double successes, failures;     /* as of at */
        uint64_t at;
};

struct cell {
        uint32_t peer;
        char skill[REPUTATION_SKILL_MAX + 1];
        bool own;
        double successes, failures;     /* own, decayed to at */
        uint64_t at;
        double latency_ewma_usec, throughput_ratio;
        struct report *reports;
        uint32_t n_reports, n_reports_allocated;
};

struct peer {
        uint8_t id[REPUTATION_ID_SIZE];
        double trust;
        int32_t issuer;                 /* index in issuers, -1: none */
};

struct issuer_entry {
        uint32_t cell;
        double successes, failures;
};

struct issuer {
        uint32_t peer;
        uint64_t version, at;
        struct issuer_entry *entries;
        size_t n_entries;
};

/* An index: slots hold an array index + 1, 0 is empty.  Nothing is ever
 * removed from peers or cells, so no tombstones. */
struct index {
        uint32_t *slots;
        size_t n_slots;                 /* a power of two, at least twice the entries */
};

struct reputation {
        struct reputation_params p;
        uint8_t hash_key[crypto_shorthash_KEYBYTES];
        uint32_t self;                  /* peer index */

        struct peer *peers;
        size_t n_peers, n_peers_allocated;
        struct index peer_index;

        struct cell *cells;
        size_t n_cells, n_cells_allocated;
        struct index cell_index;

        struct issuer *issuers;
        size_t n_issuers;               /* at most p.max_issuers, allocated up front */
};

void reputation_params_default(struct reputation_params *p) {
        *p = (struct reputation_params) {
                .half_life_usec = 3600e6,
                .latency_alpha = 0.3,
                .throughput_alpha = 0.5,
                .pretrust = 0.5,
                .opinion_weight = 0.5,
                .iterations = 20,
                .max_issuers = 1024,
                .max_entries = 256,
        };
}

static bool params_valid(const struct reputation_params *p) {
        return isfinite(p->half_life_usec) && p->half_life_usec > 0 &&
               isfinite(p->latency_alpha) && p->latency_alpha > 0 && p->latency_alpha <= 1 &&
               isfinite(p->throughput_alpha) && p->throughput_alpha > 0 && p->throughput_alpha <= 1 &&
               isfinite(p->pretrust) && p->pretrust > 0 && p->pretrust <= 1 &&
               isfinite(p->opinion_weight) && p->opinion_weight >= 0 &&
               p->iterations >= 1 && p->max_issuers >= 1 && p->max_issuers <= INT32_MAX &&
               p->max_entries >= 1 && p->max_entries <= UINT32_MAX;
}

static bool skill_valid(const char *skill) {
        size_t n;

        if (!skill)
                return false;
        n = strnlen(skill, REPUTATION_SKILL_MAX + 1);
        return n >= 1 && n <= REPUTATION_SKILL_MAX;
}

static bool count_valid(double x) {
        return isfinite(x) && x >= 0;
}

/* The factor by which a count recorded at `then` has faded by `now`. */
static double decay(const struct reputation *r, uint64_t then, uint64_t now) {
        if (now <= then)
                return 1.0;
        return exp2(-(double) (now - then) / r->p.half_life_usec);
}

/* ---- Index --------------------------------------------------------------- */

static uint64_t hash_key(const struct reputation *r, const uint8_t *id, const char *skill) {
        uint8_t buf[REPUTATION_ID_SIZE + REPUTATION_SKILL_MAX + 1];
        size_t n = REPUTATION_ID_SIZE;
        uint64_t h;

        memcpy(buf, id, REPUTATION_ID_SIZE);
        if (skill) {
                size_t k = strlen(skill);
                memcpy(buf + n, skill, k);
                n += k;
        }
        crypto_shorthash((unsigned char *) &h, buf, n, r->hash_key);
        return h;
}

static uint64_t peer_hash(const struct reputation *r, const uint8_t *id) {
        return hash_key(r, id, NULL);
}

static uint64_t cell_hash(const struct reputation *r, uint32_t peer, const char *skill) {
        return hash_key(r, r->peers[peer].id, skill);
}

static int32_t peer_find(const struct reputation *r, const uint8_t *id) {
        size_t mask = r->peer_index.n_slots - 1;

        for (size_t i = peer_hash(r, id) & mask;; i = (i + 1) & mask) {
                uint32_t v = r->peer_index.slots[i];

                if (v == 0)
                        return -1;
                if (memcmp(r->peers[v - 1].id, id, REPUTATION_ID_SIZE) == 0)
                        return (int32_t) (v - 1);
        }
}

static int64_t cell_find(const struct reputation *r, uint32_t peer, const char *skill) {
        size_t mask = r->cell_index.n_slots - 1;

        for (size_t i = cell_hash(r, peer, skill) & mask;; i = (i + 1) & mask) {
                uint32_t v = r->cell_index.slots[i];

                if (v == 0)
                        return -1;
                if (r->cells[v - 1].peer == peer && strcmp(r->cells[v - 1].skill, skill) == 0)
                        return (int64_t) (v - 1);
        }
}

static void index_put(struct index *x, uint64_t h, uint32_t value) {
        size_t mask = x->n_slots - 1, i;

        for (i = h & mask; x->slots[i] != 0; i = (i + 1) & mask)
                ;
        x->slots[i] = value + 1;
}

/* Makes room for one more entry in an index over n entries, rehashing
 * with hash(k) for every k < n. */
static int index_reserve(struct reputation *r, struct index *x, size_t n, bool cells) {
        uint32_t *slots;
        size_t n_slots;

        if ((n + 1) * 2 <= x->n_slots)
                return 0;
        if (n >= UINT32_MAX / 4)
                return -ENOMEM;
        n_slots = x->n_slots ? x->n_slots * 2 : 64;
        slots = calloc(n_slots, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        free(x->slots);
        x->slots = slots;
        x->n_slots = n_slots;
        for (size_t k = 0; k < n; k++)
                index_put(x, cells ? cell_hash(r, r->cells[k].peer, r->cells[k].skill) : peer_hash(r, r->peers[k].id),
                          (uint32_t) k);
        return 0;
}

static int grow(void **a, size_t *allocated, size_t n, size_t size) {
        size_t m;
        void *p;

        if (n < *allocated)
                return 0;
        m = *allocated ? *allocated * 2 : 64;
        p = reallocarray(*a, m, size);
        if (!p)
                return -ENOMEM;
        *a = p;
        *allocated = m;
        return 0;
}

static int peer_get(struct reputation *r, const uint8_t *id, uint32_t *ret) {
        int32_t i = r->n_peers > 0 ? peer_find(r, id) : -1;
        int k;

        if (i >= 0) {
                *ret = (uint32_t) i;
                return 0;
        }
        k = grow((void **) &r->peers, &r->n_peers_allocated, r->n_peers, sizeof(*r->peers));
        if (k < 0)
                return k;
        k = index_reserve(r, &r->peer_index, r->n_peers, false);
        if (k < 0)
                return k;
        r->peers[r->n_peers] = (struct peer) { .issuer = -1 };
        memcpy(r->peers[r->n_peers].id, id, REPUTATION_ID_SIZE);
        index_put(&r->peer_index, peer_hash(r, id), (uint32_t) r->n_peers);
        *ret = (uint32_t) r->n_peers++;
        return 0;
}

static int cell_get(struct reputation *r, uint32_t peer, const char *skill, uint32_t *ret) {
        int64_t i = r->n_cells > 0 ? cell_find(r, peer, skill) : -1;
        int k;

        if (i >= 0) {
                *ret = (uint32_t) i;
                return 0;
        }
        k = grow((void **) &r->cells, &r->n_cells_allocated, r->n_cells, sizeof(*r->cells));
        if (k < 0)
                return k;
        k = index_reserve(r, &r->cell_index, r->n_cells, true);
        if (k < 0)
                return k;
        r->cells[r->n_cells] = (struct cell) { .peer = peer };
        strcpy(r->cells[r->n_cells].skill, skill);
        index_put(&r->cell_index, cell_hash(r, peer, skill), (uint32_t) r->n_cells);
        *ret = (uint32_t) r->n_cells++;
        return 0;
}

/* ---- Life cycle ---------------------------------------------------------- */

int reputation_new(const uint8_t self[REPUTATION_ID_SIZE], const struct reputation_params *p,
                   struct reputation **ret) {
        struct reputation *r;
        struct reputation_params d;
        int k;

        if (!self || !ret)
                return -EINVAL;
        if (!p) {
                reputation_params_default(&d);
                p = &d;
        }
        if (!params_valid(p))
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->p = *p;
        randombytes_buf(r->hash_key, sizeof(r->hash_key));
        r->issuers = calloc(p->max_issuers, sizeof(*r->issuers));
        if (!r->issuers) {
                reputation_free(r);
                return -ENOMEM;
        }
        k = peer_get(r, self, &r->self);
        if (k < 0) {
                reputation_free(r);
                return k;
        }
        /* Until the first reputation_update_trust(), all trust is ours, so
         * nobody else's report counts. */
        r->peers[r->self].trust = 1.0;
        *ret = r;
        return 0;
}

struct reputation *reputation_free(struct reputation *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_cells; i++)
                free(r->cells[i].reports);
        for (size_t i = 0; i < r->n_issuers; i++)
                free(r->issuers[i].entries);
        free(r->cells);
        free(r->cell_index.slots);
        free(r->peers);
        free(r->peer_index.slots);
        free(r->issuers);
        free(r);
        return NULL;
}

/* ---- Own observations ---------------------------------------------------- */

static int own_cell(struct reputation *r, const uint8_t *peer, const char *skill, uint64_t now, struct cell **ret) {
        uint32_t p, c;
        struct cell *x;
        int k;

        if (!r || !peer || !skill_valid(skill))
                return -EINVAL;
        k = peer_get(r, peer, &p);
        if (k < 0)
                return k;
        k = cell_get(r, p, skill, &c);
        if (k < 0)
                return k;
        x = &r->cells[c];
        if (!x->own) {
                x->own = true;
                x->at = now;
        } else if (now > x->at) {
                double f = decay(r, x->at, now);
                x->successes *= f;
                x->failures *= f;
                x->at = now;
        }
        *ret = x;
        return 0;
}

int reputation_observe(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                       bool success, uint64_t now) {
        struct cell *x;
        int k;

        k = own_cell(r, peer, skill, now, &x);
        if (k < 0)
                return k;
        if (success)
                x->successes += 1.0;
        else
                x->failures += 1.0;
        return 0;
}

static double ewma(double old, double sample, double alpha) {
        return old > 0 ? (1.0 - alpha) * old + alpha * sample : sample;
}

int reputation_observe_latency(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                               double latency_usec, uint64_t now) {
        struct cell *x;
        int k;

        if (!isfinite(latency_usec) || latency_usec <= 0)
                return -EINVAL;
        k = own_cell(r, peer, skill, now, &x);
        if (k < 0)
                return k;
        x->latency_ewma_usec = ewma(x->latency_ewma_usec, latency_usec, r->p.latency_alpha);
        return 0;
}

int reputation_observe_throughput(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill,
                                  double measured, double advertised, uint64_t now) {
        struct cell *x;
        double ratio;
        int k;

        if (!isfinite(measured) || measured < 0 || !isfinite(advertised) || advertised <= 0)
                return -EINVAL;
        ratio = measured / advertised;
        if (!isfinite(ratio))
                return -EINVAL;
        /* A ratio of exactly 0 would read as "unknown": a provider that
         * delivered nothing is as slow as we can say. */
        if (ratio < 1e-6)
                ratio = 1e-6;
        k = own_cell(r, peer, skill, now, &x);
        if (k < 0)
                return k;
        x->throughput_ratio = ewma(x->throughput_ratio, ratio, r->p.throughput_alpha);
        return 0;
}

/* ---- The view ------------------------------------------------------------ */

/* How much of an issuer's report we take: its trust relative to ours,
 * capped. */
static double issuer_weight(const struct reputation *r, uint32_t issuer) {
        double ts = r->peers[r->self].trust, w;

        if (ts <= 0)
                return 0;
        w = r->peers[issuer].trust / ts;
        return w < r->p.opinion_weight ? w : r->p.opinion_weight;
}

void reputation_get(struct reputation *r, const uint8_t peer[REPUTATION_ID_SIZE], const char *skill, uint64_t now,
                    struct reputation_view *ret) {
        const struct cell *x;
        int32_t p;
        int64_t c;

        *ret = (struct reputation_view) { .mean = 0.5 };
        if (!r || !peer || !skill_valid(skill) || r->n_peers == 0)
                return;
        p = peer_find(r, peer);
        if (p < 0)
                return;
        ret->trust = r->peers[p].trust;
        c = r->n_cells > 0 ? cell_find(r, (uint32_t) p, skill) : -1;
        if (c < 0)
                return;
        x = &r->cells[c];

        if (x->own) {
                double f = decay(r, x->at, now);

                ret->own_successes = x->successes * f;
                ret->own_failures = x->failures * f;
                ret->latency_ewma_usec = x->latency_ewma_usec;
                ret->throughput_ratio = x->throughput_ratio;
        }
        ret->successes = ret->own_successes;
        ret->failures = ret->own_failures;
        for (uint32_t i = 0; i < x->n_reports; i++) {
                const struct report *y = &x->reports[i];
                double w = issuer_weight(r, y->issuer);

                if (w <= 0)
                        continue;
                w *= decay(r, y->at, now);
                ret->successes += w * y->successes;
                ret->failures += w * y->failures;
        }
        ret->mean = (ret->successes + 1.0) / (ret->successes + ret->failures + 2.0);
}

/* ---- Persistence --------------------------------------------------------- */

int reputation_export(struct reputation *r, uint64_t now, struct reputation_row **ret, size_t *ret_n) {
        struct reputation_row *rows;
        size_t n = 0;

        if (!r || !ret || !ret_n)
                return -EINVAL;
        for (size_t i = 0; i < r->n_cells; i++)
                n += r->cells[i].own;
        rows = calloc(n > 0 ? n : 1, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        n = 0;
        for (size_t i = 0; i < r->n_cells; i++) {
                const struct cell *x = &r->cells[i];
                struct reputation_row *w;
                uint64_t at = now > x->at ? now : x->at;
                double f = decay(r, x->at, at);

                if (!x->own)
                        continue;
                w = &rows[n++];
                memcpy(w->peer, r->peers[x->peer].id, REPUTATION_ID_SIZE);
                strcpy(w->skill, x->skill);
                w->successes = x->successes * f;
                w->failures = x->failures * f;
                w->latency_ewma_usec = x->latency_ewma_usec;
                w->throughput_ratio = x->throughput_ratio;
                w->updated_at = at;
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}

int reputation_import(struct reputation *r, const struct reputation_row *row) {
        uint32_t p, c;
        struct cell *x;
        int k;

        if (!r || !row || !skill_valid(row->skill) || !count_valid(row->successes) || !count_valid(row->failures) ||
            !count_valid(row->latency_ewma_usec) || !count_valid(row->throughput_ratio))
                return -EINVAL;
        k = peer_get(r, row->peer, &p);
        if (k < 0)
                return k;
        k = cell_get(r, p, row->skill, &c);
        if (k < 0)
                return k;
        x = &r->cells[c];
        x->own = true;
        x->successes = row->successes;
        x->failures = row->failures;
        x->at = row->updated_at;
        x->latency_ewma_usec = row->latency_ewma_usec;
        x->throughput_ratio = row->throughput_ratio;
        return 0;
}

/* ---- Opinions ------------------------------------------------------------ */

static int entry_by_weight(const void *a, const void *b) {
        const struct reputation_opinion_entry *x = a, *y = b;
        double nx = x->successes + x->failures, ny = y->successes + y->failures;

        if (nx != ny)
                return nx > ny ? -1 : 1;
        /* Equal weight: a fixed order, whatever the insertion order. */
        int k = memcmp(x->subject, y->subject, REPUTATION_ID_SIZE);
        return k != 0 ? k : strcmp(x->skill, y->skill);
}

int reputation_build_opinion(struct reputation *r, uint64_t now, struct reputation_opinion_entry **ret,
                             size_t *ret_n) {
        struct reputation_opinion_entry *e;
        size_t n = 0;

        if (!r || !ret || !ret_n)
                return -EINVAL;
        e = calloc(r->n_cells > 0 ? r->n_cells : 1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_cells; i++) {
                const struct cell *x = &r->cells[i];
                double f = decay(r, x->at, now);

                if (!x->own || x->peer == r->self || (x->successes + x->failures) * f < OPINION_MIN_COUNT)
                        continue;
                memcpy(e[n].subject, r->peers[x->peer].id, REPUTATION_ID_SIZE);
                strcpy(e[n].skill, x->skill);
                e[n].successes = x->successes * f;
                e[n].failures = x->failures * f;
                n++;
        }
        qsort(e, n, sizeof(*e), entry_by_weight);
        if (n > r->p.max_entries)
                n = r->p.max_entries;
        *ret = e;
        *ret_n = n;
        return 0;
}

static void report_remove(struct cell *x, uint32_t issuer) {
        for (uint32_t i = 0; i < x->n_reports; i++)
                if (x->reports[i].issuer == issuer) {
                        x->reports[i] = x->reports[--x->n_reports];
                        return;
                }
}

/* Forgets issuer's opinion and its slot (the last slot moves into it). */
static void issuer_remove(struct reputation *r, size_t i) {
        struct issuer *s = &r->issuers[i];

        for (size_t k = 0; k < s->n_entries; k++)
                report_remove(&r->cells[s->entries[k].cell], s->peer);
        free(s->entries);
        r->peers[s->peer].issuer = -1;
        if (i != r->n_issuers - 1) {
                r->issuers[i] = r->issuers[r->n_issuers - 1];
                r->peers[r->issuers[i].peer].issuer = (int32_t) i;
        }
        r->n_issuers--;
}

/* Room for one more issuer of trust t: the least trusted (the oldest of
 * equals) goes, unless that is the newcomer. */
static int issuer_make_room(struct reputation *r, double t) {
        size_t worst = 0;

        if (r->n_issuers < r->p.max_issuers)
                return 0;
        for (size_t i = 1; i < r->n_issuers; i++) {
                const struct issuer *a = &r->issuers[i], *b = &r->issuers[worst];
                double ta = r->peers[a->peer].trust, tb = r->peers[b->peer].trust;

                if (ta < tb || (ta == tb && a->at < b->at))
                        worst = i;
        }
        if (r->peers[r->issuers[worst].peer].trust > t)
                return -ENOBUFS;
        issuer_remove(r, worst);
        return 0;
}

static int report_add(struct cell *x, uint32_t issuer, double s, double f, uint64_t now) {
        for (uint32_t i = 0; i < x->n_reports; i++)
                if (x->reports[i].issuer == issuer) {
                        /* The same subject and skill twice in one opinion:
                         * the last counts, never the sum. */
                        x->reports[i] = (struct report) { issuer, s, f, now };
                        return 1;
                }
        if (x->n_reports >= x->n_reports_allocated) {
                uint32_t m = x->n_reports_allocated ? x->n_reports_allocated * 2 : 4;
                struct report *p = reallocarray(x->reports, m, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                x->reports = p;
                x->n_reports_allocated = m;
        }
        x->reports[x->n_reports++] = (struct report) { issuer, s, f, now };
        return 0;
}

int reputation_add_opinion(struct reputation *r, const uint8_t issuer[REPUTATION_ID_SIZE], uint64_t version,
                           const struct reputation_opinion_entry *entries, size_t n, uint64_t now) {
        _cleanup_free_ struct issuer_entry *list = NULL;
        struct issuer *s;
        uint32_t ip;
        size_t m = 0;
        int32_t held;
        int k;

        if (!r || !issuer || (n > 0 && !entries))
                return -EINVAL;
        if (memcmp(issuer, r->peers[r->self].id, REPUTATION_ID_SIZE) == 0)
                return -EINVAL;
        if (n > r->p.max_entries)
                return -E2BIG;
        for (size_t i = 0; i < n; i++)
                if (!skill_valid(entries[i].skill) || !count_valid(entries[i].successes) ||
                    !count_valid(entries[i].failures))
                        return -EINVAL;

        held = peer_find(r, issuer);
        if (held >= 0 && r->peers[held].issuer >= 0 && version <= r->issuers[r->peers[held].issuer].version)
                return -EALREADY;

        k = peer_get(r, issuer, &ip);
        if (k < 0)
                return k;
        if (r->peers[ip].issuer >= 0)
                issuer_remove(r, (size_t) r->peers[ip].issuer);
        else {
                k = issuer_make_room(r, r->peers[ip].trust);
                if (k < 0)
                        return k;
        }

        list = calloc(n > 0 ? n : 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        s = &r->issuers[r->n_issuers];
        *s = (struct issuer) { .peer = ip, .version = version, .at = now };
        r->peers[ip].issuer = (int32_t) r->n_issuers++;

        for (size_t i = 0; i < n; i++) {
                double es = entries[i].successes, ef = entries[i].failures;
                uint32_t sp, c;

                /* Nobody vouches for itself. */
                if (memcmp(entries[i].subject, issuer, REPUTATION_ID_SIZE) == 0)
                        continue;
                if (es + ef > REPORT_MAX_COUNT) {
                        double scale = REPORT_MAX_COUNT / (es + ef);
                        es *= scale;
                        ef *= scale;
                }
                k = peer_get(r, entries[i].subject, &sp);
                if (k >= 0)
                        k = cell_get(r, sp, entries[i].skill, &c);
                if (k >= 0)
                        k = report_add(&r->cells[c], ip, es, ef, now);
                if (k < 0) {
                        /* Keep what was stored consistent: the opinion
                         * is held with the entries added so far. */
                        s->entries = TAKE_PTR(list);
                        s->n_entries = m;
                        return k;
                }
                if (k == 0)
                        list[m++] = (struct issuer_entry) { c, es, ef };
                else
                        for (size_t q = 0; q < m; q++)
                                if (list[q].cell == c)
                                        list[q] = (struct issuer_entry) { c, es, ef };
        }
        s->entries = TAKE_PTR(list);
        s->n_entries = m;
        return 0;
}

uint64_t reputation_opinion_version(struct reputation *r, const uint8_t issuer[REPUTATION_ID_SIZE]) {
        int32_t p;

        if (!r || !issuer)
                return 0;
        p = peer_find(r, issuer);
        if (p < 0 || r->peers[p].issuer < 0)
                return 0;
        return r->issuers[r->peers[p].issuer].version;
}

/* ---- EigenTrust ---------------------------------------------------------- */

struct edge {
        uint32_t from, to;
        double c;                       /* normalised local trust */
};

/* Appends the normalised row of `from`: sums s and f per subject over all
 * skills (in acc, indexed by peer; touched lists the subjects), then
 * c = max(0, s − f) ÷ Σ. */
static int row_emit(uint32_t from, double (*acc)[2], uint32_t *touched, size_t n_touched, struct edge **edges,
                    size_t *n_edges, size_t *n_edges_allocated) {
        double sum = 0;

        for (size_t i = 0; i < n_touched; i++) {
                double c = acc[touched[i]][0] - acc[touched[i]][1];
                sum += c > 0 ? c : 0;
        }
        for (size_t i = 0; i < n_touched; i++) {
                uint32_t j = touched[i];
                double c = acc[j][0] - acc[j][1];

                acc[j][0] = acc[j][1] = 0;
                if (c <= 0 || sum <= 0 || !isfinite(c / sum))
                        continue;
                if (grow((void **) edges, n_edges_allocated, *n_edges, sizeof(**edges)) < 0)
                        return -ENOMEM;
                (*edges)[(*n_edges)++] = (struct edge) { from, j, c / sum };
        }
        return 0;
}

static void touch(double (*acc)[2], uint8_t *seen, uint32_t *touched, size_t *n_touched, uint32_t j, double s,
                  double f) {
        if (!seen[j]) {
                seen[j] = 1;
                touched[(*n_touched)++] = j;
        }
        acc[j][0] += s;
        acc[j][1] += f;
}

void reputation_update_trust(struct reputation *r, uint64_t now) {
        _cleanup_free_ double (*acc)[2] = NULL;
        _cleanup_free_ uint8_t *seen = NULL, *has_row = NULL;
        _cleanup_free_ uint32_t *touched = NULL;
        _cleanup_free_ struct edge *edges = NULL;
        _cleanup_free_ double *t = NULL, *next = NULL;
        size_t n_edges = 0, n_edges_allocated = 0, n_touched, n;
        double a;

        if (!r)
                return;
        n = r->n_peers;
        a = r->p.pretrust;
        acc = calloc(n, sizeof(*acc));
        seen = calloc(n, 1);
        has_row = calloc(n, 1);
        touched = calloc(n, sizeof(*touched));
        t = calloc(n, sizeof(*t));
        next = calloc(n, sizeof(*next));
        if (!acc || !seen || !has_row || !touched || !t || !next)
                return;         /* keeps the trust of the last run */

        /* Our row: our own observations, decayed alike (the decay is a
         * common factor, but keeps faded ones from outweighing new). */
        n_touched = 0;
        for (size_t i = 0; i < r->n_cells; i++) {
                const struct cell *x = &r->cells[i];
                double f;

                if (!x->own || x->peer == r->self)
                        continue;
                f = decay(r, x->at, now);
                touch(acc, seen, touched, &n_touched, x->peer, x->successes * f, x->failures * f);
        }
        if (row_emit(r->self, acc, touched, n_touched, &edges, &n_edges, &n_edges_allocated) < 0)
                return;
        for (size_t i = 0; i < n_touched; i++)
                seen[touched[i]] = 0;

        for (size_t k = 0; k < r->n_issuers; k++) {
                const struct issuer *s = &r->issuers[k];
                double f = decay(r, s->at, now);

                n_touched = 0;
                for (size_t i = 0; i < s->n_entries; i++)
                        touch(acc, seen, touched, &n_touched, r->cells[s->entries[i].cell].peer,
                              s->entries[i].successes * f, s->entries[i].failures * f);
                if (row_emit(s->peer, acc, touched, n_touched, &edges, &n_edges, &n_edges_allocated) < 0)
                        return;
                for (size_t i = 0; i < n_touched; i++)
                        seen[touched[i]] = 0;
        }
        for (size_t e = 0; e < n_edges; e++)
                has_row[edges[e].from] = 1;

        /* t ← (1 − a)·Cᵀt + a·p; a peer without a row (no positive
         * opinion, or none held) hands its share back to p. */
        t[r->self] = 1.0;
        for (unsigned it = 0; it < r->p.iterations; it++) {
                double back = 0;

                memset(next, 0, n * sizeof(*next));
                for (size_t e = 0; e < n_edges; e++)
                        next[edges[e].to] += (1.0 - a) * edges[e].c * t[edges[e].from];
                for (size_t i = 0; i < n; i++)
                        if (!has_row[i])
                                back += t[i];
                next[r->self] += a + (1.0 - a) * back;
                double *x = t;
                t = next;
                next = x;
        }
        for (size_t i = 0; i < n; i++)
                r->peers[i].trust = t[i];
}
