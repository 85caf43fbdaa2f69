; print a greeting
        mov r1, msg
loop:   ldb r2, [r1]
        beq r2, 0, done
        out 0x00, r2
        add r1, r1, 1
        jmp loop
done:   halt
.data
msg:    .asciz "Hello, world!\n"
