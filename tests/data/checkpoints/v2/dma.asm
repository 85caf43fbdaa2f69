; dma.asm - golden checkpoint case "dma": disk DMA in flight at a checkpoint
; whose disk is a chain (an overlay on a raw disk).
;
; The disk (dma-disk.img, 16 blocks, made by make_golden.py) holds in each
; block b the text "disk block b" and a pattern. The guest checkpoints twice
; with `ckpt`:
;
; * ckpt-0001 with a write (#1) and a read (#2) in flight. From then on the
;   run's writes go to the overlay ckpt-0001.cow on top of the raw disk.
; * ckpt-0002, the golden checkpoint, with two writes and two reads in
;   flight (#3..#6), so its disk is the chain ckpt-0001.cow on dma-disk.img,
;   its saved queue carries the writes' data, and the reads land after it in
;   the checkpoint's memory and the running one (P5). Write #3 covers part
;   of a block group the overlay does not hold yet: a disk COW fault (P3, P9).
;
; After ckpt-0002 the guest stores into the page the reads land in (P7),
; issues a new read into it (P6) and a new write, waits for every
; completion, and prints what each read brought back and a sum of that page.

.equ READ, 1
.equ WRITE, 2
.equ buf_a, 0x1000          ; the read buffers, all in page 1 (zeros at start)
.equ buf_b, 0x1200
.equ buf_c, 0x1400
.equ buf_d, 0x1600
.equ scratch, 0x1800

        out 0x26, on_disk   ; completion handler
        ei
        ; phase 1: a write and a read in flight at ckpt-0001
        out 0x20, 2         ; #1 write msg1 to block 2
        out 0x21, msg1
        out 0x22, 1
        out 0x23, WRITE
        out 0x20, 3         ; #2 read block 3 (as created) into buf_a
        out 0x21, buf_a
        out 0x23, READ
        ckpt                ; ckpt-0001: both in flight
        mov r1, 2
        call wait_for
        mov r1, buf_a
        call puts

        ; phase 2: four requests in flight at ckpt-0002
        out 0x20, 4         ; #3 write msg2 (2 blocks) to blocks 4..5: part of group 0
        out 0x21, msg2
        out 0x22, 2
        out 0x23, WRITE
        out 0x20, 2         ; #4 read block 2 (what #1 wrote) into buf_b
        out 0x21, buf_b
        out 0x22, 1
        out 0x23, READ
        out 0x20, 5         ; #5 read block 5 (what #3 writes: served in order) into buf_c
        out 0x21, buf_c
        out 0x23, READ
        out 0x20, 12        ; #6 write msg3 to block 12 (group 1)
        out 0x21, msg3
        out 0x23, WRITE
        in r4, 0x24         ; 4 requests in flight
        ckpt                ; ckpt-0002: the golden checkpoint

        mov r2, 0x5a5a5a5a  ; P7: a store into the page #4 and #5 land in
        st r2, [scratch]
        out 0x20, 12        ; #7 read block 12 (what #6 writes) into buf_d (P6)
        out 0x21, buf_d
        out 0x23, READ
        out 0x20, 7         ; #8 write msg1 to block 7, after the checkpoint
        out 0x21, msg1
        out 0x23, WRITE
        mov r1, 8
        call wait_for

        mov r1, text_inflight
        call puts
        out 0x01, r4
        out 0x00, 10
        mov r1, buf_b
        call puts
        mov r1, buf_c
        call puts
        mov r1, buf_d
        call puts
        mov r1, text_sum    ; the sum of the words of the buffers' page
        call puts
        mov r1, buf_a
        mov r3, 0
sum:    ld r2, [r1]
        add r3, r3, r2
        add r1, r1, 4
        blt r1, buf_a + 4096, sum
        out 0x01, r3
        out 0x00, 10
        in r0, 0x25         ; exit status: the last completed request, 8
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

; wait_for: return once `done` >= r1 (interrupts disabled around the test).
wait_for:
        push r2
wait_loop:
        di
        ld r2, [done]
        bge r2, r1, wait_done
        wait
        ei
        jmp wait_loop
wait_done:
        ei
        pop r2
        ret

; on_disk: count completions.
on_disk:
        push r9
        ld r9, [done]
        add r9, r9, 1
        st r9, [done]
        pop r9
        iret

.data
done:           .word 0
text_inflight:  .asciz "in flight at ckpt-0002: "
text_sum:       .asciz "sum of the buffers' page: "
                .align 512
msg1:           .asciz "block 2, written before ckpt-0001\n"
                .align 512
msg2:           .asciz "block 4, written before ckpt-0002\n"
                .align 512
                .asciz "block 5, written before ckpt-0002\n"
                .align 512
msg3:           .asciz "block 12, written before ckpt-0002\n"
