# Data-parallel gradient reduction overlapped with backward (runner: bench/dp_overlap.sh).
# Included from bench/CMakeLists.txt.
add_executable(trident-bench-dp-overlap ${CMAKE_CURRENT_LIST_DIR}/dp_overlap.cpp)
target_link_libraries(trident-bench-dp-overlap PRIVATE
  Trident::trident CLI11::CLI11 nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX trident_warnings)
