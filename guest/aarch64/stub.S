// s2diff AArch64 guest stub: runs a batch of stage-2 probes at EL2.
//
// Started by QEMU (-M virt,virtualization=on,secure=off -kernel stub.elf) at
// EL2, EL2h, DAIF masked, MMU off.  It executes the job found at
// __s2_job_start and writes raw register values to __s2_results_start; the
// host decides everything.  Record layouts: docs/job-abi.md (ABI version 3);
// the offsets below must match harness/job.py.
//
// Probes are AT instructions at EL2, accesses made by an EL1 routine (the
// section .text.el1 below: the stub ERETs to it at the IPA where the image
// maps the EL1 window, it returns with HVC, or faults), and maintenance
// (a descriptor write with TLB invalidation, a VTTBR switch).
//
// Register use in the batch loop (callee state survives the exception path,
// which only clobbers x0-x15, and the EL1 routines, which use x0-x18 and
// x30 only):
//   x19 job base          x20 results base      x21 current image record
//   x22 image index       x23 number of images  x24 current probe record
//   x25 current result    x26 probes left       x27 hang_after
//   x28 AT dispatch table

    .equ ABI_VERSION,       3
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
    // image record: vtcr u64, vttbr u64, first_probe u32, n_probes u32, el1_ipa u64,
    // s2pir u64, then the EL1&0 stage-1 and HCR_EL2 values the image runs under
    .equ IMG_SIZE,          88
    .equ IMG_EL1_IPA,       24
    .equ IMG_S2PIR,         32
    .equ IMG_HCR,           40
    .equ IMG_SCTLR,         48
    .equ IMG_TCR,           56
    .equ IMG_TTBR0,         64              // TTBR0_EL1, TTBR1_EL1: one pair load
    .equ IMG_MAIR,          80
    // probe record: ipa u64, kind u32, flags u32, data u64, data2 u64
    .equ PRB_SIZE_SHIFT,    5
    .equ PRB_FLAGS,         12
    .equ PRB_DATA,          16

    // probe kinds (docs/job-abi.md): 0-7 AT, 16.. EL1 accesses, 128.. maintenance
    .equ KIND_AT_LAST,      7
    .equ KIND_A64_FIRST,    16
    .equ KIND_DESC_WRITE,   128
    .equ KIND_SET_VTTBR,    129
    // probe flags
    .equ FLAG_HCR_DC,       0               // access: run with HCR_EL2.DC = 1
    .equ FLAG_TLBI_IPAS2,   0               // descriptor write: TLBI IPAS2E1IS, data2 >> 12
    .equ FLAG_TLBI_VMALLE1, 1               //   TLBI VMALLE1IS
    .equ FLAG_TLBI_VMALLS12,2               //   TLBI VMALLS12E1IS
    .equ FLAG_TLBI_SWITCH,  0               // VTTBR switch: TLBI VMALLS12E1 (new VMID) after
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
    .equ OBS_EXCEPTION,     2               // taken to EL2: ESR_EL2 FAR_EL2 HPFAR_EL2 ELR_EL2
    .equ OBS_ACCESS_DONE,   3               // the EL1 routine (or the fetch target) HVCed
    .equ OBS_EL1_EXCEPTION, 4               // taken to EL1, handed over: ESR_EL1 FAR_EL1 ELR_EL1
    .equ OBS_MAINT_DONE,    5               // descriptor write / VTTBR switch done

    // HCR_EL2 at set-up (each image then writes its own, see image_loop)
    .equ HCR_RUN,           (1 << 31) | (1 << 0)
    .equ HCR_DC,            (1 << 12)
    // SPSR_EL2 for the ERET into an EL1 routine: M[3:0] = 0b0101 EL1h,
    // DAIF = 0b1111 (no interrupt ever reaches the routine), nRW = 0 (AArch64).
    .equ SPSR_EL1H_MASKED,  0x3c5

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

    // HCR_EL2 = RW | VM (until the first image writes its own value, which
    // the host gives as RW | VM for a stage-2-only image, plus PTW, DC,
    // CD, ID, FWB for a stage-1-on one):
    //   bit 31 RW=1   EL1 is AArch64 (the AT S12E1* walk uses AArch64 EL1 state)
    //   bit  0 VM=1   stage 2 translation on for the EL1&0 regime
    //   all other bits 0: no TGE/E2H (EL2 stays a plain hypervisor),
    //   DC=0 (stage 1 off means Device, not Normal, for EL1&0), no traps,
    //   FWB=0 (stage-2 MemAttr has its classic meaning), PTW=0, no AMO/IMO/FMO.
    //   (an access probe with flags.FLAG_HCR_DC runs with DC = 1 as well:
    //   stage 1 off then means Normal write-back, and DC ZVA reaches stage 2)
    ldr     x0, =HCR_RUN
    msr     hcr_el2, x0

    // CPTR_EL2 = 0x33ff: only its RES1 bits (13:12, 9:0; TZ and TSM, bits
    // 8 and 12, trap SVE and SME, which no routine uses).
    //   TFP (10) = 0  SIMD&FP at EL1 not trapped: the LDR/STR Q routines
    //   TTA (20) = 0, TCPAC (31) = 0
    ldr     x0, =0x33ff
    msr     cptr_el2, x0

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
    // CPACR_EL1.FPEN [21:20] = 0b11: SIMD&FP at EL1 not trapped to EL1.
    // Everything else 0 (ZEN/SMEN trap SVE/SME, unused; TTA 0).
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    // SP_EL1 = 0: the EL1 routines and vectors use no stack.
    msr     sp_el1, xzr
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
    mrs     x0, dczid_el0                       // DC ZVA block size (BS) for the reference
    str     x0, [x1, #40]
    // ID_AA64MMFR3_EL1 (S2PIE), ID_AA64PFR1_EL1, ID_AA64ISAR1_EL1 (XS): by
    // encoding where the assembler may not know the name; all three are in
    // the reserved-ID space, RAZ on cores without them.
    mrs     x0, S3_0_C0_C7_3                    // ID_AA64MMFR3_EL1
    str     x0, [x1, #48]
    // S2PIR_EL2 exists only with FEAT_S2PIE (ID_AA64MMFR3_EL1.S2PIE [15:12]
    // != 0); elsewhere its encoding is UNDEFINED.  Remember which.
    ubfx    x0, x0, #12, #4
    adr     x2, have_s2pie
    str     x0, [x2]
    mrs     x0, S3_0_C0_C4_1                    // ID_AA64PFR1_EL1
    str     x0, [x1, #56]
    mrs     x0, S3_0_C0_C6_1                    // ID_AA64ISAR1_EL1
    str     x0, [x1, #64]

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
    // The EL1&0 regime of the image: HCR_EL2, then stage 1 (MAIR_EL1,
    // TCR_EL1, TTBR0/1_EL1; SCTLR_EL1 last, after an ISB, so that M = 1
    // never meets the previous image's tables), then stage 2.  A
    // stage-2-only image has HCR_EL2 = RW | VM and SCTLR_EL1 = 0x30d00800
    // (M = 0); the rest is unused then.
    ldr     x0, [x21, #IMG_HCR]
    msr     hcr_el2, x0
    ldr     x0, [x21, #IMG_MAIR]
    msr     mair_el1, x0
    ldr     x0, [x21, #IMG_TCR]
    msr     tcr_el1, x0
    ldp     x0, x1, [x21, #IMG_TTBR0]
    msr     ttbr0_el1, x0
    msr     ttbr1_el1, x1
    isb
    ldr     x0, [x21, #IMG_SCTLR]
    msr     sctlr_el1, x0
    ldp     x0, x1, [x21]                       // vtcr (64 bits: S2PIE is bit 36), vttbr
    ldp     w2, w26, [x21, #16]                 // first_probe, n_probes
    msr     vtcr_el2, x0
    msr     vttbr_el2, x1
    adr     x3, have_s2pie
    ldr     x3, [x3]
    cbz     x3, 1f
    ldr     x0, [x21, #IMG_S2PIR]
    msr     S3_4_C10_C2_5, x0                   // S2PIR_EL2 (FEAT_S2PIE)
1:
    // VBAR_EL1: the EL1 vectors are at the start of the EL1 window, which
    // this image maps at el1_ipa (stage 1 off: VA == IPA).
    ldr     x0, [x21, #IMG_EL1_IPA]
    msr     vbar_el1, x0
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
    ldr     w1, [x24, #8]                       // kind
    cmp     w1, #KIND_AT_LAST
    b.hi    not_at
    add     x24, x24, #(1 << PRB_SIZE_SHIFT)
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
    at      s1e1r, x0                           // 4-7: stage 1 of EL1&0 alone (PAR holds the IPA)
    b       at_done
    at      s1e1w, x0
    b       at_done
    at      s1e0r, x0
    b       at_done
    at      s1e0w, x0
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

// --- access probes: ERET to the EL1 routine of the kind ---
// x0 = ipa (the routine's address register), x1/x2 = data/data2.
not_at:
    sub     w2, w1, #KIND_A64_FIRST
    cmp     w2, #(EL1_KINDS - 1)
    b.hi    maintenance
    adr     x3, el1_entry_offsets
    ldrh    w3, [x3, w2, uxtw #1]               // the routine's offset in the EL1 window
    ldr     x4, [x21, #IMG_EL1_IPA]
    add     x3, x3, x4
    msr     elr_el2, x3
    mov     x3, #SPSR_EL1H_MASKED
    msr     spsr_el2, x3
    ldr     w3, [x24, #PRB_FLAGS]
    ldp     x1, x2, [x24, #PRB_DATA]
    add     x24, x24, #(1 << PRB_SIZE_SHIFT)
    tbz     w3, #FLAG_HCR_DC, 1f
    // HCR_EL2.DC may be cached in TLB entries: invalidate the EL1&0
    // entries of this VMID after changing it (and again after the probe).
    ldr     x3, [x21, #IMG_HCR]
    orr     x3, x3, #HCR_DC
    msr     hcr_el2, x3
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
1:  mov     x5, xzr                             // what the routine hands back
    mov     x6, xzr
    eret

// Back from EL1 (the lower-EL synchronous vector); x10 = ESR_EL2.
lower_sync:
    ubfx    x11, x10, #26, #6                   // EC
    cmp     x11, #0x16                          // HVC from AArch64
    b.ne    lower_exception
    and     x12, x10, #0xffff                   // imm16
    cmp     x12, #0x100
    b.hs    el1_exception
    // HVC #0 from the routine, #2 from a fetch target: the access completed.
    mrs     x11, elr_el2
    stp     x5, x10, [x25, #8]                  // data0, esr (the HVC's)
    stp     xzr, xzr, [x25, #24]                // far, hpfar
    stp     x9, x11, [x25, #40]                 // vector, elr
    str     x6, [x25, #56]                      // data1
    mov     x11, #OBS_ACCESS_DONE
    b       access_recorded
lower_exception:
    // A stage-2 abort (EC 0x24/0x20) -- or anything else EL1 raised to EL2:
    // recorded raw, the host judges.
    mrs     x11, far_el2
    mrs     x12, hpfar_el2
    mrs     x13, elr_el2
    stp     xzr, x10, [x25, #8]                 // data0 (none), esr
    stp     x11, x12, [x25, #24]                // far, hpfar
    stp     x9, x13, [x25, #40]                 // vector, elr
    str     xzr, [x25, #56]
    mov     x11, #OBS_EXCEPTION
    b       access_recorded
el1_exception:
    // HVC #0x100+i from EL1 vector i: an exception taken to EL1.
    sub     x12, x12, #0x100
    lsl     x12, x12, #7                        // EL1 vector offset
    mrs     x10, esr_el1
    mrs     x11, far_el1
    mrs     x13, elr_el1
    stp     xzr, x10, [x25, #8]                 // data0 (none), ESR_EL1
    stp     x11, xzr, [x25, #24]                // FAR_EL1, hpfar (none)
    stp     x12, x13, [x25, #40]                // EL1 vector offset, ELR_EL1
    str     xzr, [x25, #56]
    mov     x11, #OBS_EL1_EXCEPTION
access_recorded:
    str     x11, [x25]                          // kind last
    ldr     w3, [x24, #(PRB_FLAGS - (1 << PRB_SIZE_SHIFT))]
    tbz     w3, #FLAG_HCR_DC, probe_resume
    ldr     x3, [x21, #IMG_HCR]
    msr     hcr_el2, x3
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    b       probe_resume

// --- maintenance probes (w1 = kind; x6 = data, x7 = data2) ---
maintenance:
    ldr     w3, [x24, #PRB_FLAGS]
    ldp     x6, x7, [x24, #PRB_DATA]
    add     x24, x24, #(1 << PRB_SIZE_SHIFT)
    cmp     w1, #KIND_DESC_WRITE
    b.eq    desc_write
    cmp     w1, #KIND_SET_VTTBR
    b.ne    kind_fatal
    // VTTBR switch to data (another image of this job, its own VMID).
    mrs     x4, vttbr_el2                       // recorded: the VTTBR left
    msr     vttbr_el2, x6
    isb
    tbz     w3, #FLAG_TLBI_SWITCH, 1f
    tlbi    vmalls12e1
    dsb     ish
    isb
1:  b       maint_recorded
desc_write:
    // Descriptor at PA x0 := data, then the maintenance the flags ask for,
    // in the order of the architected sequence for a stage-2 entry change.
    // The PA must be an aligned word of the arena (host-checked).
    ldr     x4, =__s2_arena_start
    ldr     x5, =__s2_arena_end
    tst     x0, #7
    b.ne    region_fatal
    cmp     x0, x4
    b.lo    region_fatal
    cmp     x0, x5
    b.hs    region_fatal
    ldr     x4, [x0]                            // recorded: the old descriptor
    str     x6, [x0]
    dsb     ishst
    tbz     w3, #FLAG_TLBI_IPAS2, 1f
    lsr     x5, x7, #12
    tlbi    ipas2e1is, x5
    dsb     ish
1:  tbz     w3, #FLAG_TLBI_VMALLE1, 2f
    tlbi    vmalle1is
    dsb     ish
2:  tbz     w3, #FLAG_TLBI_VMALLS12, 3f
    tlbi    vmalls12e1is
    dsb     ish
3:  isb
maint_recorded:
    stp     xzr, xzr, [x25, #16]
    stp     xzr, xzr, [x25, #32]
    stp     xzr, xzr, [x25, #48]
    mov     x5, #OBS_MAINT_DONE
    stp     x5, x4, [x25]                       // kind, old value: kind last (pair store)
    b       probe_resume
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
// eight AT instructions is that probe's observation (e.g. a synchronous
// external abort on the stage-2 walk, EC 0x25); record it and go on with
// the next probe.  Anything else is fatal.
exc_common:
    cmp     x9, #0x400                          // lower EL, AArch64, synchronous:
    b.ne    1f                                  //   only ever an EL1 routine's
    mrs     x10, esr_el2
    b       lower_sync
1:  mrs     x10, elr_el2
    adr     x11, at_table
    sub     x12, x10, x11
    cmp     x12, #56
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

// --- the EL1 window --------------------------------------------------------
// Everything EL1 executes, in one section that the linker aligns to 64 KiB
// (__s2_el1_start/__s2_el1_end): every image that runs access probes maps
// these pages at its el1_ipa, so the code must be position independent.
// Entered by ERET with x0 = the probe's IPA, x1/x2 = its data words, x5 =
// x6 = 0; a routine makes its access and returns with HVC #0, handing back
// x5 (and x6).  The register each access names is spread over x1-x30 so
// that ESR_EL2.ISS.SRT is tested on many values; x19-x28 are never touched.
// For each kind the ELF exports __s2_kind_<NAME> = its probe kind code and
// __s2_el1_insn_<NAME> = its access instruction (__s2_el1_insn2_ for the
// second access of the exclusive pair), read by the host (harness/access.py)
// and checked against reference/access.py.

    .macro el1_routine name, code
    .globl __s2_kind_\name
    .set __s2_kind_\name, \code
    .balign 8
el1_\name:
    .endm
    .macro el1_insn name
    .globl __s2_el1_insn_\name
__s2_el1_insn_\name:
    .endm

    .section .text.el1, "ax"
    // VBAR_EL1 (2 KiB aligned, at the window's start): every entry hands the
    // exception to EL2 with HVC #0x100 + its index; ESR_EL1, FAR_EL1 and
    // ELR_EL1 still hold it there.  (Nothing at EL1 can clobber them first.)
el1_vectors:
    .irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    hvc     #(0x100 + \i)
1:  b       1b
    .endr

    el1_routine A64_LDRB_W, 16
    el1_insn A64_LDRB_W
    ldrb    w3, [x0]
    mov     x5, x3
    hvc     #0
    el1_routine A64_LDRSB_W, 17
    el1_insn A64_LDRSB_W
    ldrsb   w4, [x0]
    mov     x5, x4
    hvc     #0
    el1_routine A64_LDRSB_X, 18
    el1_insn A64_LDRSB_X
    ldrsb   x6, [x0]
    mov     x5, x6
    mov     x6, xzr
    hvc     #0
    el1_routine A64_LDRH_W, 19
    el1_insn A64_LDRH_W
    ldrh    w7, [x0]
    mov     x5, x7
    hvc     #0
    el1_routine A64_LDRSH_W, 20
    el1_insn A64_LDRSH_W
    ldrsh   w8, [x0]
    mov     x5, x8
    hvc     #0
    el1_routine A64_LDRSH_X, 21
    el1_insn A64_LDRSH_X
    ldrsh   x10, [x0]
    mov     x5, x10
    hvc     #0
    el1_routine A64_LDR_W, 22
    el1_insn A64_LDR_W
    ldr     w11, [x0]
    mov     x5, x11
    hvc     #0
    el1_routine A64_LDRSW_X, 23
    el1_insn A64_LDRSW_X
    ldrsw   x12, [x0]
    mov     x5, x12
    hvc     #0
    el1_routine A64_LDR_X, 24
    el1_insn A64_LDR_X
    ldr     x13, [x0]
    mov     x5, x13
    hvc     #0
    el1_routine A64_STRB_W, 25
    mov     x14, x1
    el1_insn A64_STRB_W
    strb    w14, [x0]
    hvc     #0
    el1_routine A64_STRH_W, 26
    mov     x15, x1
    el1_insn A64_STRH_W
    strh    w15, [x0]
    hvc     #0
    el1_routine A64_STR_W, 27
    mov     x16, x1
    el1_insn A64_STR_W
    str     w16, [x0]
    hvc     #0
    el1_routine A64_STR_X, 28
    mov     x17, x1
    el1_insn A64_STR_X
    str     x17, [x0]
    hvc     #0
    el1_routine A64_STR_XZR, 29
    el1_insn A64_STR_XZR
    str     xzr, [x0]
    hvc     #0
    el1_routine A64_LDR_X_POST, 30
    mov     x7, x0
    el1_insn A64_LDR_X_POST
    ldr     x18, [x7], #8                       // post-index: writeback, no ISS
    mov     x5, x18
    hvc     #0
    el1_routine A64_STR_X_PRE, 31
    add     x7, x0, #16
    el1_insn A64_STR_X_PRE
    str     x1, [x7, #-16]!                     // pre-index to x0: writeback, no ISS
    hvc     #0
    el1_routine A64_LDP_X, 32
    el1_insn A64_LDP_X
    ldp     x3, x4, [x0]
    mov     x5, x3
    mov     x6, x4
    hvc     #0
    el1_routine A64_STP_X, 33
    el1_insn A64_STP_X
    stp     x1, x2, [x0]
    hvc     #0
    el1_routine A64_LDXR_STXR, 34
    el1_insn A64_LDXR_STXR
    ldxr    x3, [x0]
    .globl __s2_el1_insn2_A64_LDXR_STXR
__s2_el1_insn2_A64_LDXR_STXR:
    stxr    w4, x1, [x0]
    mov     x5, x3
    mov     x6, x4                              // status: 0 stored, 1 not
    hvc     #0
    el1_routine A64_LDAR_X, 35
    el1_insn A64_LDAR_X
    ldar    x30, [x0]
    mov     x5, x30
    hvc     #0
    el1_routine A64_LDARB_W, 36
    el1_insn A64_LDARB_W
    ldarb   w5, [x0]
    hvc     #0
    el1_routine A64_STLR_W, 37
    mov     x3, x1
    el1_insn A64_STLR_W
    stlr    w3, [x0]
    hvc     #0
    el1_routine A64_LDR_Q, 38
    el1_insn A64_LDR_Q
    ldr     q1, [x0]
    fmov    x5, d1
    mov     x6, v1.d[1]
    hvc     #0
    el1_routine A64_STR_Q, 39
    fmov    d1, x1
    mov     v1.d[1], x2
    el1_insn A64_STR_Q
    str     q1, [x0]
    hvc     #0
    el1_routine A64_DC_ZVA, 40
    el1_insn A64_DC_ZVA
    dc      zva, x0
    hvc     #0
    el1_routine A64_IFETCH, 41
    el1_insn A64_IFETCH
    br      x0                                  // the target holds HVC #2 (or faults)
    .balign 0x1000
    .equ EL1_KINDS, 26

    .section .rodata
    // Offset of each kind's routine in the EL1 window, in kind order from
    // KIND_A64_FIRST (the window starts at el1_vectors).
    .balign 2
el1_entry_offsets:
    .irp n, A64_LDRB_W, A64_LDRSB_W, A64_LDRSB_X, A64_LDRH_W, A64_LDRSH_W, A64_LDRSH_X, A64_LDR_W, A64_LDRSW_X, A64_LDR_X, A64_STRB_W, A64_STRH_W, A64_STR_W, A64_STR_X, A64_STR_XZR, A64_LDR_X_POST, A64_STR_X_PRE, A64_LDP_X, A64_STP_X, A64_LDXR_STXR, A64_LDAR_X, A64_LDARB_W, A64_STLR_W, A64_LDR_Q, A64_STR_Q, A64_DC_ZVA, A64_IFETCH
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
    .balign 16
exit_block:         .quad 0, 0
fatal_depth:        .quad 0
have_s2pie:         .quad 0                 // ID_AA64MMFR3_EL1.S2PIE, read at set-up

    .bss
    .balign 16
stack:              .space 4096
stack_top:
