# The Llama under tensor and pipeline parallelism (issue 14). Included from
# tests/mpi/CMakeLists.txt (uses its TRIDENT_MPIRUN and TRIDENT_MPI_ENV).
#
# mpi.llama.np2 / np4 (test_llama_parallel.cpp): the PyTorch fixture model at tp 2, pp 2 and
# tp 2 x pp 2, every rank's gradient shard against the slice of torch's float64 gradient at
# 1e-5 per element (tests/models/reference_check.hpp); tp 4 with 2 kv heads must fail on every
# rank naming them.
add_executable(trident_mpi_llama_tests mpi_main.cpp test_llama_parallel.cpp)
target_link_libraries(trident_mpi_llama_tests PRIVATE Trident::trident Catch2::Catch2
                                                      trident_warnings)
target_include_directories(trident_mpi_llama_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/models
                                                   ${PROJECT_SOURCE_DIR}/tools/common/include)
target_compile_definitions(trident_mpi_llama_tests PRIVATE
  TRIDENT_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures")
foreach(np 2 4)
  add_test(NAME mpi.llama.np${np}
           COMMAND ${TRIDENT_MPIRUN} ${MPIEXEC_NUMPROC_FLAG} ${np}
                   $<TARGET_FILE:trident_mpi_llama_tests>)
  set_tests_properties(mpi.llama.np${np} PROPERTIES
    LABELS mpi TIMEOUT 600 PROCESSORS ${np} ENVIRONMENT "${TRIDENT_MPI_ENV}")
endforeach()

# 3D equivalence of the Llama (issue 14): `trident-train --model llama-tiny` (4 layers, width 64,
# 4 heads, 2 kv heads, MLP 176, vocabulary 256) at every dp x tp x pp in {1, 2} reproduces one
# process's losses and gradient norms over 10 AdamW steps (clipped at 1) and its final weights,
# compared by trident-compare_runs at its default tolerance, as the GPT's runs in
# equivalence.cmake. tp 2 splits the 4 q heads AND the 2 kv heads (one kv head a rank), the
# SwiGLU MLP (gate/up column-, down row-parallel), the embedding and the untied head by
# vocabulary rows; pp 2 puts the embedding on the first stage and the final RMSNorm + head on the
# last (nothing tied, so nothing is summed between stages). The global batch is 8 sequences.
if(NOT TARGET trident-train OR NOT TARGET trident-compare_runs)
  return()
endif()
set(_leq_script ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh)
set(_leq_dir ${CMAKE_CURRENT_BINARY_DIR}/llama_equivalence)
set(_leq_train $<TARGET_FILE:trident-train> --model llama-tiny --seq 16 --steps 10
    --log-interval 10 --warmup 2 --lr 1e-3 --min-lr 1e-4 --eps 1e-5 --threads 1
    --eval-batches 2)
set(_leq_compare $<TARGET_FILE:trident-compare_runs>)
file(MAKE_DIRECTORY ${_leq_dir})

# trident_equivalence_run: equivalence.cmake.
trident_equivalence_run(mpi.llama_equivalence.reference 1 ${_leq_dir}/ref none
                        llama_equivalence_ref ${_leq_train} --batch 8)

function(trident_llama_equivalence_test dp tp pp)
  set(extra ${ARGN})
  math(EXPR np "${dp} * ${tp} * ${pp}")
  math(EXPR b "8 / (${dp} * 2)")
  string(REPLACE ";" "" tag "${extra}")
  string(REPLACE "--" "_" tag "${tag}")
  trident_equivalence_run(mpi.llama_equivalence.dp${dp}_tp${tp}_pp${pp}${tag} ${np}
    ${_leq_dir}/dp${dp}tp${tp}pp${pp}${tag} ${_leq_dir}/ref llama_equivalence_ref
    ${_leq_train} --dp ${dp} --tp ${tp} --pp ${pp} --micro-batches 2 --batch ${b} ${extra})
endfunction()

foreach(dp 1 2)
  foreach(tp 1 2)
    foreach(pp 1 2)
      trident_llama_equivalence_test(${dp} ${tp} ${pp})
    endforeach()
  endforeach()
endforeach()
# ZeRO-1 and the GPipe schedule under the full 3D layout.
trident_llama_equivalence_test(2 2 2 --zero 1)
trident_llama_equivalence_test(2 2 2 --schedule gpipe)

# SGD with Nesterov momentum and no clipping (an update linear in the gradient: a gradient off
# by a constant factor, which AdamW and clipping would hide, changes the weights), every step's
# gradient norm compared.
set(_leq_sgd --optimizer sgd --lr 0.1 --nesterov --grad-clip 0 --log-interval 1)
trident_equivalence_sgd_runs(mpi.llama_equivalence ${_leq_dir} llama_equivalence_ref_sgd
                             ${_leq_train} ${_leq_sgd})

# A checkpoint of one layout resumes under others (llama_reshard.sh).
add_test(NAME mpi.llama_checkpoint.reshard
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/llama_reshard.sh ${_leq_dir}/reshard
                 $<TARGET_FILE:trident-train> ${_leq_compare})
set_tests_properties(mpi.llama_checkpoint.reshard PROPERTIES
  LABELS "mpi;checkpoint" TIMEOUT 600 PROCESSORS 4 ENVIRONMENT "${TRIDENT_MPI_ENV}")

# `trident-train --model llama-tiny` learns the built-in data: from ln 256 = 5.55 to a validation
# loss below 2 in 100 steps (seen: 1.54; with --lr 0, the schedule rising to --min-lr only, 5.03).
add_test(NAME cli.llama_tiny_learns
         COMMAND $<TARGET_FILE:trident-train> --model llama-tiny --steps 100 --log-interval 50
                 --threads 1 --eval-batches 4 --out-dir ${_leq_dir}/learns)
set_tests_properties(cli.llama_tiny_learns PROPERTIES LABELS cli TIMEOUT 300
  PASS_REGULAR_EXPRESSION "val loss (0|1)\\.[0-9]" ENVIRONMENT "OMP_NUM_THREADS=1")
# Sampling runs any model with logits() (train::generate): the trained llama-tiny continues a
# prompt of the built-in data with a digit (near-greedy, temperature 0.01).
add_test(NAME cli.llama_tiny_samples
         COMMAND $<TARGET_FILE:trident-train> --model llama-tiny --mode sample
                 --load ${_leq_dir}/learns/model.safetensors --prompt "12+34=" --sample-tokens 6
                 --temperature 0.01 --threads 1)
set_tests_properties(cli.llama_tiny_learns PROPERTIES FIXTURES_SETUP llama_tiny_model)
set_tests_properties(cli.llama_tiny_samples PROPERTIES LABELS cli TIMEOUT 120
  FIXTURES_REQUIRED llama_tiny_model PASS_REGULAR_EXPRESSION "^12\\+34=[0-9]"
  ENVIRONMENT "OMP_NUM_THREADS=1")

# Hugging Face round trip through the tools (llama_hf_check.sh): trident-train's weights ->
# trident-export_hf -> trident-train --hf gives the same evaluation loss; a second export writes
# the same bytes.
if(TARGET trident-export_hf)
  add_test(NAME cli.llama_hf_round_trip
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/llama_hf_check.sh ${_leq_dir}/hf
                   $<TARGET_FILE:trident-train> $<TARGET_FILE:trident-export_hf>
                   ${PROJECT_SOURCE_DIR}/tests/fixtures/tiny_tokens.bin)
  set_tests_properties(cli.llama_hf_round_trip PROPERTIES LABELS cli TIMEOUT 300
    ENVIRONMENT "OMP_NUM_THREADS=1")
endif()

# The Llama through trident-train on the emulated GPU (emulated builds only) against the same
# job on the CPU: one rank, and tp 2 x pp 2 over the NCCL shim (--comm auto on cuda; q and kv
# heads, MLP and vocabulary split on the device, stages exchanging device activations). The
# CUDA kernels sum in other orders than the CPU's: losses and weights within 1e-4 (EQ_RTOL), as
# cuda_emu.train.*. Seen (3 steps): loss differences 4.6e-8, weight differences 8.1e-7 (1 rank)
# and 7.4e-7 (tp2 x pp2, 59 s).
if(TRIDENT_CUDA_EMULATION)
  set(_lemu_train ${_leq_train} --batch 4 --micro-batches 2)
  set(_lemu_env "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;EQ_RTOL=1e-4")
  add_test(NAME cuda_emu.train.llama_tiny_cpu_reference
           COMMAND bash ${_leq_script} ${_leq_compare} ${_leq_dir}/emu_cpu none 1 --
                   ${_lemu_train} --steps 3 --device cpu)
  set_tests_properties(cuda_emu.train.llama_tiny_cpu_reference PROPERTIES
    FIXTURES_SETUP llama_emu_ref LABELS cuda-emu TIMEOUT 300 ENVIRONMENT "${_lemu_env}")
  foreach(layout "1;1" "2;2")
    list(GET layout 0 tp)
    list(GET layout 1 pp)
    math(EXPR np "${tp} * ${pp}")
    set(name cuda_emu.train.llama_tiny_cuda_tp${tp}_pp${pp})
    add_test(NAME ${name}
             COMMAND bash ${_leq_script} ${_leq_compare} ${_leq_dir}/emu_tp${tp}pp${pp}
                     ${_leq_dir}/emu_cpu ${np} -- ${_lemu_train} --steps 3 --device cuda
                     --tp ${tp} --pp ${pp})
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED llama_emu_ref
      LABELS "cuda-emu;gpu" TIMEOUT 900 PROCESSORS ${np} ENVIRONMENT "${_lemu_env}")
  endforeach()
endif()
