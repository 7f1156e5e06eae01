#!/usr/bin/env bash
# Packs what the GPU machine lacks to configure, build and run Trident into
# .gpu-deps/deps.tar.xz (run HERE, on the Debian 12 development machine, before the device call;
# bench/gpu/run_on_device.sh unpacks it). The device image has CUDA, NCCL (in PyTorch's wheel),
# CMake, ninja and a compiler, but no MPI, HDF5, Eigen, CLI11, nlohmann_json or Catch2 (and
# maybe not zlib's headers).
#
# The archive mirrors this machine's /usr: headers and CMake package files, Open MPI 4.1 (the
# wrappers, mpirun/orted, their plugins and help files; relocated there through OPAL_PREFIX),
# HDF5 (serial), and every shared library those need that is not part of glibc or GCC's runtime
# (copied to usr/lib/trident-deps, put on LD_LIBRARY_PATH only for Trident's own programs).
#
#   bash bench/gpu/prepare_deps.sh        # ~15 MB; .gpu-deps/ is ignored by git (see README)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.gpu-deps"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
R="$WORK/root"
mkdir -p "$R" "$DEST"
ARCH_LIB=/usr/lib/x86_64-linux-gnu
OMPI=$ARCH_LIB/openmpi

copy() {  # copies paths (files, links or folders) under $R, keeping their /usr/... location
  for p in "$@"; do
    if [[ -e "$p" || -L "$p" ]]; then
      tar -C / -cf - "${p#/}" | tar -C "$R" -xf -
    else
      echo "prepare_deps: missing $p (install its package here first)" >&2
      exit 1
    fi
  done
}

# Header-only libraries and CMake package files.
copy /usr/include/eigen3 /usr/share/eigen3/cmake
copy /usr/include/nlohmann /usr/share/cmake/nlohmann_json
copy /usr/include/CLI /usr/share/cmake/CLI11
copy /usr/include/catch2 /usr/lib/cmake/Catch2 /usr/lib/libCatch2WithMain.a

# zlib's headers and development link (tools/ uses zlib).
copy /usr/include/zlib.h /usr/include/zconf.h $ARCH_LIB/libz.so.1 "$(readlink -f $ARCH_LIB/libz.so.1)"
ln -sfn libz.so.1 "$R$ARCH_LIB/libz.so"

# HDF5 (serial): headers, the development links and the libraries they point to.
copy /usr/include/hdf5/serial $ARCH_LIB/hdf5/serial
for f in "$ARCH_LIB"/libhdf5_serial.so* "$ARCH_LIB"/libhdf5_serial_hl.so*; do copy "$f"; done

# Open MPI: its whole library folder (libraries, mca plugins, headers), the PMIx plugins, the
# programs, help files and the wrapper compilers' data.
copy $OMPI $ARCH_LIB/pmix2 /usr/share/openmpi
for f in "$ARCH_LIB"/libmpi.so* "$ARCH_LIB"/libmpi_cxx.so* "$ARCH_LIB"/libopen-rte.so* \
  "$ARCH_LIB"/libopen-pal.so* "$ARCH_LIB"/libpmix.so* "$ARCH_LIB"/libhwloc.so* \
  "$ARCH_LIB"/libevent*-2.1.so*; do
  copy "$f"
done
for b in mpirun mpiexec orterun orted ompi_info opal_wrapper mpicc mpicxx mpic++; do
  copy "/usr/bin/$b"
  # Debian points these at /etc/alternatives: make them relative links into the bundle.
  if [[ -L "$R/usr/bin/$b" ]]; then
    target="$(readlink -f "/usr/bin/$b")"
    copy "$target"
    ln -sfn "$(basename "$target")" "$R/usr/bin/$b"
  fi
done

# Shared-library closure of everything above, minus glibc and GCC's runtime (the device has
# its own, newer ones).
SKIP='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s|libgomp|libmvec)\.so'
mkdir -p "$R/usr/lib/trident-deps"
find "$R" -type f \( -name '*.so*' -o -path '*/usr/bin/*' \) -print0 |
  while IFS= read -r -d '' f; do
    ldd "$f" 2>/dev/null | awk '/=> \// {print $3}' || true
  done | sort -u | while read -r lib; do
    name="$(basename "$lib")"
    [[ "$name" =~ $SKIP ]] && continue
    [[ -e "$R$lib" ]] && continue
    cp -L "$lib" "$R/usr/lib/trident-deps/$name"
  done

# The versions, for the results' record.
{
  echo "built on: $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  dpkg-query -W -f='${Package} ${Version}\n' libopenmpi-dev libhdf5-dev libeigen3-dev \
    nlohmann-json3-dev libcli11-dev catch2 2>/dev/null || true
} >"$R/usr/TRIDENT_DEPS_VERSIONS"

tar -C "$R" -cJf "$DEST/deps.tar.xz" usr
grep -qxF '/.gpu-deps/' "$ROOT/.git/info/exclude" 2>/dev/null ||
  echo '/.gpu-deps/' >>"$ROOT/.git/info/exclude"
echo "wrote $DEST/deps.tar.xz ($(du -h "$DEST/deps.tar.xz" | cut -f1)); carry .gpu-deps"
