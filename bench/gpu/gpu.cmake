# GPU benchmarks (CUDA builds only): trident-bench-gpu-kernels. The one-call runner on a GPU
# machine is bench/gpu/run_on_device.sh (see bench/gpu/README.md).
if(TRIDENT_ENABLE_CUDA AND TARGET trident_kernels_cuda)
  add_executable(trident-bench-gpu-kernels ${CMAKE_CURRENT_LIST_DIR}/kernel_bench.cpp)
  target_link_libraries(trident-bench-gpu-kernels PRIVATE Trident::trident CUDA::cudart
    CLI11::CLI11 nlohmann_json::nlohmann_json trident_warnings)
endif()
