/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one rule for skill names, on the wire, in opinions and in adverts. */

#include <stdbool.h>

#define SKILL_NAME_MAX 63u

/* A skill name: 1 to SKILL_NAME_MAX of [a-z0-9_.-]. */
bool skill_name_valid(const char *s);
