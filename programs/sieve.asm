; sieve.asm - the sieve of Eratosthenes: prints every prime below 1000,
; one per line (2, 3, 5, 7, ..., 997).
;
; Shows: a byte array in .data (`.space`), byte loads and stores
; (`ldb`/`stb`) with a base register plus a label offset, and nested loops.
;
; composite[i] is 0 while i may still be prime and becomes 1 once we
; have found a factor of i. Memory starts zeroed, so no init loop is needed.

.equ LIMIT, 1000            ; find the primes p with 2 <= p < LIMIT

        mov r1, 2           ; r1 = i, the candidate we are looking at
outer:
        bge r1, LIMIT, done
        ldb r2, [r1 + composite] ; r2 = composite[i]  (address = i + composite)
        bne r2, 0, next     ; crossed out already: not a prime
        out 0x01, r1        ; i is prime: print it
        out 0x00, 10        ; newline
        ; Cross out the multiples of i, starting at i*i (smaller multiples
        ; k*i with k < i were already crossed out when we handled k's primes).
        mul r3, r1, r1      ; r3 = j = i*i
        mov r4, 1           ; the byte value meaning "composite"
inner:
        bge r3, LIMIT, next ; j beyond the table: done with this prime
        stb r4, [r3 + composite] ; composite[j] = 1
        add r3, r3, r1      ; j += i
        jmp inner
next:
        add r1, r1, 1       ; i += 1
        jmp outer
done:
        mov r0, 0           ; exit status 0
        halt

.data
composite: .space LIMIT     ; one byte per number 0..LIMIT-1, all zero
