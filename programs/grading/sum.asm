; sum.asm - the reference solution of the grading example (docs/grading.md).
;
; The assignment: read whole numbers (decimal digits, separated by spaces
; or newlines) from the console until the input ends, then print their sum
; in decimal and a newline, and halt with exit status 0. No input: print 0.
;
; Try:  printf '3 4\n' | minivm run programs/grading/sum.asm
; Output: 7

        mov r2, 0           ; r2 = the sum so far
        mov r3, 0           ; r3 = the number being read
next:
        in r1, 0x02         ; the next input byte, or -1 at the end
        beq r1, -1, done
        blt r1, '0', gap    ; not a digit: the number (if any) ends
        bgt r1, '9', gap
        mul r3, r3, 10      ; a digit: r3 = r3 * 10 + digit
        sub r1, r1, '0'
        add r3, r3, r1
        jmp next
gap:
        add r2, r2, r3      ; adding 0 when there was no number is harmless
        mov r3, 0
        jmp next
done:
        add r2, r2, r3      ; the last number, if the input did not end with a gap
        out 0x01, r2
        out 0x00, 10
        mov r0, 0
        halt
