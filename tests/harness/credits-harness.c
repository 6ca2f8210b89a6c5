/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control-client.h"
#include "credits-harness.h"

static long long mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool harness_credits_get(const char *socket, struct harness_credits *ret) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__CreditsRequest credits = SWARM__CREDITS_REQUEST__INIT;
        Swarm__ControlReply *reply;
        bool ok;

        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_CREDITS;
        req.credits = &credits;
        if (control_client_call(socket, &req, &reply) < 0)
                return false;
        ok = reply->error == 0 && reply->credits;
        if (ok)
                *ret = (struct harness_credits) {
                        .balance = reply->credits->balance,
                        .pending = reply->credits->pending,
                        .in_flight = reply->credits->in_flight,
                        .supply = reply->credits->supply,
                        .delivered = reply->credits->delivered,
                        .next_seq = reply->credits->next_seq,
                        .fraud_proofs = reply->credits->fraud_proofs,
                        .issuer = reply->credits->issuer,
                };
        swarm__control_reply__free_unpacked(reply, NULL);
        return ok;
}

int harness_pay(const char *socket, const uint8_t payee[32], uint64_t amount, char *error, size_t size) {
        Swarm__ControlRequest req = SWARM__CONTROL_REQUEST__INIT;
        Swarm__PayRequest p = SWARM__PAY_REQUEST__INIT;
        Swarm__ControlReply *reply;
        int r;

        p.payee = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) payee };
        p.amount = amount;
        req.request_case = SWARM__CONTROL_REQUEST__REQUEST_PAY;
        req.pay = &p;
        r = control_client_call(socket, &req, &reply);
        if (r < 0) {
                snprintf(error, size, "%s: %s", socket, strerror(-r));
                return r;
        }
        r = reply->error;
        if (r < 0)
                snprintf(error, size, "%s", reply->message && reply->message[0] ? reply->message : strerror(-r));
        swarm__control_reply__free_unpacked(reply, NULL);
        return r;
}

int harness_wait_held(const char *socket, uint64_t amount, int timeout_ms) {
        long long deadline = mono_ms() + timeout_ms;
        struct harness_credits v;

        for (;;) {
                if (harness_credits_get(socket, &v) && v.balance + v.pending >= amount)
                        return 0;
                if (mono_ms() >= deadline)
                        return -ETIMEDOUT;
                usleep(20 * 1000);
        }
}

int harness_mint(const char *issuer_socket, const char *payee_socket, const uint8_t payee[32], uint64_t amount,
                 int timeout_ms, char *error, size_t size) {
        struct harness_credits before = {};
        int r;

        (void) harness_credits_get(payee_socket, &before);
        r = harness_pay(issuer_socket, payee, amount, error, size);
        if (r < 0)
                return r;
        r = harness_wait_held(payee_socket, before.balance + before.pending + amount, timeout_ms);
        if (r < 0)
                snprintf(error, size, "the mint of %llu µcredits did not reach %s within %d ms",
                         (unsigned long long) amount, payee_socket, timeout_ms);
        return r;
}
