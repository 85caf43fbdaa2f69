; disk_copy.asm - asynchronous DMA to and from the block disk.
;
; Shows: setting up disk requests (ports 0x20 block, 0x21 memory address,
; 0x22 block count, 0x23 command: 1 = read, 2 = write), several requests in
; flight at once, a completion interrupt handler (port 0x26), and waiting for
; completions without the "lost wake-up" race.
;
; Steps:
;   1. fill a 4 KiB buffer `src` with a test pattern;
;   2. write it to disk blocks 8..15 with 4 write requests of 2 blocks each,
;      all issued back to back, so that all 4 are in flight together;
;   3. wait for the 4 completion interrupts;
;   4. read blocks 8..15 back into a second buffer `dst`, again as 4
;      requests in flight at once, and wait for them;
;   5. compare src and dst byte by byte: print "OK", or "error at byte N".
;
; Run with a disk:  minivm disk create disk.img 64K
;                   minivm run programs/disk_copy.asm --disk disk.img
; Expected output:  OK
; Afterwards disk.img holds the pattern at byte offsets 4096..8191.

.equ BLOCK_SIZE, 512
.equ FIRST_BLOCK, 8         ; where on the disk the copy goes
.equ NBLOCKS, 8             ; 8 blocks = 4096 bytes in all
.equ PER_REQ, 2             ; blocks per request, so 4 requests per direction
.equ NREQ, NBLOCKS / PER_REQ
.equ NBYTES, NBLOCKS * BLOCK_SIZE
.equ CMD_READ, 1
.equ CMD_WRITE, 2

        out 0x26, on_done   ; completion interrupt handler
        ei

        ; 1. the pattern: byte i = (i XOR (i >> 8)) & 0xFF. The "XOR i >> 8"
        ;    part makes each 256-byte stretch different, so a block landing in
        ;    the wrong place would be noticed.
        mov r1, 0           ; r1 = i
fill:
        shr r2, r1, 8
        xor r2, r2, r1
        stb r2, [r1 + src]  ; stb keeps only the low byte: the "& 0xFF"
        add r1, r1, 1
        blt r1, NBYTES, fill

        ; 2. issue the writes; each `out 0x23` returns at once.
        mov r1, CMD_WRITE
        mov r2, FIRST_BLOCK ; r2 = disk block
        mov r3, src         ; r3 = memory address
        mov r4, PER_REQ     ; r4 = block count
        mov r5, NREQ        ; r5 = requests left to issue
issue_writes:
        call issue
        add r2, r2, PER_REQ
        add r3, r3, PER_REQ * BLOCK_SIZE
        sub r5, r5, 1
        bgt r5, 0, issue_writes
        in r6, 0x24         ; requests in flight right now: all NREQ of them
        st r6, [in_flight_seen]

        ; 3. wait until every write has completed
        mov r1, NREQ
        call wait_for

        ; 4. the same for the reads, into dst
        mov r1, CMD_READ
        mov r2, FIRST_BLOCK
        mov r3, dst
        mov r5, NREQ
issue_reads:
        call issue
        add r2, r2, PER_REQ
        add r3, r3, PER_REQ * BLOCK_SIZE
        sub r5, r5, 1
        bgt r5, 0, issue_reads
        mov r1, 2 * NREQ    ; completions counted so far include the writes
        call wait_for

        ; 5. verify
        mov r1, 0
verify:
        ldb r2, [r1 + src]
        ldb r3, [r1 + dst]
        bne r2, r3, mismatch
        add r1, r1, 1
        blt r1, NBYTES, verify
        out 0x00, 'O'
        out 0x00, 'K'
        out 0x00, 10
        mov r0, 0           ; exit status 0
        halt
mismatch:
        mov r2, error_text
print_error:
        ldb r3, [r2]
        beq r3, 0, error_end
        out 0x00, r3
        add r2, r2, 1
        jmp print_error
error_end:
        out 0x01, r1        ; the offset of the first differing byte
        out 0x00, 10
        mov r0, 1           ; exit status 1: the copy is wrong
        halt

; issue: start one disk request. r1 = command, r2 = block, r3 = address,
; r4 = block count. Changes no register.
issue:
        out 0x20, r2
        out 0x21, r3
        out 0x22, r4
        out 0x23, r1        ; go: queued behind any request still in flight
        ret

; wait_for: return once `completed` >= r1. Changes no register.
; The check and the `wait` run with interrupts disabled. Otherwise the last
; completion could interrupt us between the check and the `wait`, and the
; `wait` would then sleep for an event that never comes (a fault). With
; interrupts disabled the completion stays pending, and `ei` delivers it.
wait_for:
        push r2
wait_loop:
        di
        ld r2, [completed]
        bge r2, r1, wait_done
        wait                ; sleep until the disk's next completion;
        ei                  ; it is pending: enabling interrupts delivers it
        jmp wait_loop
wait_done:
        ei
        pop r2
        ret

; on_done: the disk completion handler; counts completions.
on_done:
        push r1
        ld r1, [completed]
        add r1, r1, 1
        st r1, [completed]
        pop r1
        iret

.data
completed:      .word 0     ; completion interrupts taken so far
in_flight_seen: .word 0     ; port 0x24 right after issuing the writes
error_text:     .asciz "error at byte "
                .align 512
src:            .space NBYTES
dst:            .space NBYTES
