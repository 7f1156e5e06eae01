// Trident's CUDA emulation (test builds only): the parts of CUB that Trident uses.
#pragma once
#include <cub/device/device_radix_sort.cuh>
