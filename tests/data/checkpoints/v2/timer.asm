; timer.asm - golden checkpoint case "timer": the timer running, an interrupt
; handler, interrupts pending, console output before and after.
;
; The timer fires every PERIOD ticks. Each round the main code works with
; interrupts disabled for longer than a period, so timer interrupts queue up
; (pending), then enables them: the handler runs once for each, counting
; them and recording the tick it ran at. After each round the main code
; prints a line. make_golden.py takes the checkpoint with --checkpoint-at in
; the middle of a round (a host checkpoint, between any two instructions),
; so it holds the timer's phase, pending interrupts, a running hash in r11
; and the handler's variables in memory.
;
; The exit status is the number of timer interrupts handled, & 0xFF.

.equ PERIOD, 97
.equ ROUNDS, 10
.equ WORK, 70               ; loop iterations per round, 4 ticks each

        out 0x11, on_tick   ; tick 0: the timer handler
        out 0x10, PERIOD    ; tick 1: fires at 98, 195, 292, ...
        mov r10, 0          ; r10 = rounds done
        mov r11, 1          ; r11 = a running hash of the work
        ei
round:
        di                  ; timer interrupts stay pending meanwhile
        mov r1, 0
work:   mul r11, r11, 31
        add r11, r11, r1
        xor r11, r11, r10
        add r1, r1, 1
        blt r1, WORK, work
        ei                  ; the pending ones are delivered now, oldest first
        nop
        di                  ; read the handler's variables together
        ld r2, [count]
        ld r3, [last]
        ei
        mov r1, text_round  ; "round R: C interrupts, last at tick T, hash H"
        call puts
        out 0x01, r10
        mov r1, text_count
        call puts
        out 0x01, r2
        mov r1, text_last
        call puts
        out 0x01, r3
        mov r1, text_hash
        call puts
        out 0x01, r11
        out 0x00, 10
        add r10, r10, 1
        blt r10, ROUNDS, round
        di
        out 0x10, 0         ; stop the timer
        ld r0, [count]      ; exit status: interrupts handled
        halt

; puts: print the NUL-terminated string at r1 (changes r1, r4).
puts:
        ldb r4, [r1]
        beq r4, 0, puts_end
        out 0x00, r4
        add r1, r1, 1
        jmp puts
puts_end:
        ret

; on_tick: count the interrupt and note the tick the handler ran at.
on_tick:
        push r1
        in r1, 0x12         ; one tick after the handler started
        sub r1, r1, 1
        st r1, [last]
        ld r1, [count]
        add r1, r1, 1
        st r1, [count]
        pop r1
        iret

.data
count:      .word 0
last:       .word 0
text_round: .asciz "round "
text_count: .asciz ": "
text_last:  .asciz " interrupts, last at tick "
text_hash:  .asciz ", hash "
