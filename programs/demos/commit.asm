; commit.asm - P10: committing a disk overlay into its parent while the guest runs.
;
; The guest writes eight disk blocks, one after the other: block i gets the
; text "block i, written at tick T". After the fourth write it takes a
; checkpoint (`ckpt`): from then on its writes go to a copy-on-write overlay
; file, and the disk file under it is the checkpoint's disk (P1, P3).
;
; The demo then commits the overlay into the disk file (P10), with the guest
; still running: the guest switches to a fresh overlay at once, and the old
; overlay's blocks are merged into the disk file as soon as no write to it is
; pending. Afterwards the disk file holds blocks 0-7, and the checkpoint's disk
; has changed under it: restoring the checkpoint is refused (its disk
; fingerprint no longer matches) unless it was exported first.

.equ COUNT, 8

        mov r5, 0                   ; r5 = the block being written
next:
        ; the text of this block: "block N" in buf
        mov r1, buf + 6
        add r2, r5, '0'
        stb r2, [r1]                ; the digit after "block "
        out 0x20, r5                ; block r5
        out 0x21, buf               ; from buf
        out 0x22, 1                 ; one block
        out 0x23, 2                 ; write
drain:
        in r7, 0x24                 ; requests in flight
        beq r7, 0, written
        wait
        jmp drain
written:
        bne r5, 3, no_ckpt
        ckpt                        ; blocks 0-3 are on the disk file; 4-7 go to the overlay
after_ckpt:
        mov r6, 1                   ; (only here for the demo's breakpoint)
no_ckpt:
        add r5, r5, 1
        blt r5, COUNT, next
        mov r0, 0
        halt

.data
        .align 512
buf:    .asciz "block ?"
        .space 504
