; bubble_sort.asm - sorts an array of signed 32-bit words in place with
; bubble sort, then prints it on one line, separated by spaces.
;
; Shows: a .word array in .data, word loads/stores (`ld`/`st`) with a
; register base, signed comparisons (negative numbers sort first),
; and subroutines with `call`/`ret` that save the registers they use
; with `push`/`pop`.
;
; Expected output:
;   -250 -7 -7 -1 0 3 5 8 13 13 42 64 99 1000

        call sort           ; sort the array in place
        call print_array    ; print it
        mov r0, 0           ; exit status 0
        halt

; sort: bubble sort of array[0..N-1] (words, ascending, signed).
; Each pass walks the array comparing neighbours and swaps those in the
; wrong order; after pass k the k largest values are in their final
; places, so each pass can stop one element earlier than the last.
; Uses r1..r6, saved and restored.
sort:
        push r1
        push r2
        push r3
        push r4
        push r5
        push r6
        ld r1, [count]      ; r1 = n, the number of elements
        sub r1, r1, 1       ; r1 = last index a pass compares up to (exclusive)
pass:
        ble r1, 0, sorted   ; nothing left to compare: sorted
        mov r2, array       ; r2 = address of the current element
        mul r3, r1, 4       ; r3 = byte length of the part still to scan...
        add r3, r3, array   ; ...turned into the address where the pass stops
        mov r6, 0           ; r6 = swaps done in this pass
compare:
        bge r2, r3, pass_end
        ld r4, [r2]         ; r4 = array[k]
        ld r5, [r2 + 4]     ; r5 = array[k+1]
        ble r4, r5, in_order ; signed: already in order (equal values stay)
        st r5, [r2]         ; swap the two neighbours
        st r4, [r2 + 4]
        add r6, r6, 1
in_order:
        add r2, r2, 4       ; next pair (words are 4 bytes)
        jmp compare
pass_end:
        beq r6, 0, sorted   ; a pass with no swaps: already sorted, stop early
        sub r1, r1, 1       ; the largest value is now at the end: shrink
        jmp pass
sorted:
        pop r6              ; restore in the reverse order of the pushes
        pop r5
        pop r4
        pop r3
        pop r2
        pop r1
        ret

; print_array: prints array[0..N-1] as decimal numbers separated by single
; spaces, then a newline. Uses r1..r3, saved and restored.
print_array:
        push r1
        push r2
        push r3
        mov r1, array       ; r1 = address of the element to print
        ld r2, [count]
        mul r2, r2, 4
        add r2, r2, array   ; r2 = address just past the last element
        ld r3, [r1]
        out 0x01, r3        ; the first number has no space before it
        add r1, r1, 4
print_next:
        bge r1, r2, print_done
        out 0x00, ' '       ; separator
        ld r3, [r1]
        out 0x01, r3        ; prints negative numbers with their '-' sign
        add r1, r1, 4
        jmp print_next
print_done:
        out 0x00, '\n'
        pop r3
        pop r2
        pop r1
        ret

.data
count:  .word 14            ; number of elements in the array below
array:  .word 42, -7, 13, 0, 99, -7, 5, 1000
        .word -250, 13, 8, 3, -1, 64
