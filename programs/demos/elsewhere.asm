; elsewhere.asm - a guest to checkpoint here and resume somewhere else.
;
; The guest keeps a counter on disk block 0. Each of 6 rounds it
;   reads block 0 into memory, adds 1 to the counter, issues the write of
;   block 0, prints "round N: counter X, being written to disk" while the
;   write is in flight, and waits until the write is done.
; So the guest's state is in its registers, its memory AND on its disk, and
; at almost any moment a disk request is in flight.
;
; A checkpoint holds all of it. Copied to another folder (or computer) with
; `minivm export`, it resumes there and prints exactly what the original
; run printed after the checkpoint (from the middle of a line, if that is
; where the checkpoint was taken).
;
; Run it:   minivm disk create d.img 64K
;           minivm run programs/demos/elsewhere.asm --disk d.img --checkpoint-dir ck --checkpoint-at 900
;           minivm export ck/ckpt-0001.mvc carry
;           (take the folder `carry` anywhere)
;           minivm resume carry/ckpt-0001.mvc
; Scripted: sh programs/demos/elsewhere.sh
; The demo: minivm demo elsewhere

.equ ROUNDS, 6
.equ BUF, 0x1000                ; page 1: block 0 is read into here

        mov r3, 1               ; r3 = round number
round:
        out 0x20, 0             ; read disk block 0 -> BUF
        out 0x21, BUF
        out 0x22, 1
        out 0x23, 1
        call drain
        ld r4, [BUF]            ; the counter is the first word of the block
        add r4, r4, 1
        st r4, [BUF]
        out 0x20, 0             ; write BUF -> disk block 0
        out 0x21, BUF
        out 0x22, 1
        out 0x23, 2

        mov r1, text_round      ; print "round N: counter X, being written to disk"
        call puts               ; (printing takes longer than the write: the
        out 0x01, r3            ;  write is in flight all the time)
        mov r1, text_counter
        call puts
        out 0x01, r4
        mov r1, text_writing
        call puts
        call drain              ; then wait until the write is done
next_round:
        add r3, r3, 1
        ble r3, ROUNDS, round
        mov r0, 0
        halt

; drain: return when no disk request is in flight (port 0x24 = 0).
; `wait` moves the clock forward to the next device event.
drain:  in r7, 0x24
        beq r7, 0, drained
        wait
        jmp drain
drained:
        ret

; puts: print the text at r1, up to its 0 byte (changes r1 and r2); the
; standard library's routine (programs/lib/puts.asm), placed here.
.include <puts>

.data
text_round:   .asciz "round "
text_counter: .asciz ": counter "
text_writing: .asciz ", being written to disk\n"
