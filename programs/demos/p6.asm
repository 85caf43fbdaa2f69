; p6.asm - P6: a read issued after a checkpoint never reaches the checkpoint.
;
; After a checkpoint, the pages of memory are shared with it until they are
; written (copy-on-write). A disk read writes into memory too - but the disk
; does it, not the CPU, so there is no store instruction to trigger the copy.
;
; Rule P6: before a new read is issued, every page it will write that the
; checkpoint still shares is copied first. So the read lands in the guest's
; own copy, and the checkpoint keeps the page as it was.
;
;   setup  put a text on disk block 8 and wait until it is there.
;   ckpt   page 1 (`buf`, a line of text) is now shared with the checkpoint.
;   read   disk block 8 -> buf        (issued after the checkpoint)
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/p6.asm --disk d.img --checkpoint-dir ck
; The demo:      minivm demo p6

        ; ---- setup: put a text on disk block 8 -------------------------------
        out 0x20, 8             ; block 8
        out 0x21, disk_text     ; from this memory address
        out 0x22, 1             ; 1 block (512 bytes)
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle

take_checkpoint:
        ckpt                    ; the checkpoint: page 1 (buf) is now shared

        ; ---- a new read into buf, after the checkpoint ------------------------
        out 0x20, 8
        out 0x21, buf
        out 0x22, 1
issue_read:
        out 0x23, 1             ; request #2: read block 8 -> buf. P6 copies page 1 first.
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
disk_text: .asciz "from disk block 8: read AFTER the checkpoint"
        .align 4096             ; buf starts page 1 (address 0x1000)
buf:       .asciz "in memory at the checkpoint"
