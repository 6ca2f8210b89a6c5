/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>

#include "attempt.h"
#include "macro.h"

/* -1: not allowed. */
static const int transitions[_ATTEMPT_STATE_MAX][_ATTEMPT_EVENT_MAX] = {
        [ATTEMPT_ASKED] = {
                [ATTEMPT_EVENT_RESULT] = ATTEMPT_VERIFYING,
                [ATTEMPT_EVENT_ACCEPT] = -1,
                [ATTEMPT_EVENT_FAIL] = ATTEMPT_FAILED,
                [ATTEMPT_EVENT_STOP] = ATTEMPT_STOPPED,
        },
        [ATTEMPT_VERIFYING] = {
                [ATTEMPT_EVENT_RESULT] = -1,
                [ATTEMPT_EVENT_ACCEPT] = ATTEMPT_VERIFIED,
                [ATTEMPT_EVENT_FAIL] = ATTEMPT_FAILED,
                [ATTEMPT_EVENT_STOP] = ATTEMPT_STOPPED,
        },
        [ATTEMPT_VERIFIED] = { -1, -1, -1, -1 },
        [ATTEMPT_FAILED] = { -1, -1, -1, -1 },
        [ATTEMPT_STOPPED] = { -1, -1, -1, -1 },
};

int attempt_next(enum attempt_state s, enum attempt_event e) {
        if ((unsigned) s >= _ATTEMPT_STATE_MAX || (unsigned) e >= _ATTEMPT_EVENT_MAX)
                return -EINVAL;
        return transitions[s][e] < 0 ? -EINVAL : transitions[s][e];
}

bool attempt_state_is_live(enum attempt_state s) {
        return s == ATTEMPT_ASKED || s == ATTEMPT_VERIFYING;
}

const char *attempt_state_to_string(enum attempt_state s) {
        static const char *const names[_ATTEMPT_STATE_MAX] = {
                [ATTEMPT_ASKED] = "asked",
                [ATTEMPT_VERIFYING] = "verifying",
                [ATTEMPT_VERIFIED] = "verified",
                [ATTEMPT_FAILED] = "failed",
                [ATTEMPT_STOPPED] = "stopped",
        };

        return (unsigned) s < ELEMENTSOF(names) ? names[s] : "?";
}

const char *attempt_event_to_string(enum attempt_event e) {
        static const char *const names[_ATTEMPT_EVENT_MAX] = {
                [ATTEMPT_EVENT_RESULT] = "result",
                [ATTEMPT_EVENT_ACCEPT] = "accept",
                [ATTEMPT_EVENT_FAIL] = "fail",
                [ATTEMPT_EVENT_STOP] = "stop",
        };

        return (unsigned) e < ELEMENTSOF(names) ? names[e] : "?";
}
