// Helpers the benchmark programs share: what machine they ran on, when, reproducible random
// token batches, medians.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trident/core/rng.hpp"
#include "trident/core/tensor.hpp"

namespace trident::bench {

inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

inline std::string host_name() {
  char buf[256] = {};
  return gethostname(buf, sizeof buf - 1) == 0 ? buf : "unknown";
}

// {"host", "cpu", "cores"} for a result's "machine" field.
inline nlohmann::json machine_json() {
  return {{"host", host_name()},
          {"cpu", cpu_model()},
          {"cores", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))}};
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A (b, T) batch of token ids below `vocab`: token i of batch k of stream `stream` (and rank
// `rank`) is a pure function of (seed, stream, rank, k, i), so runs are reproducible.
inline Tensor random_tokens(uint64_t seed, int64_t vocab, int64_t b, int64_t T, uint64_t stream,
                            int64_t k, int rank = 0) {
  std::vector<int32_t> ids(static_cast<size_t>(b * T));
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint64_t index =
        (static_cast<uint64_t>(k) << 40) + (static_cast<uint64_t>(rank) << 32) + i;
    ids[i] =
        static_cast<int32_t>(counter_hash(seed + stream, index) % static_cast<uint64_t>(vocab));
  }
  return Tensor::from_vector(ids, {b, T});
}

}  // namespace trident::bench
