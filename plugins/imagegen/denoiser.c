/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* denoiser.h's step. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "denoiser.h"

struct sd_denoiser {
        struct nn_backend *be;
        struct sd_unet *unet;
        uint32_t h, w;
        size_t n;
        float *x_dev, *eps_dev;
        float *scaled, *eps_c, *eps_u;
};

void sd_denoiser_free(struct sd_denoiser *d) {
        if (!d)
                return;
        if (d->x_dev)
                d->be->ops->release(d->be, d->x_dev);
        if (d->eps_dev)
                d->be->ops->release(d->be, d->eps_dev);
        free(d->scaled);
        free(d->eps_c);
        free(d->eps_u);
        free(d);
}

int sd_denoiser_new(struct nn_backend *be, struct sd_unet *unet, uint32_t h, uint32_t w, struct sd_denoiser **ret) {
        struct sd_denoiser *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        d->be = be;
        d->unet = unet;
        d->h = h;
        d->w = w;
        d->n = (size_t) SD_LATENT_CHANNELS * h * w;
        d->x_dev = be->ops->alloc(be, d->n);
        d->eps_dev = be->ops->alloc(be, d->n);
        d->scaled = malloc(d->n * sizeof(float));
        d->eps_c = malloc(d->n * sizeof(float));
        d->eps_u = malloc(d->n * sizeof(float));
        if (!d->x_dev || !d->eps_dev || !d->scaled || !d->eps_c || !d->eps_u) {
                sd_denoiser_free(d);
                return -ENOMEM;
        }
        *ret = d;
        return 0;
}

static int predict(struct sd_denoiser *d, double t, const float *ctx, size_t n_ctx, float *eps) {
        int r = sd_unet_forward(d->unet, d->x_dev, d->h, d->w, t, ctx, n_ctx, d->eps_dev);

        if (r < 0)
                return r;
        d->be->ops->read(d->be, eps, d->eps_dev, d->n);
        return d->be->ops->status(d->be);
}

int sd_denoiser_step(struct sd_denoiser *d, const struct sd_plan *plan, uint32_t i, const float *cond,
                     const float *uncond, size_t n_ctx, double guidance, const float *x, float *next) {
        float s;
        double t;
        int r;

        if (i >= plan->steps)
                return -EINVAL;
        s = (float) sd_plan_input_scale(plan, i);
        t = plan->timestep[i];
        for (size_t j = 0; j < d->n; j++)
                d->scaled[j] = x[j] * s;
        d->be->ops->write(d->be, d->x_dev, d->scaled, d->n);
        r = predict(d, t, cond, n_ctx, d->eps_c);
        if (r < 0)
                return r;
        if (guidance != 1.0) {
                if (!uncond)
                        return -EINVAL;
                r = predict(d, t, uncond, n_ctx, d->eps_u);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < d->n; j++)
                        d->eps_c[j] = (float) (d->eps_u[j] + guidance * ((double) d->eps_c[j] - d->eps_u[j]));
        }
        if (next != x)
                memcpy(next, x, d->n * sizeof(float));
        sd_plan_step(plan, i, next, d->eps_c, d->n);
        return 0;
}
