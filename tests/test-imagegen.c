/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The built "imagegen" skill, loaded as swarm-worker loads it, on tiny
 * random-weight SD 1.x checkpoints and tokenizers written by sd-tiny: a
 * generation that is reproducible by seed and decodes as a PNG with its
 * parameters; verification by a separate verifier (another thread count)
 * that accepts honest results and rejects skipped steps, another prompt,
 * another seed, another model claiming this one's identity, a doctored
 * image or trajectory; the check job a requester without the model asks
 * for; and bad inputs refused by name. */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd-png.h"
#include "sd-tiny.h"
#include "swarm-host.h"

static char dir[] = "/tmp/test-imagegen-XXXXXX";
static char model_a[256], model_b[256];
static void *module;
static const struct swarm_skill *skill;

static void setup(void) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        char path[PATH_MAX], err[512], vocab[300], merges[300];
        const char *bdir = getenv("SKILL_BUILD_DIR");

        cr_assert_not_null(mkdtemp(dir));
        cr_assert_not_null(bdir, "SKILL_BUILD_DIR is not set (run through meson test)");
        snprintf(path, sizeof(path), "%s/imagegen/imagegen.so", bdir);
        module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert_not_null(module, "dlopen %s: %s", path, dlerror());
        skill = ((swarm_skill_entry_fn) dlsym(module, SWARM_SKILL_ENTRY_SYMBOL))();

        /* Two checkpoints of the same shapes, other weights; the tokenizer
         * files next to them, where the skill looks by default. */
        snprintf(model_a, sizeof(model_a), "%s/a.safetensors", dir);
        snprintf(model_b, sizeof(model_b), "%s/b.safetensors", dir);
        cr_assert_eq(sd_tiny_write(&spec, model_a, NULL, err, sizeof(err)), 0, "%s", err);
        spec.seed = 99;
        cr_assert_eq(sd_tiny_write(&spec, model_b, NULL, err, sizeof(err)), 0, "%s", err);
        snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
        snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
        cr_assert_eq(sd_tiny_write_tokenizer(spec.vocab, vocab, merges, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
        if (module)
                dlclose(module);
}

TestSuite(imagegen, .init = setup, .fini = teardown, .timeout = 240);

static void *start_with(const char *model, unsigned threads, const char *cheat, const char *claim,
                        int64_t verify_steps) {
        struct swarm_values *c = swarm_values_new();
        void *state = NULL;
        int r;

        if (model)
                cr_assert_eq(swarm_values_set_string(c, "model", model), 0);
        else
                cr_assert_eq(swarm_values_set_int(c, "verify-only", 1), 0);
        cr_assert_eq(swarm_values_set_int(c, "threads", threads), 0);
        cr_assert_eq(swarm_values_set_int(c, "verify-steps", verify_steps), 0);
        if (cheat)
                cr_assert_eq(swarm_values_set_string(c, "testing-cheat", cheat), 0);
        if (claim)
                cr_assert_eq(swarm_values_set_string(c, "testing-claim-model", claim), 0);
        r = skill->init(c, &state);
        swarm_values_free(c);
        cr_assert_eq(r, 0, "init: %d", r);
        return state;
}

/* Every step re-run: a cheat on any one step is caught. */
static void *start(const char *model, unsigned threads, const char *cheat, const char *claim) {
        return start_with(model, threads, cheat, claim, 4);
}

static struct swarm_values *request(const char *prompt, int64_t seed) {
        struct swarm_values *in = swarm_values_new();

        cr_assert_eq(swarm_values_set_string(in, "prompt", prompt), 0);
        cr_assert_eq(swarm_values_set_string(in, "negative_prompt", "blurry"), 0);
        cr_assert_eq(swarm_values_set_int(in, "width", 64), 0);
        cr_assert_eq(swarm_values_set_int(in, "height", 128), 0);
        cr_assert_eq(swarm_values_set_int(in, "steps", 4), 0);
        cr_assert_eq(swarm_values_set_string(in, "guidance", "7.5"), 0);
        if (seed >= 0)
                cr_assert_eq(swarm_values_set_int(in, "seed", seed), 0);
        return in;
}

struct chunks {
        unsigned n;
        char last[64];
};

static int count_chunk(void *userdata, const char *name, const void *data, size_t size) {
        struct chunks *c = userdata;

        cr_assert_str_eq(name, "progress");
        c->n++;
        snprintf(c->last, sizeof(c->last), "%.*s", (int) size, (const char *) data);
        return 0;
}

static int run(void *state, struct swarm_job *job, const struct swarm_values *in, struct chunks *chunks) {
        int r;

        cr_assert_eq(swarm_job_init(job, in, 0, NULL, NULL, NULL), 0);
        if (chunks) {
                job->emit = count_chunk;
                job->emit_userdata = chunks;
        }
        r = skill->execute(state, job);
        if (r == 0)
                cr_assert_eq(skill->prove(state, job), 0);
        return r;
}

/* verify() by another state, on the same job's inputs, outputs and proof. */
static int verify_by(void *verifier, struct swarm_job *job) {
        job->error[0] = '\0';
        return skill->verify(verifier, job);
}

Test(imagegen, a_generation_is_a_png_reproducible_by_seed_that_another_thread_count_verifies) {
        void *p1 = start(model_a, 1, NULL, NULL), *v2 = start(model_a, 2, NULL, NULL);
        struct swarm_values *in = request("a lighthouse at dusk", 1234);
        struct swarm_job j1, j2;
        struct chunks chunks = {};
        struct sd_png_image img;
        const void *png1, *png2;
        size_t size1, size2;
        int64_t seed;
        char err[256];
        bool found = false;

        cr_assert_eq(run(p1, &j1, in, &chunks), 0, "%s", swarm_job_error(&j1) ?: "");
        cr_assert_eq(chunks.n, 4, "one progress chunk per step");
        cr_assert_str_eq(chunks.last, "step 4/4");
        cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(&j1), "image", &png1, &size1), 0);
        cr_assert_eq(sd_png_decode(png1, size1, &img, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(img.width, 64);
        cr_assert_eq(img.height, 128);
        for (size_t i = 0; i < img.n_text; i++)
                if (strcmp(img.text[i].key, "parameters") == 0) {
                        found = true;
                        cr_assert_not_null(strstr(img.text[i].value, "a lighthouse at dusk"), "%s", img.text[i].value);
                        cr_assert_not_null(strstr(img.text[i].value, "Seed: 1234"), "%s", img.text[i].value);
                }
        cr_assert(found, "the PNG says how it was made");
        sd_png_image_free(&img);
        cr_assert_eq(swarm_values_get_int(swarm_job_outputs(&j1), "seed", &seed), 0);
        cr_assert_eq(seed, 1234);

        cr_assert_eq(verify_by(v2, &j1), 0, "%s", swarm_job_error(&j1));
        cr_assert_eq(verify_by(p1, &j1), 0, "%s", swarm_job_error(&j1));

        /* The same seed: the same bytes. */
        cr_assert_eq(run(p1, &j2, in, NULL), 0);
        cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(&j2), "image", &png2, &size2), 0);
        cr_assert_eq(size1, size2);
        cr_assert_eq(memcmp(png1, png2, size1), 0);
        swarm_job_done(&j1);
        swarm_job_done(&j2);
        swarm_values_free(in);
        skill->fini(p1);
        skill->fini(v2);
}

Test(imagegen, without_a_seed_one_is_drawn_and_reported_and_verifies) {
        void *p = start(model_a, 2, NULL, NULL);
        struct swarm_values *in = request("a red door", -1);
        struct swarm_job j;
        int64_t seed;

        cr_assert_eq(run(p, &j, in, NULL), 0, "%s", swarm_job_error(&j) ?: "");
        cr_assert_eq(swarm_values_get_int(swarm_job_outputs(&j), "seed", &seed), 0);
        cr_assert_geq(seed, 0);
        cr_assert_eq(verify_by(p, &j), 0, "%s", swarm_job_error(&j));
        swarm_job_done(&j);
        swarm_values_free(in);
        skill->fini(p);
}

static void expect_rejected(void *provider, void *verifier, const char *prompt, const char *why) {
        struct swarm_values *in = request(prompt, 77);
        struct swarm_job j;

        cr_assert_eq(run(provider, &j, in, NULL), 0, "%s", swarm_job_error(&j) ?: "");
        cr_assert_eq(verify_by(verifier, &j), -EBADMSG, "a cheat passed: %s", why);
        cr_assert_not_null(strstr(swarm_job_error(&j), why), "%s", swarm_job_error(&j));
        swarm_job_done(&j);
        swarm_values_free(in);
}

Test(imagegen, skipped_steps_another_prompt_another_seed_or_model_are_caught) {
        void *v = start(model_a, 2, NULL, NULL);
        void *skip = start(model_a, 1, "skip-steps", NULL);
        void *noprompt = start(model_a, 1, "ignore-prompt", NULL);
        void *seed = start(model_a, 1, "other-seed", NULL);
        void *other = start(model_b, 1, NULL, model_a);

        expect_rejected(skip, v, "a lighthouse", "re-run here differs");
        expect_rejected(noprompt, v, "a lighthouse", "re-run here differs");
        expect_rejected(seed, v, "a lighthouse", "is not seed 77's noise");
        expect_rejected(other, v, "a lighthouse", "re-run here differs");
        skill->fini(v);
        skill->fini(skip);
        skill->fini(noprompt);
        skill->fini(seed);
        skill->fini(other);
}

/* Replaces output name's bytes by data. */
static void replace_bytes(struct swarm_job *j, const char *name, const void *data, size_t size) {
        struct swarm_values *out = swarm_values_new(), *old = swarm_job_outputs(j);

        for (size_t i = 0; i < swarm_values_count(old); i++) {
                enum swarm_value_type type;
                const char *n = swarm_values_name(old, i, &type);
                struct swarm_tensor src, dst;
                const void *b;
                size_t bs;
                int64_t v;

                if (strcmp(n, name) == 0) {
                        cr_assert_eq(swarm_values_set_bytes(out, n, data, size), 0);
                        continue;
                }
                switch (type) {
                case SWARM_VALUE_TENSOR:
                        cr_assert_eq(swarm_values_get_tensor(old, n, &src), 0);
                        cr_assert_eq(swarm_values_add_tensor(out, n, src.dtype, src.ndim, src.shape, &dst), 0);
                        memcpy(dst.data, src.data, src.size);
                        break;
                case SWARM_VALUE_BYTES:
                        cr_assert_eq(swarm_values_get_bytes(old, n, &b, &bs), 0);
                        cr_assert_eq(swarm_values_set_bytes(out, n, b, bs), 0);
                        break;
                case SWARM_VALUE_INT:
                        cr_assert_eq(swarm_values_get_int(old, n, &v), 0);
                        cr_assert_eq(swarm_values_set_int(out, n, v), 0);
                        break;
                default:
                        cr_assert_fail("unexpected output %s", n);
                }
        }
        swarm_values_free(old);
        j->outputs = out;
}

Test(imagegen, a_doctored_image_or_trajectory_is_caught) {
        void *p = start(model_a, 2, NULL, NULL);
        struct swarm_values *in = request("a lighthouse", 5);
        struct swarm_job j;
        struct swarm_tensor traj;
        struct sd_png_image img;
        const void *png;
        void *fake;
        size_t size, fake_size;
        char err[256];

        cr_assert_eq(run(p, &j, in, NULL), 0, "%s", swarm_job_error(&j) ?: "");
        /* Another picture of the same size, re-encoded. */
        cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(&j), "image", &png, &size), 0);
        cr_assert_eq(sd_png_decode(png, size, &img, err, sizeof(err)), 0, "%s", err);
        for (size_t i = 0; i < 3 * 64 * 128; i++)
                img.rgb[i] = (uint8_t) (255 - img.rgb[i]);
        cr_assert_eq(sd_png_encode(img.rgb, img.width, img.height, NULL, 0, &fake, &fake_size, err, sizeof(err)), 0);
        sd_png_image_free(&img);
        replace_bytes(&j, "image", fake, fake_size);
        free(fake);
        cr_assert_eq(verify_by(p, &j), -EBADMSG);
        cr_assert_not_null(strstr(swarm_job_error(&j), "not the decode of the last latent"), "%s", swarm_job_error(&j));
        replace_bytes(&j, "image", "not a png", 9);
        cr_assert_eq(verify_by(p, &j), -EBADMSG);
        swarm_job_done(&j);

        /* One element of one latent moved: the root no longer matches. */
        cr_assert_eq(run(p, &j, in, NULL), 0);
        cr_assert_eq(swarm_values_get_tensor(swarm_job_outputs(&j), "trajectory", &traj), 0);
        ((float *) traj.data)[traj.n_elements / 2] += 0.5f;
        cr_assert_eq(verify_by(p, &j), -EBADMSG);
        cr_assert_not_null(strstr(swarm_job_error(&j), "not the one the proof commits to"), "%s", swarm_job_error(&j));
        swarm_job_done(&j);
        swarm_values_free(in);
        skill->fini(p);
}

/* A result that says it is a check's ("check-verdict" and "check-root"
 * outputs) instead of holding an image is judged as what its job was: a
 * generation, and rejected. */
Test(imagegen, a_generation_result_posing_as_a_checks_verdict_is_rejected) {
        void *p = start(model_a, 1, NULL, NULL);
        struct swarm_values *in = request("a lighthouse", 3);
        struct swarm_job j;
        uint8_t root[32] = {};

        cr_assert_eq(swarm_job_init(&j, in, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(swarm_values_set_string(swarm_job_outputs(&j), "check-verdict", "ok"), 0);
        cr_assert_eq(swarm_values_set_bytes(swarm_job_outputs(&j), "check-root", root, sizeof(root)), 0);
        cr_assert_eq(swarm_values_set_int(swarm_job_outputs(&j), "check-failed-step", -1), 0);
        cr_assert_eq(swarm_values_set_bytes(swarm_job_proof(&j), "trajectory-root", root, sizeof(root)), 0);
        cr_assert_eq(verify_by(p, &j), -EBADMSG);
        swarm_job_done(&j);
        swarm_values_free(in);
        skill->fini(p);
}

/* The check job a requester's daemon builds: the inputs, plus check.<name>
 * for each output the advert's check-inputs names. */
static struct swarm_values *check_inputs(const struct swarm_values *in, const struct swarm_values *out) {
        struct swarm_values *c = swarm_values_new();
        struct swarm_tensor src, dst;
        const char *s;
        const void *b;
        size_t bs;
        int64_t v;
        static const char *const ints[] = { "width", "height", "steps", "seed" };

        cr_assert_eq(swarm_values_get_string(in, "prompt", &s), 0);
        cr_assert_eq(swarm_values_set_string(c, "prompt", s), 0);
        cr_assert_eq(swarm_values_get_string(in, "negative_prompt", &s), 0);
        cr_assert_eq(swarm_values_set_string(c, "negative_prompt", s), 0);
        cr_assert_eq(swarm_values_get_string(in, "guidance", &s), 0);
        cr_assert_eq(swarm_values_set_string(c, "guidance", s), 0);
        for (size_t i = 0; i < 4; i++) {
                char name[32];

                if (swarm_values_get_int(in, ints[i], &v) == 0)
                        cr_assert_eq(swarm_values_set_int(c, ints[i], v), 0);
                cr_assert_eq(swarm_values_get_int(out, ints[i], &v), 0);
                snprintf(name, sizeof(name), "check.%s", ints[i]);
                cr_assert_eq(swarm_values_set_int(c, name, v), 0);
        }
        cr_assert_eq(swarm_values_get_tensor(out, "trajectory", &src), 0);
        cr_assert_eq(swarm_values_add_tensor(c, "check.trajectory", src.dtype, src.ndim, src.shape, &dst), 0);
        memcpy(dst.data, src.data, src.size);
        cr_assert_eq(swarm_values_get_bytes(out, "image", &b, &bs), 0);
        cr_assert_eq(swarm_values_set_bytes(c, "check.image", b, bs), 0);
        return c;
}

/* A second checker given the step a first found wrong re-runs it, so the
 * verdict does not hang on its own random picks: with one pick of four
 * steps, a skip-steps cheat (steps 2 and 4 copied) would get past a
 * checker half the time, and never past one told the step. */
Test(imagegen, a_second_checker_re_runs_the_step_the_first_found_wrong) {
        void *cheat = start(model_a, 1, "skip-steps", NULL), *checker = start_with(model_a, 2, NULL, NULL, 1);
        struct swarm_values *in = request("a lighthouse", 13), *cin;
        struct swarm_job j, c;
        unsigned caught_alone = 0;
        const char *verdict;
        int64_t failed;

        cr_assert_eq(run(cheat, &j, in, NULL), 0, "%s", swarm_job_error(&j) ?: "");
        cin = check_inputs(in, swarm_job_outputs(&j));
        for (int i = 0; i < 20; i++) {
                cr_assert_eq(run(checker, &c, cin, NULL), 0, "%s", swarm_job_error(&c) ?: "");
                cr_assert_eq(swarm_values_get_string(swarm_job_outputs(&c), "check-verdict", &verdict), 0);
                cr_assert_eq(swarm_values_get_int(swarm_job_outputs(&c), "check-failed-step", &failed), 0);
                if (strcmp(verdict, "ok") != 0) {
                        caught_alone++;
                        cr_assert(failed == 1 || failed == 3, "the copied steps are 1 and 3, not %" PRIi64, failed);
                } else
                        cr_assert_eq(failed, -1);
                swarm_job_done(&c);
        }
        cr_assert(caught_alone > 0 && caught_alone < 20, "one pick of four caught the cheat %u times in 20",
                  caught_alone);
        cr_assert_eq(swarm_values_set_int(cin, "check.first.check-failed-step", 3), 0);
        for (int i = 0; i < 10; i++) {
                cr_assert_eq(run(checker, &c, cin, NULL), 0, "%s", swarm_job_error(&c) ?: "");
                cr_assert_eq(swarm_values_get_string(swarm_job_outputs(&c), "check-verdict", &verdict), 0);
                cr_assert_neq(strcmp(verdict, "ok"), 0, "told the step, a checker still passed the cheat");
                swarm_job_done(&c);
        }
        swarm_job_done(&j);
        swarm_values_free(cin);
        swarm_values_free(in);
        skill->fini(cheat);
        skill->fini(checker);
}

static void check_flow(void *producer, const char *want_verdict, int want) {
        void *requester = start(NULL, 1, NULL, NULL), *checker = start(model_a, 2, NULL, NULL);
        struct swarm_values *in = request("a lighthouse", 11), *cin;
        struct swarm_job j, c;
        const char *verdict;
        const void *root;
        size_t size;

        cr_assert_eq(run(producer, &j, in, NULL), 0, "%s", swarm_job_error(&j) ?: "");
        cr_assert_eq(verify_by(requester, &j), -EREMOTE, "%s", swarm_job_error(&j));

        cin = check_inputs(in, swarm_job_outputs(&j));
        cr_assert_eq(run(checker, &c, cin, NULL), 0, "%s", swarm_job_error(&c) ?: "");
        cr_assert_eq(verify_by(requester, &c), 0, "%s", swarm_job_error(&c));
        cr_assert_eq(swarm_values_get_string(swarm_job_outputs(&c), "check-verdict", &verdict), 0);
        cr_assert_not_null(strstr(verdict, want_verdict), "%s", verdict);
        cr_assert_eq(swarm_values_get_bytes(swarm_job_outputs(&c), "check-root", &root, &size), 0);
        cr_assert_eq(swarm_values_set_string(swarm_job_proof(&j), "check.check-verdict", verdict), 0);
        cr_assert_eq(swarm_values_set_bytes(swarm_job_proof(&j), "check.check-root", root, size), 0);
        cr_assert_eq(verify_by(requester, &j), want, "%s", swarm_job_error(&j));
        swarm_job_done(&c);
        swarm_job_done(&j);
        swarm_values_free(cin);
        swarm_values_free(in);
        skill->fini(requester);
        skill->fini(checker);
}

Test(imagegen, a_requester_without_the_model_has_another_provider_check) {
        void *honest = start(model_a, 1, NULL, NULL), *cheat = start(model_a, 1, "skip-steps", NULL);

        check_flow(honest, "ok", 0);
        check_flow(cheat, "re-run here differs", -EBADMSG);
        skill->fini(honest);
        skill->fini(cheat);
}

static void expect_refused(void *p, struct swarm_values *in, const char *why) {
        struct swarm_job j;
        uint64_t price;

        swarm_call_error_reset();
        cr_assert_eq(skill->price(p, in, &price), -EINVAL);
        cr_assert_not_null(swarm_call_error());
        cr_assert_not_null(strstr(swarm_call_error(), why), "%s", swarm_call_error());
        cr_assert_eq(run(p, &j, in, NULL), -EINVAL);
        cr_assert_not_null(strstr(swarm_job_error(&j), why), "%s", swarm_job_error(&j));
        swarm_job_done(&j);
        swarm_values_free(in);
}

Test(imagegen, bad_requests_are_refused_naming_the_input) {
        void *p = start(model_a, 1, NULL, NULL);
        struct swarm_values *in;
        uint64_t small, big;

        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_int(in, "width", 100);
        expect_refused(p, in, "multiples of 64");
        in = swarm_values_new();
        swarm_values_set_int(in, "width", 64);
        expect_refused(p, in, "\"prompt\"");
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_int(in, "steps", 100000);
        expect_refused(p, in, "\"steps\"");
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_string(in, "guidance", "lots");
        expect_refused(p, in, "\"guidance\"");
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_string(in, "sampler", "dpm++");
        expect_refused(p, in, "euler or ddim");
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_int(in, "seed", -5);
        expect_refused(p, in, "\"seed\"");

        /* Not UTF-8 (a Latin-1 é; a surrogate): refused before any work. */
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "caf\xe9");
        expect_refused(p, in, "\"prompt\" is not valid UTF-8");
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "ok");
        swarm_values_set_string(in, "negative_prompt", "\xed\xa0\x80");
        expect_refused(p, in, "\"negative_prompt\" is not valid UTF-8");

        /* Prices grow with pixels and steps. */
        in = request("x", 1);
        cr_assert_eq(skill->price(p, in, &small), 0);
        swarm_values_free(in);
        in = swarm_values_new();
        swarm_values_set_string(in, "prompt", "x");
        swarm_values_set_int(in, "steps", 50);
        swarm_values_set_int(in, "width", 1024);
        swarm_values_set_int(in, "height", 1024);
        cr_assert_eq(skill->price(p, in, &big), 0);
        cr_assert_gt(big, small);
        swarm_values_free(in);
        skill->fini(p);
}

Test(imagegen, a_missing_model_or_tokenizer_fails_init_with_a_reason) {
        struct swarm_values *c = swarm_values_new();
        void *state = NULL;
        char path[300];

        cr_assert_eq(swarm_values_set_string(c, "model", "/nonexistent/model.safetensors"), 0);
        cr_assert_lt(skill->init(c, &state), 0);
        swarm_values_free(c);

        /* A checkpoint with no tokenizer beside it and none configured. */
        snprintf(path, sizeof(path), "%s/lonely", dir);
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/lonely/m.safetensors", dir);
        cr_assert_eq(link(model_a, path), 0);
        c = swarm_values_new();
        cr_assert_eq(swarm_values_set_string(c, "model", path), 0);
        cr_assert_lt(skill->init(c, &state), 0);
        swarm_values_free(c);
}
