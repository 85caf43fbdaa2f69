; timer_clock.asm - a clock driven by timer interrupts.
;
; Shows: programming the timer (port 0x10 = period, 0x11 = handler), an
; interrupt handler that saves the registers it uses and ends with `iret`,
; reading the clock (port 0x12), and a main loop that sleeps with `wait`.
;
; The timer fires every PERIOD ticks. The handler records the tick at which
; the interrupt fired (read from port 0x12) and counts the interrupts. Every
; EVERY interrupts the main loop prints "tick T", where T is the tick of that
; interrupt; after LINES lines it stops the timer and halts.
;
; The period is set by the first instruction, at tick 0, so the timer fires
; at ticks 1000, 2000, 3000, ... (docs/isa.md: set at tick t, it fires at t+n, t+2n).
; Expected output:
;   tick 5000
;   tick 10000
;   tick 15000
;   tick 20000

.equ PERIOD, 1000           ; ticks between timer interrupts
.equ EVERY, 5               ; print a line every EVERY interrupts
.equ LINES, 4               ; stop after this many lines

        out 0x10, PERIOD    ; tick 0: the timer fires at 1000, 2000, ...
        out 0x11, on_tick   ; the handler to run when it fires
        mov r5, 0           ; r5 = lines printed so far
        ei                  ; interrupts are disabled at start: allow them
main_loop:
        wait                ; sleep until the next timer interrupt; the
                            ; handler runs, and its iret returns here
        di                  ; read the handler's two variables together,
        ld r1, [ticks]      ; without an interrupt changing them in between
        ld r2, [last_tick]
        ei
        mod r3, r1, EVERY   ; print only on every EVERY-th interrupt
        bne r3, 0, main_loop
        mov r4, text        ; print "tick "
print_text:
        ldb r3, [r4]
        beq r3, 0, print_tick ; the NUL that ends the string
        out 0x00, r3
        add r4, r4, 1
        jmp print_text
print_tick:
        out 0x01, r2        ; the tick at which that interrupt fired
        out 0x00, 10        ; newline
        add r5, r5, 1
        blt r5, LINES, main_loop
        di                  ; done: no more interrupts,
        out 0x10, 0         ; stop the timer (period 0)
        mov r0, 0           ; exit status 0
        halt

; on_tick: the timer interrupt handler. Interrupts are disabled while it
; runs (the machine did that when it delivered the interrupt) and `iret`
; enables them again. The interrupted code must not notice anything, so
; every register used here is saved first and restored at the end.
on_tick:
        push r1             ; runs at the very tick T the timer fired
        in r1, 0x12         ; runs one tick later, so it reads T + 1...
        sub r1, r1, 1       ; ...and T is one less
        st r1, [last_tick]
        ld r1, [ticks]      ; ticks += 1
        add r1, r1, 1
        st r1, [ticks]
        pop r1              ; restore r1 exactly as it was
        iret                ; pop the return pc and enable interrupts

.data
ticks:      .word 0         ; timer interrupts seen so far
last_tick:  .word 0         ; tick at which the latest one fired
text:       .asciz "tick "
