// Trident's CUDA emulation: the driver API header is not emulated; the runtime's is.
#pragma once
#include <cuda_runtime_api.h>
