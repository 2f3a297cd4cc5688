.code64
.text
.globl _start
_start:
    lea msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 2f
    mov $0x3f8, %dx
    out %al, %dx
    jmp 1b
2:  mov $0xfe, %al
    out %al, $0x64
3:  hlt
    jmp 3b
msg: .asciz "Caisson demo guest: hello from inside a microVM\n"
