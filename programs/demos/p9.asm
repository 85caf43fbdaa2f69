; p9.asm - P9: a partial write to a block group with an earlier write still pending.
;
; After a checkpoint, disk writes go to an overlay file (P1), in groups of
; 8 blocks: blocks 16..23 form group 2. The first write into a group copies
; the whole group from the checkpointed disk into the overlay (a disk
; copy-on-write fault), then applies the write to the copy.
;
;   setup  write "old" texts to blocks 16..19, wait until they are there.
;   #2     write "NEW" texts to blocks 16..17      (in flight at the checkpoint)
;   ckpt
;   #3     write a text to block 19 only             (a partial write of group 2:
;                                                     the group is copied first)
;   ...    wait, then read blocks 16..19 back and print them.
;
; Rule P9: when #3 copies group 2, the copy must include #2's blocks, which
; are still on their way to the disk. So the copy waits for the pending write
; #2. In minivm the disk serves requests in issue order and the copy is made
; when #3 is served, so #2 has always completed by then.
;
; Run it alone:  minivm disk create d.img 64K
;                minivm run programs/demos/p9.asm --disk d.img --checkpoint-dir ck
;                minivm disk info ck/ckpt-0001.cow   (1 block group copied into the overlay)
; The demo:      minivm demo p9

.equ CHECK, 0x2000              ; page 2: where blocks 16..19 are read back

        ; ---- setup: "old" texts on blocks 16..19 -----------------------------
        out 0x20, 16            ; blocks 16..19
        out 0x21, old_blocks    ; from this memory address
        out 0x22, 4             ; 4 blocks
        out 0x23, 2             ; request #1: a write
        call drain              ; wait until the disk is idle

        ; ---- a write in flight at the checkpoint --------------------------
        out 0x20, 16
        out 0x21, new_blocks
        out 0x22, 2
        out 0x23, 2             ; request #2: write blocks 16..17 (NEW texts)
take_checkpoint:
        ckpt                    ; #2 is in flight

        ; ---- a partial write to the same group, after the checkpoint ------
        out 0x20, 19
        out 0x21, block19_text
        out 0x22, 1
        out 0x23, 2             ; request #3: write block 19 only
issued:
        call drain

        ; ---- read blocks 16..19 back and print the start of each ----------
        out 0x20, 16
        out 0x21, CHECK
        out 0x22, 4
        out 0x23, 1             ; request #4: read blocks 16..19 -> CHECK
        call drain
        mov r3, CHECK
print_next:
        mov r1, r3
        call puts               ; the text at the start of this block
        out 0x00, 10
        add r3, r3, 512         ; next block
        blt r3, CHECK + 4 * 512, print_next
        mov r0, 0
        halt

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
        .align 512
old_blocks:                     ; 4 blocks, one text at the start of each
        .asciz "block 16: old"
        .align 512
        .asciz "block 17: old"
        .align 512
        .asciz "block 18: old"
        .align 512
        .asciz "block 19: old"
        .align 512
new_blocks:                     ; 2 blocks, for request #2
        .asciz "block 16: NEW, written by #2 (in flight at the checkpoint)"
        .align 512
        .asciz "block 17: NEW, written by #2 (in flight at the checkpoint)"
        .align 512
block19_text:                   ; 1 block, for request #3
        .asciz "block 19: NEW, written by #3 (after the checkpoint)"
