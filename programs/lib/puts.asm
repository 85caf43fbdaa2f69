; puts.asm - print a NUL-terminated string.          .include <puts>
;
;   call puts
;   in:        r1 = the address of the string's first byte (in .data)
;   out:       the bytes up to (not including) the first 0 byte, on the console
;   clobbers:  r1 (left at the 0 byte), r2
;   stack:     none besides call's return address
;
; Include it in .text, after your program's last instruction (its code is
; placed where the .include is).
puts:   ldb r2, [r1]
        beq r2, 0, puts_end
        out 0x00, r2
        add r1, r1, 1
        jmp puts
puts_end:
        ret
