@ s2diff AArch32 guest stub: runs a batch of stage-2 probes in Hyp mode.
@
@ Started by QEMU (qemu-system-arm -M virt,virtualization=on -kernel stub.elf)
@ in Hyp mode (CPSR.M = 0x1a), ARM state, interrupts masked, Hyp MMU off.
@ It executes the job at __s2_job_start and writes raw register values to
@ __s2_results_start; the host decides everything.  Record layouts:
@ docs/job-abi.md (ABI version 3), identical to the AArch64 stub's; every
@ u64 is stored as two little-endian words (ldrd/strd, 8-byte aligned).
@
@ Probes are AT instructions in Hyp mode, accesses made by a PL1 (SVC mode)
@ routine (section .text.el1: the stub ERETs to it at the IPA where the
@ image maps the EL1 window; it returns with HVC, or faults), and
@ maintenance (a descriptor write with TLB invalidation, a VTTBR switch).
@
@ Register use in the batch loop (the exception path only clobbers r0-r3,
@ r12 and lr; r4-r11 are saved in hyp_save around a PL1 routine and a
@ maintenance probe, which use them):
@   r4 job base         r5 results base     r6 current image record
@   r7 image index      r8 number of images r9 current probe record
@   r10 current result  r11 probes left

    .syntax unified
    .arch   armv7-a
    .arch_extension virt            @ eret, msr elr_hyp, hvc
    .fpu    vfpv3                   @ the VLDR/VSTR routines; FPEXC
    .arm

    .equ ABI_VERSION,       3
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
    @ image record: vtcr u64, vttbr u64, first u32, n u32, el1_ipa u64, s2pir u64
    @ (unused here), then the PL1&0 stage-1 and HCR values the image runs under
    .equ IMG_SIZE,          88
    .equ IMG_EL1_IPA,       24
    .equ IMG_HCR,           40              @ HCR (low word), HCR2 (high word)
    .equ IMG_SCTLR,         48              @ the SCTLR bits M, C, WXN, UWXN to set
    .equ IMG_TCR,           56              @ TTBCR (low word)
    .equ IMG_TTBR0,         64
    .equ IMG_TTBR1,         72
    .equ IMG_MAIR,          80              @ MAIR0 (low word), MAIR1 (high word)
    .equ PRB_SIZE_SHIFT,    5               @ ipa u64, kind u32, flags u32, data u64, data2 u64
    .equ PRB_FLAGS,         12
    .equ PRB_DATA,          16
    .equ PRB_DATA2,         24

    @ probe kinds (docs/job-abi.md): 0-7 AT, 64.. PL1 accesses, 128.. maintenance
    .equ KIND_AT_LAST,      7
    .equ KIND_A32_FIRST,    64
    .equ KIND_DESC_WRITE,   128
    .equ KIND_SET_VTTBR,    129
    @ maintenance flags
    .equ FLAG_TLBI_IPAS2,   1               @ descriptor write: TLBIIPAS2IS, data2 >> 12
    .equ FLAG_TLBI_ALL,     2               @   TLBIALLIS (this VMID's stage-1 entries)
    .equ FLAG_TLBI_NSNH,    4               @   TLBIALLNSNHIS
    .equ FLAG_TLBI_SWITCH,  1               @ VTTBR switch: TLBIALL (the new VMID) after
    @ SPSR_hyp for the ERET into a PL1 routine: M = 0x13 SVC, A, I, F masked
    @ (bits 8:6), T = 0 (ARM state), E = 0 (little-endian).
    .equ SPSR_SVC_MASKED,   0x1d3
    @ SCTLR bits an image sets: M (0), C (2), WXN (19), UWXN (20)
    .equ SCTLR_IMAGE_BITS,  (1 << 0) | (1 << 2) | (1 << 19) | (1 << 20)
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
    .equ OBS_EXCEPTION,     2               @ taken to Hyp: HSR HDFAR/HIFAR HPFAR ELR_hyp
    .equ OBS_ACCESS_DONE,   3               @ the PL1 routine (or the fetch target) HVCed
    .equ OBS_EL1_EXCEPTION, 4               @ taken to PL1, handed over: DFSR/IFSR DFAR/IFAR LR
    .equ OBS_MAINT_DONE,    5
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
    @   bit 13 V=0  PL1 vectors at VBAR (the EL1 window), not 0xffff0000
    mrc     p15, 0, r0, c1, c0, 0
    bic     r0, r0, #(1 << 0) | (1 << 1) | (1 << 2)
    bic     r0, r0, #(1 << 12) | (1 << 13)
    mcr     p15, 0, r0, c1, c0, 0
    @ HCPTR = 0x33ff: its RES1 bits (13:12, 9:0) only: TCP10/TCP11 (10, 11)
    @ = 0 so cp10/cp11 (VFP) are not trapped to Hyp; TASE, TTA, TCPAC 0.
    ldr     r0, =0x33ff
    mcr     p15, 4, r0, c1, c1, 2
    @ CPACR = 0x00f00000: cp10 and cp11 full access at PL1 (the VLDR/VSTR
    @ routines); ASEDIS/D32DIS 0.
    mov     r0, #0x00f00000
    mcr     p15, 0, r0, c1, c0, 2
    isb
    @ FPEXC.EN (bit 30) = 1: VFP enabled (else every VFP instruction UNDEFs).
    mov     r0, #(1 << 30)
    vmsr    fpexc, r0
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
    mrc     p15, 0, r0, c0, c1, 0               @ ID_PFR0 (RAS [31:28] for the reference)
    strd    r0, r1, [r2, #40]
    mrc     p15, 0, r0, c0, c1, 2               @ ID_DFR0 (CopDbg [3:0]: ARMv7 or ARMv8)
    strd    r0, r1, [r2, #48]
    @ HCR2 exists from ARMv8 on (UNDEFINED on ARMv7): remember whether this
    @ is an ARMv8 core, by ID_DFR0.CopDbg >= 0b0110 as reference/cpus.py does.
    and     r0, r0, #0xf
    cmp     r0, #6
    movlo   r0, #0
    movhs   r0, #1
    ldr     r1, =have_hcr2
    str     r0, [r1]

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
    @ The PL1&0 regime of the image: HCR (and HCR2 on ARMv8), stage 1
    @ (TTBCR, TTBR0/1, MAIR0/1, then SCTLR after an ISB), then stage 2.  A
    @ stage-2-only image has HCR = VM, HCR2 = 0 and no SCTLR bit set (M = 0).
    ldr     r0, [r6, #IMG_HCR]
    mcr     p15, 4, r0, c1, c1, 0               @ HCR
    ldr     r1, =have_hcr2
    ldr     r1, [r1]
    cmp     r1, #0
    ldrne   r0, [r6, #(IMG_HCR + 4)]
    mcrne   p15, 4, r0, c1, c1, 4               @ HCR2 (CD, ID)
    ldr     r0, [r6, #IMG_TCR]
    mcr     p15, 0, r0, c2, c0, 2               @ TTBCR
    ldrd    r0, r1, [r6, #IMG_TTBR0]
    mcrr    p15, 0, r0, r1, c2                  @ TTBR0 (64-bit)
    ldrd    r0, r1, [r6, #IMG_TTBR1]
    mcrr    p15, 1, r0, r1, c2                  @ TTBR1 (64-bit)
    ldrd    r0, r1, [r6, #IMG_MAIR]
    mcr     p15, 0, r0, c10, c2, 0              @ MAIR0
    mcr     p15, 0, r1, c10, c2, 1              @ MAIR1
    isb
    @ SCTLR read-modify-write (its RES1 set differs between v7 and v8): M
    @ (0), C (2), WXN (19), UWXN (20) as the image says, the rest kept.
    mrc     p15, 0, r0, c1, c0, 0
    ldr     r2, =SCTLR_IMAGE_BITS
    bic     r0, r0, r2
    ldr     r1, [r6, #IMG_SCTLR]
    and     r1, r1, r2
    orr     r0, r0, r1
    mcr     p15, 0, r0, c1, c0, 0
    ldr     r0, [r6, #0]                        @ vtcr: a 32-bit register
    mcr     p15, 4, r0, c2, c1, 2               @ VTCR
    ldrd    r0, r1, [r6, #8]
    mcrr    p15, 6, r0, r1, c2                  @ VTTBR (64-bit)
    @ VBAR (Non-secure PL1): the PL1 vectors start the EL1 window, which
    @ this image maps at el1_ipa (stage 1 off: VA == IPA).
    ldr     r0, [r6, #IMG_EL1_IPA]
    mcr     p15, 0, r0, c12, c0, 0
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
    ldr     r0, [r9, #0]                        @ ipa, or VA with stage 1 on (low word: 32-bit VA)
    ldr     r1, [r9, #8]                        @ kind
    cmp     r1, #KIND_AT_LAST
    bhi     not_at
    add     r9, r9, #(1 << PRB_SIZE_SHIFT)
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
    mcr     p15, 0, r0, c7, c8, 0               @ ATS1CPR: stage 1 of PL1&0 alone (PAR: the IPA)
    b       at_done
    mcr     p15, 0, r0, c7, c8, 1               @ ATS1CPW
    b       at_done
    mcr     p15, 0, r0, c7, c8, 2               @ ATS1CUR
    b       at_done
    mcr     p15, 0, r0, c7, c8, 3               @ ATS1CUW
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

@ --- access probes: ERET to the PL1 routine of the kind ---
@ r0 = ipa (the routine's address register), r1 = data[31:0], r2 = data[63:32].
not_at:
    sub     r2, r1, #KIND_A32_FIRST
    cmp     r2, #(EL1_KINDS - 1)
    bhi     maintenance
    ldr     r3, =el1_entry_offsets
    lsl     r2, r2, #1
    ldrh    r3, [r3, r2]                        @ the routine's offset in the EL1 window
    ldr     r2, [r6, #IMG_EL1_IPA]
    add     r3, r3, r2
    msr     elr_hyp, r3
    mov     r3, #SPSR_SVC_MASKED
    msr     spsr_fsxc, r3                       @ SPSR_hyp: the banked-register form is UNDEFINED in Hyp mode
    ldrd    r2, r3, [r9, #PRB_DATA]
    mov     r1, r2
    mov     r2, r3
    add     r9, r9, #(1 << PRB_SIZE_SHIFT)
    ldr     r12, =hyp_save
    stm     r12, {r4-r11}                       @ the routine may use every register
    mov     r5, #0                              @ what the routine hands back
    mov     r6, #0
    eret

@ Back from PL1 (Hyp trap entry): r5/r6 hold what the routine handed back.
lower_sync:
    mov     r2, r5
    mov     r3, r6
    ldr     r12, =hyp_save
    ldm     r12, {r4-r11}
    mrc     p15, 4, r0, c5, c2, 0               @ HSR
    ubfx    r1, r0, #26, #6                     @ EC
    cmp     r1, #0x12                           @ HVC
    bne     lower_exception
    ubfx    r1, r0, #0, #16                     @ imm16
    cmp     r1, #0x100
    bhs     pl1_exception
    @ HVC #0 from the routine, #2 from a fetch target: the access completed.
    mov     r1, #0
    strd    r0, r1, [r10, #16]                  @ esr (the HVC's)
    mov     r0, r2
    strd    r0, r1, [r10, #8]                   @ data0
    mov     r0, r3
    strd    r0, r1, [r10, #56]                  @ data1
    mov     r0, #0
    strd    r0, r1, [r10, #24]                  @ far
    strd    r0, r1, [r10, #32]                  @ hpfar
    mov     r0, #0x14
    strd    r0, r1, [r10, #40]                  @ vector
    mrs     r0, elr_hyp
    strd    r0, r1, [r10, #48]                  @ elr
    mov     r0, #OBS_ACCESS_DONE
    strd    r0, r1, [r10, #0]                   @ kind last
    b       probe_resume
lower_exception:
    @ A stage-2 abort (EC 0x24/0x20) -- or anything else PL1 raised to Hyp:
    @ recorded raw, the host judges.
    mov     r3, #0
    mov     r2, r0
    strd    r2, r3, [r10, #16]                  @ HSR
    cmp     r1, #0x20                           @ prefetch abort: HIFAR, else HDFAR
    mrceq   p15, 4, r2, c6, c0, 2               @ HIFAR
    mrcne   p15, 4, r2, c6, c0, 0               @ HDFAR
    strd    r2, r3, [r10, #24]
    mrc     p15, 4, r2, c6, c0, 4               @ HPFAR
    strd    r2, r3, [r10, #32]
    mov     r2, #0x14
    strd    r2, r3, [r10, #40]                  @ vector
    mrs     r2, elr_hyp
    strd    r2, r3, [r10, #48]
    mov     r2, #0
    strd    r2, r3, [r10, #8]                   @ data0 (none)
    strd    r2, r3, [r10, #56]                  @ data1 (none)
    mov     r2, #OBS_EXCEPTION
    strd    r2, r3, [r10, #0]                   @ kind last
    b       probe_resume
pl1_exception:
    @ HVC #0x100+i from PL1 vector i (offset 4 * i): a data abort (i = 4)
    @ gives DFSR/DFAR and LR_abt, a prefetch abort (3) IFSR/IFAR and LR_abt,
    @ an undefined instruction (1) LR_und; others just the offset.
    sub     r1, r1, #0x100
    mov     r3, #0
    lsl     r2, r1, #2
    strd    r2, r3, [r10, #40]                  @ PL1 vector offset
    mov     r0, #0
    mov     r12, #0
    cmp     r1, #4
    mrceq   p15, 0, r0, c5, c0, 0               @ DFSR
    mrceq   p15, 0, r12, c6, c0, 0              @ DFAR
    cmp     r1, #3
    mrceq   p15, 0, r0, c5, c0, 1               @ IFSR
    mrceq   p15, 0, r12, c6, c0, 2              @ IFAR
    mov     r2, r0
    strd    r2, r3, [r10, #16]
    mov     r2, r12
    strd    r2, r3, [r10, #24]
    mov     r2, #0
    cmp     r1, #3
    cmpne   r1, #4
    mrseq   r2, lr_abt
    cmp     r1, #1
    mrseq   r2, lr_und
    strd    r2, r3, [r10, #48]
    mov     r2, #0
    strd    r2, r3, [r10, #8]
    strd    r2, r3, [r10, #32]
    strd    r2, r3, [r10, #56]
    mov     r2, #OBS_EL1_EXCEPTION
    strd    r2, r3, [r10, #0]                   @ kind last
    b       probe_resume

@ --- maintenance probes (r0 = ipa field, r1 = kind); r4-r11 saved ---
maintenance:
    add     r9, r9, #(1 << PRB_SIZE_SHIFT)      @ advanced before r4-r11 are saved;
    ldr     r12, =hyp_save                      @ the fields are read behind it
    stm     r12, {r4-r11}
    ldr     lr, [r9, #(PRB_FLAGS - (1 << PRB_SIZE_SHIFT))]
    ldrd    r2, r3, [r9, #(PRB_DATA - (1 << PRB_SIZE_SHIFT))]
    ldr     r4, [r9, #(PRB_DATA2 - (1 << PRB_SIZE_SHIFT))]
    ldr     r5, [r9, #(4 - (1 << PRB_SIZE_SHIFT))]  @ ipa field, high word
    cmp     r1, #KIND_DESC_WRITE
    beq     desc_write
    cmp     r1, #KIND_SET_VTTBR
    bne     maint_kind_fatal
    @ VTTBR switch to data (another image of this job, its own VMID).
    mrrc    p15, 6, r6, r7, c2                  @ recorded: the VTTBR left
    mcrr    p15, 6, r2, r3, c2
    isb
    tst     lr, #FLAG_TLBI_SWITCH
    mcrne   p15, 0, r0, c8, c7, 0               @ TLBIALL: the new VMID's entries
    dsb
    isb
    b       maint_recorded
desc_write:
    @ Descriptor at PA r0 := r3:r2, then the maintenance the flags ask for,
    @ in the order of the architected sequence.  The PA must be an aligned
    @ word of the arena (host-checked).
    ldr     r6, =__s2_arena_start
    ldr     r7, =__s2_arena_end
    tst     r0, #7
    bne     maint_region_fatal
    cmp     r5, #0
    bne     maint_region_fatal
    cmp     r0, r6
    blo     maint_region_fatal
    cmp     r0, r7
    bhs     maint_region_fatal
    ldrd    r6, r7, [r0]                        @ recorded: the old descriptor
    strd    r2, r3, [r0]
    dsb     ishst
    tst     lr, #FLAG_TLBI_IPAS2
    beq     1f
    lsr     r4, r4, #12
    mcr     p15, 4, r4, c8, c0, 1               @ TLBIIPAS2IS, IPA[39:12]
    dsb     ish
1:  tst     lr, #FLAG_TLBI_ALL
    beq     2f
    mcr     p15, 0, r4, c8, c3, 0               @ TLBIALLIS (value ignored)
    dsb     ish
2:  tst     lr, #FLAG_TLBI_NSNH
    beq     3f
    mcr     p15, 4, r4, c8, c3, 4               @ TLBIALLNSNHIS (value ignored)
    dsb     ish
3:  isb
maint_recorded:
    mov     r2, r6                              @ the old value, out of the way of
    mov     r3, r7                              @ the loop state coming back
    ldr     r12, =hyp_save
    ldm     r12, {r4-r11}                       @ r10: the result record again
    strd    r2, r3, [r10, #8]                   @ old value
    mov     r2, #0
    mov     r3, #0
    strd    r2, r3, [r10, #16]
    strd    r2, r3, [r10, #24]
    strd    r2, r3, [r10, #32]
    strd    r2, r3, [r10, #40]
    strd    r2, r3, [r10, #48]
    strd    r2, r3, [r10, #56]
    mov     r2, #OBS_MAINT_DONE
    strd    r2, r3, [r10, #0]                   @ kind last
    b       probe_resume
maint_kind_fatal:
    ldr     r12, =hyp_save
    ldm     r12, {r4-r11}
    b       kind_fatal
maint_region_fatal:
    ldr     r12, =hyp_save
    ldm     r12, {r4-r11}
    b       region_fatal
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
@ one of the eight AT instructions is that probe's observation (e.g. the
@ synchronous external abort on a stage-2 walk, Hyp data abort, HSR EC
@ 0x25); record it and go on with the next probe.  Anything else is fatal.
exc_common:
    cmp     r12, #0x14                          @ Hyp trap entry: only ever a PL1
    beq     lower_sync                          @ routine's HVC or abort
    mrs     r0, elr_hyp
    ldr     r1, =at_table
    sub     r2, r0, r1
    cmp     r2, #56
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

@ --- the EL1 window --------------------------------------------------------
@ Everything PL1 executes, in one section the linker aligns to 64 KiB
@ (__s2_el1_start/__s2_el1_end): every image that runs access probes maps
@ these pages at its el1_ipa, so the code is position independent.  Entered
@ by ERET in SVC mode with r0 = the probe's IPA, r1 = data[31:0], r2 =
@ data[63:32], r5 = r6 = 0; a routine makes its access and returns with
@ HVC #0, handing back r5 (and r6).  The register each access names is
@ spread over r1-r14 so that HSR.ISS.SRT is tested on many values (the Hyp
@ loop's r4-r11 are saved around the routine).  For each kind the ELF
@ exports __s2_kind_<NAME> = its probe kind code and __s2_el1_insn_<NAME>
@ = its access instruction (__s2_el1_insn2_ for the second access of the
@ exclusive pair), read by the host and checked against reference/access.py.

    .macro el1_routine name, code
    .globl __s2_kind_\name
    .set __s2_kind_\name, \code
    .balign 4
el1_\name:
    .endm
    .macro el1_insn name
    .globl __s2_el1_insn_\name
__s2_el1_insn_\name:
    .endm

    .section .text.el1, "ax"
    @ VBAR (32-byte aligned, at the window's start): every PL1 vector hands
    @ the exception to Hyp with HVC #0x100 + its index; DFSR/DFAR/IFSR/IFAR
    @ and the mode's LR still hold it there.
el1_vectors:
    hvc     #0x100                              @ 0x00 reset (not used)
    hvc     #0x101                              @ 0x04 undefined instruction
    hvc     #0x102                              @ 0x08 SVC
    hvc     #0x103                              @ 0x0c prefetch abort
    hvc     #0x104                              @ 0x10 data abort
    hvc     #0x105                              @ 0x14 not used
    hvc     #0x106                              @ 0x18 IRQ
    hvc     #0x107                              @ 0x1c FIQ

    el1_routine A32_LDR, 64
    el1_insn A32_LDR
    ldr     r3, [r0]
    mov     r5, r3
    hvc     #0
    el1_routine A32_LDRB, 65
    el1_insn A32_LDRB
    ldrb    r4, [r0]
    mov     r5, r4
    hvc     #0
    el1_routine A32_LDRH, 66
    el1_insn A32_LDRH
    ldrh    r6, [r0]
    mov     r5, r6
    mov     r6, #0
    hvc     #0
    el1_routine A32_LDRSB, 67
    el1_insn A32_LDRSB
    ldrsb   r7, [r0]
    mov     r5, r7
    hvc     #0
    el1_routine A32_LDRSH, 68
    el1_insn A32_LDRSH
    ldrsh   r8, [r0]
    mov     r5, r8
    hvc     #0
    el1_routine A32_STR, 69
    mov     r9, r1
    el1_insn A32_STR
    str     r9, [r0]
    hvc     #0
    el1_routine A32_STRB, 70
    mov     r10, r1
    el1_insn A32_STRB
    strb    r10, [r0]
    hvc     #0
    el1_routine A32_STRH, 71
    mov     r11, r1
    el1_insn A32_STRH
    strh    r11, [r0]
    hvc     #0
    el1_routine A32_STR_LR, 72
    mov     lr, r1                              @ LR_svc: SRT 14
    el1_insn A32_STR_LR
    str     lr, [r0]
    hvc     #0
    el1_routine A32_LDR_POST, 73
    mov     r12, r0
    el1_insn A32_LDR_POST
    ldr     r3, [r12], #4                       @ post-index: writeback, no ISS
    mov     r5, r3
    hvc     #0
    el1_routine A32_STR_PRE, 74
    add     r12, r0, #8
    el1_insn A32_STR_PRE
    str     r1, [r12, #-8]!                     @ pre-index to r0: writeback, no ISS
    hvc     #0
    el1_routine A32_LDRD, 75
    el1_insn A32_LDRD
    ldrd    r4, r5, [r0]
    mov     r6, r5
    mov     r5, r4
    hvc     #0
    el1_routine A32_STRD, 76
    mov     r3, r2
    mov     r2, r1
    el1_insn A32_STRD
    strd    r2, r3, [r0]
    hvc     #0
    el1_routine A32_LDM, 77
    el1_insn A32_LDM
    ldm     r0, {r3, r4}
    mov     r5, r3
    mov     r6, r4
    hvc     #0
    el1_routine A32_LDREX_STREX, 78
    el1_insn A32_LDREX_STREX
    ldrex   r3, [r0]
    .globl __s2_el1_insn2_A32_LDREX_STREX
__s2_el1_insn2_A32_LDREX_STREX:
    strex   r4, r1, [r0]
    mov     r5, r3
    mov     r6, r4                              @ status: 0 stored, 1 not
    hvc     #0
    el1_routine A32_LDA, 79
    el1_insn A32_LDA
    .inst   0xe1903c9f                          @ lda r3, [r0] (ARMv8; the host sends it to v8 CPUs only)
    mov     r5, r3
    hvc     #0
    el1_routine A32_STL, 80
    el1_insn A32_STL
    .inst   0xe180fc91                          @ stl r1, [r0] (ARMv8)
    hvc     #0
    el1_routine A32_VLDR, 81
    el1_insn A32_VLDR
    vldr    d0, [r0]
    vmov    r5, r6, d0
    hvc     #0
    el1_routine A32_VSTR, 82
    vmov    d0, r1, r2
    el1_insn A32_VSTR
    vstr    d0, [r0]
    hvc     #0
    el1_routine A32_IFETCH, 83
    el1_insn A32_IFETCH
    bx      r0                                  @ the target holds HVC #2 (or faults)
    .balign 0x1000
    .equ EL1_KINDS, 20

    .section .rodata
    @ Offset of each kind's routine in the EL1 window, in kind order from
    @ KIND_A32_FIRST.
    .balign 2
el1_entry_offsets:
    .irp n, A32_LDR, A32_LDRB, A32_LDRH, A32_LDRSB, A32_LDRSH, A32_STR, A32_STRB, A32_STRH, A32_STR_LR, A32_LDR_POST, A32_STR_PRE, A32_LDRD, A32_STRD, A32_LDM, A32_LDREX_STREX, A32_LDA, A32_STL, A32_VLDR, A32_VSTR, A32_IFETCH
    .hword  el1_\n - el1_vectors
    .endr
    .if (. - el1_entry_offsets) != 2 * EL1_KINDS
    .error "el1_entry_offsets and EL1_KINDS disagree"
    .endif

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
have_hcr2:          .word 0                 @ 1 on ARMv8 (ID_DFR0.CopDbg >= 6), read at set-up

hyp_save:           .word 0, 0, 0, 0, 0, 0, 0, 0    @ r4-r11 around PL1 routines

    .bss
    .balign 8
stack:              .space 4096
stack_top:
