; bf.asm - a Brainf*** interpreter in minivm assembly, running an embedded
; BF program (the classic "Hello World!") SIZE times on a fresh tape.
;
; Shows: an interpreter's dispatch loop through a 256-entry jump table of
; code addresses (`jmp r4`), bracket matching with the machine stack
; (push/pop) into a precomputed jump table, byte cells that wrap (stb keeps
; the low byte), and a 256-cell tape whose pointer wraps around.
;
; The size is the `.equ SIZE` line (benchmarks/guests/guests.py rewrites it).
; Output: the BF program's output SIZE times, then
; "rounds=SIZE steps=S\n", S = the BF commands executed in all.

.equ SIZE, 200              ; rounds: runs of the BF program
.equ TAPE, 256              ; cells; the pointer wraps modulo TAPE

        .entry main
main:
        call init_dispatch
        call match          ; r0 = 0 if the brackets balance
        bne r0, 0, unbalanced
        mov r12, SIZE       ; r12 = rounds left
        mov r13, 0          ; r13 = BF commands executed
main.round:
        call clear_tape
        call run
        sub r12, r12, 1
        bgt r12, 0, main.round
        mov r1, msg_rounds
        call puts
        out 0x01, SIZE
        mov r1, msg_steps
        call puts
        out 0x01, r13
        out 0x00, '\n'
        mov r0, 0
        halt
unbalanced:
        mov r1, msg_unbalanced
        call puts
        out 0x01, r1
        out 0x00, '\n'
        mov r0, 1
        halt

; init_dispatch: dispatch[c] = the handler of character c: op_nop for
; every character but the seven commands. Changes r1, r2.
init_dispatch:
        mov r1, 0
        mov r2, op_nop
init.loop:
        st r2, [r1 + dispatch]
        add r1, r1, 4
        blt r1, 256 * 4, init.loop
        mov r2, op_plus
        st r2, [dispatch + '+' * 4]
        mov r2, op_minus
        st r2, [dispatch + '-' * 4]
        mov r2, op_right
        st r2, [dispatch + '>' * 4]
        mov r2, op_left
        st r2, [dispatch + '<' * 4]
        mov r2, op_dot
        st r2, [dispatch + '.' * 4]
        mov r2, op_open
        st r2, [dispatch + '[' * 4]
        mov r2, op_close
        st r2, [dispatch + ']' * 4]
        ret

; match: jt[i] = j and jt[j] = i for each matching pair '[' at i, ']' at j,
; using the machine stack for the open brackets. r0 = 0 if they balance;
; else r0 = 1 and r1 = the offending position. Changes r0..r6.
match:
        mov r0, 0
        mov r1, 0           ; r1 = position
        mov r5, 0           ; r5 = open brackets on the stack
match.loop:
        ldb r2, [r1 + prog]
        beq r2, 0, match.end
        beq r2, '[', match.open
        bne r2, ']', match.next
        beq r5, 0, match.bad
        pop r3              ; r3 = the matching '['
        sub r5, r5, 1
        shl r4, r1, 2
        st r3, [r4 + jt]
        shl r6, r3, 2
        st r1, [r6 + jt]
        jmp match.next
match.open:
        push r1
        add r5, r5, 1
match.next:
        add r1, r1, 1
        jmp match.loop
match.end:
        beq r5, 0, match.ok
match.drop:                 ; unclosed '[': empty our part of the stack
        pop r1
        sub r5, r5, 1
        bgt r5, 0, match.drop
match.bad:
        mov r0, 1
match.ok:
        ret

; clear_tape: every cell to 0. Changes r1.
clear_tape:
        mov r1, 0
clear.loop:
        st r0, [r1 + tape]
        add r1, r1, 4
        blt r1, TAPE, clear.loop
        ret

; run: interpret prog once. r1 = BF pc, r2 = cell pointer, r13 counts the
; commands executed. Changes r1..r6.
run:
        mov r1, 0
        mov r2, 0
run.loop:
        ldb r3, [r1 + prog]
        beq r3, 0, run.done
        shl r4, r3, 2
        ld r4, [r4 + dispatch]
        jmp r4
op_plus:
        ldb r5, [r2 + tape]
        add r5, r5, 1
        stb r5, [r2 + tape]
        jmp run.counted
op_minus:
        ldb r5, [r2 + tape]
        sub r5, r5, 1
        stb r5, [r2 + tape]
        jmp run.counted
op_right:
        add r2, r2, 1
        and r2, r2, TAPE - 1
        jmp run.counted
op_left:
        sub r2, r2, 1
        and r2, r2, TAPE - 1
        jmp run.counted
op_dot:
        ldb r5, [r2 + tape]
        out 0x00, r5
        jmp run.counted
op_open:
        ldb r5, [r2 + tape]
        bne r5, 0, run.counted
        shl r6, r1, 2       ; cell is 0: go to the matching ']'
        ld r1, [r6 + jt]
        jmp run.counted
op_close:
        ldb r5, [r2 + tape]
        beq r5, 0, run.counted
        shl r6, r1, 2       ; cell is not 0: back to the matching '['
        ld r1, [r6 + jt]
run.counted:
        add r13, r13, 1
op_nop:
        add r1, r1, 1
        jmp run.loop
run.done:
        ret

; puts: print the zero-terminated string at r1. Changes r1, r2.
puts:
        ldb r2, [r1]
        beq r2, 0, puts.done
        out 0x00, r2
        add r1, r1, 1
        jmp puts
puts.done:
        ret

        .data
msg_rounds:     .asciz "rounds="
msg_steps:      .asciz " steps="
msg_unbalanced: .asciz "unbalanced brackets at "
prog:   .ascii "++++++++[>++++[>++>+++>+++>+<<<<-]>+>+>->>+[<]<-]>>.>---.+++++++..+++.>>."
        .asciz "<-.<.+++.------.--------.>>+.>++."
prog_end:
        .align 4
jt:       .space (prog_end - prog) * 4
dispatch: .space 256 * 4
tape:     .space TAPE
