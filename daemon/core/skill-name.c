/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <string.h>

#include "skill-name.h"

bool skill_name_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, SKILL_NAME_MAX + 1);
        if (n == 0 || n > SKILL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}
