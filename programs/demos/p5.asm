; p5.asm - P5: disk requests in flight at a checkpoint belong to the checkpoint.
;
; The disk is asynchronous: `out 0x23, ...` only *issues* a request and the
; guest goes on. The disk serves one request at a time, in issue order; a
; one-block request takes 110 ticks (latency 100 + 10 per block).
;
;   setup    write a text to disk block 8 and wait until it is there.
;   #2       write  `before_text` -> disk block 3   } both still in flight
;   #3       read   disk block 8  -> memory INBUF   } at the checkpoint
;   ckpt     the checkpoint
;   #4       write  `after_text`  -> disk block 4     (issued after it)
;
; Rule P5: #2 and #3 belong to the checkpoint. #2's data reaches the
; checkpointed disk, and #3's data lands in the checkpointed memory (saving
; the checkpoint waits for it). #4 was issued after the checkpoint: it reaches
; only the ongoing disk, never the checkpoint.
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/p5.asm --disk d.img --checkpoint-dir ck
;                minivm inspect ck/ckpt-0001.mvc      (lists #2 and #3 in flight)
; The demo:      minivm demo p5

.equ INBUF, 0x3000              ; page 3: where the read (#3) lands

        ; ---- setup: put a text on disk block 8 -------------------------------
        out 0x20, 8             ; block 8
        out 0x21, setup_text    ; from this memory address
        out 0x22, 1             ; 1 block (512 bytes)
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle

        ; ---- two requests, then the checkpoint while both are in flight ---
issue:  out 0x20, 3
        out 0x21, before_text
        out 0x22, 1
        out 0x23, 2             ; request #2: write before_text -> block 3
        out 0x20, 8
        out 0x21, INBUF
        out 0x22, 1
        out 0x23, 1             ; request #3: read block 8 -> INBUF
take_checkpoint:
        ckpt                    ; the checkpoint: #2 and #3 are in flight

        ; ---- after the checkpoint ---------------------------------------------
        out 0x20, 4
        out 0x21, after_text
        out 0x22, 1
        out 0x23, 2             ; request #4: write after_text -> block 4
        call drain
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

.data
        .align 512
setup_text:  .asciz "block 8: put on the disk before the checkpoint"
        .align 512
before_text: .asciz "block 3: written by request #2, in flight at the checkpoint"
        .align 512
after_text:  .asciz "block 4: written by request #4, issued after the checkpoint"
