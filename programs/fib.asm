; fib.asm - the first 20 Fibonacci numbers, one per line.
;
; Shows: a counted loop, register-to-register arithmetic, and the two
; console output ports: `out 0x01, rX` prints a register as a signed
; decimal number, `out 0x00, 10` prints a single byte (10 = '\n').
;
; Expected output: 0 1 1 2 3 5 8 ... 4181, each on its own line.

.equ COUNT, 20              ; how many numbers to print

        mov r1, 0           ; r1 = F(i)     (starts at F(0) = 0)
        mov r2, 1           ; r2 = F(i+1)   (starts at F(1) = 1)
        mov r3, COUNT       ; r3 = numbers still to print
loop:
        out 0x01, r1        ; print F(i) as a decimal number
        out 0x00, 10        ; ... followed by a newline
        add r4, r1, r2      ; r4 = F(i+2) = F(i) + F(i+1)
        mov r1, r2          ; slide the window one step:
        mov r2, r4          ;   (F(i), F(i+1)) <- (F(i+1), F(i+2))
        sub r3, r3, 1       ; one fewer left to print
        bgt r3, 0, loop     ; signed compare: loop while r3 > 0
        mov r0, 0           ; exit status 0 (r0 is still 0, but say so)
        halt
