/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sampler.h's schedules and updates. */

#include <errno.h>
#include <math.h>
#include <string.h>

#include "sampler.h"

static void alphas_cumprod(double *ac) {
        const double b0 = sqrt(0.00085), b1 = sqrt(0.012);
        double prod = 1;

        for (int i = 0; i < SD_TRAIN_STEPS; i++) {
                double b = b0 + (b1 - b0) * i / (SD_TRAIN_STEPS - 1);

                prod *= 1.0 - b * b;
                ac[i] = prod;
        }
}

int sd_sampler_from_string(const char *s, enum sd_sampler_kind *ret) {
        if (strcmp(s, "euler") == 0)
                *ret = SD_SAMPLER_EULER;
        else if (strcmp(s, "ddim") == 0)
                *ret = SD_SAMPLER_DDIM;
        else
                return -EINVAL;
        return 0;
}

const char *sd_sampler_to_string(enum sd_sampler_kind k) {
        return k == SD_SAMPLER_DDIM ? "ddim" : "euler";
}

int sd_plan_make(enum sd_sampler_kind kind, uint32_t steps, struct sd_plan *ret) {
        double ac[SD_TRAIN_STEPS];

        if (steps == 0 || steps > SD_STEPS_MAX || (kind != SD_SAMPLER_EULER && kind != SD_SAMPLER_DDIM))
                return -EINVAL;
        alphas_cumprod(ac);
        memset(ret, 0, sizeof(*ret));
        ret->kind = kind;
        ret->steps = steps;
        if (kind == SD_SAMPLER_EULER) {
                for (uint32_t i = 0; i < steps; i++) {
                        double t = steps == 1 ? SD_TRAIN_STEPS - 1
                                              : (double) (SD_TRAIN_STEPS - 1) * (steps - 1 - i) / (steps - 1);
                        int lo = (int) floor(t), hi = lo + 1 < SD_TRAIN_STEPS ? lo + 1 : lo;
                        double s_lo = sqrt((1 - ac[lo]) / ac[lo]), s_hi = sqrt((1 - ac[hi]) / ac[hi]);

                        ret->timestep[i] = t;
                        ret->sigma[i] = s_lo + (s_hi - s_lo) * (t - lo);
                }
                ret->sigma[steps] = 0;
        } else {
                uint32_t ratio = SD_TRAIN_STEPS / steps;

                for (uint32_t i = 0; i < steps; i++) {
                        /* At 1,000 steps the first would be 1,000:
                         * past the schedule (diffusers' "leading"
                         * spacing plus steps_offset 1). */
                        uint32_t t = (steps - 1 - i) * ratio + 1 < SD_TRAIN_STEPS ? (steps - 1 - i) * ratio + 1
                                                                                  : SD_TRAIN_STEPS - 1;
                        int prev = (int) t - (int) ratio;

                        ret->timestep[i] = t;
                        ret->alpha[i] = ac[t];
                        ret->alpha_prev[i] = prev >= 0 ? ac[prev] : ac[0];
                }
        }
        return 0;
}

double sd_plan_init_scale(const struct sd_plan *p) {
        return p->kind == SD_SAMPLER_EULER ? p->sigma[0] : 1.0;
}

double sd_plan_input_scale(const struct sd_plan *p, uint32_t i) {
        return p->kind == SD_SAMPLER_EULER ? 1.0 / sqrt(p->sigma[i] * p->sigma[i] + 1.0) : 1.0;
}

void sd_plan_step(const struct sd_plan *p, uint32_t i, float *x, const float *eps, size_t n) {
        if (p->kind == SD_SAMPLER_EULER) {
                double dt = p->sigma[i + 1] - p->sigma[i];

                for (size_t j = 0; j < n; j++)
                        x[j] = (float) (x[j] + eps[j] * dt);
                return;
        }
        double a = p->alpha[i], ap = p->alpha_prev[i];
        double sa = sqrt(a), s1a = sqrt(1 - a), sap = sqrt(ap), s1ap = sqrt(1 - ap);

        for (size_t j = 0; j < n; j++) {
                double x0 = (x[j] - s1a * eps[j]) / sa;

                x[j] = (float) (sap * x0 + s1ap * eps[j]);
        }
}

static uint64_t splitmix64(uint64_t z) {
        z += UINT64_C(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

void sd_noise(uint64_t seed, float *out, size_t n) {
        uint64_t key = splitmix64(seed ^ UINT64_C(0x5344206e6f697365));      /* "SD noise" */

        for (size_t i = 0; i < n; i += 2) {
                uint64_t a = splitmix64(key + 2 * (i / 2)), b = splitmix64(key + 2 * (i / 2) + 1);
                /* u1 in (0, 1]: log never sees 0. */
                double u1 = ((double) (a >> 11) + 1.0) * 0x1p-53, u2 = (double) (b >> 11) * 0x1p-53;
                double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;

                out[i] = (float) (r * cos(th));
                if (i + 1 < n)
                        out[i + 1] = (float) (r * sin(th));
        }
}
