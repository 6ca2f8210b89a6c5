/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finds the CUDA backend at run time: nn-cuda.so is built by nvcc apart
 * from the engine and linked against the CUDA runtime and cuBLAS, so that
 * the engine, the skills and every CPU-only path load and run where CUDA is
 * not installed.  Only a caller that asks for CUDA maps the module (and
 * with it the CUDA libraries), and it stays mapped for the life of the
 * process: CUDA does not support being unloaded. */

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

#include "nn-backend.h"
#include "nn-cuda.h"
#include "nn-error.h"

int nn_cuda_backend_new(int device, struct nn_backend **ret, char *err, size_t err_size) {
#ifdef NN_CUDA_MODULE
        const char *path = secure_getenv("SWARM_NN_CUDA_MODULE");
        nn_cuda_open_fn *open_backend;
        void *lib;

        if (!path || !*path)
                path = NN_CUDA_MODULE;
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!lib)
                /* dlerror() names what is missing: the module itself, or the
                 * CUDA runtime or cuBLAS it links. */
                return nn_error(err, err_size, -ENODEV, "cannot load the CUDA backend: %s", dlerror());
        open_backend = (nn_cuda_open_fn *) dlsym(lib, NN_CUDA_ENTRY);
        if (!open_backend)
                return nn_error(err, err_size, -ENODEV, "%s is not a CUDA backend module: it lacks %s", path,
                                NN_CUDA_ENTRY);
        return open_backend(sizeof(struct nn_backend_ops), device, ret, err, err_size);
#else
        return nn_error(err, err_size, -ENODEV, "this build has no CUDA backend");
#endif
}
