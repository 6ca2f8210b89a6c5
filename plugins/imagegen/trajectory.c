/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* trajectory.h's commitments and measures. */

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "trajectory.h"

void traj_leaf(const float *latent, size_t n, uint8_t out[TRAJ_HASH_SIZE]) {
        crypto_generichash_state st;
        const uint8_t tag = 0x00;

        crypto_generichash_init(&st, NULL, 0, TRAJ_HASH_SIZE);
        crypto_generichash_update(&st, &tag, 1);
#if __BYTE_ORDER == __LITTLE_ENDIAN
        crypto_generichash_update(&st, (const uint8_t *) latent, n * sizeof(float));
#else
        for (size_t i = 0; i < n; i++) {
                uint32_t v;

                memcpy(&v, &latent[i], sizeof(v));
                v = htole32(v);
                crypto_generichash_update(&st, (const uint8_t *) &v, sizeof(v));
        }
#endif
        crypto_generichash_final(&st, out, TRAJ_HASH_SIZE);
}

void traj_root(const uint8_t (*leaves)[TRAJ_HASH_SIZE], size_t n, uint8_t out[TRAJ_HASH_SIZE]) {
        uint8_t (*level)[TRAJ_HASH_SIZE];

        if (n == 1) {
                memcpy(out, leaves[0], TRAJ_HASH_SIZE);
                return;
        }
        level = malloc(n * TRAJ_HASH_SIZE);
        if (!level)
                abort();        /* a few KiB: as the engine's ops, this cannot fail */
        memcpy(level, leaves, n * TRAJ_HASH_SIZE);
        while (n > 1) {
                size_t m = 0;

                for (size_t i = 0; i + 1 < n; i += 2) {
                        crypto_generichash_state st;
                        const uint8_t tag = 0x01;

                        crypto_generichash_init(&st, NULL, 0, TRAJ_HASH_SIZE);
                        crypto_generichash_update(&st, &tag, 1);
                        crypto_generichash_update(&st, level[i], TRAJ_HASH_SIZE);
                        crypto_generichash_update(&st, level[i + 1], TRAJ_HASH_SIZE);
                        crypto_generichash_final(&st, level[m++], TRAJ_HASH_SIZE);
                }
                if (n % 2)
                        memmove(level[m++], level[n - 1], TRAJ_HASH_SIZE);
                n = m;
        }
        memcpy(out, level[0], TRAJ_HASH_SIZE);
        free(level);
}

int traj_root_of(const float *latents, size_t n_latents, size_t n, uint8_t out[TRAJ_HASH_SIZE]) {
        uint8_t (*leaves)[TRAJ_HASH_SIZE];

        if (n_latents == 0)
                return -EINVAL;
        leaves = malloc(n_latents * TRAJ_HASH_SIZE);
        if (!leaves)
                return -ENOMEM;
        for (size_t i = 0; i < n_latents; i++)
                traj_leaf(latents + i * n, n, leaves[i]);
        traj_root((const uint8_t (*)[TRAJ_HASH_SIZE]) leaves, n_latents, out);
        free(leaves);
        return 0;
}

void traj_pick_steps(uint32_t n_steps, uint32_t k, uint32_t *steps) {
        /* Selection sampling (Knuth's algorithm S): in order, each chosen
         * with the probability that leaves every k-subset equally likely. */
        uint32_t chosen = 0;

        for (uint32_t i = 0; i < n_steps && chosen < k; i++)
                if (randombytes_uniform(n_steps - i) < k - chosen)
                        steps[chosen++] = i;
}

double traj_step_error(const float *x_i, const float *claimed_next, const float *recomputed_next, size_t n) {
        double diff = 0, update = 0;

        for (size_t j = 0; j < n; j++) {
                double d = (double) claimed_next[j] - recomputed_next[j];
                double u = (double) recomputed_next[j] - x_i[j];

                /* NaN in a claim is as wrong as can be. */
                if (isnan(d))
                        return INFINITY;
                diff += d * d;
                update += u * u;
        }
        if (diff == 0)
                return 0;
        if (update == 0)
                return INFINITY;
        return sqrt(diff / update);
}

double traj_detection_chance(uint32_t n_steps, uint32_t n_bad, uint32_t k) {
        double miss = 1;

        if (n_bad > n_steps || k > n_steps)
                return NAN;
        /* C(n − bad, k) / C(n, k) = Π_{i<k} (n − bad − i) / (n − i). */
        for (uint32_t i = 0; i < k; i++) {
                if (n_steps - i == 0 || n_bad + i >= n_steps) {
                        miss = 0;
                        break;
                }
                miss *= (double) (n_steps - n_bad - i) / (double) (n_steps - i);
        }
        return 1 - miss;
}
