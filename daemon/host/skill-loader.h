/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Loads a skill plugin and checks its descriptor before anything calls it:
 * the one place that decides whether a shared object is a skill this host
 * can run. */

#include "swarm/skill.h"

struct loaded_skill {
        void *handle;
        const struct swarm_skill *skill;
};

/* 0, or a negative errno with a one-line explanation in error (size n)
 * naming the path and what was wrong: not loadable, no entry point, ABI
 * major or descriptor size mismatch, bad name, missing callback. */
int skill_load(const char *path, struct loaded_skill *ret, char *error, size_t n);
void skill_unload(struct loaded_skill *s);

/* What the skill declared it takes and gives (ABI 1.2), or NULL when it
 * declared nothing or its descriptor predates the fields. */
const struct swarm_param *skill_declared_inputs(const struct swarm_skill *s);
const struct swarm_param *skill_declared_outputs(const struct swarm_skill *s);

/* The callbacks the descriptor provides, as "init,fini,…" into buf. */
const char *skill_callbacks_string(const struct swarm_skill *s, char *buf, size_t n);

/* Finds a skill: arg containing a '/' is a path (made absolute); otherwise
 * a name looked up as NAME.so, then NAME/NAME.so (a build tree), in each
 * directory of the colon-separated dirs.  0 with a malloc'd path, -ENOENT,
 * -ENOMEM. */
int skill_find(const char *arg, const char *dirs, char **ret);

/* The swarm-worker to run: $SWARM_WORKER, else the one next to the running
 * program (../daemon/ or ./, a build tree), else LIBEXECDIR's.  malloc'd. */
char *skill_worker_path(void);

/* A skill's name from its path or configured name: the file name without
 * ".so" ("/x/gemm.so" and "gemm" are "gemm"); malloc'd, NULL without memory. */
char *skill_name_from_path(const char *path);
