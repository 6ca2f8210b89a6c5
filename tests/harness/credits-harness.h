/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Credits through swarmd's control socket, for the tests and benches that
 * run paid jobs (issue 22: nobody gets credits for free).  Their swarm
 * accepts one of its daemons as issuer (credits.issuers: [its node id]),
 * which mints to the requesters before they submit work. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The credits view of the daemon at socket; false when it cannot be asked
 * (not up, no credits without the network). */
struct harness_credits {
        uint64_t balance, pending, in_flight, supply, delivered, next_seq, fraud_proofs;
        bool issuer;
};
bool harness_credits_get(const char *socket, struct harness_credits *ret);

/* The daemon at socket pays (an issuer: mints) amount µcredits to payee (32
 * bytes): 0, or the daemon's error (-EDQUOT, -EPERM...) with its message
 * in error, or the socket's. */
int harness_pay(const char *socket, const uint8_t payee[32], uint64_t amount, char *error, size_t size);

/* Waits until the daemon at socket holds at least amount (balance +
 * pending, nothing in flight): 0, or -ETIMEDOUT. */
int harness_wait_held(const char *socket, uint64_t amount, int timeout_ms);

/* Mints amount from the issuer at issuer_socket to the node at
 * payee_socket (whose id is payee) and waits until it holds it: 0, or
 * what failed, said in error. */
int harness_mint(const char *issuer_socket, const char *payee_socket, const uint8_t payee[32], uint64_t amount,
                 int timeout_ms, char *error, size_t size);
