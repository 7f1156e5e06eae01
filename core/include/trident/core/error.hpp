// trident::Error: the one exception type for bad input and failed invariants.
// Messages name the input and, where there is one, the fix.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace trident {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void concat_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void concat_into(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  concat_into(os, rest...);
}
}  // namespace detail

// Joins its arguments with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::concat_into(os, args...);
  return os.str();
}

}  // namespace trident

// TRIDENT_CHECK(cond, "message", parts...) throws trident::Error when cond is false.
#define TRIDENT_CHECK(cond, ...)                                          \
  do {                                                                    \
    if (!(cond)) throw ::trident::Error(::trident::str_cat(__VA_ARGS__)); \
  } while (0)
