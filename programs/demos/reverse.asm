; reverse.asm - a bug to find by running backwards.
;
; The program adds up five numbers (10 + 20 + 30 + 40 + 50) and keeps each
; partial sum in a table. It stores the total, 150, then tidies up: it clears
; the table of partial sums. Then it prints the total.
;
; It prints 0. Something overwrote `total` after it was computed. Instead of
; re-running with print statements, the demo goes to the end and runs
; BACKWARDS to the last instruction that changed `total`.
;
; (The bug: the clearing loop's test is `ble` where it should be `blt`, so it
; clears six words, not five, and the sixth is `total`, right after the table.)

.data
numbers: .word 10, 20, 30, 40, 50
partial: .space 20              ; five words: the partial sums
total:   .word 0                ; ... and the total, right after them

.text
        ; 1. add up the numbers, keeping each partial sum
        mov r2, 0               ; the running sum
        mov r3, 0               ; byte offset of the current word
sum:
        ld r4, [r3 + numbers]
        add r2, r2, r4
        st r2, [r3 + partial]   ; partial[i] = the sum so far
        add r3, r3, 4
        blt r3, 20, sum         ; five words: offsets 0, 4, 8, 12, 16
        st r2, [total]          ; total = 150

        ; 2. tidy up: clear the partial sums
        mov r3, 0
clear:
        st r0, [r3 + partial]   ; r0 is 0
        add r3, r3, 4
        ble r3, 20, clear       ; BUG: 'ble' clears offsets 0..20, six words

        ; 3. print the total
        ld r1, [total]
        out 0x01, r1
        out 0x00, 10
        halt
