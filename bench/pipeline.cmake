# Pipeline bubble and activation memory of GPipe and 1F1B (runner: bench/pipeline_bubble.sh).
# Included from bench/CMakeLists.txt.
add_executable(trident-bench-pipeline ${CMAKE_CURRENT_LIST_DIR}/pipeline_bubble.cpp)
target_link_libraries(trident-bench-pipeline PRIVATE
  Trident::trident CLI11::CLI11 nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX trident_warnings)
