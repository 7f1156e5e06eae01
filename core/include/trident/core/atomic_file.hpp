// Writing a file so that a crash or a full disk never leaves a partial file at its path: the
// content goes to "<path>.tmp.<pid>", which is renamed into place only once fully written.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace trident {

// Calls write(out) on a binary stream to the temporary file, then renames it to `path`.
// Throws trident::Error naming the file when it cannot be created, written or renamed (the
// temporary file is removed then).
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace trident
