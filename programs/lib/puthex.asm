; puthex.asm - print a word in hexadecimal.            .include <puthex>
;
;   call puthex
;   in:        r1 = the word
;   out:       '0x' and 8 lower-case hex digits on the console (0x0000002a),
;              no newline
;   clobbers:  r2, r3 (r1 is kept)
;   stack:     none besides call's return address
puthex: out 0x00, '0'
        out 0x00, 'x'
        mov r3, 28                   ; the shift of the digit to print, 28 .. 0
puthex.digit:
        shr r2, r1, r3
        and r2, r2, 0xF
        blt r2, 10, puthex.decimal
        add r2, r2, 'a' - '0' - 10   ; 10 .. 15 -> 'a' .. 'f'
puthex.decimal:
        add r2, r2, '0'
        out 0x00, r2
        sub r3, r3, 4
        bge r3, 0, puthex.digit
        ret
