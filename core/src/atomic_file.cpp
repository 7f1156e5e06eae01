#include "trident/core/atomic_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "trident/core/error.hpp"

namespace trident {

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = str_cat(path, ".tmp.", ::getpid());
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
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error(str_cat(path, ": cannot rename ", tmp, " into place: ", why));
  }
}

}  // namespace trident
