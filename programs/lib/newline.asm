; newline.asm - end the console line.                  .include <newline>
;
;   call newline
;   in:        nothing
;   out:       '\n' on the console
;   clobbers:  nothing
;   stack:     none besides call's return address
newline:
        out 0x00, '\n'
        ret
