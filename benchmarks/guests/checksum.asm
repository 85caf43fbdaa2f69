; checksum.asm - the CRC-32 (zlib's) of the first SIZE blocks of the disk,
; read by DMA with several requests in flight, printed in hex.
;
; Shows: a table-driven CRC-32 (the table built at start), a ring of NBUF
; buffers kept full of asynchronous disk reads (ports 0x20..0x23), a
; completion interrupt handler (port 0x26) counting completions, the
; race-free wait (test with interrupts disabled, `wait`, `ei`), and hex
; output.
;
; Run with a disk of at least SIZE blocks. The size is the `.equ SIZE` line
; (benchmarks/guests/guests.py rewrites it).
; Output: "blocks=SIZE crc32=XXXXXXXX\n" (as zlib.crc32 of those bytes).

.equ SIZE, 256              ; blocks to checksum
.equ BLOCK, 512
.equ CHUNK, 2               ; blocks per read request
.equ NBUF, 4                ; buffers in the ring: up to 4 reads in flight
.equ BUFSIZE, CHUNK * BLOCK
.equ POLY, 0xEDB88320       ; CRC-32, reflected

        .entry main
main:
        call make_table
        out 0x26, on_done   ; completion handler
        ei
        mov r7, 0           ; r7 = next block to request
        mov r8, 0           ; r8 = requests issued
main.prime:                 ; fill the ring
        bge r8, NBUF, main.primed
        bge r7, SIZE, main.primed
        call issue_next
        jmp main.prime
main.primed:
        mov r9, 0           ; r9 = requests consumed
        mov r10, -1         ; r10 = running CRC (pre-inverted)
        mov r11, 0          ; r11 = first block of the next chunk to consume
main.consume:
        bge r9, r8, main.finish
        add r1, r9, 1       ; wait until request r9 + 1 has completed
        call wait_for
        mod r1, r9, NBUF    ; its buffer
        mul r1, r1, BUFSIZE
        add r1, r1, bufs
        mov r2, SIZE
        sub r2, r2, r11
        ble r2, CHUNK, main.len
        mov r2, CHUNK
main.len:
        mul r2, r2, BLOCK
        add r2, r2, r1      ; r2 = end address
        call crc_buffer
        add r11, r11, CHUNK
        add r9, r9, 1
        bge r7, SIZE, main.consume
        call issue_next     ; reuse the buffer just consumed
        jmp main.consume
main.finish:
        xor r10, r10, -1
        mov r1, msg_blocks
        call puts
        out 0x01, SIZE
        mov r1, msg_crc
        call puts
        mov r1, r10
        call print_hex
        out 0x00, '\n'
        out 0x26, -1
        mov r0, 0
        halt

; make_table: table[n] = the CRC-32 of byte n. Changes r1..r4.
make_table:
        mov r1, 0           ; r1 = n
table.entry:
        mov r2, r1          ; r2 = c
        mov r4, 8
table.bit:
        and r3, r2, 1
        shr r2, r2, 1
        beq r3, 0, table.skip
        xor r2, r2, POLY
table.skip:
        sub r4, r4, 1
        bgt r4, 0, table.bit
        shl r3, r1, 2
        st r2, [r3 + table]
        add r1, r1, 1
        blt r1, 256, table.entry
        ret

; issue_next: read blocks r7 .. r7 + min(CHUNK, SIZE - r7) - 1 into buffer
; r8 mod NBUF; then r7 += that count, r8 += 1. Changes r1, r2.
issue_next:
        out 0x20, r7
        mod r1, r8, NBUF
        mul r1, r1, BUFSIZE
        add r1, r1, bufs
        out 0x21, r1
        mov r2, SIZE
        sub r2, r2, r7
        ble r2, CHUNK, issue.count
        mov r2, CHUNK
issue.count:
        out 0x22, r2
        out 0x23, 1         ; read; returns at once
        add r7, r7, r2
        add r8, r8, 1
        ret

; crc_buffer: fold the bytes at r1 .. r2 - 1 into the CRC in r10.
; Changes r1, r3, r4.
crc_buffer:
        bge r1, r2, crc.done
crc.loop:
        ldb r3, [r1]
        xor r4, r10, r3
        and r4, r4, 255
        shl r4, r4, 2
        ld r4, [r4 + table]
        shr r10, r10, 8
        xor r10, r10, r4
        add r1, r1, 1
        blt r1, r2, crc.loop
crc.done:
        ret

; wait_for: return once `completed` >= r1. Changes no register.
wait_for:
        push r2
wait.loop:
        di
        ld r2, [completed]
        bge r2, r1, wait.done
        wait                ; the completion stays pending...
        ei                  ; ...until here
        jmp wait.loop
wait.done:
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

; print_hex: r1 as 8 lowercase hex digits. Changes r1..r3.
print_hex:
        mov r2, 28
hex.digit:
        shr r3, r1, r2
        and r3, r3, 15
        blt r3, 10, hex.num
        add r3, r3, 'a' - 10 - '0'
hex.num:
        add r3, r3, '0'
        out 0x00, r3
        sub r2, r2, 4
        bge r2, 0, hex.digit
        ret

; puts: print the zero-terminated string at r1. Changes r1, r2.
puts:
        ldb r2, [r1]
        beq r2, 0, puts.done
        out 0x00, r2
        add r1, r1, 1
        jmp puts
puts.done:
        ret

        .data
completed:  .word 0
msg_blocks: .asciz "blocks="
msg_crc:    .asciz " crc32="
            .align 4
table:      .space 256 * 4
            .align BLOCK
bufs:       .space NBUF * BUFSIZE
