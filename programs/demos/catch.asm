; catch.asm - one run through the protocol's steps P2 to P9, for `catch`.
;
; Two checkpoints, taken by the guest itself (`ckpt`):
;
;   first_ckpt   with two disk requests in flight: #2 reads block 8 into
;                page 3, #3 writes blocks 16..17 from page 1. After it:
;                  a store into page 1                  -> a memory COW fault (P3)
;                  #4 writes block 19 only, the group   -> a disk COW fault (P3),
;                     of blocks 16..23 #3 writes too       after #3 (P9)
;                  #5 reads block 9 into page 2         -> page 2 copied first (P6)
;                  #2 lands in both copies of page 3    -> P5/P7
;                  the pages are saved while it runs    -> P4
;   second_ckpt  with a read of block 8 (#6) and then a write of block 8 (#7)
;                in flight: both complete inside the stop window (P8).
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/catch.asm --mem 64K --disk d.img
; The demo:      minivm demo catch

.equ PAGE, 0x1000

        ; ---- before the checkpoints: pages 1..4 in use, blocks 16..19 written --
        mov r1, 0x64636261      ; "abcd"
        st r1, [1 * PAGE]
        st r1, [2 * PAGE]
        st r1, [3 * PAGE]
        st r1, [4 * PAGE]
        out 0x20, 16            ; blocks 16..19
        out 0x21, text          ; from the program's data
        out 0x22, 4
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle

        ; ---- two requests in flight at the first checkpoint -----------------
        out 0x20, 8
        out 0x21, 3 * PAGE
        out 0x22, 1
        out 0x23, 1             ; #2: read block 8 into page 3
        out 0x20, 16
        out 0x21, 1 * PAGE
        out 0x22, 2
        out 0x23, 2             ; #3: write blocks 16..17 from page 1
first_ckpt:
        ckpt                    ; P2: the stop window
        st r1, [1 * PAGE + 4]   ; P3: page 1 is shared with the checkpoint: copied
        out 0x20, 19
        out 0x21, 4 * PAGE
        out 0x22, 1
        out 0x23, 2             ; #4: write block 19 only (group 16..23)
        out 0x20, 9
        out 0x21, 2 * PAGE
        out 0x22, 1
        out 0x23, 1             ; #5: a new read into page 2 (P6)
        call drain              ; #2 lands (P5/P7), #3, then #4 copies its group (P9)
        mov r2, 0
spin:   add r2, r2, 1           ; run on while the checkpoint is saved (P4)
        blt r2, 3000, spin

        ; ---- a read then a write of one block in flight: P8 -----------------
        out 0x20, 8
        out 0x21, 5 * PAGE
        out 0x22, 1
        out 0x23, 1             ; #6: read block 8
        out 0x20, 8
        out 0x21, 1 * PAGE
        out 0x22, 1
        out 0x23, 2             ; #7: write block 8
second_ckpt:
        ckpt                    ; P8: #6 and #7 complete before the guest resumes
        call drain
        mov r0, 0
        halt

; drain: return when no disk request is in flight (port 0x24 = 0).
drain:  in r7, 0x24
        beq r7, 0, drained
        wait
        jmp drain
drained:
        ret

.data
text:   .asciz "blocks 16..19, written before the checkpoints"
