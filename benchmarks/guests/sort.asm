; sort.asm - fill an array with a xorshift32 PRNG, quicksort it (recursive,
; with real calls and a stack), verify it is sorted, print a checksum.
;
; Shows: word arrays indexed with shifts, signed compares, a recursive
; subroutine that saves every register it changes, and string output.
;
; The size is the `.equ SIZE` line (benchmarks/guests/guests.py rewrites it).
; Output: "sorted N sum=H min=A max=B\n", where H is the polynomial hash
; h = h * 31 + a[i] (mod 2^32, printed signed) of the sorted array.

.equ SIZE, 20000            ; the number of elements
.equ SEED, 2463534242       ; xorshift32 state (any nonzero value)

        .entry main
main:
        call fill
        mov r1, 0           ; quicksort a[0 .. SIZE-1]
        mov r2, SIZE - 1
        call qsort
        call verify         ; r0 = 0 if sorted, else 1
        bne r0, 0, bad
        mov r1, msg_sorted
        call puts
        out 0x01, SIZE
        mov r1, msg_sum
        call puts
        call checksum
        out 0x01, r1
        mov r1, msg_min
        call puts
        ld r1, [array]
        out 0x01, r1
        mov r1, msg_max
        call puts
        ld r1, [array + (SIZE - 1) * 4]
        out 0x01, r1
        out 0x00, '\n'
        mov r0, 0
        halt
bad:    mov r1, msg_bad
        call puts
        out 0x01, r2        ; the first index out of order
        out 0x00, '\n'
        mov r0, 1
        halt

; fill: a[i] = successive xorshift32 values (x ^= x << 13; x ^= x >> 17;
; x ^= x << 5). Changes r1..r4.
fill:
        mov r1, SEED
        mov r2, 0           ; r2 = byte offset
fill.loop:
        shl r3, r1, 13
        xor r1, r1, r3
        shr r3, r1, 17
        xor r1, r1, r3
        shl r3, r1, 5
        xor r1, r1, r3
        st r1, [r2 + array]
        add r2, r2, 4
        blt r2, SIZE * 4, fill.loop
        ret

; qsort: sort a[r1 .. r2] (indexes, inclusive) in place, signed ascending.
; Lomuto partition around a[hi], then recursion on both sides.
; Preserves every register.
qsort:
        blt r1, r2, qs.go
        ret
qs.go:
        push r1
        push r2
        push r3
        push r4
        push r5
        push r6
        push r7
        push r8
        push r9
        push r10
        mov r10, r2         ; r10 = hi
        shl r3, r2, 2
        ld r4, [r3 + array] ; r4 = pivot
        sub r5, r1, 1       ; r5 = i = lo - 1
        mov r6, r1          ; r6 = j = lo
qs.part:
        bge r6, r10, qs.pdone
        shl r3, r6, 2
        ld r7, [r3 + array] ; r7 = a[j]
        bgt r7, r4, qs.next
        add r5, r5, 1       ; a[j] <= pivot: swap a[++i], a[j]
        shl r8, r5, 2
        ld r9, [r8 + array]
        st r7, [r8 + array]
        st r9, [r3 + array]
qs.next:
        add r6, r6, 1
        jmp qs.part
qs.pdone:
        add r5, r5, 1       ; p = i + 1: swap a[p], a[hi]
        shl r8, r5, 2
        ld r9, [r8 + array]
        shl r3, r10, 2
        st r9, [r3 + array]
        st r4, [r8 + array]
        sub r2, r5, 1       ; left part: lo .. p-1 (r1 is still lo)
        call qsort
        add r1, r5, 1       ; right part: p+1 .. hi
        mov r2, r10
        call qsort
        pop r10
        pop r9
        pop r8
        pop r7
        pop r6
        pop r5
        pop r4
        pop r3
        pop r2
        pop r1
        ret

; verify: r0 = 0 if a[i-1] <= a[i] for every i, else r0 = 1 and r2 = the
; first i where it fails. Changes r0..r4.
verify:
        mov r0, 0
        mov r2, 1
verify.loop:
        bge r2, SIZE, verify.done
        shl r1, r2, 2
        ld r3, [r1 + array - 4]
        ld r4, [r1 + array]
        bgt r3, r4, verify.bad
        add r2, r2, 1
        jmp verify.loop
verify.bad:
        mov r0, 1
verify.done:
        ret

; checksum: r1 = h over the array, h = h * 31 + a[i]. Changes r1..r3.
checksum:
        mov r1, 0
        mov r2, 0
checksum.loop:
        ld r3, [r2 + array]
        mul r1, r1, 31
        add r1, r1, r3
        add r2, r2, 4
        blt r2, SIZE * 4, checksum.loop
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
msg_sorted: .asciz "sorted "
msg_sum:    .asciz " sum="
msg_min:    .asciz " min="
msg_max:    .asciz " max="
msg_bad:    .asciz "NOT sorted at "
            .align 4
array:      .space SIZE * 4
