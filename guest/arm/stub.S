@ s2diff AArch32 guest stub: runs a batch of stage-2 probes in Hyp mode.
@
@ Started by QEMU (qemu-system-arm -M virt,virtualization=on -kernel stub.elf)
@ in Hyp mode (CPSR.M = 0x1a), ARM state, interrupts masked, Hyp MMU off.
@ It executes the job at __s2_job_start and writes raw register values to
@ __s2_results_start; the host decides everything.  Record layouts:
@ docs/job-abi.md (ABI version 1), identical to the AArch64 stub's; every
@ u64 is stored as two little-endian words (ldrd/strd, 8-byte aligned).
@
@ Register use in the batch loop (the exception path only clobbers r0-r3,
@ r12 and lr):
@   r4 job base         r5 results base     r6 current image record
@   r7 image index      r8 number of images r9 current probe record
@   r10 current result  r11 probes left

    .syntax unified
    .arch   armv7-a
    .arch_extension virt            @ eret, msr elr_hyp
    .arm

    .equ ABI_VERSION,       1
    .equ JOB_MAGIC,         0x424a3253      @ "S2JB" little-endian
    .equ RES_MAGIC,         0x53523253      @ "S2RS" little-endian

    @ job header (u32 fields, then u64 offsets from the job base)
    .equ JH_MAGIC,          0x00
    .equ JH_VERSION,        0x04
    .equ JH_N_IMAGES,       0x08
    .equ JH_N_PROBES,       0x0c
    .equ JH_N_REGIONS,      0x10
    .equ JH_HANG_AFTER,     0x14
    .equ JH_IMAGE_OFF,      0x18
    .equ JH_PROBE_OFF,      0x20
    .equ JH_REGION_OFF,     0x28
    .equ IMG_SIZE,          24              @ vtcr u64, vttbr u64, first u32, n u32
    .equ PRB_SIZE_SHIFT,    4               @ ipa u64, kind u32, flags u32
    .equ RGN_SIZE,          24              @ pa u64, len u64, offset u64

    @ results header, u64 slots
    .equ RH_MAGIC,          0x00            @ magic (low word), version (high word)
    .equ RH_STATUS,         0x08
    .equ RH_IMAGES_DONE,    0x10
    .equ RH_PROBES_DONE,    0x18
    .equ RH_FATAL_REASON,   0x20
    .equ RH_FATAL_VECTOR,   0x28
    .equ RH_FATAL_ESR,      0x30
    .equ RH_FATAL_ELR,      0x38
    .equ RH_FATAL_FAR,      0x40
    .equ RH_FATAL_DETAIL,   0x48
    .equ RH_IDREGS,         0x80
    .equ RH_SIZE,           0x100
    .equ REC_SIZE_SHIFT,    6               @ kind par esr far hpfar vector elr reserved

    .equ ST_RUNNING,        1
    .equ ST_COMPLETED,      2
    .equ ST_FATAL,          3
    .equ OBS_PAR,           1
    .equ OBS_EXCEPTION,     2
    .equ FR_EXCEPTION,      1
    .equ FR_BAD_MAGIC,      2
    .equ FR_BAD_VERSION,    3
    .equ FR_BAD_KIND,       4
    .equ FR_BAD_REGION,     5

    .equ UART_BASE,         0x09000000      @ PL011 on virt; QEMU needs no set-up
    .equ SYS_EXIT_EXTENDED, 0x20            @ semihosting: exit with a status
    .equ ADP_STOPPED_APPLICATION_EXIT, 0x20026

    .globl __s2_abi_version
    .set __s2_abi_version, ABI_VERSION

    .section .text.boot, "ax"
    .globl _start
_start:
    @ HSCTLR = 0x30c50830: only its RES1 bits (29, 28, 23, 22, 18, 16, 11,
    @ 5, 4).  Everything else 0:
    @   M=0   Hyp stage 1 off: the stub runs on physical addresses
    @   A=0   no alignment checks beyond Strongly-ordered memory's own
    @   C=0, I=0  caches play no role in QEMU
    @   TE=0  exceptions to Hyp mode are taken in ARM state (our vectors)
    @   EE=0  little-endian (the job and results are LE)
    ldr     r0, =0x30c50830
    mcr     p15, 4, r0, c1, c0, 0

    @ HVBAR: our table (32-byte aligned); every vector reports and exits.
    ldr     r0, =hyp_vectors
    mcr     p15, 4, r0, c12, c0, 0

    @ HCR = VM:
    @   bit 0 VM=1  stage 2 on for the Non-secure PL1&0 regime
    @   all other bits 0: TGE=0, DC=0 (stage 1 off gives Strongly-ordered,
    @   not Normal), no traps (TVM, TSC, ...), no AMO/IMO/FMO routing.
    mov     r0, #1
    mcr     p15, 4, r0, c1, c1, 0

    @ SCTLR (Non-secure PL1 copy, the one Hyp mode accesses): read-modify-
    @ write, because its RES1 set differs between v7 (cortex-a15/a7) and v8
    @ AArch32 (max).  Cleared:
    @   bit 0  M=0  stage 1 off: VA == IPA for every probe
    @   bit 1  A=0, bit 2 C=0, bit 12 I=0: no stage-1 effect with M=0
    @ Every other bit keeps its reset value.
    mrc     p15, 0, r0, c1, c0, 0
    bic     r0, r0, #(1 << 0) | (1 << 1) | (1 << 2)
    bic     r0, r0, #(1 << 12)
    mcr     p15, 0, r0, c1, c0, 0
    @ TTBCR = 0 (EAE=0, N=0): unused while SCTLR.M=0; the reset value,
    @ written so every run starts from the same state.
    mov     r0, #0
    mcr     p15, 0, r0, c2, c0, 2
    isb

    ldr     sp, =stack_top

    ldr     r5, =__s2_results_start
    @ Header first: status RUNNING tells the host that the stub started.
    ldr     r0, =RES_MAGIC
    mov     r1, #ABI_VERSION
    strd    r0, r1, [r5, #RH_MAGIC]
    mov     r0, #ST_RUNNING
    mov     r1, #0
    strd    r0, r1, [r5, #RH_STATUS]

    @ ID registers as u64 slots, order of docs/job-abi.md.  ID_MMFR4 is in
    @ the v7 reserved-ID space (RAZ) on cortex-a15/a7.
    add     r2, r5, #RH_IDREGS
    mov     r1, #0
    mrc     p15, 0, r0, c0, c0, 0               @ MIDR
    strd    r0, r1, [r2, #0]
    mrc     p15, 0, r0, c0, c1, 4               @ ID_MMFR0
    strd    r0, r1, [r2, #8]
    mrc     p15, 0, r0, c0, c1, 7               @ ID_MMFR3
    strd    r0, r1, [r2, #16]
    mrc     p15, 0, r0, c0, c2, 6               @ ID_MMFR4
    strd    r0, r1, [r2, #24]
    mrc     p15, 0, r0, c0, c1, 1               @ ID_PFR1
    strd    r0, r1, [r2, #32]

    @ --- check the job header ---
    ldr     r4, =__s2_job_start
    ldr     r0, [r4, #JH_MAGIC]
    ldr     r1, =JOB_MAGIC
    mov     r2, #FR_BAD_MAGIC
    cmp     r0, r1
    bne     job_fatal
    ldr     r0, [r4, #JH_VERSION]
    mov     r2, #FR_BAD_VERSION
    cmp     r0, #ABI_VERSION
    bne     job_fatal

    @ --- copy every table region to its PA ---
    @ Regions are 8-byte aligned multiples of 8 bytes below 4 GiB (the
    @ host checks it); with the MMU off memory is Strongly-ordered, which
    @ faults on unaligned accesses.
    ldr     r6, [r4, #JH_N_REGIONS]
    ldr     r7, [r4, #JH_REGION_OFF]
    add     r7, r4, r7
    ldr     r8, =__s2_arena_start
    ldr     r9, =__s2_arena_end
1:  cmp     r6, #0
    beq     4f
    ldr     r0, [r7, #0]                        @ pa (low word)
    ldr     r1, [r7, #8]                        @ len (low word)
    ldr     r2, [r7, #16]                       @ offset in the job
    add     r2, r4, r2
    @ Refuse a region outside the arena (it could overwrite the stub) or
    @ not made of whole aligned words (the copy below would overrun).
    orr     r3, r0, r1
    tst     r3, #7
    bne     region_fatal
    ldr     r3, [r7, #4]                        @ pa, high word
    cmp     r3, #0
    bne     region_fatal
    cmp     r0, r8
    blo     region_fatal
    adds    r3, r0, r1
    bcs     region_fatal
    cmp     r3, r9
    bhi     region_fatal
2:  cmp     r1, #0
    beq     3f
    ldrd    r10, r11, [r2], #8
    strd    r10, r11, [r0], #8
    sub     r1, r1, #8
    b       2b
3:  add     r7, r7, #RGN_SIZE
    sub     r6, r6, #1
    b       1b
4:  dsb                                         @ tables written before any walk

    @ --- the batch ---
    ldr     r8, [r4, #JH_N_IMAGES]
    ldr     r6, [r4, #JH_IMAGE_OFF]
    add     r6, r4, r6
    mov     r7, #0
image_loop:
    cmp     r7, r8
    bhs     batch_done
    ldr     r0, [r6, #0]                        @ vtcr: a 32-bit register
    mcr     p15, 4, r0, c2, c1, 2               @ VTCR
    ldrd    r0, r1, [r6, #8]
    mcrr    p15, 6, r0, r1, c2                  @ VTTBR (64-bit)
    @ VTCR/VTTBR writes invalidate nothing, and the tables are new: drop
    @ every Non-secure non-Hyp TLB entry.
    isb
    mcr     p15, 4, r0, c8, c7, 4               @ TLBIALLNSNH (value ignored)
    dsb
    isb
    ldr     r2, [r6, #16]                       @ first_probe
    ldr     r11, [r6, #20]                      @ n_probes
    ldr     r9, [r4, #JH_PROBE_OFF]
    add     r9, r4, r9
    add     r9, r9, r2, lsl #PRB_SIZE_SHIFT
    add     r10, r5, #RH_SIZE
    add     r10, r10, r2, lsl #REC_SIZE_SHIFT
probe_loop:
    cmp     r11, #0
    beq     image_done
    ldr     r0, [r9, #0]                        @ ipa (low word: stage 1 is off, VA == IPA < 4 GiB)
    ldr     r1, [r9, #8]                        @ kind (AtKind.code)
    add     r9, r9, #(1 << PRB_SIZE_SHIFT)
    cmp     r1, #3
    bhi     kind_fatal
    add     pc, pc, r1, lsl #3                  @ pc reads as this insn + 8 = at_table
    nop
    @ Two instructions per kind; the exception path recognises a probe
    @ fault by ELR_hyp pointing at one of these MCRs.
at_table:
    mcr     p15, 0, r0, c7, c8, 4               @ ATS12NSOPR
    b       at_done
    mcr     p15, 0, r0, c7, c8, 5               @ ATS12NSOPW
    b       at_done
    mcr     p15, 0, r0, c7, c8, 6               @ ATS12NSOUR
    b       at_done
    mcr     p15, 0, r0, c7, c8, 7               @ ATS12NSOUW
    b       at_done
at_done:
    isb                                         @ PAR is written by the AT
    mrrc    p15, 0, r2, r3, c7                  @ PAR (64-bit: LPAE format)
    mov     r0, #0
    mov     r1, #0
    strd    r0, r1, [r10, #16]                  @ esr
    strd    r0, r1, [r10, #24]                  @ far
    strd    r0, r1, [r10, #32]                  @ hpfar
    strd    r0, r1, [r10, #40]                  @ vector
    strd    r0, r1, [r10, #48]                  @ elr
    strd    r0, r1, [r10, #56]                  @ reserved
    strd    r2, r3, [r10, #8]                   @ par
    mov     r0, #OBS_PAR
    strd    r0, r1, [r10, #0]                   @ kind last: the record is complete
probe_resume:
    add     r10, r10, #(1 << REC_SIZE_SHIFT)
    sub     r11, r11, #1
    b       probe_loop
image_done:
    add     r7, r7, #1
    ldr     r0, [r6, #20]                       @ n_probes
    ldr     r1, [r5, #RH_PROBES_DONE]
    add     r1, r1, r0
    str     r1, [r5, #RH_PROBES_DONE]
    str     r7, [r5, #RH_IMAGES_DONE]
    add     r6, r6, #IMG_SIZE
    @ Test hook: spin after image index hang_after (0xffffffff = off).
    ldr     r0, [r4, #JH_HANG_AFTER]
    sub     r1, r7, #1
    cmp     r1, r0
    beq     hang
    b       image_loop

batch_done:
    mov     r0, #ST_COMPLETED
    str     r0, [r5, #RH_STATUS]
    dsb
    ldr     r0, =msg_exit_ok
    bl      puts
    mov     r0, #0
    b       semihost_exit

hang:
    ldr     r0, =msg_hang
    bl      puts
1:  wfi
    b       1b

@ --- job errors: the host validates the job, so these mean an ABI mismatch ---
kind_fatal:
    mov     r2, #FR_BAD_KIND
    mov     r3, r1
    b       job_fatal_detail
region_fatal:
    mov     r2, #FR_BAD_REGION
    mov     r3, r0
    b       job_fatal_detail
job_fatal:
    mov     r3, #0
job_fatal_detail:
    mov     r6, r2
    mov     r7, r3
    mov     r1, #0
    mov     r0, r6
    strd    r0, r1, [r5, #RH_FATAL_REASON]
    mov     r0, r7
    strd    r0, r1, [r5, #RH_FATAL_DETAIL]
    mov     r0, #ST_FATAL
    strd    r0, r1, [r5, #RH_STATUS]
    ldr     r0, =msg_job_fatal
    bl      puts
    mov     r0, r6
    bl      puthex
    ldr     r0, =msg_detail
    bl      puts
    mov     r0, r7
    bl      puthex
    ldr     r0, =msg_nl_exit_fail
    bl      puts
    mov     r0, #2
    b       semihost_exit

@ --- exceptions ---------------------------------------------------------------
@ r12 = vector offset in the HVBAR table.  An exception whose ELR_hyp is
@ one of the four AT instructions is that probe's observation (e.g. the
@ synchronous external abort on a stage-2 walk, Hyp data abort, HSR EC
@ 0x25); record it and go on with the next probe.  Anything else is fatal.
exc_common:
    mrs     r0, elr_hyp
    ldr     r1, =at_table
    sub     r2, r0, r1
    cmp     r2, #24
    bhi     exc_fatal                           @ also catches ELR below the table
    tst     r2, #7
    bne     exc_fatal
    cmp     r12, #0x18                          @ IRQ/FIQ are never a probe's doing
    bhs     exc_fatal
    mov     r0, #0
    mov     r1, #0
    strd    r0, r1, [r10, #8]                   @ par: none
    strd    r0, r1, [r10, #56]                  @ reserved
    mov     r3, #0
    mrc     p15, 4, r2, c5, c2, 0               @ HSR
    strd    r2, r3, [r10, #16]
    mrc     p15, 4, r2, c6, c0, 0               @ HDFAR
    cmp     r12, #0x0c
    mrceq   p15, 4, r2, c6, c0, 2               @ HIFAR for a prefetch abort
    strd    r2, r3, [r10, #24]
    mrc     p15, 4, r2, c6, c0, 4               @ HPFAR
    strd    r2, r3, [r10, #32]
    mov     r2, r12
    strd    r2, r3, [r10, #40]                  @ vector
    mrs     r2, elr_hyp
    strd    r2, r3, [r10, #48]                  @ elr
    mov     r2, #OBS_EXCEPTION
    strd    r2, r3, [r10, #0]                   @ kind last
    ldr     r0, =probe_resume
    msr     elr_hyp, r0
    eret

exc_fatal:
    @ A fault inside this path (a bad UART access, or semihosting disabled
    @ so that the exit SVC is not caught) must not loop: the second entry
    @ only tries to exit, the third parks.
    ldr     r0, =fatal_depth
    ldr     r1, [r0]
    add     r2, r1, #1
    str     r2, [r0]
    cmp     r1, #1
    beq     exc_fatal_again
    bhi     park
    mrc     p15, 4, r6, c5, c2, 0               @ HSR
    mrs     r7, elr_hyp
    mrc     p15, 4, r8, c6, c0, 0               @ HDFAR
    cmp     r12, #0x0c
    mrceq   p15, 4, r8, c6, c0, 2               @ HIFAR for a prefetch abort
    mov     r9, r12
    ldr     r5, =__s2_results_start
    mov     r1, #0
    mov     r0, #FR_EXCEPTION
    strd    r0, r1, [r5, #RH_FATAL_REASON]
    mov     r0, r9
    strd    r0, r1, [r5, #RH_FATAL_VECTOR]
    mov     r0, r6
    strd    r0, r1, [r5, #RH_FATAL_ESR]
    mov     r0, r7
    strd    r0, r1, [r5, #RH_FATAL_ELR]
    mov     r0, r8
    strd    r0, r1, [r5, #RH_FATAL_FAR]
    mov     r0, #ST_FATAL
    strd    r0, r1, [r5, #RH_STATUS]
    ldr     r0, =msg_fatal_vector
    bl      puts
    mov     r0, r9
    bl      puthex
    ldr     r0, =msg_esr
    bl      puts
    mov     r0, r6
    bl      puthex
    ldr     r0, =msg_elr
    bl      puts
    mov     r0, r7
    bl      puthex
    ldr     r0, =msg_far
    bl      puts
    mov     r0, r8
    bl      puthex
    ldr     r0, =msg_nl_exit_fail
    bl      puts
    mov     r0, #1
    b       semihost_exit
exc_fatal_again:
    mov     r0, #3
    b       semihost_exit

@ r0 = exit code.  SYS_EXIT_EXTENDED with {ADP_Stopped_ApplicationExit,
@ code}: QEMU exits with that code.  The A32 semihosting trap is
@ SVC 0x123456; QEMU recognises it before routing the exception, so it
@ works in Hyp mode too.
semihost_exit:
    ldr     r1, =exit_block
    ldr     r2, =ADP_STOPPED_APPLICATION_EXIT
    str     r2, [r1, #0]
    str     r0, [r1, #4]
    mov     r0, #SYS_EXIT_EXTENDED
    svc     0x123456
park:
    wfi
    b       park

@ --- PL011 output (leaf functions, clobber r0-r3) ---
@ puts: r0 = NUL-terminated string
puts:
    ldr     r1, =UART_BASE
1:  ldrb    r2, [r0], #1
    cmp     r2, #0
    beq     2f
    strb    r2, [r1]
    b       1b
2:  bx      lr

@ puthex: r0 = value, printed as 0x followed by 8 hex digits
puthex:
    ldr     r1, =UART_BASE
    mov     r2, #'0'
    strb    r2, [r1]
    mov     r2, #'x'
    strb    r2, [r1]
    mov     r3, #28
1:  lsr     r2, r0, r3
    and     r2, r2, #0xf
    cmp     r2, #10
    addhs   r2, r2, #('a' - 10 - '0')
    add     r2, r2, #'0'
    strb    r2, [r1]
    subs    r3, r3, #4
    bpl     1b
    bx      lr

    .ltorg

@ --- Hyp vector table (HVBAR[4:0] RES0).  From Hyp mode, undefined
@ instructions, HVC/SVC, prefetch and data aborts use 0x04-0x10; 0x14 is
@ the trap of an exception routed from a lower mode. ---
    .balign 32
hyp_vectors:
    b       v_reset         @ 0x00 not used
    b       v_undef         @ 0x04 undefined instruction
    b       v_hvc           @ 0x08 hypervisor call / supervisor call
    b       v_pabt          @ 0x0c prefetch abort
    b       v_dabt          @ 0x10 data abort (probe faults arrive here)
    b       v_trap          @ 0x14 hyp trap
    b       v_irq           @ 0x18 IRQ
    b       v_fiq           @ 0x1c FIQ
v_reset: mov r12, #0x00
    b       exc_common
v_undef: mov r12, #0x04
    b       exc_common
v_hvc:  mov r12, #0x08
    b       exc_common
v_pabt: mov r12, #0x0c
    b       exc_common
v_dabt: mov r12, #0x10
    b       exc_common
v_trap: mov r12, #0x14
    b       exc_common
v_irq:  mov r12, #0x18
    b       exc_common
v_fiq:  mov r12, #0x1c
    b       exc_common

    .section .rodata
msg_exit_ok:        .asciz "EXIT: STATUS=0\n"
msg_nl_exit_fail:   .asciz "\nEXIT: STATUS=1\n"
msg_hang:           .asciz "INFO: hang_after reached, spinning (test hook)\n"
msg_job_fatal:      .asciz "FATAL: job reason="
msg_detail:         .asciz " detail="
msg_fatal_vector:   .asciz "FATAL: vector="
msg_esr:            .asciz " ESR="
msg_elr:            .asciz " ELR="
msg_far:            .asciz " FAR="

    .data
    .balign 8
exit_block:         .word 0, 0
fatal_depth:        .word 0

    .bss
    .balign 8
stack:              .space 4096
stack_top:
