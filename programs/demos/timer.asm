; timer.asm - the timer and its interrupts.
;
; The timer fires every PERIOD ticks (a tick = one instruction). Each time,
; it raises an interrupt: the CPU stops what it is doing between two
; instructions, pushes pc and jumps to the handler (`on_timer`), which ends
; with `iret` (back to where the CPU was).
;
; Interrupts are disabled when the machine starts. An interrupt that comes
; while they are disabled is not lost: it stays PENDING, and is delivered,
; in time order, as soon as the guest enables interrupts with `ei`.
;
;   1. set the handler and a period of 50 ticks (fires at 51, 101, 151, ...)
;   2. count to 60 with interrupts disabled (about 120 ticks): 2 interrupts
;      become pending
;   3. `ei`: both are delivered, one after the other
;   4. spin until 5 interrupts have been handled (they now come on time),
;      stop the timer and print the tick of each
;
; The handler is short: it only notes the tick at which it runs. The guest
; prints the list at the end.
;
; Run it alone:  minivm run programs/demos/timer.asm
; The demo:      minivm demo timer

.equ PERIOD, 50

        out 0x11, on_timer      ; tick 0: the timer's interrupt handler
        out 0x10, PERIOD        ; tick 1: period 50, so it fires at ticks 51, 101, 151 ...

        ; ---- busy, with interrupts disabled (as they are at start) -------
        mov r1, 0
busy:   add r1, r1, 1
        blt r1, 60, busy

enable: ei                      ; the pending interrupts are delivered right after this

        ; ---- with interrupts enabled: spin until the handler has run 5 times
spin:   ld r3, [count]
        blt r3, 5, spin
done:
        out 0x10, 0             ; stop the timer

        ; ---- print "interrupt #N handled at tick T" for each -----------------
        mov r3, 0               ; r3 = N - 1
print_loop:
        mov r1, text_1          ; "interrupt #"
        call puts
        add r4, r3, 1
        out 0x01, r4
        mov r1, text_2          ; " handled at tick "
        call puts
        mul r4, r3, 4
        ld r4, [r4 + ticks]     ; ticks[N - 1]
        out 0x01, r4
        out 0x00, 10
        add r3, r3, 1
        blt r3, 5, print_loop
        mov r0, 0
        halt

; on_timer: the interrupt handler. The CPU jumps here at tick T with
; interrupts disabled. It saves the registers it uses, notes T in
; ticks[count], adds 1 to count, and returns with `iret` (which also enables
; interrupts again).
on_timer:
        push r9                 ; runs at tick T
        in r9, 0x12             ; reads the clock at tick T + 1 ...
        sub r9, r9, 1           ; ... so T is one less
        push r8
        ld r8, [count]
        mul r8, r8, 4
        st r9, [r8 + ticks]     ; ticks[count] = T
        ld r8, [count]
        add r8, r8, 1
        st r8, [count]
        pop r8
        pop r9
        iret

; puts: print the text at r1, up to its 0 byte (changes r1 and r2); the
; standard library's routine (programs/lib/puts.asm), placed here.
.include <puts>

.data
count:  .word 0
ticks:  .space 5 * 4         ; the tick of each interrupt
text_1: .asciz "interrupt #"
text_2: .asciz " handled at tick "
