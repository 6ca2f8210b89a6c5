/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

/* Which plugin file serves a skill name.  A skill's name is its
 * descriptor's ("example.scale"), and the file may be named otherwise
 * ("example.so"): when NAME.so is not there, each plugin in the skill
 * directories is asked its name by running `swarm-worker --name FILE`,
 * so a plugin's code never runs inside swarmd. */

/* Runs worker --name path (at most timeout_usec) and returns the
 * descriptor's name, malloc'd; -ENOEXEC when the file is not a plugin this
 * host loads, -ETIMEDOUT, -ENOMEM. */
int skill_index_name_of(const char *worker, const char *path, uint64_t timeout_usec, char **ret);

/* The plugin in dirs (colon-separated) whose descriptor is named name:
 * NAME.so or NAME/NAME.so when its descriptor agrees, else the first .so
 * (in dirs' order, then by file name) that says it is name.  describe
 * tells a file's descriptor name (skill_index_name_of(), or an in-process
 * load in swarmctl).  0 with a malloc'd path, -ENOENT, -ENOMEM. */
typedef int (*skill_describe_fn)(const char *path, void *userdata, char **ret);
int skill_index_find(const char *dirs, const char *name, skill_describe_fn describe, void *userdata, char **ret);
