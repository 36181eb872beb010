#!/usr/bin/env python3
"""Write a llama2.c tokenizer.bin from a SentencePiece tokenizer.model (no sentencepiece/protobuf needed).
Usage: spm_to_llama2c_vocab.py tokenizer.model out.bin [pad_to_vocab_size]
llama2.c format: u32 max_len, then per token: f32 score, u32 len, bytes ('\u2581' -> ' ').
pad_to_vocab_size appends dummy tokens '<pad_N>' (only for benchmarking shapes with a larger vocab)."""
import struct, sys

def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1; r |= (c & 0x7f) << s; s += 7
        if c < 0x80: return r, i

def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i); f, wt = key >> 3, key & 7
        if wt == 0: v, i = varint(b, i)
        elif wt == 1: v = b[i:i+8]; i += 8
        elif wt == 5: v = b[i:i+4]; i += 4
        elif wt == 2: n, i = varint(b, i); v = b[i:i+n]; i += n
        else: raise ValueError(f"wire type {wt}")
        yield f, v

data = open(sys.argv[1], 'rb').read()
toks = []
for f, v in fields(data):
    if f != 1: continue                      # ModelProto.pieces
    piece, score = b'', 0.0
    for g, w in fields(v):
        if g == 1: piece = w
        elif g == 2: score = struct.unpack('<f', w)[0]
    t = piece.decode('utf-8').replace('\u2581', ' ')
    toks.append((t.encode('utf-8'), score))
if len(sys.argv) > 3:
    toks += [(f'<pad_{i}>'.encode(), -1e9) for i in range(len(toks), int(sys.argv[3]))]
with open(sys.argv[2], 'wb') as o:
    o.write(struct.pack('<I', max(len(t) for t, _ in toks)))
    for t, s in toks: o.write(struct.pack('<fI', s, len(t)) + t)
print(f"wrote {len(toks)} tokens to {sys.argv[2]}")
