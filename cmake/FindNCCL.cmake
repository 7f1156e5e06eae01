# FindNCCL: NVIDIA's collective communication library.
#
#   find_package(NCCL [version] [REQUIRED])
#
# Result: the imported target NCCL::nccl (library + include directory) and NCCL_FOUND,
# NCCL_VERSION (from nccl.h), NCCL_INCLUDE_DIR, NCCL_LIBRARY (cache entries, may be set by hand).
# Searched in NCCL_ROOT (CMake variable or environment; CMake's <Package>_ROOT rule), NCCL_HOME,
# the CUDA toolkit (CUDAToolkit_ROOT / CUDAToolkit_LIBRARY_DIR when FindCUDAToolkit ran) and the
# system paths. Installed beside TridentConfig.cmake, which finds NCCL again through it, so
# exported targets name NCCL::nccl, never a path from the machine Trident was built on.
if(TARGET NCCL::nccl)  # already found (or provided by the CUDA emulation of a test build)
  set(NCCL_FOUND TRUE)
  return()
endif()

set(_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT} $ENV{NCCL_HOME} ${CUDAToolkit_ROOT} $ENV{CUDA_HOME})
if(CUDAToolkit_LIBRARY_DIR)
  get_filename_component(_nccl_cuda_root "${CUDAToolkit_LIBRARY_DIR}" DIRECTORY)
  list(APPEND _nccl_hints ${_nccl_cuda_root})
endif()
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
          PATH_SUFFIXES include)
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
             PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
mark_as_advanced(NCCL_INCLUDE_DIR NCCL_LIBRARY)

if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_defines
       REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*#define NCCL_${_part} +([0-9]+).*" "\\1" NCCL_VERSION_${_part}
                         "${_nccl_defines}")
  endforeach()
  set(NCCL_VERSION "${NCCL_VERSION_MAJOR}.${NCCL_VERSION_MINOR}.${NCCL_VERSION_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NCCL REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR
                                  VERSION_VAR NCCL_VERSION)

if(NCCL_FOUND)
  add_library(NCCL::nccl UNKNOWN IMPORTED)
  set_target_properties(NCCL::nccl PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
unset(_nccl_hints)
unset(_nccl_cuda_root)
unset(_nccl_defines)
