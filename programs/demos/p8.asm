; p8.asm - P8: a pending read, then a pending write to the same block.
;
;   setup  put the text "OLD" on disk block 8 and wait until it is there.
;   #2     read  disk block 8 -> buf         } both in flight
;   #3     write "NEW" text   -> disk block 8 } at the checkpoint
;   ckpt
;
; The disk serves requests in order, so #2 reads the OLD text, then #3
; writes the NEW one. Why is this a problem for a checkpoint? By P5, the
; write #3 reaches the checkpointed disk. A machine resumed from the
; checkpoint would replay the read #2 from that disk - and read NEW, data
; from the future.
;
; Rule P8: in this case the checkpoint lets ALL pending requests complete
; before the guest resumes. This is the one time a guest can notice a
; checkpoint: right after `ckpt`, port 0x24 (requests in flight) reads 0
; instead of 2, and the completion interrupts are pending at once.
;
; The guest prints the in-flight count just before and just after `ckpt`,
; then what the read brought back.
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/p8.asm --disk d.img --checkpoint-dir ck
;                minivm inspect ck/ckpt-0001.mvc      (says "P8: 2 pending request(s) completed")
; The demo:      minivm demo p8

        ; ---- setup: put the OLD text on disk block 8 --------------------------
        out 0x20, 8             ; block 8
        out 0x21, old_text      ; from this memory address
        out 0x22, 1             ; 1 block (512 bytes)
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle
        out 0x26, on_disk       ; from now on, count completions (interrupts: see below)

        ; ---- a read, then a write of the same block ---------------------------
issue:  out 0x20, 8
        out 0x21, buf
        out 0x22, 1
        out 0x23, 1             ; request #2: read block 8 -> buf
        out 0x20, 8
        out 0x21, new_text
        out 0x22, 1
        out 0x23, 2             ; request #3: write new_text -> block 8
        in r4, 0x24             ; r4 = requests in flight before the checkpoint (2)
take_checkpoint:
        ckpt
        in r5, 0x24             ; r5 = requests in flight right after it

        mov r1, text_before     ; print "in flight just before ckpt: 2, just after: ..."
        call puts
        out 0x01, r4
        mov r1, text_after
        call puts
        out 0x01, r5
        out 0x00, 10

        ; wait for both completion interrupts. Interrupts have been disabled
        ; since the start, so completions wait as pending interrupts.
wait_loop:
        ei                      ; open the window: pending interrupts are delivered
        di                      ; close it again
        ld r3, [completions]
        bge r3, 2, both_done
        wait                    ; sleep until the next device event
        jmp wait_loop
both_done:
        mov r1, text_read       ; print "the read brought back: ..."
        call puts
        mov r1, buf
        call puts
        out 0x00, 10
        mov r0, 0
        halt

; on_disk: the completion interrupt handler. Counts completions.
on_disk:
        push r9
        ld r9, [completions]
        add r9, r9, 1
        st r9, [completions]
        pop r9
        iret

; drain: return when no disk request is in flight (port 0x24 = 0).
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
completions:  .word 0
text_before:  .asciz "in flight just before ckpt: "
text_after:   .asciz ", just after: "
text_read:    .asciz "the read brought back: "
        .align 512
old_text:     .asciz "OLD text, on block 8 before the checkpoint"
        .align 512
new_text:     .asciz "NEW text, written by request #3"
        .align 4096             ; buf starts page 1 (address 0x1000)
buf:          .space 512
