/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The safetensors reader (plugins/nn/safetensors.c): what the writer
 * writes reads back, and hostile headers are refused naming the file, the
 * tensor and what is wrong. */

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn-type.h"
#include "safetensors.h"
#include "sd-tiny.h"

static char dir[] = "/tmp/test-safetensors-XXXXXX";

static void setup(void) {
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
}

TestSuite(safetensors, .init = setup, .fini = teardown, .timeout = 60);

Test(safetensors, what_the_writer_writes_reads_back) {
        struct safetensors_writer *w;
        struct safetensors *s;
        const struct st_tensor *t;
        float f32[6] = { 1, -2, 3.5f, 0, 1e-3f, -7 }, back[6];
        uint16_t f16[4], bf16[3];
        int64_t ids[77];
        char path[256], err[256];
        enum nn_type type;

        for (int i = 0; i < 4; i++)
                f16[i] = nn_f32_to_fp16((float) i - 1.5f);
        for (int i = 0; i < 3; i++)
                bf16[i] = nn_f32_to_bf16((float) i * 2.25f);
        for (int i = 0; i < 77; i++)
                ids[i] = i;
        snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        cr_assert_eq(safetensors_writer_new(&w), 0);
        cr_assert_eq(safetensors_writer_metadata(w, "format", "pt"), 0);
        /* Odd sizes, so that later tensors start unaligned. */
        cr_assert_eq(safetensors_writer_add(w, "model.diffusion_model.input_blocks.0.0.weight", ST_F16, 4,
                                            (const uint64_t[]) { 1, 1, 2, 2 }, f16), 0);
        cr_assert_eq(safetensors_writer_add(w, "b.bf16", ST_BF16, 1, (const uint64_t[]) { 3 }, bf16), 0);
        cr_assert_eq(safetensors_writer_add(w, "a.f32", ST_F32, 2, (const uint64_t[]) { 2, 3 }, f32), 0);
        cr_assert_eq(safetensors_writer_add(w, "position_ids", ST_I64, 2, (const uint64_t[]) { 1, 77 }, ids), 0);
        cr_assert_eq(safetensors_writer_add(w, "scalar", ST_F32, 0, NULL, f32), 0);
        cr_assert_eq(safetensors_writer_add(w, "empty", ST_F32, 1, (const uint64_t[]) { 0 }, f32), 0);
        cr_assert_eq(safetensors_writer_write(w, path, err, sizeof(err)), 0, "%s", err);
        safetensors_writer_free(w);

        cr_assert_eq(safetensors_open(path, &s, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(safetensors_count(s), 6);
        cr_assert_str_eq(safetensors_metadata(s, "format"), "pt");
        cr_assert_null(safetensors_metadata(s, "nope"));

        t = safetensors_find(s, "a.f32");
        cr_assert_not_null(t);
        cr_assert_eq(t->dtype, ST_F32);
        cr_assert_eq(t->ndim, 2);
        cr_assert_eq(t->shape[1], 3);
        cr_assert_eq(t->n_elements, 6);
        cr_assert_eq(safetensors_read_f32(t, 0, 6, back), 0);
        cr_assert_eq(memcmp(back, f32, sizeof(f32)), 0);
        cr_assert_eq(safetensors_read_f32(t, 4, 3, back), -ERANGE);
        cr_assert_eq(st_dtype_to_nn_type(t->dtype, &type), 0);
        cr_assert_eq(type, NN_TYPE_F32);

        t = safetensors_find(s, "model.diffusion_model.input_blocks.0.0.weight");
        cr_assert_not_null(t);
        cr_assert_eq(safetensors_read_f32(t, 0, 4, back), 0);
        for (int i = 0; i < 4; i++)
                cr_assert_eq(back[i], (float) i - 1.5f);
        t = safetensors_find(s, "b.bf16");
        cr_assert_eq(safetensors_read_f32(t, 1, 2, back), 0);
        cr_assert_eq(back[0], 2.25f);
        cr_assert_eq(back[1], 4.5f);

        t = safetensors_find(s, "position_ids");
        cr_assert_eq(t->dtype, ST_I64);
        cr_assert_eq(safetensors_read_f32(t, 0, 1, back), -EOPNOTSUPP);
        cr_assert_eq(st_dtype_to_nn_type(t->dtype, &type), -EOPNOTSUPP);
        cr_assert_eq(safetensors_find(s, "scalar")->ndim, 0);
        cr_assert_eq(safetensors_find(s, "scalar")->n_elements, 1);
        cr_assert_eq(safetensors_find(s, "empty")->size, 0);
        cr_assert_null(safetensors_find(s, "missing"));
        /* In data order. */
        cr_assert_str_eq(safetensors_tensor(s, 0)->name, "model.diffusion_model.input_blocks.0.0.weight");
        safetensors_close(s);
}

/* A file of header h (padded to 8 with spaces when pad) and data_len bytes
 * of data, parsed from memory. */
static int parse_raw(const char *h, size_t data_len, bool pad, char *err, size_t err_size) {
        size_t hl = strlen(h), padded = pad ? (hl + 7) / 8 * 8 : hl;
        uint64_t n = padded;
        uint8_t *buf = calloc(1, 8 + padded + data_len + 1);
        struct safetensors *s = NULL;
        int r;

        cr_assert_not_null(buf);
        memcpy(buf, &n, 8);
        memcpy(buf + 8, h, hl);
        memset(buf + 8 + hl, ' ', padded - hl);
        r = safetensors_parse(buf, 8 + padded + data_len, "hostile.safetensors", &s, err, err_size);
        safetensors_close(s);
        free(buf);
        return r;
}

static void refused(const char *h, size_t data_len, const char *needle) {
        char err[512] = "";
        int r = parse_raw(h, data_len, true, err, sizeof(err));

        cr_assert_eq(r, -EBADMSG, "accepted (%d): %s", r, h);
        cr_assert_not_null(strstr(err, needle), "\"%s\" does not say \"%s\" for %s", err, needle, h);
        cr_assert_not_null(strstr(err, "hostile.safetensors"), "%s does not name the file", err);
}

Test(safetensors, hostile_headers_are_refused_naming_what_is_wrong) {
        char err[512];

        cr_assert_eq(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, true, err,
                               sizeof(err)), 0, "%s", err);
        cr_assert_eq(parse_raw("{}", 0, false, err, sizeof(err)), 0, "%s", err);

        refused("[1, 2]", 0, "not a JSON object");
        refused("{\"a\":", 0, "not valid JSON");
        refused("{} {}", 0, "not valid JSON");
        refused("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"F33\"");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "lacks dtype, shape or data_offsets");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "fields other than");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "dimension 0");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "dimension 0");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                "at most 8 dimensions");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                "more elements than fit");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "fall outside");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "fall outside");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "not [begin, end]");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8,
                "not [begin, end]");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "a hole before it");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlaps");
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover 4 bytes of the 8");
        /* The same name twice: the parser keeps one, which leaves a hole. */
        refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole");
        /* Names equal as C strings (an escaped NUL): the same. */
        refused("{\"a\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\\u0000y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole");
        refused("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ \"a\" is not a string");
        refused("{\"__metadata__\":[1]}", 0, "__metadata__ is not an object");
        refused("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty");
        refused("{\"a\":\"\xff\xfe\"}", 0, "not valid JSON");
        refused("{\"a\":{\"dtype\":null,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"null\"");
        /* An empty tensor where another starts is no overlap. */
        cr_assert_eq(parse_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 8, true, err,
                               sizeof(err)), 0, "%s", err);
        /* Millions of entries are refused before they are parsed. */
        {
                size_t n = SAFETENSORS_TENSORS_MAX + 1, len = 0;
                char *h = malloc(n * 40 + 16);

                cr_assert_not_null(h);
                len += (size_t) sprintf(h, "{");
                for (size_t i = 0; i < n; i++)
                        len += (size_t) sprintf(h + len, "%s\"%zx\":{\"data_offsets\":0}", i ? "," : "", i);
                sprintf(h + len, "}");
                cr_assert_eq(parse_raw(h, 0, true, err, sizeof(err)), -E2BIG);
                cr_assert_not_null(strstr(err, "more than 200000 tensors"), "%s", err);
                free(h);
        }
}

Test(safetensors, truncated_and_oversized_files_are_refused) {
        uint8_t buf[64] = { 0 };
        struct safetensors *s = NULL;
        char err[256];
        uint64_t n;

        cr_assert_eq(safetensors_parse(buf, 7, "t", &s, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "too short"), "%s", err);
        n = 100;
        memcpy(buf, &n, 8);
        cr_assert_eq(safetensors_parse(buf, sizeof(buf), "t", &s, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "past the end of the file"), "%s", err);
        n = (UINT64_C(100) << 20) + 1;
        memcpy(buf, &n, 8);
        cr_assert_eq(safetensors_parse(buf, sizeof(buf), "t", &s, err, sizeof(err)), -EBADMSG);
        n = 4;
        memcpy(buf, &n, 8);
        memcpy(buf + 8, "{}\0 ", 4);
        cr_assert_eq(safetensors_parse(buf, 12, "t", &s, err, sizeof(err)), -EBADMSG);
        cr_assert_not_null(strstr(err, "NUL"), "%s", err);
        cr_assert_null(s);

        {
                char path[256];
                FILE *f;

                snprintf(path, sizeof(path), "%s/empty.safetensors", dir);
                f = fopen(path, "w");
                fclose(f);
                cr_assert_lt(safetensors_open(path, &s, err, sizeof(err)), 0);
                cr_assert_not_null(strstr(err, path), "%s", err);
                snprintf(path, sizeof(path), "%s/missing.safetensors", dir);
                cr_assert_eq(safetensors_open(path, &s, err, sizeof(err)), -ENOENT);
        }
}

/* The random-weight SD 1.x checkpoint reads back with the names and shapes
 * of v1-5-pruned-emaonly.safetensors (as functions of the widths). */
Test(safetensors, a_tiny_sd_checkpoint_has_the_sd15_layout) {
        struct sd_tiny_spec spec = sd_tiny_spec_default();
        const uint64_t c = spec.model_channels, v = spec.vae_channels, d = spec.context_dim;
        const struct {
                const char *name;
                uint32_t ndim;
                uint64_t shape[4];
        } expect[] = {
                { "model.diffusion_model.time_embed.0.weight", 2, { 4 * c, c } },
                { "model.diffusion_model.input_blocks.0.0.weight", 4, { c, 4, 3, 3 } },
                { "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 2, { c, d } },
                { "model.diffusion_model.input_blocks.3.0.op.weight", 4, { c, c, 3, 3 } },
                { "model.diffusion_model.input_blocks.4.0.skip_connection.weight", 4, { 2 * c, c, 1, 1 } },
                { "model.diffusion_model.input_blocks.7.1.transformer_blocks.0.ff.net.0.proj.weight", 2,
                  { 32 * c, 4 * c } },
                { "model.diffusion_model.input_blocks.11.0.out_layers.3.weight", 4, { 4 * c, 4 * c, 3, 3 } },
                { "model.diffusion_model.middle_block.1.proj_in.weight", 4, { 4 * c, 4 * c, 1, 1 } },
                { "model.diffusion_model.output_blocks.0.0.in_layers.0.weight", 1, { 8 * c } },
                { "model.diffusion_model.output_blocks.2.1.conv.weight", 4, { 4 * c, 4 * c, 3, 3 } },
                { "model.diffusion_model.output_blocks.5.2.conv.weight", 4, { 4 * c, 4 * c, 3, 3 } },
                { "model.diffusion_model.output_blocks.8.2.conv.weight", 4, { 2 * c, 2 * c, 3, 3 } },
                { "model.diffusion_model.output_blocks.11.0.skip_connection.weight", 4, { c, 2 * c, 1, 1 } },
                { "model.diffusion_model.out.2.weight", 4, { 4, c, 3, 3 } },
                { "first_stage_model.decoder.conv_in.weight", 4, { 4 * v, 4, 3, 3 } },
                { "first_stage_model.decoder.up.3.upsample.conv.weight", 4, { 4 * v, 4 * v, 3, 3 } },
                { "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight", 4, { 2 * v, 4 * v, 1, 1 } },
                { "first_stage_model.decoder.mid.attn_1.q.weight", 4, { 4 * v, 4 * v, 1, 1 } },
                { "first_stage_model.decoder.conv_out.weight", 4, { 3, v, 3, 3 } },
                { "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", 4, { 2 * v, v, 1, 1 } },
                { "first_stage_model.post_quant_conv.weight", 4, { 4, 4, 1, 1 } },
                { "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", 2,
                  { spec.vocab, d } },
                { "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight", 2, { spec.text_ff, d } },
                { "cond_stage_model.transformer.text_model.final_layer_norm.bias", 1, { d } },
        };
        struct safetensors *s;
        char path[256], err[256];
        size_t n;

        snprintf(path, sizeof(path), "%s/sd-tiny.safetensors", dir);
        cr_assert_eq(sd_tiny_write(&spec, path, &n, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(safetensors_open(path, &s, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(safetensors_count(s), n);
        for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
                const struct st_tensor *t = safetensors_find(s, expect[i].name);

                cr_assert_not_null(t, "no %s", expect[i].name);
                cr_assert_eq(t->dtype, ST_F16);
                cr_assert_eq(t->ndim, expect[i].ndim, "%s", expect[i].name);
                for (uint32_t k = 0; k < t->ndim; k++)
                        cr_assert_eq(t->shape[k], expect[i].shape[k], "%s: dimension %u is %llu", expect[i].name, k,
                                     (unsigned long long) t->shape[k]);
        }
        cr_assert_eq(safetensors_find(s, "cond_stage_model.transformer.text_model.embeddings.position_ids")->dtype,
                     ST_I64);
        /* Blocks that SD 1.x does not have. */
        cr_assert_null(safetensors_find(s, "model.diffusion_model.input_blocks.10.1.norm.weight"));
        cr_assert_null(safetensors_find(s, "model.diffusion_model.output_blocks.11.1.conv.weight"));
        cr_assert_null(safetensors_find(s, "first_stage_model.decoder.up.0.upsample.conv.weight"));
        safetensors_close(s);
}
