# bf16 mixed precision under MPI: data-, tensor- and pipeline-parallel runs (2 ranks each) in
# bf16 reproduce one bf16 process with the same global batch. They cannot agree bit for bit:
# each rank rounds its partial products (a dp rank's weight gradients over half the batch, a
# tp rank's partial row-parallel outputs) to bf16 before the f32 or bf16 reduction, one process
# rounds the whole sum once. SGD with Nesterov (an update linear in the gradient, unlike AdamW,
# which blows rounding noise on near-zero gradients up to full-size steps) over 10 steps.
# Measured on the 2-core development machine (trident-compare_runs, worst over dp2/tp2/pp2):
#   bf16 layout vs one bf16 process: losses 3.6e-4 relative, gradient norms 8.9e-4, weights
#     need atol 5.2e-4 at rtol 3e-3;
#   bf16 (any layout, one process too) vs one f32 process: losses 3.0e-4 to 6.2e-4;
#   f32 layout vs one f32 process: losses 5.1e-8.
# The layout noise is as large as the bf16 effect itself, so no tolerance alone can tell a
# layout that silently ran in f32 (against the bf16 process: losses 3.0e-4, norms 1.9e-3,
# atol 4.1e-4: inside any tolerance that admits the bf16 layouts). Hence two checks per layout:
#   _matches_one_process: --rtol 3e-3 --atol 2e-3 against the bf16 process (3.4x the worst
#     measured norm difference, 3.8x the worst weight atol);
#   _differs_from_fp32: some step's loss differs from one f32 process's by at least 5e-5
#     relative (6x under the smallest bf16 effect measured, 3.0e-4; 1000x over an f32 layout's
#     5.1e-8): a layout running in f32 fails here.
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
add_test(NAME mpi.bf16.reference_fp32
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh
                 $<TARGET_FILE:trident-compare_runs> ${_bf_dir}/ref_fp32 none 1 --
                 ${_bf_train} --batch 8 --precision fp32)
set_tests_properties(mpi.bf16.reference mpi.bf16.reference_fp32 PROPERTIES
  FIXTURES_SETUP bf16_ref LABELS mpi TIMEOUT 300 ENVIRONMENT "${TRIDENT_MPI_ENV}")

# Runs the layout on 2 ranks (test mpi.bf16.<name>), then compares it with the bf16 reference
# (mpi.bf16.<name>_matches_one_process) and with the f32 one (mpi.bf16.<name>_differs_from_fp32).
function(trident_bf16_layout_test name)
  add_test(NAME mpi.bf16.${name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh
                   $<TARGET_FILE:trident-compare_runs> ${_bf_dir}/${name} none 2 -- ${_bf_train}
                   ${ARGN})
  set_tests_properties(mpi.bf16.${name} PROPERTIES FIXTURES_SETUP bf16_${name} LABELS mpi
    TIMEOUT 300 PROCESSORS 2 ENVIRONMENT "${TRIDENT_MPI_ENV}")
  add_test(NAME mpi.bf16.${name}_matches_one_process
           COMMAND $<TARGET_FILE:trident-compare_runs> --rtol 3e-3 --atol 2e-3
                   ${_bf_dir}/${name} ${_bf_dir}/ref)
  add_test(NAME mpi.bf16.${name}_differs_from_fp32
           COMMAND $<TARGET_FILE:trident-compare_runs> --rtol 1 --atol 1 --min-loss-diff 5e-5
                   ${_bf_dir}/${name} ${_bf_dir}/ref_fp32)
  set_tests_properties(mpi.bf16.${name}_matches_one_process mpi.bf16.${name}_differs_from_fp32
    PROPERTIES FIXTURES_REQUIRED "bf16_ref;bf16_${name}" LABELS mpi TIMEOUT 60)
endfunction()

trident_bf16_layout_test(dp2 --dp 2 --micro-batches 2 --batch 2)
trident_bf16_layout_test(tp2 --tp 2 --micro-batches 2 --batch 4)
trident_bf16_layout_test(pp2 --pp 2 --micro-batches 2 --batch 4)
