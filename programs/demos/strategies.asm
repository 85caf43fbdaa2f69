; strategies.asm - a guest for comparing checkpoint strategies (minivm demo strategies).
;
; It first touches every page of its memory from page 16 up to the last 16
; pages (the stack's): 992 pages with --mem 4M, as in the demo; it finds the
; memory size in sp, which starts at the top of memory. A checkpoint then has
; all of that to save. Then it keeps rewriting a working set
; of 128 pages (512 KiB), one word into the next page every 11 ticks: about
; 90 pages written per 1,000 ticks, faster than pre-copy copies them (64
; pages per 1,000 ticks), so pre-copy cannot catch up. Every 64 iterations
; it puts a disk write and a disk read in flight, so DMA is in flight during
; the rounds and at the checkpoints. It halts after (memory size / 512)
; iterations (8192 with 4 MiB), once no request is in flight, printing that
; number.
;
; Run it alone:  minivm disk create d.img 64K
;                minivm compare programs/demos/strategies.asm --mem 4M --disk d.img --at 6000
;                (docs/protocol.md's table: --mem 64M --at 70000)
; The demo:      minivm demo strategies

.equ FIRST, 0x10000         ; page 16: the first page of the working memory
.equ WORKING_SET, 128       ; pages rewritten, cycling
.equ buf, 0x8000            ; page 8: disk reads land here (the CPU never touches it)
.equ src, 0x9000            ; page 9: disk writes take their data from here

        sub r8, sp, 0x10000 ; r8 = the end: the last 16 pages are left to the stack
        shr r9, sp, 9       ; r9 = how many iterations: the memory size / 512
        mov r1, FIRST       ; ---- touch every page once --------------------------
touch:
        bge r1, r8, main
        st r1, [r1]
        add r1, r1, 4096
        jmp touch
main:
        mov r2, 0           ; ---- r2 = iteration ------------------------------------
loop:
        bge r2, r9, finish
        mod r3, r2, WORKING_SET
        mul r3, r3, 4096
        add r3, r3, FIRST
        st r2, [r3 + 4]     ; dirty the next page of the working set
        and r4, r2, 63
        bne r4, 0, next
        shr r5, r2, 6       ; every 64 iterations: block (i / 64) mod 32 ...
        and r5, r5, 31
        st r2, [src]
        out 0x20, r5        ; ... written from src ...
        out 0x21, src
        out 0x22, 1
        out 0x23, 2
        and r6, r5, 7       ; ... and read back into one of 8 slots of buf
        mul r6, r6, 512
        add r6, r6, buf
        out 0x20, r5
        out 0x21, r6
        out 0x22, 1
        out 0x23, 1
next:
        add r2, r2, 1
        jmp loop
finish:
        in r7, 0x24         ; wait until no request is in flight
        beq r7, 0, done
        wait
        jmp finish
done:
        out 0x01, r2        ; the number of iterations
        out 0x00, 10
        mov r0, 0
        halt
