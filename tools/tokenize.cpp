// trident-tokenize: text files -> a token file for trident-train.
//
//   trident-tokenize 'books/*.txt' notes.txt -o data/train.h5                 # byte-level
//   trident-tokenize corpus.txt -o train.h5 --vocab encoder.json --merges vocab.bpe --eot
//   trident-tokenize corpus.txt -o train.bin                                   # llm.c .bin
//
// Each input file is one document (globs expand in name order, the list keeps its order); with
// --eot every document ends with the end-of-text token (GPT-2's <|endoftext|> = 50256; for the
// byte tokenizer id 256, so its vocabulary becomes 257). The output is an HDF5 token file
// (hdf5_tokens.hpp) or, with --format bin or a .bin name, an llm.c shard; it is written to a
// temporary file and renamed into place at the end. Files are read in 4 MiB blocks cut where a
// GPT-2 pre-token cannot span (before whitespace that follows non-whitespace), so memory stays
// flat for any input size.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "trident/core/error.hpp"
#include "trident/io/gpt2_tokenizer.hpp"
#include "trident/io/token_dataset.hpp"

namespace {

using trident::data::CharClass;
using Clock = std::chrono::steady_clock;

constexpr size_t kBlockBytes = size_t(4) << 20;
constexpr size_t kMaxCarryBytes = size_t(64) << 20;

// The last offset p of `text` where a GPT-2 pre-token must start: an ASCII whitespace byte whose
// preceding character is not whitespace. 0 when there is none.
size_t safe_cut(const std::string& text) {
  for (size_t p = text.size(); p-- > 1;) {
    const char c = text[p];
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != '\v' && c != '\f') continue;
    size_t k = p - 1;
    while (k > 0 && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80 && p - k < 4) --k;
    size_t len = 0;
    const uint32_t cp = trident::data::detail::next_code_point(text, k, &len);
    const bool space =
        k + len == p && cp != 0xFFFFFFFFu && trident::data::char_class(cp) == CharClass::Space;
    if (!space) return p;
  }
  return 0;
}

struct Progress {
  bool tty = isatty(STDERR_FILENO) != 0;
  Clock::time_point start = Clock::now(), last_print = start;
  int64_t bytes = 0, tokens = 0;
  size_t files_done = 0, files = 0;

  double seconds() const { return std::chrono::duration<double>(Clock::now() - start).count(); }
  void update(bool force = false) {
    if (!tty) return;
    const auto now = Clock::now();
    if (!force && now - last_print < std::chrono::milliseconds(250)) return;
    last_print = now;
    const double s = std::max(seconds(), 1e-9);
    std::fprintf(stderr, "\r\033[K[%zu/%zu files] %.1f MiB read, %lld tokens, %.0f tokens/s",
                 files_done, files, static_cast<double>(bytes) / (1 << 20),
                 static_cast<long long>(tokens), static_cast<double>(tokens) / s);
    std::fflush(stderr);
  }
};

int run(const std::vector<std::string>& inputs, const std::string& output, std::string format,
        const std::string& vocab, const std::string& merges, bool eot) {
  TRIDENT_CHECK(vocab.empty() == merges.empty(),
                "GPT-2 BPE needs both --vocab encoder.json and --merges vocab.bpe");
  if (format.empty()) {
    format = std::filesystem::path(output).extension() == ".bin" ? "bin" : "hdf5";
  }
  std::vector<std::string> paths;
  for (const auto& in : inputs) {
    for (auto& p : trident::data::expand_token_paths(in)) paths.push_back(std::move(p));
  }
  std::unique_ptr<trident::data::Gpt2Tokenizer> bpe;
  std::string tokenizer = "byte";
  int64_t vocab_size = 256, eot_id = -1;
  if (!vocab.empty()) {
    bpe = std::make_unique<trident::data::Gpt2Tokenizer>(vocab, merges);
    tokenizer = "gpt2";
    vocab_size = bpe->vocab_size();
    if (eot) {
      eot_id = bpe->eot_token();
      TRIDENT_CHECK(eot_id >= 0, vocab, ": no <|endoftext|> token for --eot");
    }
  } else if (eot) {
    eot_id = 256;
    vocab_size = 257;
  }
  auto writer = trident::data::make_token_writer(output, format, vocab_size, tokenizer, eot_id);

  Progress progress;
  progress.files = paths.size();
  std::vector<int32_t> ids;
  std::vector<char> block(kBlockBytes);
  for (const auto& path : paths) {
    std::error_code ec;
    TRIDENT_CHECK(std::filesystem::is_regular_file(path, ec), path, ": ",
                  std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
    std::ifstream in(path, std::ios::binary);
    TRIDENT_CHECK(in.is_open(), path, ": cannot open");
    const int64_t tokens_before = writer->num_tokens();
    int64_t file_bytes = 0;
    std::string text;  // carried over: the tail after the last safe cut
    for (;;) {
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      const size_t got = static_cast<size_t>(in.gcount());
      TRIDENT_CHECK(!in.bad(), path, ": read error");
      const bool end = got == 0;
      text.append(block.data(), got);
      file_bytes += static_cast<int64_t>(got);
      size_t cut = text.size();
      if (bpe && !end) {
        cut = safe_cut(text);
        if (cut == 0 && text.size() < kMaxCarryBytes) continue;  // one huge word: read on
        if (cut == 0) cut = text.size();  // > 64 MiB without whitespace: cut anyway
      }
      ids.clear();
      if (bpe) {
        bpe->encode(std::string_view(text).substr(0, cut), ids);
      } else {
        for (size_t i = 0; i < cut; ++i) ids.push_back(static_cast<uint8_t>(text[i]));
      }
      writer->append(ids.data(), static_cast<int64_t>(ids.size()));
      text.erase(0, cut);
      progress.bytes += static_cast<int64_t>(got);
      progress.tokens = writer->num_tokens();
      progress.update();
      if (end) break;
    }
    if (eot_id >= 0) {
      const int32_t t = static_cast<int32_t>(eot_id);
      writer->append(&t, 1);
    }
    ++progress.files_done;
    progress.tokens = writer->num_tokens();
    if (progress.tty) {
      progress.update(true);
    } else {
      std::printf("%s: %lld bytes -> %lld tokens\n", path.c_str(),
                  static_cast<long long>(file_bytes),
                  static_cast<long long>(writer->num_tokens() - tokens_before));
      std::fflush(stdout);
    }
  }
  writer->finish();
  if (progress.tty) std::fprintf(stderr, "\n");
  const double s = std::max(progress.seconds(), 1e-9);
  std::printf(
      "trident-tokenize: read %zu files (%lld bytes), wrote %lld tokens to %s (%s, %s "
      "tokenizer, vocabulary %lld%s) in %.2f s: %.0f tokens/s\n",
      paths.size(), static_cast<long long>(progress.bytes),
      static_cast<long long>(writer->num_tokens()), output.c_str(), format.c_str(),
      tokenizer.c_str(), static_cast<long long>(vocab_size),
      eot_id >= 0 ? (", end-of-text " + std::to_string(eot_id)).c_str() : "", s,
      static_cast<double>(writer->num_tokens()) / s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident-tokenize: text files -> an HDF5 token file or an llm.c .bin shard"};
  std::vector<std::string> inputs;
  std::string output, format, vocab, merges;
  bool eot = false;
  app.add_option("inputs", inputs, "Text files or quoted globs ('data/*.txt'); one document each")
      ->required();
  app.add_option("-o,--output", output, "Token file to write (.h5, or .bin for llm.c)")->required();
  app.add_option("--format", format, "hdf5 or bin (default: bin for a .bin output, else hdf5)")
      ->check(CLI::IsMember({"hdf5", "bin"}));
  app.add_option("--vocab", vocab, "GPT-2 encoder.json: use GPT-2 BPE (default: byte-level)");
  app.add_option("--merges", merges, "GPT-2 vocab.bpe (with --vocab)");
  app.add_flag("--eot", eot, "End every document with the end-of-text token");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(inputs, output, format, vocab, merges, eot);
  } catch (const trident::Error& e) {
    std::fprintf(stderr, "%strident-tokenize: error: %s\n", isatty(STDERR_FILENO) ? "\n" : "",
                 e.what());
    return 1;
  }
}
