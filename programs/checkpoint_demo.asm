; checkpoint_demo.asm - a checkpoint taken while the machine is busy.
;
; The guest starts the timer, puts two disk requests in flight (a write, then
; a read of the block being written) and executes `ckpt` while both are still
; in flight and the timer is running. Then it goes on: it waits for both
; completion interrupts, prints what the read brought back, waits for the
; 10th timer interrupt and prints the tick at which its handler ran.
;
; Everything after `ckpt` is what `minivm resume` of the checkpoint prints:
; the checkpoint holds the CPU, the timer phase, the interrupt state and the
; disk queue with both requests (docs/protocol.md, P2 and P5), so the resumed
; machine finishes exactly as the original did. Taking the checkpoint is
; invisible to the guest: with `nop` in place of `ckpt` the output is the same.
;
; Run:      minivm disk create demo.img 64K
;           minivm run programs/checkpoint_demo.asm --disk demo.img --checkpoint-dir ck
; Resume:   minivm resume ck/ckpt-0001.mvc
;
; Expected output of the run (the resumed run prints the last four lines):
;   checkpoint demo: timer period 100
;   issuing 2 disk requests, then ckpt
;   in flight before ckpt: 2, after ckpt: 2
;   disk completions: 2
;   read back: saved before the checkpoint
;   timer: 10 interrupts, the 10th handled at tick 1003
;
; Why 1003: the period is set at tick 2, so the timer fires at 102, 202, ...,
; and the 10th time at 1002. By then the guest sleeps in wait_for with
; interrupts disabled (the lost-wake-up-safe pattern): `wait` moves the clock
; to 1002, where the event stays pending; `ei` runs at tick 1002, and the
; interrupt is delivered at the next boundary, tick 1003 (taking it costs no
; tick), so the handler's first instruction runs at tick 1003.

.equ PERIOD, 100
.equ BLOCK, 5               ; the disk block the demo writes and reads back
.equ TIMER_TARGET, 10       ; how many timer interrupts to wait for

        out 0x11, on_timer  ; tick 0: timer handler
        out 0x26, on_disk   ; tick 1: disk completion handler
        out 0x10, PERIOD    ; tick 2: the timer fires at 102, 202, 302, ...
        ei

        mov r1, text_start  ; "checkpoint demo: timer period "
        call puts
        out 0x01, PERIOD
        out 0x00, 10
        mov r1, text_issue  ; "issuing 2 disk requests, then ckpt"
        call puts

        ; request #1: write `payload` (one block) to disk block BLOCK
        out 0x20, BLOCK
        out 0x21, payload
        out 0x22, 1
        out 0x23, 2
        ; request #2: read block BLOCK into `readback`. The disk serves requests
        ; in issue order, so the read sees what #1 wrote.
        out 0x20, BLOCK
        out 0x21, readback
        out 0x22, 1
        out 0x23, 1
        in r4, 0x24         ; requests in flight now: 2 (each takes 110 ticks)
        ckpt                ; the checkpoint: both requests are in flight
        in r5, 0x24         ; still 2: taking the checkpoint changed nothing

        mov r1, text_before ; "in flight before ckpt: "
        call puts
        out 0x01, r4
        mov r1, text_after  ; ", after ckpt: "
        call puts
        out 0x01, r5
        out 0x00, 10

        ; wait for both completions, then show what the read brought back
        mov r1, disk_done
        mov r2, 2
        call wait_for
        mov r1, text_done   ; "disk completions: "
        call puts
        ld r3, [disk_done]
        out 0x01, r3
        out 0x00, 10
        mov r1, text_read   ; "read back: "
        call puts
        mov r1, readback    ; the string the write put on the disk
        call puts
        out 0x00, 10

        ; wait for the 10th timer interrupt, then stop the timer
        mov r1, timer_count
        mov r2, TIMER_TARGET
        call wait_for
        di
        out 0x10, 0
        mov r1, text_timer  ; "timer: "
        call puts
        ld r3, [timer_count]
        out 0x01, r3
        mov r1, text_tick   ; " interrupts, the 10th handled at tick "
        call puts
        ld r3, [timer_tick]
        out 0x01, r3
        out 0x00, 10
        mov r0, 0
        halt

; puts: print the text at r1, up to its 0 byte (changes r1 and r2); the
; standard library's routine (programs/lib/puts.asm), placed here.
.include <puts>

; wait_for: return once the word at r1 is >= r2. The test and the `wait` run
; with interrupts disabled, so an interrupt cannot slip in between them (the
; `wait` would then sleep past it); `ei` delivers the pending event.
wait_for:
        push r3
wait_loop:
        di
        ld r3, [r1]
        bge r3, r2, wait_done
        wait
        ei
        jmp wait_loop
wait_done:
        ei
        pop r3
        ret

; on_timer: count the interrupt and record the tick its handler started at.
on_timer:
        push r9             ; runs at the tick the interrupt is delivered, T
        in r9, 0x12         ; runs one tick later, so it reads T + 1...
        sub r9, r9, 1       ; ...and T is one less
        st r9, [timer_tick]
        ld r9, [timer_count]
        add r9, r9, 1
        st r9, [timer_count]
        pop r9
        iret

; on_disk: count completions.
on_disk:
        push r9
        ld r9, [disk_done]
        add r9, r9, 1
        st r9, [disk_done]
        pop r9
        iret

.data
timer_count:    .word 0
timer_tick:     .word 0
disk_done:      .word 0
text_start:     .asciz "checkpoint demo: timer period "
text_issue:     .asciz "issuing 2 disk requests, then ckpt\n"
text_before:    .asciz "in flight before ckpt: "
text_after:     .asciz ", after ckpt: "
text_done:      .asciz "disk completions: "
text_read:      .asciz "read back: "
text_timer:     .asciz "timer: "
text_tick:      .asciz " interrupts, the 10th handled at tick "
                .align 512
payload:        .asciz "saved before the checkpoint"
                .align 512
readback:       .space 512
