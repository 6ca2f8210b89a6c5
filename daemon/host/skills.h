/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The skills this node hosts: from the skills: section of the
 * configuration, one worker pool each, all in the job cgroup tree.  Says
 * when every skill has come up (or failed to), so that swarmd sends
 * READY=1 only once it really serves what it was configured to. */

#include <systemd/sd-event.h>

#include "config.h"
#include "skill-pool.h"

struct skills;

typedef void (*skills_settled_fn)(struct skills *s, void *userdata);

/* Starts a pool per enabled skill.  A skill that cannot be found or loaded
 * is logged and left out; the rest still start.  settled is called (from
 * the loop) once every pool is ready or has failed its first start. */
int skills_new(sd_event *event, const struct config *config, skills_settled_fn settled, void *userdata,
               struct skills **ret);
struct skills *skills_free(struct skills *s);

/* "2 skills: hash (1 worker), gemm (1 worker); 1 failed: foo" */
const char *skills_describe(struct skills *s);

/* The pool of the skill named name, or NULL. */
struct skill_pool *skills_get(struct skills *s, const char *name);

/* The pool that verifies (and prices) jobs of skill name on this node:
 * the hosted one, else a 1-worker pool of the plugin found in
 * skills.directory, started on first use and kept (neither hosted nor
 * offered, not counted by skills_count()).  NULL when no plugin is
 * installed. */
struct skill_pool *skills_verifier(struct skills *s, const char *name);

/* All jobs at once, for the lending switch: pause, resume, kill.
 * skills_pause() returns 1 once every job is frozen, 0 when the kernel is
 * still freezing after a second (see cgroup_freeze()). */
int skills_pause(struct skills *s);
int skills_resume(struct skills *s);
int skills_kill_all(struct skills *s);

/* Called when any hosted pool's state may have changed
 * (skill_pool_set_changed_callback()); often: coalesce. */
typedef void (*skills_changed_fn)(struct skills *s, void *userdata);
void skills_set_changed_callback(struct skills *s, skills_changed_fn fn, void *userdata);

/* The hosted skills, in configuration order.  A skill's name is its
 * descriptor's (what peers route by), once its first worker has said it. */
size_t skills_count(const struct skills *s);
const char *skills_name(const struct skills *s, size_t i);
/* When name is what a hosted skill was configured by (its file, say
 * "example") but not its skill name: that name ("example.scale"), for a
 * hint; else NULL. */
const char *skills_file_of(struct skills *s, const char *name);
struct skill_pool *skills_pool(const struct skills *s, size_t i);
