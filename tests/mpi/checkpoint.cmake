# Checkpoints: resume bit for bit, resharding across layouts (with and without ZeRO-1),
# preemption by SIGUSR1/SIGTERM, a rank killed with SIGKILL, non-finite losses, and corrupted
# or truncated checkpoint files (checkpoint.sh describes each mode).
if(NOT TARGET trident-train OR NOT TARGET trident-compare_runs)
  return()
endif()
foreach(mode resume50 resume_data reshard zero preempt kill nan corrupt parallel write_error)
  add_test(NAME mpi.checkpoint.${mode}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint.sh ${mode}
                   ${CMAKE_CURRENT_BINARY_DIR}/checkpoint/${mode} $<TARGET_FILE:trident-train>
                   $<TARGET_FILE:trident-compare_runs>)
  set_tests_properties(mpi.checkpoint.${mode} PROPERTIES
    LABELS "mpi;checkpoint" TIMEOUT 900 PROCESSORS 4 ENVIRONMENT "${TRIDENT_MPI_ENV}")
endforeach()
