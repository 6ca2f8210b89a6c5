/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The contract between nn-cuda-loader.c (always built, no CUDA headers) and
 * the module nn-cuda.so (built by nvcc from nn-cuda.cu when CUDA is found):
 * the module exports one C function under NN_CUDA_ENTRY.  The caller passes
 * sizeof(struct nn_backend_ops) so that a module built from another version
 * of the engine refuses instead of filling a table of another shape. */

#include <stddef.h>

#define NN_CUDA_ENTRY "nn_cuda_backend_open"

struct nn_backend;

/* On success *ret is a backend on CUDA device `device`, freed with
 * nn_backend_free().  -ENODEV when there is no usable device (the reason in
 * err), -ENOMEM, or -EIO when the device is there but CUDA or cuBLAS cannot
 * be set up on it. */
typedef int nn_cuda_open_fn(size_t ops_size, int device, struct nn_backend **ret, char *err, size_t err_size);
