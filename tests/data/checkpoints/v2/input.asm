; input.asm - golden checkpoint case "input": console input consumed before
; the checkpoint.
;
; The guest reads its console input line by line and prints each line
; upper-cased with its number and length. After the first line it takes a
; checkpoint with `ckpt`: the checkpoint records how many input bytes the
; guest had read (console input is the outside world, not machine state),
; and a resumed run reads its own input from the start, so make_golden.py
; resumes it with --input holding the rest of the original input.
;
; The exit status is the number of lines read.

        mov r5, 0           ; r5 = lines read
        mov r6, 0           ; r6 = bytes read in all
line:
        mov r7, 0           ; r7 = length of this line
        mov r8, buf         ; r8 = where the next byte goes
next:   in r1, 0x02         ; the next byte, or -1 at the end
        beq r1, -1, eof
        add r6, r6, 1
        beq r1, 10, got_line
        blt r1, 'a', keep
        bgt r1, 'z', keep
        sub r1, r1, 'a' - 'A'
keep:   stb r1, [r8]
        add r8, r8, 1
        add r7, r7, 1
        jmp next
got_line:
        stb r0, [r8]        ; r0 is 0: the NUL
        add r5, r5, 1
        out 0x01, r5
        out 0x00, ':'
        out 0x00, ' '
        mov r1, buf
        call puts
        out 0x00, ' '
        out 0x00, '('
        out 0x01, r7
        out 0x00, ')'
        out 0x00, 10
        bne r5, 1, line
        ckpt                ; after the first line
        jmp line
eof:
        mov r1, text_end    ; "end of input after N bytes"
        call puts
        out 0x01, r6
        out 0x00, 10
        mov r0, r5
        halt

; puts: print the NUL-terminated string at r1 (changes r1, r2).
puts:
        ldb r2, [r1]
        beq r2, 0, puts_end
        out 0x00, r2
        add r1, r1, 1
        jmp puts
puts_end:
        ret

.data
text_end:   .asciz "end of input after "
buf:        .space 256
