# Data parallelism and ZeRO-1 (tests/mpi/dp/): a tiny GPT trained data-parallel reproduces
# one-process training, under mpirun with 2 and 4 ranks. Included from tests/mpi/CMakeLists.txt,
# which defines TRIDENT_MPIRUN and TRIDENT_MPI_ENV. Labelled mpi: ctest -L mpi.
add_executable(trident_mpi_dp_tests ${CMAKE_CURRENT_SOURCE_DIR}/mpi_main.cpp
                                    ${CMAKE_CURRENT_SOURCE_DIR}/dp/test_data_parallel.cpp)
target_link_libraries(trident_mpi_dp_tests PRIVATE Trident::trident Catch2::Catch2
                                                   trident_warnings)
# trident/tools/all_close.hpp: the per-element comparison shared with trident-compare_runs.
target_include_directories(trident_mpi_dp_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/common/include)
foreach(np 2 4)
  # Cases tagged [np4] need exactly 4 ranks: only the 4-rank entry runs them.
  if(np EQUAL 4)
    set(_filter "")
  else()
    set(_filter "~[np4]")
  endif()
  add_test(NAME mpi.data_parallel.np${np}
           COMMAND ${TRIDENT_MPIRUN} ${MPIEXEC_NUMPROC_FLAG} ${np}
                   $<TARGET_FILE:trident_mpi_dp_tests> ${_filter})
  set_tests_properties(mpi.data_parallel.np${np} PROPERTIES
    LABELS mpi TIMEOUT 600 PROCESSORS ${np} ENVIRONMENT "${TRIDENT_MPI_ENV}")
endforeach()
