#!/usr/bin/env python3
"""Write a random-weight llama2.c .bin of any Llama shape (speed tests only; values are a tiled random block).
Usage: llama2c_shape.py out.bin dim hidden layers heads kv_heads vocab seq_len
e.g. SmolLM2-135M shape: llama2c_shape.py smollm2-135m.bin 576 1536 30 9 3 49152 16384
(Needed because 'linearize create-random --format llama2c' refuses SmolLM2: its RoPE theta is not 10000.
 Theta does not change speed; llama.cpp's llama2c converter writes the default 10000.)"""
import array, random, struct, sys
out, (dim, hid, L, H, KV, V, T) = sys.argv[1], map(int, sys.argv[2:9])
random.seed(0)
block = array.array('f', (random.gauss(0, 0.02) for _ in range(1 << 20))).tobytes()
def rand(n, f):
    n *= 4
    while n > 0: f.write(block[:min(n, len(block))]); n -= len(block)
def ones(n, f): f.write(array.array('f', [1.0]) .tobytes() * n)
hd, kvd = dim // H, dim // H * KV
with open(out, 'wb') as f:
    f.write(struct.pack('<7i', dim, hid, L, H, KV, V, T))   # positive vocab = tied embeddings
    rand(V * dim, f); ones(L * dim, f)
    rand(L * dim * dim, f); rand(L * dim * kvd, f); rand(L * dim * kvd, f); rand(L * dim * dim, f)
    ones(L * dim, f); rand(L * dim * hid, f); rand(L * hid * dim, f); rand(L * dim * hid, f)
    ones(dim, f); rand(T * hd, f)                           # final norm, freq_cis (ignored by readers)
print(f"wrote {out}")
