/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A stand-in for libFuzzer where there is none (gcc builds, the ASan
 * build): runs every seed file through the target, then a fixed number
 * of deterministic mutations of them (bit flips, byte edits, inserts,
 * deletions, truncations, splices), so that every build exercises the
 * decoders and the sanitizers watch.  The same run every time: a failure
 * reproduces by running the test again.
 *
 * Usage: fuzz-TARGET [--iterations=N] [--trace] [--write=N] FILE|DIR...
 * --trace says which mutation runs (to find the one that fails);
 * --write=N writes mutation N to ./fuzz-input-N instead of running, for
 * a debugger or the libFuzzer build. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "macro.h"

#define INPUT_MAX (256u * 1024u + 64u)

struct seed {
        uint8_t *data;
        size_t size;
};

static struct seed *seeds;
static size_t n_seeds;

static int add_seed(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct seed *s;
        struct stat st;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || (size_t) st.st_size > INPUT_MAX)
                return 0;
        s = realloc(seeds, (n_seeds + 1) * sizeof(*seeds));
        if (!s)
                return -ENOMEM;
        seeds = s;
        s = &seeds[n_seeds];
        s->size = (size_t) st.st_size;
        s->data = malloc(s->size + 1);
        if (!s->data)
                return -ENOMEM;
        n = read(fd, s->data, s->size);
        if (n != (ssize_t) s->size)
                return n < 0 ? negative_errno() : -EIO;
        n_seeds++;
        return 0;
}

static int add_path(const char *path) {
        struct dirent **entries = NULL;
        struct stat st;
        int n, r = 0;

        if (stat(path, &st) < 0)
                return negative_errno();
        if (!S_ISDIR(st.st_mode))
                return add_seed(path);

        /* Sorted, so that the run does not depend on the directory order. */
        n = scandir(path, &entries, NULL, alphasort);
        if (n < 0)
                return negative_errno();
        for (int i = 0; i < n; i++) {
                char *p;

                if (r >= 0 && entries[i]->d_name[0] != '.') {
                        if (asprintf(&p, "%s/%s", path, entries[i]->d_name) < 0)
                                r = -ENOMEM;
                        else {
                                r = add_seed(p);
                                free(p);
                        }
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) {
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1du;
}

static size_t rng_below(size_t n) {
        return n == 0 ? 0 : (size_t) (rng() % n);
}

/* One mutation of buf[0..*size) in place; buf holds INPUT_MAX bytes. */
static void mutate(uint8_t *buf, size_t *size) {
        static const uint8_t interesting[] = { 0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x08, 0x12, 0x1a, 0x22, 0x2a, 0x40 };
        size_t n = *size, pos, len;

        switch (rng_below(8)) {
        case 0: /* flip a bit */
                if (n > 0) {
                        pos = rng_below(n);
                        buf[pos] ^= (uint8_t) (1u << rng_below(8));
                }
                break;
        case 1: /* a random byte */
                if (n > 0)
                        buf[rng_below(n)] = (uint8_t) rng();
                break;
        case 2: /* a byte protobuf and the headers care about */
                if (n > 0)
                        buf[rng_below(n)] = interesting[rng_below(sizeof(interesting))];
                break;
        case 3: /* insert bytes */
                len = 1 + rng_below(8);
                if (n + len <= INPUT_MAX) {
                        pos = rng_below(n + 1);
                        memmove(buf + pos + len, buf + pos, n - pos);
                        for (size_t i = 0; i < len; i++)
                                buf[pos + i] = (uint8_t) rng();
                        *size = n + len;
                }
                break;
        case 4: /* delete bytes */
                if (n > 0) {
                        pos = rng_below(n);
                        len = 1 + rng_below(n - pos < 16 ? n - pos : 16);
                        memmove(buf + pos, buf + pos + len, n - pos - len);
                        *size = n - len;
                }
                break;
        case 5: /* truncate */
                *size = rng_below(n + 1);
                break;
        case 6: /* copy a chunk of the input over another place in it */
                if (n > 1) {
                        size_t from = rng_below(n), to = rng_below(n);
                        len = 1 + rng_below(n - (from > to ? from : to));
                        memmove(buf + to, buf + from, len);
                }
                break;
        case 7: { /* splice: our head, another seed's tail */
                const struct seed *o = &seeds[rng_below(n_seeds)];
                size_t cut = rng_below(n + 1), from = rng_below(o->size + 1);

                len = o->size - from;
                if (cut + len > INPUT_MAX)
                        len = INPUT_MAX - cut;
                memcpy(buf + cut, o->data + from, len);
                *size = cut + len;
                break;
        }
        }
}

int main(int argc, char *argv[]) {
        unsigned long iterations = 20000, write = 0;
        bool trace = false, do_write = false;
        _cleanup_free_ uint8_t *buf = NULL;
        struct timespec t0, t1;
        double secs;
        int r;

        if (LLVMFuzzerInitialize(&argc, &argv) != 0)
                return EXIT_FAILURE;

        for (int i = 1; i < argc; i++) {
                if (strncmp(argv[i], "--iterations=", 13) == 0)
                        iterations = strtoul(argv[i] + 13, NULL, 10);
                else if (strcmp(argv[i], "--trace") == 0)
                        trace = true;
                else if (strncmp(argv[i], "--write=", 8) == 0) {
                        write = strtoul(argv[i] + 8, NULL, 10);
                        do_write = true;
                }
                else {
                        r = add_path(argv[i]);
                        if (r < 0) {
                                fprintf(stderr, "%s: %s\n", argv[i], strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
        }
        if (n_seeds == 0) {
                fprintf(stderr, "no seed inputs given\n");
                return EXIT_FAILURE;
        }

        buf = malloc(INPUT_MAX);
        if (!buf)
                return EXIT_FAILURE;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        LLVMFuzzerTestOneInput(NULL, 0);
        for (size_t i = 0; i < n_seeds; i++) {
                /* A copy of exactly its size, so ASan sees reads past it. */
                uint8_t *copy = malloc(seeds[i].size ?: 1);

                if (!copy)
                        return EXIT_FAILURE;
                memcpy(copy, seeds[i].data, seeds[i].size);
                LLVMFuzzerTestOneInput(copy, seeds[i].size);
                free(copy);
        }

        for (unsigned long it = 0; it < iterations; it++) {
                const struct seed *s = &seeds[rng_below(n_seeds)];
                size_t size = s->size;
                unsigned rounds = 1 + (unsigned) rng_below(4);
                uint8_t *exact;

                memcpy(buf, s->data, size);
                for (unsigned k = 0; k < rounds; k++)
                        mutate(buf, &size);

                if (do_write && it == write) {
                        char path[64];
                        FILE *f;

                        snprintf(path, sizeof(path), "fuzz-input-%lu", it);
                        f = fopen(path, "we");
                        if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0) {
                                fprintf(stderr, "%s: %m\n", path);
                                return EXIT_FAILURE;
                        }
                        printf("wrote %s (%zu bytes)\n", path, size);
                        return EXIT_SUCCESS;
                }
                if (do_write)
                        continue;
                if (trace)
                        fprintf(stderr, "mutation %lu: %zu bytes\n", it, size);

                exact = malloc(size ?: 1);
                if (!exact)
                        return EXIT_FAILURE;
                memcpy(exact, buf, size);
                LLVMFuzzerTestOneInput(exact, size);
                free(exact);
        }

        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("%zu seeds and %lu mutations in %.2f s (%.0f execs/s)\n",
               n_seeds, iterations, secs, (double) (n_seeds + iterations) / (secs > 0 ? secs : 1e-9));
        for (size_t i = 0; i < n_seeds; i++)
                free(seeds[i].data);
        free(seeds);
        return EXIT_SUCCESS;
}
