/*
 * bench/bootsector.S - the tiny guest of the QXL stall benchmark.
 *
 * A 512-byte boot sector (SeaBIOS loads it at 0x7c00).  It idles with
 * "sti; hlt" (the PIT is reprogrammed to ~1 kHz so it wakes up often) and
 * serves requests the harness writes, through qtest, into a mailbox in low
 * guest RAM.  A request is "execute `outb VALUE, PORT` COUNT times from this
 * vCPU, timing each write with rdtsc"; optionally, after each write, poll a
 * 32-bit word anywhere in the 4 GiB physical space (the QXLRam int_pending
 * field in BAR0) until it has a bit of INTMASK set, then clear it.  %fs is
 * put in "unreal mode" (flat 4 GiB limit) to reach BAR0 from real mode.
 * Interrupts are off while a request runs, so the timings hold only the
 * port writes (and two loads from the mailbox).
 *
 * Mailbox at 0x1000 (all little-endian u32 unless noted); the layout is
 * mirrored in bench/stall.py (class Mailbox):
 *   0x00 magic     guest: 'QXLB' (0x424c5851) once it is ready
 *   0x04 seq       harness: bumped to post a request (parameters first)
 *   0x08 busy      guest: seq of the request it started
 *   0x0c ack       guest: seq of the request it finished (the counter)
 *   0x10 count     harness: number of port writes (0: only the timestamps)
 *   0x14 port      harness: I/O port (u16)
 *   0x18 value     harness: byte written
 *   0x1c intaddr   harness: physical address to poll after each write, 0: none
 *   0x20 intmask   harness: bits that end the poll
 *   0x24 timeouts  guest: polls that gave up after `waitlim` rounds
 *   0x28 waitlim   harness: poll rounds before giving up
 *   0x2c gap       harness: rdtsc ticks to spin after each write (and poll)
 *   0x30 tsc0      guest: u64 rdtsc when the request started
 *   0x38 tsc1      guest: u64 rdtsc when it finished
 *   0x40 last      guest: u64 rdtsc ticks of the last port write
 * Samples: u32 ticks of each port write (saturated) at 0x10000 + 4*i.
 */
    .code16
    .text
    .globl _start

    .set MB,          0x1000
    .set MB_MAGIC,    MB + 0x00
    .set MB_SEQ,      MB + 0x04
    .set MB_BUSY,     MB + 0x08
    .set MB_ACK,      MB + 0x0c
    .set MB_COUNT,    MB + 0x10
    .set MB_PORT,     MB + 0x14
    .set MB_VALUE,    MB + 0x18
    .set MB_INTADDR,  MB + 0x1c
    .set MB_INTMASK,  MB + 0x20
    .set MB_TIMEOUTS, MB + 0x24
    .set MB_WAITLIM,  MB + 0x28
    .set MB_GAP,      MB + 0x2c
    .set MB_TSC0,     MB + 0x30
    .set MB_TSC1,     MB + 0x38
    .set MB_LAST,     MB + 0x40
    .set SAMPLES,     0x10000

_start:
    cli
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     $0x7c00, %sp
    ljmp    $0, $init

init:
    lgdtl   gdtdesc
    /* PIT channel 0, mode 2, divisor 1193: an IRQ 0 every ~1 ms. */
    mov     $0x34, %al
    out     %al, $0x43
    mov     $0xa9, %al
    out     %al, $0x40
    mov     $0x04, %al
    out     %al, $0x40

    /* Clear the mailbox (the BIOS may have used that memory), then say hello. */
    cld
    mov     $MB, %di
    mov     $0x80, %cx
    xor     %al, %al
    rep stosb
    movl    $0x424c5851, MB_MAGIC

idle:
    cli
    mov     MB_SEQ, %eax
    cmp     MB_ACK, %eax
    jne     work
    sti
    hlt                         /* sti's shadow: no wake-up is lost */
    jmp     idle

work:                           /* interrupts stay off while working */
    mov     %eax, MB_BUSY
    /*
     * Unreal mode: load a flat 4 GiB data segment into %fs and return to
     * real mode; %fs keeps its 4 GiB limit.  Redone for every request, as
     * the BIOS' interrupt handlers may have reloaded %fs meanwhile.
     */
    mov     %cr0, %eax
    or      $1, %al
    mov     %eax, %cr0
    jmp     1f
1:  mov     $8, %bx
    mov     %bx, %fs
    and     $0xfe, %al
    mov     %eax, %cr0
    jmp     2f
2:  xor     %bx, %bx
    mov     %bx, %fs
    movl    $0, MB_TIMEOUTS
    rdtsc
    mov     %eax, MB_TSC0
    mov     %edx, MB_TSC0 + 4
    xor     %edi, %edi

next:
    cmp     MB_COUNT, %edi
    jae     done
    rdtsc
    mov     %eax, %ebx
    mov     %edx, %ebp
    mov     MB_PORT, %dx
    mov     MB_VALUE, %al
    out     %al, (%dx)
    rdtsc
    sub     %ebx, %eax
    sbb     %ebp, %edx
    mov     %eax, MB_LAST
    mov     %edx, MB_LAST + 4
    test    %edx, %edx
    jz      3f
    or      $-1, %eax
3:  mov     %eax, %fs:SAMPLES(,%edi,4)
    inc     %edi
    mov     MB_INTADDR, %esi
    test    %esi, %esi
    jz      gap
    mov     MB_WAITLIM, %ecx
4:  mov     %fs:(%esi), %eax
    test    MB_INTMASK, %eax
    jnz     5f
    pause
    dec     %ecx
    jnz     4b
    incl    MB_TIMEOUTS
    jmp     gap
5:  movl    $0, %fs:(%esi)
gap:                            /* let the device settle before the next one */
    mov     MB_GAP, %ecx
    jecxz   next
    rdtsc
    mov     %eax, %ebx
6:  pause
    rdtsc
    sub     %ebx, %eax
    cmp     %ecx, %eax
    jb      6b
    jmp     next

done:
    rdtsc
    mov     %eax, MB_TSC1
    mov     %edx, MB_TSC1 + 4
    mov     MB_BUSY, %eax
    mov     %eax, MB_ACK
    jmp     idle

    .p2align 3
gdt:
    .quad   0
    .quad   0x00cf92000000ffff  /* data, base 0, limit 4 GiB, writable */
gdtdesc:
    .word   gdtdesc - gdt - 1
    .long   gdt

    .org    510
    .word   0xaa55
