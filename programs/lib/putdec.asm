; putdec.asm - print a signed decimal number, digit by digit.   .include <putdec>
;
;   call putdec
;   in:        r1 = the number (a signed 32-bit word; -2147483648 works too)
;   out:       its decimal digits on the console, with '-' first if negative,
;              no newline (the same text as 'out 0x01, r1', built by hand)
;   clobbers:  r1, r2, r3
;   stack:     up to 10 words for the digits, besides call's return address
;
; The digits come out last first (n mod 10), so they are pushed, then popped.
; The work is done on -|n|, since -2147483648 has no positive twin.
putdec: mov r3, 0                    ; r3 = digits pushed
        blt r1, 0, putdec.minus
        neg r1, r1                   ; n >= 0: work with -n
        jmp putdec.digit
putdec.minus:
        out 0x00, '-'
putdec.digit:
        mod r2, r1, 10               ; 0 .. -9 (the remainder has the sign of r1)
        neg r2, r2
        add r2, r2, '0'
        push r2
        add r3, r3, 1
        div r1, r1, 10
        bne r1, 0, putdec.digit
putdec.print:
        pop r2
        out 0x00, r2
        sub r3, r3, 1
        bne r3, 0, putdec.print
        ret
