; getline.asm - read one line of console input into a buffer.   .include <getline>
;
;   call getline
;   in:        r1 = the buffer's address, r2 = its size in bytes (1 or more)
;   out:       the buffer holds the line without its '\n', then a 0 byte;
;              r3 = the number of characters stored, or -1 if the input
;              had ended before this line began (the buffer is then "")
;   clobbers:  r2, r4, r5 (r1 is kept)
;   stack:     none besides call's return address
;
; It reads up to a '\n' (read, not stored), the end of the input, or until
; the buffer is full (size - 1 characters): the rest of a longer line stays
; unread, for the next call.
getline:
        mov r3, 0                    ; r3 = characters stored
        sub r2, r2, 1                ; room left for the 0 byte
getline.next:
        bge r3, r2, getline.end      ; full
        in r4, 0x02
        beq r4, -1, getline.eof
        beq r4, '\n', getline.end
        add r5, r1, r3
        stb r4, [r5]
        add r3, r3, 1
        jmp getline.next
getline.eof:
        bne r3, 0, getline.end       ; a last line without '\n'
        stb r3, [r1]                 ; nothing read: "" and r3 = -1
        mov r3, -1
        ret
getline.end:
        add r5, r1, r3
        mov r4, 0
        stb r4, [r5]
        ret
