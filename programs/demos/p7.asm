; p7.asm - P7: a read in flight at the checkpoint, into a page the guest then writes.
;
; Page 1 holds `buf` (where a disk read will land, 512 bytes) and, further
; on in the same page, `note` (a line of text).
;
;   setup  put a text on disk block 8 and wait until it is there.
;   read   disk block 8 -> buf         (issued BEFORE the checkpoint)
;   ckpt   the read is still in flight; page 1 is shared with the checkpoint.
;   store  "NEW!" into note            (other bytes of page 1: page 1 is copied)
;   ...    the read lands.
;
; The read belongs to the checkpoint (P5), so it must land in the checkpoint's
; page 1. But the guest now has its own copy of page 1, and it is waiting for
; that read too. Rule P7: the read lands in BOTH copies.
; (The guest does not touch buf itself while the read is in flight: that
; would be a data race, as on real hardware. Other bytes of the page are fine.)
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/p7.asm --disk d.img --checkpoint-dir ck
; The demo:      minivm demo p7

        ; ---- setup: put a text on disk block 8 -------------------------------
        out 0x20, 8             ; block 8
        out 0x21, disk_text     ; from this memory address
        out 0x22, 1             ; 1 block (512 bytes)
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle

        ; ---- a read, still in flight at the checkpoint ----------------------
        out 0x20, 8
        out 0x21, buf
        out 0x22, 1
        out 0x23, 1             ; request #2: read block 8 -> buf (lands ~110 ticks later)
take_checkpoint:
        ckpt                    ; the checkpoint: the read is in flight

        ; ---- write to the same page, while the read is in flight ------------
        mov r1, 0x2157454e      ; the 4 bytes "NEW!" ('N' 'E' 'W' '!', little-endian)
        st r1, [note]           ; page 1 is copied here (a copy-on-write fault)
written:
        call drain              ; wait for the read to land
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
disk_text: .asciz "from disk block 8: the read in flight"
        .align 4096             ; page 1 starts here (address 0x1000)
buf:       .space 0x800         ; the read lands in the first 512 bytes
note:      .asciz "note: set before the checkpoint"
