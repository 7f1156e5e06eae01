# Pipeline-parallel schedules (GPipe, 1F1B) against a single-process GPT, on 2 and 4 ranks.
# Included from tests/mpi/CMakeLists.txt (uses its TRIDENT_MPIRUN and TRIDENT_MPI_ENV).
add_executable(trident_mpi_pipeline_tests mpi_main.cpp test_pipeline.cpp)
target_link_libraries(trident_mpi_pipeline_tests PRIVATE Trident::trident Catch2::Catch2
                                                         trident_warnings)
# trident/tools/all_close.hpp: the per-element comparison shared with trident-compare_runs.
target_include_directories(trident_mpi_pipeline_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/common/include)
foreach(np 2 4)
  add_test(NAME mpi.pipeline.np${np}
           COMMAND ${TRIDENT_MPIRUN} ${MPIEXEC_NUMPROC_FLAG} ${np}
                   $<TARGET_FILE:trident_mpi_pipeline_tests>)
  set_tests_properties(mpi.pipeline.np${np} PROPERTIES
    LABELS mpi TIMEOUT 600 PROCESSORS ${np} ENVIRONMENT "${TRIDENT_MPI_ENV}")
endforeach()
