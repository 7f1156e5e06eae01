# `cmake --install` for Trident: public headers, the static libraries and a CMake package, so
# another project can write
#
#   find_package(Trident 0.1 REQUIRED)
#   target_link_libraries(my_app PRIVATE Trident::trident)
#
# Installed layout (under CMAKE_INSTALL_PREFIX):
#   include/trident/{kernels,core,io,trace,parallel,planner,train,models}/...   the include/ trees
#   lib/libtrident_*.a     kernels, core, io, trace, parallel, planner, train, models (+ CUDA)
#   lib/cmake/Trident/TridentConfig.cmake, TridentConfigVersion.cmake, TridentTargets*.cmake,
#                     FindNCCL.cmake (the config finds NCCL again with it in NCCL builds)
#
# Included from the root CMakeLists.txt after the libraries are defined. Every target the
# libraries link to is exported or found again by TridentConfig.cmake (MPI::MPI_C, hdf5::hdf5,
# NCCL::nccl through the installed FindNCCL.cmake, ...): the export names targets, never a path
# of the build machine. Static libraries carry even their PRIVATE dependencies into the export
# (as link-only entries), so the build-only helpers (the flag targets trident_warnings and
# trident_cpu_tuning, header-only Eigen) are linked as $<BUILD_INTERFACE:...> and stay out.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TRIDENT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Trident CACHE STRING
    "Where TridentConfig.cmake is installed, relative to the prefix")

set(_trident_export_targets trident trident_models trident_train trident_parallel trident_planner
    trident_io
    trident_trace trident_core trident_kernels)
if(TARGET trident_kernels_cuda)
  list(APPEND _trident_export_targets trident_kernels_cuda)
endif()

install(TARGETS ${_trident_export_targets}
  EXPORT TridentTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Headers: every include/ tree of the libraries. The trailing slash installs the tree's
# contents, so all eight land in include/trident/<area>/.
foreach(_dir kernels core core/io core/trace parallel parallel/planner parallel/train models)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_dir}/include/
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh")
endforeach()

install(EXPORT TridentTargets
  NAMESPACE Trident::
  FILE TridentTargets.cmake
  DESTINATION ${TRIDENT_INSTALL_CMAKEDIR})

# What the config must find again, recorded from this build.
set(TRIDENT_PACKAGE_WITH_CUDA OFF)
if(TARGET trident_kernels_cuda)
  set(TRIDENT_PACKAGE_WITH_CUDA ON)
endif()
get_target_property(_trident_parallel_defs trident_parallel INTERFACE_COMPILE_DEFINITIONS)
set(TRIDENT_PACKAGE_WITH_NCCL OFF)  # (NCCL::nccl itself is visible in parallel/ only)
if("TRIDENT_WITH_NCCL=1" IN_LIST _trident_parallel_defs)
  set(TRIDENT_PACKAGE_WITH_NCCL ON)
endif()
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/TridentConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/TridentConfig.cmake
  INSTALL_DESTINATION ${TRIDENT_INSTALL_CMAKEDIR})
# 0.x releases are not promised to be compatible with each other: same minor version only.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/TridentConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/TridentConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/TridentConfigVersion.cmake
              ${CMAKE_CURRENT_LIST_DIR}/FindNCCL.cmake
        DESTINATION ${TRIDENT_INSTALL_CMAKEDIR})
