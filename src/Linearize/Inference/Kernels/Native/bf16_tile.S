# bfloat16 × bfloat16 register tiles with AVX512-BF16 vdpbf16ps, for Linearize's CPU engine.
#
# Assembled by build/assemble-kernels.sh into BFloat16TileCode.g.cs (the machine code as bytes), which the engine
# copies into executable memory at run time (ExecutableCode.cs): .NET 10 has no AVX512-BF16 intrinsics. Position
# independent, no data, no relocations, no calls: the bytes run wherever they are copied.
#
# One function per tile shape, bf16_tile_4x<T>: 4 weight rows × T activation rows (T = 1..6), 4·T zmm accumulators.
#   void bf16_tile_4xT(const uint16_t* const* w,   // rdi: 4 row pointers, bfloat16 [cols] each
#                      const uint16_t* const* x,   // rsi: T row pointers, bfloat16 [cols] each
#                      int64_t cols,               // rdx: columns (≥ 1)
#                      float* out);                // rcx: [T, 4] float32 dot products, out[t·4 + r]
# SysV x64. Lane i of accumulator (r, t) sums, for every 32-column block k in order, first the odd product
# w[32k+2i+1]·x[32k+2i+1], then the even one w[32k+2i]·x[32k+2i] (vdpbf16ps's order, Intel SDM); a last partial block
# is read with masked, zeroing loads (nothing past cols is touched). Each accumulator is then reduced by one fixed tree:
# b[i] = a[i] + a[i+8], c[i] = b[i] + b[i+4], d[i] = c[i] + c[i+2], s = d[0] + d[1] — the managed twin
# (BFloat16Dot.cs) spells out the same order, so a result does not depend on the tile shape or on T.

        .intel_syntax noprefix
        .altmacro
        .text

# General-purpose registers holding the row pointers (index → name).
.macro WREG_LOAD r, src
        .if \r == 0
        mov r10, [\src + 0]
        .elseif \r == 1
        mov r11, [\src + 8]
        .elseif \r == 2
        mov r12, [\src + 16]
        .elseif \r == 3
        mov r13, [\src + 24]
        .endif
.endm

.macro XREG_LOAD t, src
        .if \t == 0
        mov r14, [\src + 0]
        .elseif \t == 1
        mov r15, [\src + 8]
        .elseif \t == 2
        mov rbx, [\src + 16]
        .elseif \t == 3
        mov rbp, [\src + 24]
        .elseif \t == 4
        mov r9, [\src + 32]
        .elseif \t == 5
        mov r8, [\src + 40]
        .elseif \t == 6
        mov rdi, [\src + 48]
        .elseif \t == 7
        mov rsi, [\src + 56]
        .endif
.endm

# Loads 32 bfloat16 of weight row r (into zmm24+r) or token t (into zmm28) at byte offset rax; masked when \mask is 1.
.macro WLOAD r, mask
        .if \mask
        .if \r == 0
        vmovdqu16 zmm24{k1}{z}, [r10 + rax]
        .elseif \r == 1
        vmovdqu16 zmm25{k1}{z}, [r11 + rax]
        .elseif \r == 2
        vmovdqu16 zmm26{k1}{z}, [r12 + rax]
        .elseif \r == 3
        vmovdqu16 zmm27{k1}{z}, [r13 + rax]
        .endif
        .else
        .if \r == 0
        vmovdqu16 zmm24, [r10 + rax]
        .elseif \r == 1
        vmovdqu16 zmm25, [r11 + rax]
        .elseif \r == 2
        vmovdqu16 zmm26, [r12 + rax]
        .elseif \r == 3
        vmovdqu16 zmm27, [r13 + rax]
        .endif
        .endif
.endm

.macro XLOAD t, mask
        .if \mask
        .if \t == 0
        vmovdqu16 zmm28{k1}{z}, [r14 + rax]
        .elseif \t == 1
        vmovdqu16 zmm28{k1}{z}, [r15 + rax]
        .elseif \t == 2
        vmovdqu16 zmm28{k1}{z}, [rbx + rax]
        .elseif \t == 3
        vmovdqu16 zmm28{k1}{z}, [rbp + rax]
        .elseif \t == 4
        vmovdqu16 zmm28{k1}{z}, [r9 + rax]
        .elseif \t == 5
        vmovdqu16 zmm28{k1}{z}, [r8 + rax]
        .elseif \t == 6
        vmovdqu16 zmm28{k1}{z}, [rdi + rax]
        .elseif \t == 7
        vmovdqu16 zmm28{k1}{z}, [rsi + rax]
        .endif
        .else
        .if \t == 0
        vmovdqu16 zmm28, [r14 + rax]
        .elseif \t == 1
        vmovdqu16 zmm28, [r15 + rax]
        .elseif \t == 2
        vmovdqu16 zmm28, [rbx + rax]
        .elseif \t == 3
        vmovdqu16 zmm28, [rbp + rax]
        .elseif \t == 4
        vmovdqu16 zmm28, [r9 + rax]
        .elseif \t == 5
        vmovdqu16 zmm28, [r8 + rax]
        .elseif \t == 6
        vmovdqu16 zmm28, [rdi + rax]
        .elseif \t == 7
        vmovdqu16 zmm28, [rsi + rax]
        .endif
        .endif
.endm

.macro DP acc, w
        vdpbf16ps zmm\acc, zmm\w, zmm28
.endm

.macro ZERO acc
        vpxord zmm\acc, zmm\acc, zmm\acc
.endm

# One 32-column block of the whole tile: R weight loads, then per token one load feeding R vdpbf16ps.
.macro BLOCK R, T, mask
        LOCAL r, t
        r = 0
        .rept \R
        WLOAD %r, \mask
        r = r + 1
        .endr
        t = 0
        .rept \T
        XLOAD %t, \mask
        r = 0
        .rept \R
        DP %(t * \R + r), %(24 + r)
        r = r + 1
        .endr
        t = t + 1
        .endr
.endm

# Token \t's four accumulators (rows 0-3: zmm 4t .. 4t+3) reduced by the fixed tree, the four sums stored as
# float32 at [rcx + 16·\t]. The tree runs on the four at once (three 512-bit adds and two in-lane ones instead of
# four per accumulator), each lane still adding exactly the pairs the tree names:
#   B01 = [A0 lo256 | A1 lo256] + [A0 hi256 | A1 hi256]       b_r[i] = a_r[i] + a_r[i+8]   (B23 likewise)
#   C   = [b0 lo | b1 lo | b2 lo | b3 lo] + [b0 hi | … ]      c_r[i] = b_r[i] + b_r[i+4]
#   D   = C + C with pairs swapped in each 128-bit lane       d_r[i] = c_r[i] + c_r[i+2]
#   S   = D + D with neighbours swapped                       s_r    = d_r[0] + d_r[1]
# then lane 0 of each 128-bit lane (k2 = 0x1111) is compressed into one xmm.
.macro REDUCE4 t, a0, a1, a2, a3
        vshuff64x2 zmm24, zmm\a0, zmm\a1, 0x44
        vshuff64x2 zmm25, zmm\a0, zmm\a1, 0xEE
        vaddps zmm24, zmm24, zmm25
        vshuff64x2 zmm26, zmm\a2, zmm\a3, 0x44
        vshuff64x2 zmm27, zmm\a2, zmm\a3, 0xEE
        vaddps zmm26, zmm26, zmm27
        vshuff32x4 zmm25, zmm24, zmm26, 0x88
        vshuff32x4 zmm27, zmm24, zmm26, 0xDD
        vaddps zmm24, zmm25, zmm27
        vpermilps zmm25, zmm24, 0x4E
        vaddps zmm24, zmm24, zmm25
        vpermilps zmm25, zmm24, 0xB1
        vaddps zmm24, zmm24, zmm25
        vcompressps zmm25{k2}{z}, zmm24
        vmovups [rcx + 16 * \t], xmm25
.endm

.macro TILE R, T
        .if \R != 4
        .error "the reduction (REDUCE4) and the output layout assume 4 rows"
        .endif
        .globl bf16_tile_\R\()x\T
        .type bf16_tile_\R\()x\T, @function
        .p2align 6
bf16_tile_\R\()x\T:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        LOCAL i
        i = 0
        .rept \R
        WREG_LOAD %i, rdi
        i = i + 1
        .endr
        # rsi (x) is read last: token 7's pointer overwrites it.
        i = 0
        .rept \T
        XREG_LOAD %i, rsi
        i = i + 1
        .endr
        i = 0
        .rept \R * \T
        ZERO %i
        i = i + 1
        .endr
        mov rax, rdx
        and eax, 31
        push rax                        # the columns of the last partial block (0 when none)
        shr rdx, 5                      # full blocks
        xor eax, eax                    # byte offset into every row
        test rdx, rdx
        jz 2f
        .p2align 4
1:
        BLOCK \R, \T, 0
        add rax, 64
        dec rdx
        jnz 1b
2:
        pop rdx
        test edx, edx
        jz 3f
        push rcx
        mov ecx, edx
        mov edx, 1
        shl edx, cl
        dec edx
        kmovd k1, edx                   # the first (cols mod 32) bfloat16 lanes
        pop rcx
        BLOCK \R, \T, 1
3:
        mov eax, 0x1111
        kmovw k2, eax
        i = 0
        .rept \T
        REDUCE4 %i, %(4 * i), %(4 * i + 1), %(4 * i + 2), %(4 * i + 3)
        i = i + 1
        .endr
        vzeroupper
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
        .size bf16_tile_\R\()x\T, . - bf16_tile_\R\()x\T
.endm

        TILE 4, 1
        TILE 4, 2
        TILE 4, 3
        TILE 4, 4
        TILE 4, 5
        TILE 4, 6

        .section .note.GNU-stack, "", @progbits
