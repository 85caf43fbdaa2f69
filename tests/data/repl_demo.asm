; repl_demo.asm - squares 1..5 into a table, one call per square.
;
; For the REPL demo: the table lives in a data page, the call's return
; address on the stack page, so a checkpoint shares two pages and the next
; stores copy them (copy-on-write, P3).

.equ N, 5

        mov r1, 1               ; i = 1
loop:
        mov r2, r1
        call square             ; r2 = i * i
        shl r3, r1, 2           ; r3 = byte offset of table[i]
        st r2, [r3 + table]     ; table[i] = i * i
        out 0x01, r2            ; print it
        out 0x00, 10
        add r1, r1, 1
        ble r1, N, loop
        mov r0, 0
        halt

square:
        mul r2, r2, r2
        ret

.data
title:  .asciz "squares"
        .align 4
table:  .space 4 * (N + 1)
