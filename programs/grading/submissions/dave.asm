; dave: skips what comes before the first digit, but never looks for the end there
        mov r5, 0
        mov r6, 0
skip:   in r1, 0x02
        blt r1, '0', skip
        bgt r1, '9', skip
        jmp digit
loop:   in r1, 0x02
        beq r1, -1, end
        blt r1, '0', sep
        bgt r1, '9', sep
digit:  mul r6, r6, 10
        add r6, r6, r1
        sub r6, r6, '0'
        jmp loop
sep:    add r5, r5, r6
        mov r6, 0
        jmp loop
end:    add r5, r5, r6
        out 0x01, r5
        out 0x00, 10
        mov r0, 0
        halt
