#include "trident/core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "trident/core/error.hpp"

namespace trident {

std::string temporary_path_for(const std::string& path) {
  return str_cat(path, ".tmp.", ::getpid());
}

namespace {

// fsync of a file or directory; false when it cannot be opened or synced.
bool sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

void commit_temporary_file(const std::string& tmp, const std::string& path) {
  if (!sync_path(tmp, O_RDONLY)) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(str_cat(path, ": cannot flush ", tmp, " to disk: ", why));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(str_cat(path, ": cannot rename ", tmp, " into place: ", why));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  sync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);  // best effort (some FS refuse)
}

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = temporary_path_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TRIDENT_CHECK(out.is_open(), tmp, ": cannot create: ", std::strerror(errno));
    write(out);
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(str_cat(tmp, ": write failed (disk full?)"));
    }
  }
  commit_temporary_file(tmp, path);
}

}  // namespace trident
