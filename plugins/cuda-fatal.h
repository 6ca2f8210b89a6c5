/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Which CUDA errors leave the context unusable (the device is gone, a
 * kernel faulted): after one, a skill reports the device lost instead of
 * retrying.  Shared by the gemm skill and the engine's CUDA backend; include
 * after the CUDA runtime header. */

#include <stdbool.h>

static inline bool cuda_error_is_fatal(cudaError_t e) {
        switch (e) {
        case cudaErrorNoDevice:
        case cudaErrorDevicesUnavailable:
        case cudaErrorInsufficientDriver:
        case cudaErrorECCUncorrectable:
        case cudaErrorLaunchFailure:
        case cudaErrorIllegalAddress:
        case cudaErrorHardwareStackError:
        case cudaErrorIllegalInstruction:
        case cudaErrorMisalignedAddress:
        case cudaErrorInvalidAddressSpace:
        case cudaErrorInvalidPc:
        case cudaErrorLaunchTimeout:
        case cudaErrorAssert:
                return true;
        default:
                return false;
        }
}
