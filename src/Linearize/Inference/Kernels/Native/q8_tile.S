# Q8 × Q8 register tile with AVX512-VNNI vpdpbusd, for Linearize's CPU engine.
#
# Assembled by build/assemble-kernels.sh into Q8TileCode.g.cs (the machine code as bytes), which the engine copies
# into executable memory at run time (ExecutableCode.cs): .NET 10 has no 512-bit VNNI intrinsics (AvxVnni is 128/256-bit).
# Position independent, no data, no relocations, no calls.
#
# q8_tile_4x4(const Q8TileArgs* a): 4 weight rows × 4 activation rows (tokens), all Q8 blocks of 32, over the
# a->Full whole blocks of each row. Q8TileArgs (8-byte fields): W (int8*, row 0's first quant), WStride (bytes to the
# next row), Dw (float*, row 0's first scale), DwStride (bytes), X (int8*, token 0), XStride, Dx (float*, token 0's
# scales), DxStride, Full (whole blocks), Out (float*[16]: out[t·4 + r]), Blocks (all blocks of a row, the partial one
# too). A weight row keeps its scales beside its quants in groups of 16 blocks (Q8RowLayout.cs: 64 bytes of scales,
# then 512 of quants; the last group may be shorter), so every 16 blocks both pointers step over the other's bytes
# (GROUP_END); the activations are plain arrays of quants and of scales.
#
# q8_tile_4x1(const Q8TileArgs* a): the same 4 weight rows × one token (decoding), with the roles of the offset swapped:
# the weights are offset to unsigned (w + 128, an exclusive or with 0x80) and each accumulator starts at −Σ128·x,
# computed once per step from the token and shared by the 4 rows, so a 64-byte step of one row is an exclusive or
# (with the load folded in), a copy, vpdpbusd, convert, multiply, the row's scales and an FMA: 8 instructions where
# the 256-bit managed kernel takes 15. XStride and DxStride are not read.
#
# The arithmetic is MatVecQ8's, lane for lane, so the two are bit-identical: a zmm accumulator's lanes 0–7 are its
# even blocks' accumulator and lanes 8–15 its odd blocks'; a block's term is fma(float(S) · d_x, d_w, acc) with S the
# exact int32 sum of 4 products per lane; an odd last whole block goes to lanes 0–7 alone; the two halves are added,
# then summed ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)), as .NET's Vector256.Sum does. The partial last block is left to
# the caller. S comes from one vpdpbusd on the activations offset to unsigned (x + 128, an exclusive or with 0x80)
# and an accumulator started at −Σ128·w, computed once per weight row and shared by the 4 tokens:
# Σ (x + 128)·w − Σ 128·w = Σ x·w exactly (the 4 × 1 tile: Σ (w + 128)·x − Σ 128·x). Per 64 bytes of a row and a
# token that is 4 instructions (vpdpbusd, convert, multiply, fma) where the 256-bit managed kernel takes 10.
#
# Repeats by design (what `duplicates` lists here): TOKEN_LOAD and ROW_LOAD spell out one branch per token or row,
# because each uses its own base register and addressing form, which a macro argument cannot select; the two tiles'
# loops and ends look alike but advance and reduce different registers.

        .intel_syntax noprefix
        .altmacro
        .text

.macro TOKEN_LOAD t, odd
        .if \t == 0
        .if \odd
        vmovdqu8 zmm16{k2}{z}, [r14]
        vmovd xmm20, [rbp]
        .else
        vmovdqu8 zmm16, [r14]
        vmovq xmm20, [rbp]
        .endif
        vpxord zmm16, zmm16, zmm29
        vpermps zmm20, zmm30, zmm20
        .elseif \t == 1
        .if \odd
        vmovdqu8 zmm17{k2}{z}, [r14 + rbx]
        vmovd xmm21, [rbp + rsi]
        .else
        vmovdqu8 zmm17, [r14 + rbx]
        vmovq xmm21, [rbp + rsi]
        .endif
        vpxord zmm17, zmm17, zmm29
        vpermps zmm21, zmm30, zmm21
        .elseif \t == 2
        .if \odd
        vmovdqu8 zmm18{k2}{z}, [r15]
        vmovd xmm22, [rax]
        .else
        vmovdqu8 zmm18, [r15]
        vmovq xmm22, [rax]
        .endif
        vpxord zmm18, zmm18, zmm29
        vpermps zmm22, zmm30, zmm22
        .else
        .if \odd
        vmovdqu8 zmm19{k2}{z}, [r15 + rbx]
        vmovd xmm23, [rax + rsi]
        .else
        vmovdqu8 zmm19, [r15 + rbx]
        vmovq xmm23, [rax + rsi]
        .endif
        vpxord zmm19, zmm19, zmm29
        vpermps zmm23, zmm30, zmm23
        .endif
.endm

# Weight row r into zmm24, −Σ128·w into zmm25, its scales (expanded) into zmm26. The row is prefetched 4 KiB ahead,
# as the managed kernel does (MatVecQ8.PrefetchBytes): a batch of a few vectors reads the weights from memory.
.macro ROW_LOAD r, odd
        .if \r == 0
        .if \odd
        vmovdqu8 zmm24{k2}{z}, [r8]
        vmovd xmm26, [r11]
        .else
        prefetcht0 [r8 + 4096]
        vmovdqu8 zmm24, [r8]
        vmovq xmm26, [r11]
        .endif
        .elseif \r == 1
        .if \odd
        vmovdqu8 zmm24{k2}{z}, [r8 + r10]
        vmovd xmm26, [r11 + r13]
        .else
        prefetcht0 [r8 + r10 + 4096]
        vmovdqu8 zmm24, [r8 + r10]
        vmovq xmm26, [r11 + r13]
        .endif
        .elseif \r == 2
        .if \odd
        vmovdqu8 zmm24{k2}{z}, [r9]
        vmovd xmm26, [r12]
        .else
        prefetcht0 [r9 + 4096]
        vmovdqu8 zmm24, [r9]
        vmovq xmm26, [r12]
        .endif
        .else
        .if \odd
        vmovdqu8 zmm24{k2}{z}, [r9 + r10]
        vmovd xmm26, [r12 + r13]
        .else
        prefetcht0 [r9 + r10 + 4096]
        vmovdqu8 zmm24, [r9 + r10]
        vmovq xmm26, [r12 + r13]
        .endif
        .endif
        vpxord zmm28, zmm28, zmm28
        vpdpbusd zmm28, zmm29, zmm24
        vpsubd zmm25, zmm31, zmm28
        vpermps zmm26, zmm30, zmm26
.endm

# One (row, token) term into accumulator zmm\acc (= 4r + t), token t's activations in zmm\xu, its scales in zmm\dx.
.macro TERM acc, xu, dx, odd
        vmovdqa32 zmm27, zmm25
        vpdpbusd zmm27, zmm\xu, zmm24
        vcvtdq2ps zmm27, zmm27
        vmulps zmm27, zmm27, zmm\dx
        .if \odd
        vfmadd231ps zmm\acc{k1}, zmm27, zmm26
        .else
        vfmadd231ps zmm\acc, zmm27, zmm26
        .endif
.endm

.macro STEP odd
        TOKEN_LOAD 0, \odd
        TOKEN_LOAD 1, \odd
        TOKEN_LOAD 2, \odd
        TOKEN_LOAD 3, \odd
        .irp r, 0, 1, 2, 3
        ROW_LOAD \r, \odd
        TERM %(4 * \r + 0), 16, 20, \odd
        TERM %(4 * \r + 1), 17, 21, \odd
        TERM %(4 * \r + 2), 18, 22, \odd
        TERM %(4 * \r + 3), 19, 23, \odd
        .endr
.endm

# The 4 × 1 tile's token: activations in zmm16, −Σ128·x (4 bytes per lane) in zmm17, scales (expanded) in zmm20.
.macro TOKEN1 odd
        .if \odd
        vmovdqu8 zmm16{k2}{z}, [r14]
        vmovd xmm20, [rbp]
        .else
        vmovdqu8 zmm16, [r14]
        vmovq xmm20, [rbp]
        .endif
        vpxord zmm28, zmm28, zmm28
        vpdpbusd zmm28, zmm29, zmm16
        vpsubd zmm17, zmm31, zmm28
        vpermps zmm20, zmm30, zmm20
.endm

# The 4 × 1 tile's row r (weights at \w, scales at \d) into accumulator zmm\r: weights offset to unsigned in
# zmm\u (4 + r), scales expanded in zmm\s (8 + r), the term in zmm\t (12 + r). No software prefetch: the caller
# spreads the 4 rows far apart, the hardware prefetcher follows the 4 streams, and a prefetcht0 2–8 KiB ahead only
# took load slots (docs/RESULTS.md, "Decoding from memory, longer runs").
.macro ROW1 r, u, s, t, w, d, odd
        .if \odd
        vmovdqu8 zmm\u{k2}{z}, \w
        vpxord zmm\u, zmm\u, zmm29
        vmovd xmm\s, \d
        .else
        vpxord zmm\u, zmm29, \w
        vmovq xmm\s, \d
        .endif
        vpermps zmm\s, zmm30, zmm\s
        vmovdqa32 zmm\t, zmm17
        vpdpbusd zmm\t, zmm\u, zmm16
        vcvtdq2ps zmm\t, zmm\t
        vmulps zmm\t, zmm\t, zmm20
        .if \odd
        vfmadd231ps zmm\r{k1}, zmm\t, zmm\s
        .else
        vfmadd231ps zmm\r, zmm\t, zmm\s
        .endif
.endm

.macro STEP1 odd
        TOKEN1 \odd
        ROW1 0, 4, 8, 12, [r8], [r11], \odd
        ROW1 1, 5, 9, 13, [r8+r10], [r11+r13], \odd
        ROW1 2, 6, 10, 14, [r9], [r12], \odd
        ROW1 3, 7, 11, 15, [r9+r10], [r12+r13], \odd
.endm

# After each pair of blocks: at the end of a group of 16, the quant pointers step over the next group's scales (16 of
# them, or the last group's fewer: min(16, blocks left)) and the scale pointers over this group's quants. rdx counts the
# pairs left in the group; the blocks from the current group on sit on the stack, above the rcx saved here.
.macro GROUP_END
        dec rdx
        jnz 4f
        mov edx, 8
        push rcx
        mov rcx, [rsp + 8]
        sub rcx, 16
        mov [rsp + 8], rcx
        cmp rcx, 16
        jle 5f
        mov ecx, 16
5:
        lea r8, [r8 + 4 * rcx]
        lea r9, [r9 + 4 * rcx]
        pop rcx
        add r11, 512
        add r12, 512
4:
.endm

# Both tiles' start: masks and constants (k1, k2, zmm29–31), rows 0 and 2 of the weights (r8, r9; stride r10) and of
# their scales (r11, r12; stride r13).
.macro SETUP
        mov eax, 0xFF
        kmovw k1, eax                   # lanes 0–7: the even blocks' accumulator
        mov eax, 0xFFFFFFFF
        kmovq k2, rax                   # bytes 0–31: one block
        mov eax, 0x80808080
        vpbroadcastd zmm29, eax         # 0x80 in every byte
        vpxord zmm31, zmm31, zmm31      # zero
        mov eax, 0xFF00
        kmovw k3, eax
        mov eax, 1
        vpbroadcastd zmm30{k3}{z}, eax  # permutation: lanes 0–7 ← element 0, lanes 8–15 ← element 1
        mov r8, [rdi]                   # W
        mov r10, [rdi + 8]              # WStride
        lea r9, [r8 + 2 * r10]
        mov r11, [rdi + 16]             # Dw
        mov r13, [rdi + 24]             # DwStride
        lea r12, [r11 + 2 * r13]
.endm

# Sum of accumulator zmm\acc in the managed order, stored at byte \at of Out (rdx).
.macro REDUCE acc, at
        vextractf64x4 ymm27, zmm\acc, 1
        vaddps ymm27, ymm\acc, ymm27
        vextractf32x4 xmm28, ymm27, 1
        vmovshdup xmm24, xmm27
        vaddps xmm27, xmm27, xmm24
        vmovhlps xmm24, xmm24, xmm27
        vaddss xmm27, xmm27, xmm24
        vmovshdup xmm24, xmm28
        vaddps xmm28, xmm28, xmm24
        vmovhlps xmm24, xmm24, xmm28
        vaddss xmm28, xmm28, xmm24
        vaddss xmm27, xmm27, xmm28
        vmovss [rdx + \at], xmm27
.endm

        .globl q8_tile_4x4
q8_tile_4x4:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        SETUP
        mov r14, [rdi + 32]             # X
        mov rbx, [rdi + 40]             # XStride
        lea r15, [r14 + 2 * rbx]
        mov rbp, [rdi + 48]             # Dx
        mov rsi, [rdi + 56]             # DxStride
        lea rax, [rbp + 2 * rsi]
        .irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
        vpxord zmm\i, zmm\i, zmm\i
        .endr
        push qword ptr [rdi + 80]       # Blocks, counted down a group at a time by GROUP_END
        mov edx, 8                      # pairs left in the first group
        mov rcx, [rdi + 64]             # Full
        shr rcx, 1                      # pairs
        jz 2f
1:
        STEP 0
        add r8, 64
        add r9, 64
        add r14, 64
        add r15, 64
        add r11, 8
        add r12, 8
        add rbp, 8
        add rax, 8
        GROUP_END
        dec rcx
        jnz 1b
2:
        test qword ptr [rdi + 64], 1
        jz 3f
        STEP 1
3:
        add rsp, 8
        mov rdx, [rdi + 72]             # Out
        .irp r, 0, 1, 2, 3
        REDUCE %(4 * \r + 0), %(4 * (0 * 4 + \r))
        REDUCE %(4 * \r + 1), %(4 * (1 * 4 + \r))
        REDUCE %(4 * \r + 2), %(4 * (2 * 4 + \r))
        REDUCE %(4 * \r + 3), %(4 * (3 * 4 + \r))
        .endr
        vzeroupper
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret

        .globl q8_tile_4x1
q8_tile_4x1:
        push rbp
        push r12
        push r13
        push r14
        SETUP
        mov r14, [rdi + 32]             # X
        mov rbp, [rdi + 48]             # Dx
        .irp i, 0, 1, 2, 3
        vpxord zmm\i, zmm\i, zmm\i
        .endr
        push qword ptr [rdi + 80]       # Blocks, counted down a group at a time by GROUP_END
        mov edx, 8                      # pairs left in the first group
        mov rcx, [rdi + 64]             # Full
        shr rcx, 1                      # pairs
        jz 2f
1:
        STEP1 0
        add r8, 64
        add r9, 64
        add r14, 64
        add r11, 8
        add r12, 8
        add rbp, 8
        GROUP_END
        dec rcx
        jnz 1b
2:
        test qword ptr [rdi + 64], 1
        jz 3f
        STEP1 1
3:
        add rsp, 8
        mov rdx, [rdi + 72]             # Out
        .irp r, 0, 1, 2, 3
        REDUCE \r, %(4 * \r)
        .endr
        vzeroupper
        pop r14
        pop r13
        pop r12
        pop rbp
        ret
