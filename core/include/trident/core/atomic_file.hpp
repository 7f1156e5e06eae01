// Writing a file so that a crash or a full disk never leaves a partial file at its path: the
// content goes to "<path>.tmp.<pid>", which is renamed into place only once fully written.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace trident {

// The temporary name used for `path`: "<path>.tmp.<pid>".
std::string temporary_path_for(const std::string& path);

// Makes a fully written temporary file durable and visible: fsyncs `tmp`, renames it to `path`
// (atomic on POSIX file systems) and fsyncs the directory, so after a crash `path` holds either
// the old or the new content. Removes `tmp` and throws trident::Error naming `path` on failure.
void commit_temporary_file(const std::string& tmp, const std::string& path);

// Calls write(out) on a binary stream to the temporary file, then commits it as
// commit_temporary_file does.
// Throws trident::Error naming the file when it cannot be created, written or renamed (the
// temporary file is removed then).
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace trident
