/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The life of one attempt at a job: one provider asked to run it.  Pure:
 * the requester (jobs/requester.c) keeps an enum attempt_state per attempt
 * and moves it only through attempt_next(), so what may follow what is
 * written once, here, and tested on its own.
 *
 *            result                 accepted
 *   ASKED ───────────► VERIFYING ────────────► VERIFIED
 *     │                    │
 *     │ failed             │ failed (rejected, or our verifier could not judge)
 *     ▼                    ▼
 *   FAILED              FAILED
 *
 *   ASKED, VERIFYING ── stop (another attempt won, the job ended) ──► STOPPED
 *
 * "failed" covers a request that could not be sent, an error answer, a
 * provider that left or went quiet, and the attempt's deadline. */

#include <stdbool.h>

enum attempt_state {
        ATTEMPT_ASKED,          /* the provider has the job; no result yet */
        ATTEMPT_VERIFYING,      /* its result is in; our verify() runs */
        ATTEMPT_VERIFIED,       /* the job's result: end */
        ATTEMPT_FAILED,         /* end */
        ATTEMPT_STOPPED,        /* ended from outside while live: end */
        _ATTEMPT_STATE_MAX,
};

enum attempt_event {
        ATTEMPT_EVENT_RESULT,   /* a result arrived, to verify */
        ATTEMPT_EVENT_ACCEPT,   /* verify() accepted it */
        ATTEMPT_EVENT_FAIL,
        ATTEMPT_EVENT_STOP,
        _ATTEMPT_EVENT_MAX,
};

/* The state after e in s; -EINVAL when e cannot happen in s (an ended
 * attempt takes no event; a result is verified only once). */
int attempt_next(enum attempt_state s, enum attempt_event e);

/* ASKED or VERIFYING: the attempt may still end the job. */
bool attempt_state_is_live(enum attempt_state s);

const char *attempt_state_to_string(enum attempt_state s);
const char *attempt_event_to_string(enum attempt_event e);
