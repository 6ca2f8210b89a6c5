/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <criterion/criterion.h>
#include <errno.h>

#include "attempt.h"

Test(attempt, a_verified_result_is_asked_then_verifying_then_verified) {
        int s = ATTEMPT_ASKED;

        s = attempt_next(s, ATTEMPT_EVENT_RESULT);
        cr_assert_eq(s, ATTEMPT_VERIFYING);
        cr_assert(attempt_state_is_live(s));
        s = attempt_next(s, ATTEMPT_EVENT_ACCEPT);
        cr_assert_eq(s, ATTEMPT_VERIFIED);
        cr_assert_not(attempt_state_is_live(s));
}

Test(attempt, failure_and_stop_end_a_live_attempt_from_either_live_state) {
        cr_assert_eq(attempt_next(ATTEMPT_ASKED, ATTEMPT_EVENT_FAIL), ATTEMPT_FAILED);
        cr_assert_eq(attempt_next(ATTEMPT_VERIFYING, ATTEMPT_EVENT_FAIL), ATTEMPT_FAILED);
        cr_assert_eq(attempt_next(ATTEMPT_ASKED, ATTEMPT_EVENT_STOP), ATTEMPT_STOPPED);
        cr_assert_eq(attempt_next(ATTEMPT_VERIFYING, ATTEMPT_EVENT_STOP), ATTEMPT_STOPPED);
}

Test(attempt, an_ended_attempt_takes_no_event_and_a_result_is_verified_once) {
        static const enum attempt_state ended[] = { ATTEMPT_VERIFIED, ATTEMPT_FAILED, ATTEMPT_STOPPED };

        for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++)
                for (int e = 0; e < _ATTEMPT_EVENT_MAX; e++)
                        cr_assert_eq(attempt_next(ended[i], e), -EINVAL, "%s takes %s",
                                     attempt_state_to_string(ended[i]), attempt_event_to_string(e));
        cr_assert_eq(attempt_next(ATTEMPT_VERIFYING, ATTEMPT_EVENT_RESULT), -EINVAL);
        cr_assert_eq(attempt_next(ATTEMPT_ASKED, ATTEMPT_EVENT_ACCEPT), -EINVAL, "accepted without a result");
        cr_assert_eq(attempt_next(_ATTEMPT_STATE_MAX, ATTEMPT_EVENT_FAIL), -EINVAL);
        cr_assert_eq(attempt_next(ATTEMPT_ASKED, _ATTEMPT_EVENT_MAX), -EINVAL);
}
