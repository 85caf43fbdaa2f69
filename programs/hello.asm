; hello.asm - print a greeting.
;
; Shows: a NUL-terminated string in .data (`.asciz`), a byte load (`ldb`)
; through a pointer register, and the console byte port 0x00.
; Output: Hello, world!
        mov r1, msg         ; r1 = address of the next character
loop:   ldb r2, [r1]        ; r2 = that character (one byte, zero-extended)
        beq r2, 0, done     ; the NUL at the end of .asciz: stop
        out 0x00, r2        ; print it
        add r1, r1, 1       ; advance the pointer
        jmp loop
done:   halt                ; r0 is 0, so the exit status is 0
.data
msg:    .asciz "Hello, world!\n"
