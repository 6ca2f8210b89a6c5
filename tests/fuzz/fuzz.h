/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The libFuzzer entry points, declared for -Wmissing-prototypes; the
 * targets define them, libFuzzer or standalone.c calls them. */

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant the target checks was broken: report it the way libFuzzer
 * and the standalone driver both notice. */
#define FUZZ_CHECK(cond)                                                                \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n",           \
                                __FILE__, __LINE__, #cond);                             \
                        abort();                                                        \
                }                                                                       \
        } while (0)
