/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fakes of jobs-world.h: the daemon's network, membership, skills,
 * pools, lending, demand and accounts functions, in memory and driven by
 * the fuzz targets. */

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "demand.h"
#include "fuzz.h"
#include "jobs-world.h"
#include "lending.h"
#include "macro.h"
#include "membership.h"
#include "network.h"
#include "reputation.h"
#include "skills.h"

/* Requests the pools hold at once, over all pools (more: -EBUSY). */
#define REQUESTS_MAX 64u
/* Verified outputs remembered per input. */
#define APPROVED_MAX 64u
/* The wall clock the accounts (and so the reputation) read. */
#define WALL_USEC UINT64_C(1700000000000000)

struct world world;

/* ---- Network and membership ---- */

struct fake_member {
        const uint8_t *id;
        enum member_state state;
        bool self;
        Swarm__NodeRecord record;
        Swarm__SkillOffer offers[3];
        Swarm__SkillOffer *offer_list[3];
};

struct membership {
        struct fake_member members[WORLD_MEMBERS + 1];  /* self first */
};

struct network {
        network_job_fn handler;
        void *userdata;
        uint64_t max_message_size;
        bool send_fails[WORLD_PEERS];
        struct membership members;
};

static const Swarm__SignedRecord no_signature = SWARM__SIGNED_RECORD__INIT;

int world_peer_of(const uint8_t id[32]) {
        if (memcmp(id, world.self_pk, 32) == 0)
                return -1;
        for (int i = 0; i < WORLD_PEERS; i++)
                if (memcmp(id, world.peer_pk[i], 32) == 0)
                        return i;
        return -2;
}

void network_set_job_handler(struct network *n, network_job_fn fn, void *userdata) {
        FUZZ_CHECK(n == world.network);
        n->handler = fn;
        n->userdata = userdata;
}

/* Whatever the roles send must decode (they encode within the size they
 * were given, which is ours) and go to a peer. */
int network_send_job(struct network *n, const uint8_t to[WIRE_NODE_ID_SIZE], const uint8_t *data, size_t size) {
        _cleanup_(job_envelope_freep) Swarm__JobEnvelope *e = NULL;
        const char *reason = NULL;
        int peer, r;

        FUZZ_CHECK(n == world.network && to && data);
        FUZZ_CHECK(size > 0 && size <= n->max_message_size);
        r = job_decode(data, size, n->max_message_size, &e, &reason);
        if (r < 0)
                fprintf(stderr, "sent a message that does not decode: %s\n", reason ?: strerror(-r));
        FUZZ_CHECK(r == 0);
        peer = world_peer_of(to);
        FUZZ_CHECK(peer >= 0);
        if (world.sent)
                world.sent(peer, e, !n->send_fails[peer], world.sent_userdata);
        return n->send_fails[peer] ? -ENOBUFS : 0;
}

const uint8_t *network_self_id(const struct network *n) {
        return world.self_pk;
}

const uint8_t *network_secret_key(const struct network *n) {
        return world.self_sk;
}

struct membership *network_membership(const struct network *n) {
        return (struct membership *) &n->members;
}

void world_receive(unsigned peer, const uint8_t *data, size_t size) {
        struct network *n = world.network;

        FUZZ_CHECK(peer < WORLD_PEERS);
        if (n->handler)
                n->handler(n, world.peer_pk[peer], data, size, n->userdata);
}

void world_set_send_fails(unsigned peer, bool fail) {
        world.network->send_fails[peer % WORLD_PEERS] = fail;
}

const char *member_state_to_string(enum member_state s) {
        switch (s) {
        case MEMBER_ALIVE:
                return "alive";
        case MEMBER_SUSPECT:
                return "suspect";
        case MEMBER_DEAD:
                return "dead";
        case MEMBER_LEFT:
                return "left";
        default:
                return "?";
        }
}

size_t membership_count(const struct membership *m) {
        return ELEMENTSOF(m->members);
}

int membership_get(const struct membership *m, size_t i, struct member_info *ret) {
        const struct fake_member *f;

        if (i >= ELEMENTSOF(m->members))
                return -ENOENT;
        f = &m->members[i];
        *ret = (struct member_info) {
                .id = f->id,
                .state = f->state,
                .incarnation = 1,
                .record = &f->record,
                .signed_record = &no_signature,
                .self = f->self,
        };
        return 0;
}

int membership_find(const struct membership *m, const uint8_t id[WIRE_NODE_ID_SIZE], struct member_info *ret) {
        for (size_t i = 0; i < ELEMENTSOF(m->members); i++)
                if (memcmp(m->members[i].id, id, WIRE_NODE_ID_SIZE) == 0)
                        return membership_get(m, i, ret);
        return -ENOENT;
}

void world_set_member_state(unsigned member, int state) {
        world.network->members.members[1 + member % WORLD_MEMBERS].state = state;
}

static void offer(struct fake_member *f, size_t i, const char *name, uint64_t price, const char *variant,
                  uint64_t throughput) {
        Swarm__SkillOffer *o = &f->offers[i];

        swarm__skill_offer__init(o);
        o->name = (char *) name;
        o->price = price;
        o->variant = (char *) (variant ?: "");
        o->throughput = throughput;
        o->workers = 1;
        f->offer_list[i] = o;
        f->record.skills = f->offer_list;
        f->record.n_skills = i + 1;
}

static void member_init(struct fake_member *f, const uint8_t *id, bool self) {
        *f = (struct fake_member) { .id = id, .state = MEMBER_ALIVE, .self = self };
        swarm__node_record__init(&f->record);
        f->record.node_id = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) id };
        f->record.lending = true;
        f->record.capacity = 4;
}

/* Who offers what: peer 0 everything at list price, peer 1 hash dearer
 * and another variant of text, peer 2 hash dearest and slow but echo
 * cheap, and loaded. */
static void membership_init(struct membership *m, bool local_hash) {
        member_init(&m->members[0], world.self_pk, true);
        if (local_hash)
                offer(&m->members[0], 0, "hash", 1, NULL, 2000000000);
        for (unsigned i = 0; i < WORLD_MEMBERS; i++)
                member_init(&m->members[1 + i], world.peer_pk[i], false);
        offer(&m->members[1], 0, "hash", 1, NULL, 2000000000);
        offer(&m->members[1], 1, "echo", 3, NULL, 0);
        offer(&m->members[1], 2, "text", 2, "model-a", 1000);
        offer(&m->members[2], 0, "hash", 2, NULL, 1000000000);
        offer(&m->members[2], 1, "text", 1, "model-b", 1000);
        offer(&m->members[3], 0, "hash", 4, NULL, 1000);
        offer(&m->members[3], 1, "echo", 1, NULL, 0);
        m->members[3].record.load = 3;
}

/* ---- Skills and pools ---- */

struct skill_pool {
        const char *name;
        bool hosted;                    /* skills_get() finds it; else a verifier only */
        bool ready;
        struct skill_info info;
        unsigned queue_max;
};

struct skills {
        struct skill_pool pools[4];
};

struct pool_request {
        struct skill_pool *pool;
        enum pool_op op;
        const struct swarm_values *inputs, *outputs;
        pool_done_fn done;
        void *userdata;
        pool_chunk_fn chunk;
        void *chunk_userdata;
        bool running, cancelled;
};

static struct pool_request *requests[REQUESTS_MAX];
static size_t n_requests;
static struct pool_request *answering;  /* whose done is running */
static const struct swarm_values *approved[APPROVED_MAX];
static size_t n_approved;

static void pool_init(struct skill_pool *p, const char *name, bool hosted, bool ready, unsigned queue_max) {
        *p = (struct skill_pool) { .name = name, .hosted = hosted, .ready = ready, .queue_max = queue_max };
        p->info.name = (char *) name;
        p->info.version = (char *) "1.0";
        p->info.description = (char *) "";
        p->info.advert = swarm_values_new();
        FUZZ_CHECK(p->info.advert);
}

static void skills_init(struct skills *s, unsigned queue_max) {
        struct swarm_values *a;

        pool_init(&s->pools[0], "hash", true, true, queue_max);
        a = s->pools[0].info.advert;
        FUZZ_CHECK(swarm_values_set_int(a, "price", 1) == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "unit", "byte") == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "price-unit", "MB") == 0);
        FUZZ_CHECK(swarm_values_set_int(a, "throughput", 2000000000) == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "device", "cpu: fuzz") == 0);

        pool_init(&s->pools[1], "text", true, true, queue_max);
        a = s->pools[1].info.advert;
        FUZZ_CHECK(swarm_values_set_int(a, "price", 2) == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "variant", "model-a") == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "unit", "token") == 0);
        FUZZ_CHECK(swarm_values_set_string(a, "price-unit", "token") == 0);

        /* Verified here, run elsewhere. */
        pool_init(&s->pools[2], "echo", false, true, queue_max);
        FUZZ_CHECK(swarm_values_set_int(s->pools[2].info.advert, "price", 3) == 0);

        /* Hosted, but its first worker has not said hello yet. */
        pool_init(&s->pools[3], "cold", true, false, queue_max);
}

struct skill_pool *skills_get(struct skills *s, const char *name) {
        for (size_t i = 0; s && name && i < ELEMENTSOF(s->pools); i++)
                if (s->pools[i].hosted && strcmp(s->pools[i].name, name) == 0)
                        return &s->pools[i];
        return NULL;
}

struct skill_pool *skills_verifier(struct skills *s, const char *name) {
        for (size_t i = 0; s && name && i < ELEMENTSOF(s->pools); i++)
                if (strcmp(s->pools[i].name, name) == 0)
                        return &s->pools[i];
        return NULL;
}

/* The hash plugin, configured by its file's name. */
const char *skills_file_of(struct skills *s, const char *name) {
        return name && strcmp(name, "hash-plugin") == 0 ? "hash" : NULL;
}

const struct skill_info *skill_pool_info(const struct skill_pool *p) {
        return p && p->ready ? &p->info : NULL;
}

unsigned skill_pool_workers_alive(const struct skill_pool *p) {
        return p->ready ? 2 : 0;
}

/* Lending's release of device memory (issue 23) is not part of this world:
 * a pool is never released. */
bool skill_pool_released(const struct skill_pool *p) {
        return false;
}

bool skill_pool_warming(const struct skill_pool *p) {
        return false;
}

unsigned skill_pool_workers_busy(const struct skill_pool *p) {
        unsigned n = 0;

        for (size_t i = 0; i < n_requests; i++)
                n += requests[i]->pool == p && requests[i]->running;
        return n;
}

static unsigned queued(const struct skill_pool *p) {
        unsigned n = 0;

        for (size_t i = 0; i < n_requests; i++)
                n += requests[i]->pool == p && !requests[i]->running;
        return n;
}

int skill_pool_submit(struct skill_pool *p, enum pool_op op, const struct swarm_values *inputs,
                      const struct swarm_values *outputs, const struct swarm_values *proof, uint64_t deadline_usec,
                      pool_done_fn done, void *userdata, struct pool_request **ret) {
        struct pool_request *req;

        FUZZ_CHECK(p && inputs && done && ret);
        FUZZ_CHECK(op == POOL_EXECUTE || op == POOL_VERIFY || op == POOL_PRICE);
        if (n_requests >= REQUESTS_MAX || (p->queue_max > 0 && queued(p) >= p->queue_max))
                return -EBUSY;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        *req = (struct pool_request) { .pool = p, .op = op, .inputs = inputs, .outputs = outputs,
                                       .done = done, .userdata = userdata };
        requests[n_requests++] = req;
        *ret = req;
        return 0;
}

void skill_pool_request_on_chunk(struct pool_request *req, pool_chunk_fn chunk, void *userdata) {
        req->chunk = chunk;
        req->chunk_userdata = userdata;
}

static long request_index(const struct pool_request *req) {
        for (size_t i = 0; i < n_requests; i++)
                if (requests[i] == req)
                        return (long) i;
        return -1;
}

static struct pool_request *request_take(size_t i) {
        struct pool_request *req = requests[i];

        memmove(requests + i, requests + i + 1, (n_requests - i - 1) * sizeof(*requests));
        n_requests--;
        return req;
}

/* Calls done once and frees the request, as the pool does: what the
 * callback did not take of the outputs is freed with it. */
static void request_complete(struct pool_request *req, struct pool_result *res) {
        answering = req;
        req->done(req, res, req->userdata);
        answering = NULL;
        swarm_values_free(res->outputs);
        swarm_values_free(res->proof);
        free(req);
}

static void request_fail(struct pool_request *req, int status, const char *error) {
        struct pool_result res = { .status = status, .error = error };

        request_complete(req, &res);
}

void pool_request_cancel(struct pool_request *req) {
        long i;

        if (!req)
                return;
        /* The pool frees a request once its done returns: cancelling it
         * from done, or later, would be a use after free. */
        FUZZ_CHECK(req != answering);
        i = request_index(req);
        FUZZ_CHECK(i >= 0);
        if (req->running) {
                req->cancelled = true;
                return;
        }
        request_fail(request_take((size_t) i), -ECANCELED, "job cancelled");
}

size_t world_requests(void) {
        return n_requests;
}

enum pool_op world_request_op(size_t i) {
        return requests[i]->op;
}

long world_request_find(enum pool_op op) {
        for (size_t i = 0; i < n_requests; i++)
                if (requests[i]->op == op)
                        return (long) i;
        return -1;
}

static struct swarm_values *outputs_make(const struct pool_request *req, const struct world_answer *a) {
        struct swarm_values *v;
        _cleanup_free_ char *text = NULL;
        Swarm__JobValue **wire = NULL;
        struct swarm_tensor t;
        size_t n = 0;
        uint64_t shape;
        int64_t x = 0;

        switch (a->kind) {
        case 0: /* echo */
                if (job_values_to_wire(req->inputs, &wire, &n) < 0)
                        return swarm_values_new();
                if (job_values_from_wire(wire, n, NULL, &v, NULL) < 0)
                        v = swarm_values_new();
                job_values_free_wire(wire, n);
                return v;
        case 6: /* a worker that sent no value set at all */
                return NULL;
        }

        v = swarm_values_new();
        FUZZ_CHECK(v);
        switch (a->kind) {
        case 1:
                FUZZ_CHECK(swarm_values_set_bytes(v, "out", a->data, a->size) == 0);
                break;
        case 2:
                text = strndup((const char *) a->data, a->size);
                FUZZ_CHECK(text);
                FUZZ_CHECK(swarm_values_set_string(v, "text", text) == 0);
                break;
        case 3:
                memcpy(&x, a->data, a->size < sizeof(x) ? a->size : sizeof(x));
                FUZZ_CHECK(swarm_values_set_int(v, "n", x) == 0);
                break;
        case 4:
                /* Of at least one element (the SDK makes no empty tensor). */
                shape = a->size / sizeof(float);
                if (shape > 0 && swarm_values_add_tensor(v, "x", SWARM_DTYPE_F32, 1, &shape, &t) == 0)
                        memcpy(t.data, a->data, t.size);
                break;
        default: /* nothing */
                break;
        }
        return v;
}

void world_request_answer(size_t i, const struct world_answer *a) {
        struct pool_request *req;
        struct pool_result res = {};

        FUZZ_CHECK(i < n_requests);
        req = request_take(i);
        if (req->cancelled) {
                request_fail(req, -ECANCELED, "job cancelled");
                return;
        }
        res.status = a->status > 0 ? 0 : a->status;
        res.error = a->error;
        res.queue_usec = a->queue_usec;
        res.exec_usec = a->exec_usec;
        if (req->op == POOL_PRICE && res.status == 0)
                res.price = a->price;
        if (req->op == POOL_EXECUTE && res.status == 0) {
                res.outputs = outputs_make(req, a);
                if (a->proof) {
                        res.proof = swarm_values_new();
                        FUZZ_CHECK(res.proof);
                        FUZZ_CHECK(swarm_values_set_bytes(res.proof, "proof", a->data, a->size) == 0);
                }
        }
        if (req->op == POOL_VERIFY && res.status == 0) {
                world.verified_ok++;
                if (n_approved < APPROVED_MAX)
                        approved[n_approved++] = req->outputs;
        }
        request_complete(req, &res);
}

bool world_outputs_verified(const struct swarm_values *v) {
        for (size_t i = 0; i < n_approved; i++)
                if (approved[i] == v)
                        return true;
        return false;
}

void world_request_start(size_t i) {
        FUZZ_CHECK(i < n_requests);
        requests[i]->running = true;
}

void world_request_chunk(size_t i, const char *name, const void *data, size_t size) {
        struct pool_request *req;

        FUZZ_CHECK(i < n_requests);
        req = requests[i];
        if (req->op != POOL_EXECUTE || !req->chunk || req->cancelled)
                return;
        req->running = true;
        /* The chunk handler may end the job and cancel this request:
         * being running, it is only marked. */
        req->chunk(req, name, data, size, req->chunk_userdata);
}

void world_requests_settle(void) {
        for (size_t i = 0; i < n_requests;)
                if (requests[i]->cancelled)
                        request_fail(request_take(i), -ECANCELED, "job cancelled");
                else
                        i++;
}

/* ---- Lending and demand ---- */

struct lending {
        bool on;
};

bool lending_is_lending(const struct lending *l) {
        return l->on;
}

void world_set_lending(bool on) {
        if (world.lending)
                world.lending->on = on;
}

struct demand {
        double multiplier;
};

double demand_multiplier(const struct demand *d, const char *skill) {
        return d && skill ? d->multiplier : 1.0;
}

/* ---- Accounts ---- */

struct accounts_payment {
        accounts_paid_fn fn;
        void *userdata;
        bool forgotten;
        struct accounts_payment *next;
};

struct accounts {
        struct reputation *reputation;
        uint64_t debt_limit;
        uint64_t debt[WORLD_PEERS];
        uint64_t reserved;              /* what the requester's jobs hold of WORLD_FUNDS */
        bool failing;
        struct accounts_payment *queue, **tail;
};

static struct accounts_payment *accounts_enqueue(struct accounts *a, accounts_paid_fn fn, void *userdata) {
        struct accounts_payment *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->fn = fn;
        p->userdata = userdata;
        *a->tail = p;
        a->tail = &p->next;
        return p;
}

int accounts_admit(struct accounts *a, const uint8_t requester[32], uint64_t price, char *error, size_t size) {
        int peer;
        uint64_t debt;

        if (!a || a->debt_limit == 0)
                return 0;
        peer = world_peer_of(requester);
        FUZZ_CHECK(peer >= 0);
        debt = a->debt[peer];
        if (debt > a->debt_limit || price > a->debt_limit - debt) {
                snprintf(error, size, "unpaid debt of %" PRIu64 " micro-credits plus this job's %" PRIu64
                         " would pass this provider's limit of %" PRIu64, debt, price, a->debt_limit);
                return -EDQUOT;
        }
        return 0;
}

int accounts_served(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t requester[32],
                    uint64_t price, accounts_paid_fn recorded, void *userdata) {
        int peer;

        FUZZ_CHECK(a && job_id && skill && requester && recorded);
        peer = world_peer_of(requester);
        FUZZ_CHECK(peer >= 0);
        if (a->failing)
                return -EIO;
        if (!accounts_enqueue(a, recorded, userdata))
                return -ENOMEM;
        a->debt[peer] = price > UINT64_MAX - a->debt[peer] ? UINT64_MAX : a->debt[peer] + price;
        return 0;
}

int accounts_pay_and_keep(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                          uint64_t price, const struct accounts_keep *keep, accounts_paid_fn paid, void *userdata,
                          struct accounts_payment **ret) {
        struct accounts_payment *p;

        FUZZ_CHECK(a && job_id && skill && payee && paid && ret);
        FUZZ_CHECK(world_peer_of(payee) >= 0);          /* we never pay ourselves */
        FUZZ_CHECK(!keep || (keep->key && keep->result));
        if (a->failing)
                return -EIO;
        p = accounts_enqueue(a, paid, userdata);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int accounts_pay(struct accounts *a, const uint8_t job_id[16], const char *skill, const uint8_t payee[32],
                 uint64_t price, accounts_paid_fn paid, void *userdata, struct accounts_payment **ret) {
        return accounts_pay_and_keep(a, job_id, skill, payee, price, NULL, paid, userdata, ret);
}

/* What the requester can spend: enough for most jobs, not for a price
 * near UINT64_MAX (those it must refuse, not send). */
#define WORLD_FUNDS (UINT64_C(1) << 40)

uint64_t accounts_available(struct accounts *a) {
        return a && a->reserved < WORLD_FUNDS ? WORLD_FUNDS - a->reserved : 0;
}

int accounts_reserve(struct accounts *a, uint64_t amount) {
        FUZZ_CHECK(a);
        if (accounts_available(a) < amount)
                return -EDQUOT;
        a->reserved += amount;
        return 0;
}

void accounts_unreserve(struct accounts *a, uint64_t amount) {
        if (!a)
                return;
        /* The requester gives back only what it holds. */
        FUZZ_CHECK(amount <= a->reserved);
        a->reserved -= amount;
}

void accounts_payment_forget(struct accounts_payment *p) {
        if (p)
                p->forgotten = true;
}

int accounts_keep(struct accounts *a, const struct accounts_keep *keep, const uint8_t job_id[16]) {
        FUZZ_CHECK(a && keep && keep->key && keep->result && job_id);
        return a->failing ? -EIO : 0;
}

int accounts_kept_result(struct accounts *a, uint32_t owner, const char *key, void **ret, size_t *ret_size) {
        return -ENOENT;
}

struct reputation *accounts_reputation(struct accounts *a) {
        return a->reputation;
}

uint64_t accounts_now(void) {
        return WALL_USEC;
}

void accounts_handle_cheque(struct accounts *a, const uint8_t from[32], const Swarm__SignedCheque *cheque) {
        if (a)
                world.cheques++;
}

void accounts_handle_opinions(struct accounts *a, const uint8_t from[32], const Swarm__OpinionBatch *batch) {
        if (a)
                world.opinions++;
}

void world_accounts_flush(int status) {
        struct accounts *a = world.accounts;

        while (a && a->queue) {
                struct accounts_payment *p = a->queue;

                a->queue = p->next;
                if (!a->queue)
                        a->tail = &a->queue;
                if (!p->forgotten)
                        p->fn(status, p->userdata);
                free(p);
        }
}

void world_accounts_set_failing(bool fail) {
        if (world.accounts)
                world.accounts->failing = fail;
}

/* ---- The world ---- */

static void keypair(uint8_t n, uint8_t pk[32], uint8_t sk[64]) {
        uint8_t seed[32];

        memset(seed, n, sizeof(seed));
        crypto_sign_seed_keypair(pk, sk, seed);
}

void world_init(void) {
        if (sodium_init() < 0)
                abort();
        keypair('S', world.self_pk, world.self_sk);
        for (unsigned i = 0; i < WORLD_PEERS; i++)
                keypair((uint8_t) ('A' + i), world.peer_pk[i], world.peer_sk[i]);
}

void world_begin(const struct world_config *c) {
        FUZZ_CHECK(sd_event_new(&world.event) >= 0);
        world.sent = NULL;
        world.sent_userdata = NULL;
        world.verified_ok = world.cheques = world.opinions = 0;
        n_approved = 0;

        world.network = calloc(1, sizeof(*world.network));
        FUZZ_CHECK(world.network);
        world.network->max_message_size = c->max_message_size;
        membership_init(&world.network->members, c->local_hash);

        world.skills = calloc(1, sizeof(*world.skills));
        FUZZ_CHECK(world.skills);
        skills_init(world.skills, c->queue_max);

        world.lending = NULL;
        if (c->lending) {
                world.lending = calloc(1, sizeof(*world.lending));
                FUZZ_CHECK(world.lending);
                world.lending->on = c->lending_on;
        }

        world.demand = NULL;
        if (c->demand) {
                world.demand = calloc(1, sizeof(*world.demand));
                FUZZ_CHECK(world.demand);
                world.demand->multiplier = c->demand_multiplier;
        }

        world.accounts = NULL;
        if (c->accounts) {
                struct reputation_params rp;

                world.accounts = calloc(1, sizeof(*world.accounts));
                FUZZ_CHECK(world.accounts);
                world.accounts->debt_limit = c->debt_limit;
                world.accounts->tail = &world.accounts->queue;
                reputation_params_default(&rp);
                FUZZ_CHECK(reputation_new(world.self_pk, &rp, &world.accounts->reputation) == 0);
        }
}

void world_end(void) {
        /* As skill_pool_free(): what is still queued or running fails. */
        while (n_requests > 0)
                request_fail(request_take(0), -ESHUTDOWN, "the skill is shutting down");
        /* As accounts_free(): what was not written is told -ECANCELED. */
        world_accounts_flush(-ECANCELED);

        if (world.accounts) {
                reputation_free(world.accounts->reputation);
                free(world.accounts);
                world.accounts = NULL;
        }
        free(world.demand);
        world.demand = NULL;
        free(world.lending);
        world.lending = NULL;
        for (size_t i = 0; i < ELEMENTSOF(world.skills->pools); i++)
                swarm_values_free(world.skills->pools[i].info.advert);
        free(world.skills);
        world.skills = NULL;
        free(world.network);
        world.network = NULL;
        world.event = sd_event_unref(world.event);
}

/* ---- Decoding ops ---- */

static const int statuses[] = {
        0, -EINVAL, -E2BIG, -EBUSY, -ETIMEDOUT, -ECANCELED, -ESHUTDOWN, -EOPNOTSUPP,
        -EIO, -ENOMEM, -EPROTO, -EAGAIN, -EDQUOT, -EACCES, -EBADMSG,
};

size_t world_parse_answer(const uint8_t *p, size_t n, struct world_answer *a, char *error, size_t error_size) {
        uint8_t s = n > 1 ? p[1] : 0, flags = n > 6 ? p[6] : 0;
        uint32_t price = 0;
        int32_t raw;
        size_t rest = n > 7 ? 7 : n;

        if (n > 5)
                memcpy(&price, p + 2, sizeof(price));
        memcpy(&raw, &price, sizeof(raw));
        *a = (struct world_answer) {
                .price = price,
                .kind = flags & 7,
                .proof = flags & 8,
                .data = p + rest,
                .size = n - rest,
                .queue_usec = 1000,
                .exec_usec = 2000,
        };
        /* A plugin may return any negative number and a worker pass it on;
         * the pool has it as the worker protocol reads it. */
        a->status = s < ELEMENTSOF(statuses) ? statuses[s] : s == 0xff ? (raw > 0 ? -raw : raw) : -(int) s;
        if (a->status < -ERRNO_MAX)
                a->status = -EPROTO;
        if (flags & 16) {
                snprintf(error, error_size, "%.*s", (int) (a->size < error_size ? a->size : error_size - 1),
                         (const char *) a->data);
                a->error = error;
        }
        return n > 0 ? p[0] : 0;
}
