# 3D equivalence: for the same seed and data, every dp x tp x pp layout (each in {1, 2}, and 4
# alone on one axis), with ZeRO-1 and with both pipeline schedules, reproduces one process's
# losses and gradient norms over 10 AdamW steps (clipped at 1) within 1e-5 relative and its
# final weights per element within 5e-7 + 1e-5 |w| (trident-compare_runs' default for rtol
# 1e-5, f32). The global batch is 8 sequences in every run. Layouts sum partial products in
# another order (row-parallel layers reduce over tp), so gradients differ by float rounding;
# AdamW divides each gradient by its own running magnitude, which turns that noise into visible
# updates where a gradient is tiny or zero in exact arithmetic (the key bias); eps 1e-5 bounds
# that amplification. Measured on the 2-core development machine (dp2, tp2, pp2, tp4, dp2 ZeRO,
# tp2 x pp2 GPipe, dp2 x tp2 x pp2): losses within 6.7e-8, gradient norms within 4.5e-8, and
# the smallest per-element atol that passes at rtol 1e-5 is 6.3e-8 (tp4), so 5e-7 leaves 8x.
# SGD runs without clipping (below) check dp, tp, pp and 3D with an update that does not
# normalise: losses within 7.9e-8, norms 7.8e-8, atol needed 1.3e-8.
if(NOT TARGET trident-train OR NOT TARGET trident-compare_runs)
  return()
endif()
set(_eq_script ${CMAKE_CURRENT_SOURCE_DIR}/equivalence.sh)
set(_eq_dir ${CMAKE_CURRENT_BINARY_DIR}/equivalence)
set(_eq_train $<TARGET_FILE:trident-train> --layers 4 --width 32 --heads 4 --block 16 --seq 16
    --steps 10 --log-interval 10 --warmup 2 --lr 1e-3 --min-lr 1e-4 --eps 1e-5 --threads 1)
file(MAKE_DIRECTORY ${_eq_dir})

# trident_equivalence_run(NAME NP DIR REF FIXTURE TRAIN...): equivalence.sh runs TRAIN (a
# trident-train command line) on NP ranks into DIR and compares it with the run in REF by
# trident-compare_runs at its default tolerance. REF "none": NAME is a reference run and sets up
# the fixture FIXTURE; otherwise it requires it. Also used by llama.cmake.
function(trident_equivalence_run name np dir ref fixture)
  add_test(NAME ${name}
           COMMAND bash ${_eq_script} $<TARGET_FILE:trident-compare_runs> ${dir} ${ref} ${np} --
                   ${ARGN})
  if(ref STREQUAL "none")
    set(fixture_kind FIXTURES_SETUP)
  else()
    set(fixture_kind FIXTURES_REQUIRED)
  endif()
  set_tests_properties(${name} PROPERTIES ${fixture_kind} ${fixture} LABELS mpi TIMEOUT 300
    PROCESSORS ${np} ENVIRONMENT "${TRIDENT_MPI_ENV}")
endfunction()

trident_equivalence_run(mpi.equivalence.reference 1 ${_eq_dir}/ref none equivalence_ref
                        ${_eq_train} --batch 8)
# SGD with Nesterov momentum and no clipping: the update is linear in the gradient, so a uniform
# gradient-scale error (a data-parallel average divided by the wrong count, a tensor-parallel
# sum counted twice) changes the weights, where AdamW (invariant to the gradient's scale) and
# clipping (which rescales a too-large gradient to the same norm) hide it. Every step logs its
# gradient norm (--log-interval 1), which trident-compare_runs compares too.
# trident_equivalence_sgd_runs(PREFIX DIR FIXTURE TRAIN...): PREFIX.reference_sgd, one process,
# and PREFIX.dpX_tpY_ppZ_sgd at dp 2, tp 2, pp 2 and 2 x 2 x 2 (2 micro-batches, global batch 8)
# against it; TRAIN is trident-train's command line with the SGD arguments. Also used by
# llama.cmake.
function(trident_equivalence_sgd_runs prefix dir fixture)
  trident_equivalence_run(${prefix}.reference_sgd 1 ${dir}/ref_sgd none ${fixture} ${ARGN}
                          --batch 8)
  foreach(layout "2;1;1" "1;2;1" "1;1;2" "2;2;2")
    list(GET layout 0 dp)
    list(GET layout 1 tp)
    list(GET layout 2 pp)
    math(EXPR np "${dp} * ${tp} * ${pp}")
    math(EXPR b "8 / (${dp} * 2)")
    trident_equivalence_run(${prefix}.dp${dp}_tp${tp}_pp${pp}_sgd ${np}
      ${dir}/dp${dp}tp${tp}pp${pp}_sgd ${dir}/ref_sgd ${fixture}
      ${ARGN} --dp ${dp} --tp ${tp} --pp ${pp} --micro-batches 2 --batch ${b})
  endforeach()
endfunction()

set(_eq_sgd --optimizer sgd --lr 0.1 --nesterov --grad-clip 0 --log-interval 1)
trident_equivalence_sgd_runs(mpi.equivalence ${_eq_dir} equivalence_ref ${_eq_train} ${_eq_sgd})

function(trident_equivalence_test dp tp pp)
  set(extra ${ARGN})
  math(EXPR np "${dp} * ${tp} * ${pp}")
  set(m 2)
  if(pp GREATER 2)
    set(m ${pp})
  endif()
  math(EXPR b "8 / (${dp} * ${m})")
  string(REPLACE ";" "" tag "${extra}")
  string(REPLACE "--" "_" tag "${tag}")
  trident_equivalence_run(mpi.equivalence.dp${dp}_tp${tp}_pp${pp}${tag} ${np}
    ${_eq_dir}/dp${dp}tp${tp}pp${pp}${tag} ${_eq_dir}/ref equivalence_ref
    ${_eq_train} --dp ${dp} --tp ${tp} --pp ${pp} --micro-batches ${m} --batch ${b} ${extra})
endfunction()

foreach(dp 1 2)
  foreach(tp 1 2)
    foreach(pp 1 2)
      trident_equivalence_test(${dp} ${tp} ${pp})
      if(dp GREATER 1)
        trident_equivalence_test(${dp} ${tp} ${pp} --zero 1)
      endif()
      if(pp GREATER 1)
        trident_equivalence_test(${dp} ${tp} ${pp} --schedule gpipe)
      endif()
    endforeach()
  endforeach()
endforeach()
trident_equivalence_test(4 1 1)
trident_equivalence_test(4 1 1 --zero 1)
trident_equivalence_test(1 4 1)
trident_equivalence_test(1 1 4)
trident_equivalence_test(1 1 4 --schedule gpipe)
# Overlap off and small buckets (many reductions in flight) give the same numbers.
trident_equivalence_test(2 1 1 --no-overlap)
trident_equivalence_test(2 2 2 --bucket-mb 0.01)
