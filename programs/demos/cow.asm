; cow.asm - copy-on-write: a checkpoint copies a page only when it is written.
;
; Memory is cut into pages of 4096 bytes (0x1000). This guest writes a line
; of text at the start of pages 1, 2, 3 and 4 (addresses 0x1000, 0x2000,
; 0x3000, 0x4000). Then, at the label `checkpoint_here`, the demo takes a
; checkpoint. After it, the guest
;   - READS pages 1 and 4     (reading never copies a page),
;   - WRITES to pages 2 and 3 (the first write to each makes a private copy;
;                              the checkpoint keeps the original bytes).
;
; The program uses no stack (no call/push), so the only pages it touches are
; page 0 (its data) and pages 1-4: the page map stays easy to read.
;
; Run it alone:  minivm run programs/demos/cow.asm --mem 64K --checkpoint-at 60
; The demo:      minivm demo cow

.equ PAGE, 0x1000

        ; ---- fill pages 1..4 with a copy of `text` --------------------------
        mov r3, PAGE            ; r3 = the page we fill (starts at page 1)
next_page:
        mov r1, text            ; r1 = where we copy from
        mov r2, r3              ; r2 = where we copy to
copy:   ldb r4, [r1]            ; copy one byte ...
        stb r4, [r2]
        add r1, r1, 1
        add r2, r2, 1
        bne r4, 0, copy         ; ... up to and including the final 0 byte
        add r3, r3, PAGE        ; next page
        blt r3, 5 * PAGE, next_page

checkpoint_here:                ; <- the demo stops here and takes a checkpoint
        ; ---- after the checkpoint ---------------------------------------------
        ld r5, [1 * PAGE]       ; read page 1: no copy
        ld r6, [4 * PAGE]       ; read page 4: no copy
        mov r1, 0x2157454e      ; the 4 bytes "NEW!" ('N' 'E' 'W' '!', little-endian)
write_2:
        st r1, [2 * PAGE]       ; first write to page 2: the page is copied
        st r1, [2 * PAGE + 4]   ; second write to page 2: no new copy
        st r1, [3 * PAGE]       ; first write to page 3: copied
        mov r0, 0
        halt

.data
text:   .asciz "original text, written before the checkpoint"
