// GPT-2's byte-level BPE: vocabulary and merge files, the byte <-> unicode table, and BPE over
// one pre-token with a heap of candidate pairs (O(n log n) in the piece's length, so a long run
// of punctuation does not go quadratic). See gpt2_tokenizer.hpp for the algorithm.
#include "trident/io/gpt2_tokenizer.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>

#include "trident/core/error.hpp"

namespace trident::data {

namespace detail {

uint32_t next_code_point(std::string_view t, size_t i, size_t* length) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(t[k]); };
  const uint8_t b0 = byte(i);
  *length = 1;
  if (b0 < 0x80) return b0;
  size_t n = 0;
  uint32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0)
    n = 2, cp = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0)
    n = 3, cp = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0)
    n = 4, cp = b0 & 0x07, min = 0x10000;
  else
    return 0xFFFFFFFFu;
  if (i + n > t.size()) return 0xFFFFFFFFu;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0xFFFFFFFFu;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFFFFFFu;
  *length = n;
  return cp;
}

}  // namespace detail

std::vector<std::string> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string> out;
  gpt2_pretokenize(text, [&](size_t b, size_t e) { out.emplace_back(text.substr(b, e - b)); });
  return out;
}

namespace {

// GPT-2's byte -> code point table: printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC,
// U+00AE..U+00FF) stand for themselves, the other 68 bytes for U+0100 + their order.
std::vector<uint32_t> byte_code_points() {
  std::vector<uint32_t> cp(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    cp[b] = printable ? b : next++;
  }
  return cp;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_json, const std::string& merges_bpe) {
  const std::vector<uint32_t> byte_cp = byte_code_points();
  std::unordered_map<uint32_t, uint8_t> cp_byte;
  for (uint32_t b = 0; b < 256; ++b) cp_byte[byte_cp[b]] = static_cast<uint8_t>(b);

  std::ifstream in(encoder_json);
  TRIDENT_CHECK(in.is_open(), encoder_json,
                ": cannot open (GPT-2's encoder.json: see the README "
                "for where to get it)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(encoder_json, ": not valid JSON: ", e.what()));
  }
  TRIDENT_CHECK(j.is_object() && !j.empty(), encoder_json,
                ": expected a JSON object mapping token strings to ids");
  std::unordered_map<std::string, int32_t> vocab;
  for (auto it = j.begin(); it != j.end(); ++it) {
    TRIDENT_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                      it.value().get<int64_t>() < (int64_t(1) << 31),
                  encoder_json, ": token '", it.key(), "' has no valid id");
    const int32_t id = it.value().get<int32_t>();
    vocab[it.key()] = id;
    vocab_size_ = std::max<int64_t>(vocab_size_, int64_t(id) + 1);
  }
  id_bytes_.resize(static_cast<size_t>(vocab_size_));
  for (const auto& [token, id] : vocab) {
    std::string bytes;
    for (size_t i = 0, len = 0; i < token.size(); i += len) {
      const uint32_t cp = detail::next_code_point(token, i, &len);
      auto b = cp_byte.find(cp);
      TRIDENT_CHECK(b != cp_byte.end(), encoder_json, ": token '", token,
                    "' has a character outside GPT-2's byte alphabet");
      bytes += static_cast<char>(b->second);
    }
    id_bytes_[static_cast<size_t>(id)] = bytes;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    auto it = vocab.find(utf8(byte_cp[b]));
    TRIDENT_CHECK(it != vocab.end(), encoder_json, ": no token for byte ", b,
                  " (a GPT-2 vocabulary holds all 256 bytes)");
    byte_id_[b] = it->second;
  }
  if (auto it = vocab.find("<|endoftext|>"); it != vocab.end()) eot_ = it->second;

  std::ifstream mf(merges_bpe);
  TRIDENT_CHECK(mf.is_open(), merges_bpe,
                ": cannot open (GPT-2's vocab.bpe merge list: see the "
                "README for where to get it)");
  std::string line;
  uint32_t rank = 0;
  for (int64_t line_no = 1; std::getline(mf, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    TRIDENT_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() &&
                      line.find(' ', sp + 1) == std::string::npos,
                  merges_bpe, ":", line_no, ": expected a merge 'left right', got '", line, "'");
    const std::string a = line.substr(0, sp), b = line.substr(sp + 1);
    auto ia = vocab.find(a), ib = vocab.find(b), im = vocab.find(a + b);
    TRIDENT_CHECK(ia != vocab.end() && ib != vocab.end() && im != vocab.end(), merges_bpe, ":",
                  line_no, ": merge '", line, "' uses or makes a token missing from ", encoder_json,
                  " (mismatched files?)");
    merges_.emplace(pair_key(ia->second, ib->second), Merge{rank++, im->second});
  }
  TRIDENT_CHECK(rank > 0, merges_bpe, ": no merges");
}

void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  const int32_t n = static_cast<int32_t>(piece.size());
  struct Symbol {
    int32_t id, prev, next;  // id -1: merged into its left neighbour
  };
  std::vector<Symbol> s(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    s[i] = {byte_id_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  // Candidates ordered by (rank, position): equal ranks merge left to right, as GPT-2's loop
  // merges every occurrence of the best pair in one left-to-right pass.
  struct Candidate {
    uint32_t rank;
    int32_t left, left_id, right_id, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    const int32_t right = s[left].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(s[left].id, s[right].id));
    if (it != merges_.end()) {
      heap.push({it->second.rank, left, s[left].id, s[right].id, it->second.merged});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = s[c.left];
    if (l.id != c.left_id || l.next < 0 || s[l.next].id != c.right_id) continue;  // stale
    Symbol& r = s[l.next];
    l.id = c.merged;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) s[r.next].prev = c.left;
    if (l.prev >= 0) consider(l.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = s[i].next) out.push_back(s[i].id);
}

void Gpt2Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) {
  gpt2_pretokenize(text, [&](size_t b, size_t e) {
    const std::string_view piece = text.substr(b, e - b);
    if (piece.size() == 1) {
      out.push_back(byte_id_[static_cast<uint8_t>(piece[0])]);
      return;
    }
    std::string key(piece);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      if (cache_.size() >= (size_t(1) << 20)) cache_.clear();
      std::vector<int32_t> ids;
      bpe(piece, ids);
      it = cache_.emplace(std::move(key), std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  });
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) {
  std::vector<int32_t> out;
  encode(text, out);
  return out;
}

std::string Gpt2Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    TRIDENT_CHECK(id >= 0 && id < vocab_size_ && (!id_bytes_[static_cast<size_t>(id)].empty()),
                  "token id ", id, " is not in the GPT-2 vocabulary");
    out += id_bytes_[static_cast<size_t>(id)];
  }
  return out;
}

}  // namespace trident::data
