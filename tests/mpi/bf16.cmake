# bf16 mixed precision under MPI: data-, tensor- and pipeline-parallel runs (2 ranks each) in
# bf16 reproduce one bf16 process with the same global batch. They cannot agree bit for bit:
# each rank rounds its partial products (a dp rank's weight gradients over half the batch, a
# tp rank's partial row-parallel outputs) to bf16 before the f32 or bf16 reduction, one process
# rounds the whole sum once. SGD with Nesterov (an update linear in the gradient, unlike AdamW,
# which blows rounding noise on near-zero gradients up to full-size steps) over 10 steps,
# measured on the 2-core development machine: losses within 6.1e-4 relative, weights within
# 6.4e-3 of each tensor's largest entry (bf16 against f32 differs by 5.0e-4 and 7.8e-3 in the
# same run). Tolerance 2e-2.
if(NOT TARGET trident-train OR NOT TARGET trident-compare_runs)
  return()
endif()
set(_bf_dir ${CMAKE_CURRENT_BINARY_DIR}/bf16)
set(_bf_train $<TARGET_FILE:trident-train> --precision bf16 --layers 4 --width 32 --heads 4
    --block 16 --seq 16 --steps 10 --log-interval 10 --warmup 2 --optimizer sgd --lr 0.1
    --nesterov --threads 1)
file(MAKE_DIRECTORY ${_bf_dir})

add_test(NAME mpi.bf16.reference
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh
                 $<TARGET_FILE:trident-compare_runs> ${_bf_dir}/ref none 1 --
                 ${_bf_train} --batch 8)
set_tests_properties(mpi.bf16.reference PROPERTIES FIXTURES_SETUP bf16_ref LABELS mpi
  TIMEOUT 300 ENVIRONMENT "${TRIDENT_MPI_ENV}")

# Runs the layout on 2 ranks (test mpi.bf16.<name>), then compares it with the reference
# (mpi.bf16.<name>_matches_one_process).
function(trident_bf16_layout_test name)
  add_test(NAME mpi.bf16.${name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh
                   $<TARGET_FILE:trident-compare_runs> ${_bf_dir}/${name} none 2 -- ${_bf_train}
                   ${ARGN})
  set_tests_properties(mpi.bf16.${name} PROPERTIES FIXTURES_SETUP bf16_${name} LABELS mpi
    TIMEOUT 300 PROCESSORS 2 ENVIRONMENT "${TRIDENT_MPI_ENV}")
  add_test(NAME mpi.bf16.${name}_matches_one_process
           COMMAND $<TARGET_FILE:trident-compare_runs> --rtol 2e-2 ${_bf_dir}/${name}
                   ${_bf_dir}/ref)
  set_tests_properties(mpi.bf16.${name}_matches_one_process PROPERTIES
    FIXTURES_REQUIRED "bf16_ref;bf16_${name}" LABELS mpi TIMEOUT 60)
endfunction()

trident_bf16_layout_test(dp2 --dp 2 --micro-batches 2 --batch 2)
trident_bf16_layout_test(tp2 --tp 2 --micro-batches 2 --batch 4)
trident_bf16_layout_test(pp2 --pp 2 --micro-batches 2 --batch 4)
