// s2diff AArch64 guest stub: runs a batch of stage-2 probes at EL2.
//
// Started by QEMU (-M virt,virtualization=on,secure=off -kernel stub.elf) at
// EL2, EL2h, DAIF masked, MMU off.  It executes the job found at
// __s2_job_start and writes raw register values to __s2_results_start; the
// host decides everything.  Record layouts: docs/job-abi.md (ABI version 1);
// the offsets below must match harness/job.py.
//
// Register use in the batch loop (callee state survives the exception path,
// which only clobbers x0-x15):
//   x19 job base          x20 results base      x21 current image record
//   x22 image index       x23 number of images  x24 current probe record
//   x25 current result    x26 probes left       x27 hang_after
//   x28 AT dispatch table

    .equ ABI_VERSION,       1
    .equ JOB_MAGIC,         0x424a3253      // "S2JB" little-endian
    .equ RES_MAGIC,         0x53523253      // "S2RS" little-endian

    // job header (u32 fields, then u64 offsets from the job base)
    .equ JH_MAGIC,          0x00
    .equ JH_VERSION,        0x04
    .equ JH_N_IMAGES,       0x08
    .equ JH_N_PROBES,       0x0c
    .equ JH_N_REGIONS,      0x10
    .equ JH_HANG_AFTER,     0x14
    .equ JH_IMAGE_OFF,      0x18
    .equ JH_PROBE_OFF,      0x20
    .equ JH_REGION_OFF,     0x28
    // image record: vtcr u64, vttbr u64, first_probe u32, n_probes u32
    .equ IMG_SIZE,          24
    // probe record: ipa u64, kind u32, flags u32
    .equ PRB_SIZE_SHIFT,    4
    // region record: pa u64, len u64, offset-in-job u64
    .equ RGN_SIZE,          24

    // results header, all u64 slots
    .equ RH_MAGIC,          0x00            // magic | version << 32
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
    // result record: kind, par, esr, far, hpfar, vector, elr, reserved
    .equ REC_SIZE_SHIFT,    6

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

    .equ UART_BASE,         0x09000000      // PL011 on virt; QEMU needs no set-up

    .equ SYS_EXIT,          0x18            // semihosting operation numbers
    .equ ADP_STOPPED_APPLICATION_EXIT, 0x20026

    // Exported so the host can refuse a stub built for another ABI.
    .globl __s2_abi_version
    .set __s2_abi_version, ABI_VERSION

    .section .text.boot, "ax"
    .globl _start
_start:
    // SCTLR_EL2 = 0x30c50830: only the RES1 bits of the non-VHE layout
    // (29, 28, 23, 22, 18, 16, 11, 5, 4).  Everything else 0:
    //   M=0    EL2 stage 1 off: the stub runs on physical addresses
    //   A=0    no alignment checks beyond what Device memory imposes
    //   C=0, I=0  caches play no role in QEMU; keep the reset-like state
    //   SA=0   no SP alignment check (the stub barely uses the stack)
    //   EE=0   little-endian data at EL2 (the job and results are LE)
    //   WXN=0  irrelevant with M=0
    ldr     x0, =0x30c50830
    msr     sctlr_el2, x0

    // VBAR_EL2: our table; every one of the 16 vectors reports and exits.
    adr     x0, el2_vectors
    msr     vbar_el2, x0

    // HCR_EL2 = RW | VM:
    //   bit 31 RW=1   EL1 is AArch64 (the AT S12E1* walk uses AArch64 EL1 state)
    //   bit  0 VM=1   stage 2 translation on for the EL1&0 regime
    //   all other bits 0: no TGE/E2H (EL2 stays a plain hypervisor),
    //   DC=0 (stage 1 off means Device, not Normal, for EL1&0), no traps,
    //   FWB=0 (stage-2 MemAttr has its classic meaning), PTW=0, no AMO/IMO/FMO.
    ldr     x0, =((1 << 31) | (1 << 0))
    msr     hcr_el2, x0

    // SCTLR_EL1 = 0x30d00800: the RES1 bits of v8.0 (29, 28, 23, 22, 20, 11);
    //   M=0  stage 1 of EL1&0 off, so VA == IPA for every probe
    //   C=0, I=0, A=0, EE=0, E0E=0: nothing of stage 1 can matter with M=0.
    ldr     x0, =0x30d00800
    msr     sctlr_el1, x0
    // TCR_EL1 = 0, TTBR0/1_EL1 = 0, MAIR_EL1 = 0: unused with SCTLR_EL1.M=0,
    // but defined values make every run start from the same state.
    msr     tcr_el1, xzr
    msr     ttbr0_el1, xzr
    msr     ttbr1_el1, xzr
    msr     mair_el1, xzr
    isb

    ldr     x0, =stack_top
    mov     sp, x0

    ldr     x20, =__s2_results_start
    // Header first: status RUNNING tells the host that the stub started.
    ldr     x0, =((ABI_VERSION << 32) | RES_MAGIC)
    str     x0, [x20, #RH_MAGIC]
    mov     x0, #ST_RUNNING
    str     x0, [x20, #RH_STATUS]

    // ID registers, slots in the order of docs/job-abi.md.  MMFR2 is read
    // by its encoding: on v8.0 CPUs it is in the RAZ reserved-ID space.
    add     x1, x20, #RH_IDREGS
    mrs     x0, midr_el1
    str     x0, [x1, #0]
    mrs     x0, id_aa64mmfr0_el1
    str     x0, [x1, #8]
    mrs     x0, id_aa64mmfr1_el1
    str     x0, [x1, #16]
    mrs     x0, S3_0_C0_C7_2                    // ID_AA64MMFR2_EL1
    str     x0, [x1, #24]
    mrs     x0, id_aa64pfr0_el1
    str     x0, [x1, #32]

    // --- check the job header ---
    ldr     x19, =__s2_job_start
    ldr     w0, [x19, #JH_MAGIC]
    ldr     w1, =JOB_MAGIC
    mov     x2, #FR_BAD_MAGIC
    cmp     w0, w1
    b.ne    job_fatal
    ldr     w0, [x19, #JH_VERSION]
    mov     x2, #FR_BAD_VERSION
    cmp     w0, #ABI_VERSION
    b.ne    job_fatal

    // --- copy every table region to its PA ---
    // Regions are 8-byte aligned and a multiple of 8 bytes long (host
    // checks it): with the MMU off memory is Device, which faults on
    // unaligned accesses.
    ldr     w10, [x19, #JH_N_REGIONS]
    ldr     x11, [x19, #JH_REGION_OFF]
    add     x11, x19, x11
    ldr     x12, =__s2_arena_start
    ldr     x13, =__s2_arena_end
1:  cbz     w10, 4f
    ldp     x0, x1, [x11]                       // pa, len
    ldr     x2, [x11, #16]                      // offset in the job
    add     x2, x19, x2
    // Refuse a region outside the arena (it could overwrite the stub) or
    // not made of whole aligned words (the copy below would overrun).
    orr     x3, x0, x1
    tst     x3, #7
    b.ne    region_fatal
    add     x3, x0, x1
    cmp     x0, x12
    b.lo    region_fatal
    cmp     x3, x13
    b.hi    region_fatal
    cmp     x3, x0
    b.lo    region_fatal
2:  cmp     x1, #16
    b.lo    3f
    ldp     x3, x4, [x2], #16
    stp     x3, x4, [x0], #16
    sub     x1, x1, #16
    b       2b
3:  cbz     x1, 5f
    ldr     x3, [x2]
    str     x3, [x0]
5:  add     x11, x11, #RGN_SIZE
    sub     w10, w10, #1
    b       1b
4:  dsb     sy                                  // tables written before any walk

    // --- the batch ---
    ldr     w23, [x19, #JH_N_IMAGES]
    ldr     w27, [x19, #JH_HANG_AFTER]
    ldr     x21, [x19, #JH_IMAGE_OFF]
    add     x21, x19, x21
    adr     x28, at_table
    mov     x22, #0
image_loop:
    cmp     x22, x23
    b.hs    batch_done
    ldp     x0, x1, [x21]                       // vtcr, vttbr
    ldp     w2, w26, [x21, #16]                 // first_probe, n_probes
    msr     vtcr_el2, x0
    msr     vttbr_el2, x1
    // VTCR/VTTBR writes have no invalidation side effect (and the tables
    // are new): drop every stage 1+2 entry of the current VMID.
    isb
    tlbi    vmalls12e1
    dsb     ish
    isb
    ldr     x24, [x19, #JH_PROBE_OFF]
    add     x24, x19, x24
    add     x24, x24, x2, lsl #PRB_SIZE_SHIFT
    add     x25, x20, #RH_SIZE
    add     x25, x25, x2, lsl #REC_SIZE_SHIFT
probe_loop:
    cbz     w26, image_done
    ldr     x0, [x24]                           // ipa
    ldr     w1, [x24, #8]                       // kind (AtKind.code)
    add     x24, x24, #(1 << PRB_SIZE_SHIFT)
    cmp     w1, #3
    b.hi    kind_fatal
    add     x9, x28, x1, lsl #3
    br      x9
    // Two instructions per kind; the exception path recognises a probe
    // fault by ELR_EL2 pointing at one of these AT instructions.
at_table:
    at      s12e1r, x0
    b       at_done
    at      s12e1w, x0
    b       at_done
    at      s12e0r, x0
    b       at_done
    at      s12e0w, x0
    b       at_done
at_done:
    isb                                         // PAR_EL1 is written by the AT
    mrs     x1, par_el1
    stp     xzr, xzr, [x25, #16]                // esr, far
    stp     xzr, xzr, [x25, #32]                // hpfar, vector
    stp     xzr, xzr, [x25, #48]                // elr, reserved
    mov     x0, #OBS_PAR
    // kind and PAR in one pair store, last: a record is complete once
    // its kind is non-zero.
    stp     x0, x1, [x25]
probe_resume:
    add     x25, x25, #(1 << REC_SIZE_SHIFT)
    sub     w26, w26, #1
    b       probe_loop
image_done:
    add     x22, x22, #1
    ldr     w0, [x21, #20]                      // n_probes
    ldr     x1, [x20, #RH_PROBES_DONE]
    add     x1, x1, x0
    str     x1, [x20, #RH_PROBES_DONE]
    str     x22, [x20, #RH_IMAGES_DONE]
    add     x21, x21, #IMG_SIZE
    // Test hook: spin after image index hang_after (0xffffffff = off).
    sub     x0, x22, #1
    cmp     x0, x27
    b.eq    hang
    b       image_loop

batch_done:
    mov     x0, #ST_COMPLETED
    str     x0, [x20, #RH_STATUS]
    dsb     sy
    adr     x0, msg_exit_ok
    bl      puts
    mov     x0, #0
    b       semihost_exit

hang:
    adr     x0, msg_hang
    bl      puts
1:  wfi
    b       1b

// --- job errors: the host validates the job, so these mean an ABI mismatch ---
kind_fatal:
    mov     x2, #FR_BAD_KIND
    mov     x3, x1
    b       job_fatal_detail
region_fatal:
    mov     x2, #FR_BAD_REGION
    mov     x3, x0
    b       job_fatal_detail
job_fatal:
    mov     x3, #0
job_fatal_detail:
    str     x2, [x20, #RH_FATAL_REASON]
    str     x3, [x20, #RH_FATAL_DETAIL]
    mov     x0, #ST_FATAL
    str     x0, [x20, #RH_STATUS]
    mov     x19, x2
    mov     x21, x3
    adr     x0, msg_job_fatal
    bl      puts
    mov     x0, x19
    bl      puthex
    adr     x0, msg_detail
    bl      puts
    mov     x0, x21
    bl      puthex
    adr     x0, msg_nl_exit_fail
    bl      puts
    mov     x0, #2
    b       semihost_exit

// --- exceptions -------------------------------------------------------------
// x9 = vector offset.  A synchronous exception whose ELR_EL2 is one of the
// four AT instructions is that probe's observation (e.g. a synchronous
// external abort on the stage-2 walk, EC 0x25); record it and go on with
// the next probe.  Anything else is fatal.
exc_common:
    mrs     x10, elr_el2
    adr     x11, at_table
    sub     x12, x10, x11
    cmp     x12, #24
    b.hi    exc_fatal                           // also catches ELR below the table
    tst     x12, #7
    b.ne    exc_fatal
    tst     x9, #0x180                          // only the Sync vectors (offset 0 mod 0x200)
    b.ne    exc_fatal
    mrs     x11, esr_el2
    mrs     x12, far_el2
    mrs     x13, hpfar_el2
    stp     xzr, x11, [x25, #8]                 // par (none), esr
    stp     x12, x13, [x25, #24]                // far, hpfar
    stp     x9, x10, [x25, #40]                 // vector, elr
    str     xzr, [x25, #56]
    mov     x11, #OBS_EXCEPTION
    str     x11, [x25]                          // kind last
    adr     x10, probe_resume
    msr     elr_el2, x10
    eret

exc_fatal:
    // A fault inside this path (e.g. a bad UART access, or semihosting
    // disabled so that the exit HLT is UNDEF) must not loop: the second
    // entry skips the report and only tries to exit, the third parks.
    adr     x10, fatal_depth
    ldr     x11, [x10]
    add     x12, x11, #1
    str     x12, [x10]
    cmp     x11, #1
    b.eq    exc_fatal_again
    b.hi    park
    mrs     x19, esr_el2
    mrs     x21, elr_el2
    mrs     x22, far_el2
    mov     x23, x9
    ldr     x20, =__s2_results_start
    mov     x0, #FR_EXCEPTION
    str     x0, [x20, #RH_FATAL_REASON]
    stp     x23, x19, [x20, #RH_FATAL_VECTOR]   // vector, esr
    stp     x21, x22, [x20, #RH_FATAL_ELR]      // elr, far
    mov     x0, #ST_FATAL
    str     x0, [x20, #RH_STATUS]
    adr     x0, msg_fatal_vector
    bl      puts
    mov     x0, x23
    bl      puthex
    adr     x0, msg_esr
    bl      puts
    mov     x0, x19
    bl      puthex
    adr     x0, msg_elr
    bl      puts
    mov     x0, x21
    bl      puthex
    adr     x0, msg_far
    bl      puts
    mov     x0, x22
    bl      puthex
    adr     x0, msg_nl_exit_fail
    bl      puts
    mov     x0, #1
    b       semihost_exit
exc_fatal_again:
    mov     x0, #3
    b       semihost_exit

// x0 = exit code.  SYS_EXIT with {ADP_Stopped_ApplicationExit, code}: QEMU
// exits with that code.  If semihosting is off the HLT is UNDEF and lands
// in exc_fatal, which parks the CPU after two tries: the host's timeout
// ends QEMU.
semihost_exit:
    adr     x1, exit_block
    ldr     x2, =ADP_STOPPED_APPLICATION_EXIT
    stp     x2, x0, [x1]
    mov     x0, #SYS_EXIT
    hlt     #0xf000
park:
    wfi
    b       park

// --- PL011 output (leaf functions, clobber x0-x3) ---
// puts: x0 = NUL-terminated string
puts:
    ldr     x1, =UART_BASE
1:  ldrb    w2, [x0], #1
    cbz     w2, 2f
    strb    w2, [x1]
    b       1b
2:  ret

// puthex: x0 = value, printed as 0x followed by 16 hex digits
puthex:
    ldr     x1, =UART_BASE
    mov     w2, #'0'
    strb    w2, [x1]
    mov     w2, #'x'
    strb    w2, [x1]
    mov     x3, #60
1:  lsr     x2, x0, x3
    and     x2, x2, #0xf
    cmp     x2, #10
    b.lo    2f
    add     x2, x2, #('a' - 10 - '0')
2:  add     x2, x2, #'0'
    strb    w2, [x1]
    subs    x3, x3, #4
    b.pl    1b
    ret

    .ltorg

// --- EL2 vector table: 16 entries of 0x80 bytes, 2 KiB aligned (VBAR_EL2[10:0] RES0)
    .macro ventry off
    .balign 0x80
    mov     x9, #\off
    b       exc_common
    .endm

    .balign 0x800
el2_vectors:
    ventry 0x000    // current EL, SP_EL0: sync
    ventry 0x080    //                     IRQ
    ventry 0x100    //                     FIQ
    ventry 0x180    //                     SError
    ventry 0x200    // current EL, SP_ELx: sync (probe faults arrive here)
    ventry 0x280    //                     IRQ
    ventry 0x300    //                     FIQ
    ventry 0x380    //                     SError
    ventry 0x400    // lower EL, AArch64:  sync
    ventry 0x480    //                     IRQ
    ventry 0x500    //                     FIQ
    ventry 0x580    //                     SError
    ventry 0x600    // lower EL, AArch32:  sync
    ventry 0x680    //                     IRQ
    ventry 0x700    //                     FIQ
    ventry 0x780    //                     SError

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
    .balign 16
exit_block:         .quad 0, 0
fatal_depth:        .quad 0

    .bss
    .balign 16
stack:              .space 4096
stack_top:
