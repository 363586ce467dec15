/*
 * bench/bootsector.S - the tiny guest of the QXL stall benchmark.
 *
 * A 512-byte boot sector (SeaBIOS loads it at 0x7c00).  Every vCPU serves
 * requests the harness writes, through qtest, into that vCPU's mailbox in
 * low guest RAM.  A request is "execute `outb VALUE, PORT` COUNT times from
 * this vCPU, timing each write with rdtsc"; optionally, after each write,
 * poll a 32-bit word anywhere in the 4 GiB physical space (the QXLRam
 * int_pending field in BAR0) until it has a bit of INTMASK set, then clear
 * it.  %fs is put in "unreal mode" (flat 4 GiB limit) to reach BAR0 and the
 * local APIC from real mode.  Interrupts are off while a request runs, so
 * the timings hold only the port writes (two loads from the mailbox and
 * the store of `outs`).
 *
 * The BSP idles with "sti; hlt" (the PIT is reprogrammed to ~1 kHz so it
 * wakes up often).  With -smp N it first starts the application processors
 * (INIT, then two STARTUP IPIs to all but itself, vector TRAMP >> 12); no
 * interrupt reaches them (LINT0 masked, the PIT goes to the BSP), so they
 * poll their mailbox with `pause`.  Each CPU finds its mailbox through a
 * %ds of its own (APIC ID n: %ds = 0x10 * n), so the absolute mailbox
 * offsets below work for all of them.  APIC IDs 0-7 (-smp 8 at most: the
 * samples of a ninth CPU would reach the EBDA).
 *
 * Low memory (APIC ID n):
 *   0x1000 + 0x100*n   CPU n's mailbox (0x1000: the BSP, as with one vCPU)
 *   0x2000             AP trampoline: ljmp $0, $cpu
 *   0x7c00 - 0x400*n   top of CPU n's stack (0x7c00: the BSP's)
 *   0x10000 * (n + 1)  CPU n's samples (the mailbox's `sbase`), 64 KiB
 *
 * Mailbox (all little-endian u32 unless noted); the layout is mirrored in
 * bench/stall.py (class Mailbox):
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
 *   0x48 outs      guest: port writes of this request that have returned,
 *                  stored right after each `out` (0 before busy is set)
 *   0x4c sbase     guest at boot, harness may change it: physical address
 *                  of the samples, u32 ticks of each port write (saturated)
 *                  at sbase + 4*i
 *   0x50 apic      guest: the APIC ID of the CPU serving this mailbox
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
    .set MB_OUTS,     MB + 0x48
    .set MB_SBASE,    MB + 0x4c
    .set MB_APIC,     MB + 0x50
    .set TRAMP,       0x2000
    .set APIC_ICR,    0xfee00300
    .set ICR_INIT,    0x000c4500    /* all but self, assert, INIT */
    .set ICR_SIPI,    0x000c4600 | TRAMP >> 12

_start:
    cli
    xor     %ax, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     $0x7c00, %sp
    ljmp    $0, $init

init:
    /* PIT channel 0, mode 2, divisor 1193: an IRQ 0 every ~1 ms. */
    mov     $0x34, %al
    out     %al, $0x43
    mov     $0xa9, %al
    out     %al, $0x40
    mov     $0x04, %al
    out     %al, $0x40

    /*
     * Start the APs, if any, at TRAMP (a STARTUP IPI's vector is a page
     * number).  No delays between the IPIs (the MP spec's 10 ms and
     * 200 us are for real hardware): an AP handles a pending INIT before
     * a pending STARTUP and keeps the STARTUP across it (QEMU's TCG in
     * do_cpu_init(), KVM's local APIC likewise), and ignores the second
     * STARTUP once it runs.
     */
    call    unreal
    movb    $0xea, TRAMP
    movl    $cpu, TRAMP + 1     /* offset, then segment 0 */
    mov     $APIC_ICR, %esi
    movl    $ICR_INIT, %fs:(%esi)
    movl    $ICR_SIPI, %fs:(%esi)
    movl    $ICR_SIPI, %fs:(%esi)

cpu:                            /* every CPU; the APs with %ds = %ss = 0, IF = 0 */
    mov     $1, %eax
    cpuid
    shr     $24, %ebx           /* the APIC ID */
    mov     %bx, %ax
    shl     $10, %ax            /* 1 KiB of stack each, the BSP's as before */
    mov     $0x7c00, %sp
    sub     %ax, %sp
    mov     %bx, %ax
    shl     $4, %ax             /* MB is now this CPU's mailbox */
    mov     %ax, %ds
    mov     %ax, %es

    /* Clear the mailbox (the BIOS may have used that memory), then say hello. */
    cld
    mov     $MB, %di
    mov     $0x80, %cx
    xor     %al, %al
    rep stosb
    mov     %ebx, MB_APIC
    inc     %ebx
    shl     $16, %ebx
    mov     %ebx, MB_SBASE
    movl    $0x424c5851, MB_MAGIC

idle:
    cli
    mov     MB_SEQ, %eax
    cmp     MB_ACK, %eax
    jne     work
    mov     %ds, %ax
    test    %ax, %ax            /* %ds is 0 on the BSP (APIC ID 0) only */
    jnz     1f                  /* an AP: no interrupt would wake it up */
    sti
    hlt                         /* sti's shadow: no wake-up is lost */
    jmp     idle
1:  pause
    jmp     idle

work:                           /* interrupts stay off while working */
    xor     %edi, %edi
    mov     %edi, MB_OUTS       /* zero before busy says the request began */
    mov     %edi, MB_TIMEOUTS
    mov     %eax, MB_BUSY
    call    unreal
    rdtsc
    mov     %eax, MB_TSC0
    mov     %edx, MB_TSC0 + 4

next:
    cmp     MB_COUNT, %edi
    jae     done
    rdtsc
    mov     %eax, %ebx
    mov     %edx, %ebp
    mov     MB_PORT, %dx
    mov     MB_VALUE, %al
    out     %al, (%dx)
    inc     %edi
    mov     %edi, MB_OUTS       /* first thing after the write returned */
    rdtsc
    sub     %ebx, %eax
    sbb     %ebp, %edx
    mov     %eax, MB_LAST
    mov     %edx, MB_LAST + 4
    test    %edx, %edx
    jz      3f
    or      $-1, %eax
3:  mov     MB_SBASE, %esi
    mov     %eax, %fs:-4(%esi,%edi,4)
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

    /*
     * Unreal mode: load a flat 4 GiB data segment into %fs and return to
     * real mode; %fs keeps its 4 GiB limit.  Redone for every request, as
     * the BIOS' interrupt handlers may have reloaded %fs meanwhile.  The
     * GDT is loaded here too: each CPU has its own GDTR, and %cs, unlike
     * %ds, is 0 on all of them.  Clobbers %eax and %bx.
     */
unreal:
    lgdtl   %cs:gdtdesc
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
    ret

    .p2align 3
gdt:
    .quad   0
    .quad   0x00cf92000000ffff  /* data, base 0, limit 4 GiB, writable */
gdtdesc:
    .word   gdtdesc - gdt - 1
    .long   gdt

    .org    510
    .word   0xaa55
