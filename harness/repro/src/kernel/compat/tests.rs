//! Every fix over synthetic trees written here: the construct in its old
//! form, in the upstream-repaired form, and in a vendor's form. None of
//! this is kernel code; each file holds just the lines a rule reads.

use super::toolchain::{COMPRESSED, GCC_H, HEAD_64, REALMODE_MAKEFILES};
use super::*;

const GCC12_PIE: Toolchain = Toolchain { gcc_major: 12, default_pie: true };

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, t) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    d
}

fn finding(fix: Fix, d: &tempfile::TempDir) -> Finding {
    fix.assess(&Tree { root: d.path() }, &GCC12_PIE).unwrap()
}

fn edited(f: &Finding, path: &str) -> String {
    let Finding::Needed { repair, .. } = f else { panic!("not needed: {f:?}") };
    repair
        .edits
        .iter()
        .find_map(|e| match e {
            Edit::Write { path: p, text } if p == Path::new(path) => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no edit of {path}: {repair:?}"))
}

fn is_not_needed(f: &Finding) -> bool {
    matches!(f, Finding::NotNeeded { .. })
}

// The stub loop as 3.10-era trees wrote it (a vendor's labels), as the
// stable trees repaired it, and in a form the rule cannot repair.
const IDT_OLD: &str = "\t__INIT\nstubs:\n\ti = 0\n\t.rept NUM_EXCEPTION_VECTORS\n\tpushq $0\n\tpushq $i\n\tjmp early_idt_handler\n\ti = i + 1\n\t.endr\nENTRY(early_idt_handler)\n";
const IDT_UPSTREAM: &str = "\t.rept NUM_EXCEPTION_VECTORS\n\tpushq $i\n\tjmp early_idt_handler_common\n\ti = i + 1\n\t.fill early_idt_handler_array + i*EARLY_IDT_HANDLER_SIZE - ., 1, 0xcc\n\t.endr\n";
const IDT_ODD: &str = "\t.rept NUM_EXCEPTION_VECTORS\n\tpushq $i\n\tcall early_idt_handler\n\t.endr\n";

#[test]
fn early_idt_jump_widens_the_old_stub_jump_and_leaves_padded_stubs_alone() {
    let d = tree(&[(HEAD_64, IDT_OLD)]);
    let f = finding(Fix::EarlyIdtJump, &d);
    let out = edited(&f, HEAD_64);
    assert!(out.contains("\t.byte 0xe9\n\t.long early_idt_handler - (. + 4)\n"), "{out}");
    assert!(!out.contains("jmp early_idt_handler\n"));
    assert!(out.ends_with("\t.endr\nENTRY(early_idt_handler)\n"));
    let Finding::Needed { found, .. } = &f else { unreachable!() };
    assert!(found.contains(":7:"), "{found}");

    assert!(is_not_needed(&finding(Fix::EarlyIdtJump, &tree(&[(HEAD_64, IDT_UPSTREAM)]))));
    assert!(is_not_needed(&finding(Fix::EarlyIdtJump, &tree(&[(HEAD_64, "\t.rept 3\n\tnop\n\t.endr\n")]))));
    assert!(is_not_needed(&finding(Fix::EarlyIdtJump, &tree(&[]))));
    let e = Fix::EarlyIdtJump.assess(&Tree { root: tree(&[(HEAD_64, IDT_ODD)]).path() }, &GCC12_PIE).unwrap_err();
    assert_eq!(crate::error::kind_of(&e), Some(Kind::BuildFailed));
    let e = format!("{e:#}");
    assert!(e.contains("early-idt-jump") && e.contains("head_64.S") && e.contains(".fill"), "{e}");
}

#[test]
fn a_widened_tree_is_not_widened_twice() {
    let d = tree(&[(HEAD_64, IDT_OLD)]);
    let out = edited(&finding(Fix::EarlyIdtJump, &d), HEAD_64);
    let again = tree(&[(HEAD_64, &out)]);
    assert!(is_not_needed(&finding(Fix::EarlyIdtJump, &again)));
}

const BOOT_OLD: &str = "# 16-bit code\nKBUILD_CFLAGS\t:= $(USERINCLUDE) -m32 -g -Os -D_SETUP \\\n\t\t   -march=i386 -mregparm=3 \\\n\t\t   -include $(srctree)/$(src)/code16gcc.h \\\n\t\t   -fno-pic\nKBUILD_AFLAGS\t:= $(KBUILD_CFLAGS) -D__ASSEMBLY__\n";
// A vendor that kept -include on the first line.
/// kernel.org 3.12.0's arch/x86/boot/Makefile (the 16-bit flags).
const BOOT_3_12: &str = "KBUILD_CFLAGS\t:= $(USERINCLUDE) -g -Os -D_SETUP -D__KERNEL__ \\\n\t\t   -march=i386 -mregparm=3 \\\n\t\t   -include $(srctree)/$(src)/code16gcc.h \\\n\t\t   -fno-strict-aliasing -fomit-frame-pointer -fno-pic \\\n\t\t   $(call cc-option, -ffreestanding)\nKBUILD_CFLAGS\t+= $(call cc-option, -m32)\nKBUILD_AFLAGS\t:= $(KBUILD_CFLAGS) -D__ASSEMBLY__\n";
/// kernel.org 3.14.40's (REALMODE_CFLAGS, -m16 chosen in arch/x86/Makefile).
const BOOT_3_14: &str = "KBUILD_CFLAGS\t:= $(USERINCLUDE) $(REALMODE_CFLAGS) -D_SETUP\nKBUILD_AFLAGS\t:= $(KBUILD_CFLAGS) -D__ASSEMBLY__\n";
const RM_VENDOR: &str = "KBUILD_CFLAGS := $(LINUXINCLUDE) -include $(srctree)/arch/x86/boot/code16gcc.h -m32 -Os \\\n\t-fno-pic\n";
const BOOT_316: &str = "KBUILD_CFLAGS\t:= $(USERINCLUDE) $(REALMODE_CFLAGS) -D_SETUP\n";

#[test]
fn realmode_m16_builds_16_bit_code_with_m16_in_either_form() {
    let d = tree(&[(REALMODE_MAKEFILES[0], BOOT_OLD), (REALMODE_MAKEFILES[1], RM_VENDOR)]);
    let f = finding(Fix::RealmodeM16, &d);
    let boot = edited(&f, REALMODE_MAKEFILES[0]);
    assert_eq!(
        boot,
        "# 16-bit code\nKBUILD_CFLAGS := $(USERINCLUDE) -m16 -g -Os -D_SETUP \\\n\t\t   -march=i386 -mregparm=3 \\\n\t\t   -fno-pic\nKBUILD_AFLAGS\t:= $(KBUILD_CFLAGS) -D__ASSEMBLY__\n"
    );
    let rm = edited(&f, REALMODE_MAKEFILES[1]);
    assert_eq!(rm, "KBUILD_CFLAGS := $(LINUXINCLUDE) -m16 -Os \\\n\t-fno-pic\n");
    assert!(is_not_needed(&finding(Fix::RealmodeM16, &tree(&[(REALMODE_MAKEFILES[0], BOOT_316)]))));
    assert!(is_not_needed(&finding(Fix::RealmodeM16, &tree(&[(REALMODE_MAKEFILES[0], &boot)]))));
    // 3.11-3.13 (kernel.org 3.12.0): the header in the `:=` statement, -m32
    // from a later `+= $(call cc-option, -m32)`.
    let boot = edited(&finding(Fix::RealmodeM16, &tree(&[(REALMODE_MAKEFILES[0], BOOT_3_12)])), REALMODE_MAKEFILES[0]);
    assert!(!boot.contains("code16gcc.h") && !boot.contains("-m32"), "{boot}");
    assert!(boot.contains("KBUILD_CFLAGS += $(call cc-option, -m16)"), "{boot}");
    assert!(boot.contains("-fno-strict-aliasing -fomit-frame-pointer -fno-pic") && boot.contains("KBUILD_AFLAGS"), "{boot}");
    assert!(is_not_needed(&finding(Fix::RealmodeM16, &tree(&[(REALMODE_MAKEFILES[0], &boot)]))));
    // 3.14 stable and 3.16: REALMODE_CFLAGS, with -m16 chosen in arch/x86/Makefile: nothing to do.
    assert!(is_not_needed(&finding(Fix::RealmodeM16, &tree(&[(REALMODE_MAKEFILES[0], BOOT_3_14)]))));
    let odd = tree(&[(REALMODE_MAKEFILES[0], "KBUILD_CFLAGS := -include code16gcc.h -m64\n")]);
    let e = format!("{:#}", Fix::RealmodeM16.assess(&Tree { root: odd.path() }, &GCC12_PIE).unwrap_err());
    assert!(e.contains("realmode-m16") && e.contains("without -m32"), "{e}");
}

const GCC_H_OLD: &str = "#define __gcc_header(x) #x\n#define _gcc_header(x) __gcc_header(linux/compiler-gcc##x.h)\n#define gcc_header(x) _gcc_header(x)\n#include gcc_header(__GNUC__)\n";

#[test]
fn gcc_version_header_stands_in_the_newest_header_the_tree_has() {
    let d = tree(&[(GCC_H, GCC_H_OLD), ("include/linux/compiler-gcc4.h", ""), ("include/linux/compiler-gcc5.h", "")]);
    let f = finding(Fix::GccVersionHeader, &d);
    assert!(edited(&f, "include/linux/compiler-gcc12.h").contains("#include <linux/compiler-gcc5.h>"));
    // A tree that merged the headers (3.10.108, 4.x).
    assert!(is_not_needed(&finding(Fix::GccVersionHeader, &tree(&[(GCC_H, "#define GCC_VERSION (__GNUC__ * 10000)\n")]))));
    // A tree that has this compiler's header already.
    let has = tree(&[(GCC_H, GCC_H_OLD), ("include/linux/compiler-gcc12.h", "")]);
    assert!(is_not_needed(&finding(Fix::GccVersionHeader, &has)));
    let none = tree(&[(GCC_H, GCC_H_OLD)]);
    let e = format!("{:#}", Fix::GccVersionHeader.assess(&Tree { root: none.path() }, &GCC12_PIE).unwrap_err());
    assert!(e.contains("gcc-version-header") && e.contains("--cc"), "{e}");
}

#[test]
fn scripts_without_run_bits_get_them() {
    use std::os::unix::fs::PermissionsExt;
    let d = tree(&[
        ("scripts/kconfig/merge_config.sh", "#!/bin/sh\ntrue\n"),
        ("scripts/Makefile.build", "# not a script\n"),
        ("arch/x86/tools/gen.sh", "#!/bin/bash\n"),
        ("fs/proc/x.sh", "#!/bin/sh\n"),
    ]);
    let Finding::Needed { repair, found } = finding(Fix::RunBits, &d) else { panic!() };
    assert_eq!(
        repair.edits,
        [
            Edit::MakeExecutable { path: "arch/x86/tools/gen.sh".into() },
            Edit::MakeExecutable { path: "scripts/kconfig/merge_config.sh".into() }
        ]
    );
    assert!(found.starts_with("2 scripts"), "{found}");
    // Upstream keeps a few scripts 0644 (run through the shell): a tree
    // with its run bits has executable scripts beside them.
    std::fs::set_permissions(d.path().join("scripts/kconfig/merge_config.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(is_not_needed(&finding(Fix::RunBits, &d)), "arch/x86/tools/gen.sh alone is upstream's choice");
}

#[test]
fn a_plain_function_in_a_header_becomes_static_inline() {
    let h = "#ifdef CONFIG_IRQ_REMAP\nint remap_thing(unsigned int irq, void *info);\n#else\nint remap_thing(unsigned int irq, void *info)\n{\n\treturn -ENOSYS;\n}\nstatic inline int other(void)\n{\n}\n\nstatic inline\nint split_across_lines(void)\n{\n}\n#endif\n";
    let d = tree(&[("arch/x86/include/asm/remap.h", h)]);
    let out = edited(&finding(Fix::HeaderFunctionInline, &d), "arch/x86/include/asm/remap.h");
    assert!(out.contains("#else\nstatic inline int remap_thing(unsigned int irq, void *info)\n{"), "{out}");
    assert!(out.contains("\nint remap_thing(unsigned int irq, void *info);\n"), "the declaration stays: {out}");
    assert!(out.contains("\nstatic inline\nint split_across_lines(void)\n"), "already static inline: {out}");
    assert!(is_not_needed(&finding(Fix::HeaderFunctionInline, &tree(&[("arch/x86/include/asm/remap.h", &out)]))));
}

#[test]
fn cfi_include_adds_dwarf2_only_where_it_is_reached_under_an_ifdef() {
    let dwarf = ("arch/x86/include/asm/dwarf2.h", "#ifndef _DWARF2_H\n#define _DWARF2_H\n#define CFI_STARTPROC .cfi_startproc\n#endif\n");
    let lock = "#include <linux/linkage.h>\n#include <asm/frame.h>\n\nENTRY(x)\n\tCFI_STARTPROC\n";
    // kernel.org 3.10: frame.h includes dwarf2.h unconditionally.
    let plain = ("arch/x86/include/asm/frame.h", "#ifdef __ASSEMBLY__\n#include <asm/asm.h>\n#include <asm/dwarf2.h>\n#endif\n");
    // A vendor's frame.h: only with frame pointers.
    let vendor = (
        "arch/x86/include/asm/frame.h",
        "#ifndef _FRAME_H\n#define _FRAME_H\n#ifdef CONFIG_FRAME_POINTER\n#include <asm/dwarf2.h>\n#endif\n#endif\n",
    );
    let ok = tree(&[dwarf, plain, ("arch/x86/lib/rwlock.S", lock)]);
    assert!(is_not_needed(&finding(Fix::CfiInclude, &ok)));
    let d = tree(&[dwarf, vendor, ("arch/x86/lib/rwlock.S", lock)]);
    let out = edited(&finding(Fix::CfiInclude, &d), "arch/x86/lib/rwlock.S");
    assert!(out.starts_with("#include <linux/linkage.h>\n#include <asm/dwarf2.h>"), "{out}");
    // Trees after 4.2 have no CFI_ macros at all.
    assert!(is_not_needed(&finding(Fix::CfiInclude, &tree(&[vendor, ("arch/x86/lib/rwlock.S", lock)]))));
}

#[test]
fn flags_follow_what_the_trees_makefiles_already_set() {
    let old = tree(&[("Makefile", "KBUILD_CFLAGS := -Wall\n"), ("arch/x86/Makefile", "LDFLAGS := -m elf_x86_64\n")]);
    let a = Assessment::of_tree(old.path(), &GCC12_PIE).unwrap();
    assert_eq!(a.cc_flags(), ["-fno-pie"]);
    assert_eq!(a.ld_flags(), ["-z", "max-page-size=0x200000"]);
    let no_pie_cc = Assessment::of_tree(old.path(), &Toolchain { gcc_major: 12, default_pie: false }).unwrap();
    assert!(no_pie_cc.cc_flags().is_empty());
    let new = tree(&[
        ("Makefile", "KBUILD_CFLAGS += $(call cc-option,-fno-PIE)\n"),
        ("arch/x86/Makefile", "LDFLAGS += $(call ld-option, -z max-page-size=0x200000)\n"),
    ]);
    let a = Assessment::of_tree(new.path(), &GCC12_PIE).unwrap();
    assert!(a.cc_flags().is_empty() && a.ld_flags().is_empty());
    assert_eq!(a.needed().count(), 0, "{:?}", a.lines());
    assert_eq!(a.lines().len(), Fix::ALL.len());
}

// A vendor's forward declaration of a table defined further down, in its
// vendor form (__initdata), its upstream form (__initconst), a const
// pointer (writable itself: no conflict), and another architecture's copy.
const DECL_VENDOR: &str = "static struct item items[] __initdata = {};\n\
static const struct table table_a[] __initdata;\n\
int __init f(void) { return check(table_a); }\n\
static const struct table table_a[] __initconst = {\n\t{ 1 },\n};\n";
const DECL_UPSTREAM: &str = "static const struct table table_a[] __initconst;\n\
static const struct table table_a[] __initconst = {\n};\n";
const DECL_POINTER: &str = "static const char *label __initdata;\nstatic const char names[] __initconst = \"x\";\n";

#[test]
fn a_const_table_declared_initdata_takes_its_definitions_section() {
    let d = tree(&[("drivers/acpi/table.c", DECL_VENDOR), ("arch/arm/mach/table.c", DECL_VENDOR)]);
    let f = finding(Fix::InitSectionDeclaration, &d);
    let fixed = edited(&f, "drivers/acpi/table.c");
    assert!(fixed.contains("table_a[] __initconst; /* repro fix init-section-declaration */\n"), "{fixed}");
    assert!(fixed.contains("items[] __initdata = {};"), "the writable table keeps its section: {fixed}");
    let Finding::Needed { found, repair } = &f else { unreachable!() };
    assert_eq!(repair.edits.len(), 1, "another architecture's file is not built: {repair:?}");
    assert!(found.contains("drivers/acpi/table.c:2"), "{found}");

    assert!(is_not_needed(&finding(Fix::InitSectionDeclaration, &tree(&[("drivers/acpi/table.c", DECL_UPSTREAM)]))));
    assert!(is_not_needed(&finding(Fix::InitSectionDeclaration, &tree(&[("kernel/power/t.c", DECL_POINTER)]))));
    // Applied, the tree needs it no more.
    assert!(is_not_needed(&finding(Fix::InitSectionDeclaration, &tree(&[("drivers/acpi/table.c", &fixed)]))));
}

// The linker script's irqentry section as 3.x wrote it (only with the
// function graph tracer) and as 4.6 and later do (always), and a backport
// outside the tracer that maps it.
const LDS_OLD: &str = "#define ENTRY_TEXT *(.entry.text)\n\n#ifdef CONFIG_FUNCTION_GRAPH_TRACER\n#define IRQENTRY_TEXT \\\n\t\tSYM(__irqentry_text_start) = .; \\\n\t\t*(.irqentry.text)\n#else\n#define IRQENTRY_TEXT\n#endif\n\n#define HEAD_TEXT *(.head.text)\n";
const LDS_NEW: &str = "#define IRQENTRY_TEXT \\\n\t\tSYM(__irqentry_text_start) = .; \\\n\t\t*(.irqentry.text)\n";
const MAPS_IRQENTRY: &str = "void __init map(void)\n{\n\tmap_range(__irqentry_text_start, __irqentry_text_end);\n}\n";

#[test]
fn the_irqentry_section_is_defined_always_where_code_outside_the_tracer_maps_it() {
    let lds = "include/asm-generic/vmlinux.lds.h";
    let d = tree(&[(lds, LDS_OLD), ("arch/x86/mm/kaiser.c", MAPS_IRQENTRY)]);
    let f = finding(Fix::IrqentrySection, &d);
    let fixed = edited(&f, lds);
    assert!(!fixed.contains("#ifdef CONFIG_FUNCTION_GRAPH_TRACER") && !fixed.contains("#else"), "{fixed}");
    assert!(
        fixed.contains("#define IRQENTRY_TEXT \\\n\t\tSYM(__irqentry_text_start)") && fixed.ends_with("#define HEAD_TEXT *(.head.text)\n")
    );
    assert_eq!(fixed.matches("#define IRQENTRY_TEXT").count(), 1);
    // Applied, it is needed no more; upstream's form and a tree whose only
    // user is the tracer itself need nothing.
    assert!(is_not_needed(&finding(Fix::IrqentrySection, &tree(&[(lds, &fixed), ("arch/x86/mm/kaiser.c", MAPS_IRQENTRY)]))));
    assert!(is_not_needed(&finding(Fix::IrqentrySection, &tree(&[(lds, LDS_NEW), ("arch/x86/mm/kaiser.c", MAPS_IRQENTRY)]))));
    assert!(is_not_needed(&finding(Fix::IrqentrySection, &tree(&[(lds, LDS_OLD), ("kernel/trace/graph.c", MAPS_IRQENTRY)]))));
}

/// kernel.org 3.12.0's decompressor flags; 3.14 adds `-mno-mmx -mno-sse`.
const COMPRESSED_3_12: &str = "KBUILD_CFLAGS := -m$(BITS) -D__KERNEL__ $(LINUX_INCLUDE) -O2\nKBUILD_CFLAGS += -fno-strict-aliasing -fPIC\nKBUILD_AFLAGS  := $(KBUILD_CFLAGS) -D__ASSEMBLY__\n";

#[test]
fn the_decompressor_gets_no_sse_where_its_own_flags_lack_it() {
    let f = finding(Fix::DecompressorNoSse, &tree(&[(COMPRESSED, COMPRESSED_3_12)]));
    let m = edited(&f, COMPRESSED);
    let add = m.find("KBUILD_CFLAGS += -mno-mmx -mno-sse").expect("the flags are added");
    assert!(add > m.find("-O2").unwrap() && add < m.find("KBUILD_AFLAGS").unwrap(), "{m}");
    // 3.14 and later: upstream's own line; an already repaired tree; a tree without one.
    let upstream = COMPRESSED_3_12.replace("-fPIC\n", "-fPIC\nKBUILD_CFLAGS += -mno-mmx -mno-sse\n");
    assert!(is_not_needed(&finding(Fix::DecompressorNoSse, &tree(&[(COMPRESSED, &upstream)]))));
    assert!(is_not_needed(&finding(Fix::DecompressorNoSse, &tree(&[(COMPRESSED, &m)]))));
    assert!(is_not_needed(&finding(Fix::DecompressorNoSse, &tree(&[]))));
}
