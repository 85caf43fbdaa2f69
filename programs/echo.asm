; echo.asm - copies console input to console output, upper-cased.
;
; Shows: reading the console (port 0x02 gives the next input byte, or -1
; = 0xFFFFFFFF once the input is exhausted) and character tests with
; signed comparisons and character constants.
;
; Letters a-z become A-Z; every other byte (digits, punctuation, newlines,
; bytes >= 0x80) is copied unchanged. The program halts at end of input.
;
; Try:  printf 'Hello, world!\n' | minivm run programs/echo.asm
; Output: HELLO, WORLD!

.equ CASE_BIT, 'a' - 'A'    ; 32: lower case = upper case + 32 in ASCII

loop:
        in r1, 0x02         ; r1 = next input byte, or -1 at end of input
        beq r1, -1, done    ; -1 compares equal to 0xFFFFFFFF (same 32 bits)
        blt r1, 'a', put    ; below 'a': not a lower-case letter
        bgt r1, 'z', put    ; above 'z': not one either
        sub r1, r1, CASE_BIT ; 'a'..'z' -> 'A'..'Z'
put:
        out 0x00, r1
        jmp loop
done:
        mov r0, 0           ; exit status 0
        halt
