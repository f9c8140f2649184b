//! Fixes for a newer compiler, assembler or linker than the tree was written for.

use anyhow::Result;

use super::{needed, not_needed, write, Finding, Fix, Repair, Toolchain, Tree};

pub(super) const GCC_H: &str = "include/linux/compiler-gcc.h";

pub(super) fn gcc_version_header(t: &Tree, tc: &Toolchain) -> Result<Finding> {
    let Some(text) = t.read(GCC_H) else { return Ok(not_needed("no include/linux/compiler-gcc.h")) };
    if !(text.contains("gcc_header(__GNUC__)") || text.contains("compiler-gcc##")) {
        return Ok(not_needed("compiler-gcc.h includes no header per GCC major"));
    }
    let major = tc.gcc_major;
    let want = format!("include/linux/compiler-gcc{major}.h");
    if t.exists(&want) {
        return Ok(not_needed(format!("the tree has compiler-gcc{major}.h")));
    }
    let newest = t
        .list("include/linux")
        .iter()
        .filter_map(|n| n.strip_prefix("compiler-gcc")?.strip_suffix(".h")?.parse::<u32>().ok())
        .filter(|n| *n < major)
        .max();
    let Some(newest) = newest else {
        return Err(Fix::GccVersionHeader.cannot(
            &format!("compiler-gcc.h includes compiler-gcc<major>.h and the tree has none older than GCC {major} to stand in"),
            "Build it with an older compiler (--cc gcc-N) or add the header.",
        ));
    };
    let text = format!(
        "/* Added by repro (fix gcc-version-header) for building with GCC {major}: the newest header the tree has. */\n#include <linux/compiler-gcc{newest}.h>\n"
    );
    Ok(needed(
        format!("compiler-gcc.h wants compiler-gcc{major}.h; the newest the tree has is {newest}"),
        Repair { edits: vec![write(&want, text)], ..Repair::default() },
    ))
}

pub(super) const HEAD_64: &str = "arch/x86/kernel/head_64.S";

pub(super) fn early_idt_jump(t: &Tree) -> Result<Finding> {
    let Some(text) = t.read(HEAD_64) else { return Ok(not_needed("no arch/x86/kernel/head_64.S")) };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // The `.rept` loop that emits one stub per early exception vector.
    let mut start = None;
    let mut block = None;
    for (i, l) in lines.iter().enumerate() {
        let w = l.split_whitespace().next().unwrap_or("");
        if w == ".rept" {
            start = Some(i);
        } else if w == ".endr" {
            if let Some(s) = start.take() {
                if lines[s..i].iter().any(|l| l.contains("early_idt_handler")) {
                    block = Some((s, i));
                    break;
                }
            }
        }
    }
    let Some((s, e)) = block else { return Ok(not_needed("head_64.S has no loop of early IDT stubs")) };
    let body = &lines[s..e];
    if body.iter().any(|l| l.split_whitespace().next() == Some(".fill")) {
        return Ok(not_needed("the early IDT stubs are padded to their size with .fill (the upstream repair)"));
    }
    if body.iter().any(|l| l.contains(".byte 0xe9")) {
        return Ok(not_needed("the early IDT stubs already jump with an explicit 5-byte encoding"));
    }
    let jmp = body.iter().position(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("jmp") && w.next().is_some_and(|sym| sym.starts_with("early_idt_handler"))
    });
    let Some(j) = jmp else {
        return Err(Fix::EarlyIdtJump.cannot(
            &format!("{HEAD_64}'s early IDT stub loop (line {}) has neither .fill padding nor a `jmp early_idt_handler` to widen", s + 1),
            "Pad the stubs as upstream 4.2 does (cdeb6048940f), or build the tree with binutils older than 2.31.",
        ));
    };
    let line = lines[s + j];
    let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
    let sym = line.split_whitespace().nth(1).unwrap_or_default().trim_end_matches(';');
    let mut out: String = lines[..s + j].concat();
    out.push_str(&format!(
        "{indent}# repro fix early-idt-jump: always the 5-byte jmp rel32\n{indent}.byte 0xe9\n{indent}.long {sym} - (. + 4)\n"
    ));
    out.push_str(&lines[s + j + 1..].concat());
    Ok(needed(
        format!("{HEAD_64}:{}: `jmp {sym}` in fixed-size stubs without .fill", s + j + 1),
        Repair { edits: vec![write(HEAD_64, out)], ..Repair::default() },
    ))
}

/// The Makefiles of 16-bit code before 3.16 set their own KBUILD_CFLAGS.
pub(super) const REALMODE_MAKEFILES: &[&str] = &["arch/x86/boot/Makefile", "arch/x86/realmode/rm/Makefile"];

pub(super) fn realmode_m16(t: &Tree) -> Result<Finding> {
    let mut edits = Vec::new();
    let mut found = Vec::new();
    for mf in REALMODE_MAKEFILES {
        let Some(text) = t.read(mf) else { continue };
        let Some(fixed) = m16_statement(&text).map_err(|construct| {
            Fix::RealmodeM16.cannot(&format!("{mf}: {construct}"), "Build the 16-bit code with -m16 as upstream 3.16 does (a9cfccee6604).")
        })?
        else {
            continue;
        };
        found.push(*mf);
        edits.push(write(mf, fixed));
    }
    if edits.is_empty() {
        return Ok(not_needed("16-bit code is not built with -m32 plus code16gcc.h (REALMODE_CFLAGS picks -m16 from 3.16 on)"));
    }
    Ok(needed(format!("-m32 -include code16gcc.h in {}", found.join(", ")), Repair { edits, ..Repair::default() }))
}

/// The Makefile with its 16-bit KBUILD_CFLAGS built with -m16 instead of
/// -m32 plus code16gcc.h; None if no KBUILD_CFLAGS statement includes
/// code16gcc.h; Err names what is odd. The flags are assembled in more than
/// one form: 3.10 names -m32 in the `:=` statement that includes the
/// header; 3.11-3.13 add it in a later `+= $(call cc-option, -m32)`. Every
/// KBUILD_CFLAGS statement of the file (continued lines included) loses the
/// `-include .../code16gcc.h` and has -m32 turned into -m16.
fn m16_statement(text: &str) -> std::result::Result<Option<String>, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // Each statement as the range of its lines.
    let mut statements = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        while i < lines.len() && lines[i].trim_end().ends_with('\\') {
            i += 1;
        }
        i = (i + 1).min(lines.len());
        if lines[start].trim_start().starts_with("KBUILD_CFLAGS") {
            statements.push(start..i);
        }
    }
    let has = |pred: &dyn Fn(&str) -> bool| statements.iter().any(|r| lines[r.clone()].iter().any(|l| pred(l)));
    let Some(first) = statements.iter().find(|r| lines[(*r).clone()].iter().any(|l| l.contains("code16gcc.h"))) else {
        return Ok(None);
    };
    if !has(&|l: &str| l.split_whitespace().any(|w| m32_word(w).is_some())) {
        return Err(format!("line {}: KBUILD_CFLAGS includes code16gcc.h without -m32", first.start + 1));
    }
    let mut out = String::new();
    let mut at = 0;
    for r in &statements {
        out.push_str(&lines[at..r.start].concat());
        for l in &lines[r.clone()] {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut kept: Vec<String> = Vec::new();
            let mut k = 0;
            while k < words.len() {
                if words[k] == "-include" && words.get(k + 1).is_some_and(|p| p.ends_with("code16gcc.h")) {
                    k += 2;
                    continue;
                }
                kept.push(m32_word(words[k]).unwrap_or_else(|| words[k].to_string()));
                k += 1;
            }
            if kept.is_empty() || kept == ["\\"] {
                continue; // the line held only the -include
            }
            let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
            out.push_str(&format!("{indent}{}\n", kept.join(" ")));
        }
        at = r.end;
    }
    out.push_str(&lines[at..].concat());
    Ok(Some(out))
}

/// `-m32` as a word of a Makefile (`-m32`, or `-m32)` closing a `$(call
/// cc-option, -m32)`) with -m16 in its place; None for any other word.
fn m32_word(w: &str) -> Option<String> {
    let rest = w.strip_prefix("-m32")?;
    rest.chars().all(|c| c == ')' || c == ',').then(|| format!("-m16{rest}"))
}

/// The decompressor's Makefile, which sets KBUILD_CFLAGS of its own.
pub(super) const COMPRESSED: &str = "arch/x86/boot/compressed/Makefile";

pub(super) fn decompressor_no_sse(t: &Tree) -> Finding {
    let Some(text) = t.read(COMPRESSED) else { return not_needed("the tree has no x86 decompressor Makefile") };
    if text.contains("-mno-sse") {
        return not_needed("the decompressor is built with -mno-sse");
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim_start().starts_with("KBUILD_CFLAGS") && l.contains(":=")) else {
        return not_needed("the decompressor takes the kernel's KBUILD_CFLAGS, which have -mno-sse");
    };
    let mut end = start;
    while end + 1 < lines.len() && lines[end].trim_end().ends_with('\\') {
        end += 1;
    }
    let mut out: String = lines[..=end].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# repro fix decompressor-no-sse: no SSE/MMX before the kernel enables them\nKBUILD_CFLAGS += -mno-mmx -mno-sse\n");
    out.push_str(&lines[end + 1..].concat());
    needed(
        format!("{COMPRESSED}:{}: its own KBUILD_CFLAGS without -mno-sse", start + 1),
        Repair { edits: vec![write(COMPRESSED, out)], ..Repair::default() },
    )
}

pub(super) fn no_pie(t: &Tree, tc: &Toolchain) -> Finding {
    if !tc.default_pie {
        return not_needed("the compiler does not build PIE by default");
    }
    let text = t.read("Makefile").unwrap_or_default();
    if text.contains("-fno-PIE") || text.contains("-fno-pie") {
        return not_needed("the top Makefile passes -fno-PIE itself");
    }
    needed(
        "a PIE-by-default compiler and a top Makefile without -fno-PIE",
        Repair { cc_flags: vec!["-fno-pie".into()], ..Repair::default() },
    )
}

pub(super) fn max_page_size(t: &Tree) -> Finding {
    let Some(text) = t.read("arch/x86/Makefile") else { return not_needed("no arch/x86/Makefile") };
    if text.contains("max-page-size") {
        return not_needed("arch/x86/Makefile links with -z max-page-size=0x200000 itself");
    }
    needed(
        "arch/x86/Makefile does not set the linker's max-page-size",
        Repair { ld_flags: vec!["-z".into(), "max-page-size=0x200000".into()], ..Repair::default() },
    )
}
