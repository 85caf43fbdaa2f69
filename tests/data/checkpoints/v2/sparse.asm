; sparse.asm - golden checkpoint case "sparse": a memory size that is not a
; multiple of 4096 (make_golden.py runs it with --mem 77777: 18 full pages
; and a last page of 4049 bytes) and non-zero pages spread out.
;
; Before the checkpoint the guest writes a pattern into pages 5 and 11, a
; word straddling pages 11 and 12, a byte near the end of memory (page 18,
; the short one), and calls into `deep`, which takes the checkpoint with its
; return addresses on the stack at the top of memory (page 18; sp starts at
; 77777, not a multiple of 4, so the first push writes the last byte of
; memory). After it, the guest reads everything back and
; prints it, then zeroes page 5 again and changes page 11.

.equ MEM, 77777
.equ P5, 5 * 4096
.equ P11, 11 * 4096

        mov r1, 0           ; page 5: word i = i * 0x01010101 + 7, for 16 words
fill:   mul r2, r1, 0x01010101
        add r2, r2, 7
        shl r3, r1, 2
        st r2, [r3 + P5]
        add r1, r1, 1
        blt r1, 16, fill
        mov r2, 0xdeadbeef
        st r2, [P11 + 2048]
        mov r2, 0x11223344
        st r2, [P11 + 4094] ; straddles pages 11 and 12
        mov r2, 0xa5
        stb r2, [MEM - 100] ; in the last page, below the stack
        mov r5, 3
        call deep           ; takes the checkpoint 3 calls deep

        mov r1, text_p5     ; print what the checkpoint kept
        call puts
        mov r1, 0
        mov r3, 0
sum:    shl r2, r1, 2
        ld r2, [r2 + P5]
        add r3, r3, r2
        add r1, r1, 1
        blt r1, 16, sum
        out 0x01, r3
        out 0x00, 10
        mov r1, text_p11
        call puts
        ld r2, [P11 + 2048]
        out 0x01, r2
        out 0x00, ' '
        ld r2, [P11 + 4094]
        out 0x01, r2
        out 0x00, 10
        mov r1, text_last
        call puts
        ldb r2, [MEM - 100]
        out 0x01, r2
        out 0x00, 10
        mov r1, text_sp
        call puts
        out 0x01, sp
        out 0x00, 10

        mov r1, 0           ; page 5 back to zeros, page 11 changed
zero:   shl r3, r1, 2
        st r0, [r3 + P5]
        add r1, r1, 1
        blt r1, 16, zero
        st r1, [P11 + 2048]
        ld r0, [P11 + 4096] ; exit status: 0x22, from the straddling word's half in page 12
        halt

; deep: recurse r5 times, then take the checkpoint (changes r5).
deep:
        push r5
        sub r5, r5, 1
        beq r5, 0, bottom
        call deep
        jmp up
bottom: ckpt
up:     pop r5
        ret

; puts: print the NUL-terminated string at r1 (changes r1, r4).
puts:
        ldb r4, [r1]
        beq r4, 0, puts_end
        out 0x00, r4
        add r1, r1, 1
        jmp puts
puts_end:
        ret

.data
text_p5:    .asciz "page 5 sum: "
text_p11:   .asciz "page 11: "
text_last:  .asciz "last page: "
text_sp:    .asciz "sp: "
