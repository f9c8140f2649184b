//! Fixes for configurations a vendor never builds and constructs its
//! compiler accepted that newer ones do not.

use super::{needed, not_needed, write, Finding, Repair, Tree};

const ASM_INCLUDE: &str = "arch/x86/include/asm";

pub(super) fn header_function_inline(t: &Tree) -> Finding {
    let mut edits = Vec::new();
    let mut found = Vec::new();
    for name in t.list(ASM_INCLUDE).iter().filter(|n| n.ends_with(".h")) {
        let rel = format!("{ASM_INCLUDE}/{name}");
        let Some(text) = t.read(&rel) else { continue };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut changed = false;
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            let next_is_body = lines.get(i + 1).is_some_and(|n| n.trim_end() == "{");
            // `static inline` may stand alone on the line above.
            let prev = lines[..i].iter().rev().map(|p| p.trim()).find(|p| !p.is_empty()).unwrap_or("");
            let starts_declaration =
                prev.is_empty() || prev.starts_with('#') || prev.ends_with(';') || prev.ends_with('}') || prev.ends_with("*/");
            if next_is_body && starts_declaration && plain_function_head(l) {
                out.push_str("static inline ");
                found.push(format!("{rel}:{}", i + 1));
                changed = true;
            }
            out.push_str(l);
        }
        if changed {
            edits.push(write(&rel, out));
        }
    }
    if edits.is_empty() {
        return not_needed("no header under arch/x86/include/asm defines a plain (non-static) function");
    }
    needed(format!("plain function defined in a header at {}", found.join(", ")), Repair { edits, ..Repair::default() })
}

/// `int name(args)` at the start of a line: a definition's head with no
/// `static`, `extern` or macro in front (the next line opens its body).
fn plain_function_head(l: &str) -> bool {
    let l = l.trim_end();
    let Some((ret, rest)) = l.split_once(' ') else { return false };
    let c_type = matches!(ret, "int" | "void" | "bool" | "long" | "unsigned" | "u32" | "u64");
    let ident_open = rest.split_once('(').is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    c_type && !l.starts_with(char::is_whitespace) && ident_open && l.ends_with(')')
}

const ASM_LIB: &str = "arch/x86/lib";
const DWARF2: &str = "asm/dwarf2.h";

pub(super) fn cfi_include(t: &Tree) -> Finding {
    if !t.exists(&format!("{ASM_INCLUDE}/dwarf2.h")) {
        return not_needed("the tree has no asm/dwarf2.h (CFI_ macros were removed upstream in 4.2)");
    }
    let mut edits = Vec::new();
    let mut found = Vec::new();
    for name in t.list(ASM_LIB).iter().filter(|n| n.ends_with(".S")) {
        let rel = format!("{ASM_LIB}/{name}");
        let Some(text) = t.read(&rel) else { continue };
        if !text.contains("CFI_STARTPROC") || reaches_unconditionally(t, &text, DWARF2, 4) {
            continue;
        }
        // After the first #include line (or at the top).
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let at = lines.iter().position(|l| l.starts_with("#include")).map_or(0, |i| i + 1);
        let out = format!("{}#include <{DWARF2}> /* repro fix cfi-include */\n{}", lines[..at].concat(), lines[at..].concat());
        found.push(rel.clone());
        edits.push(write(&rel, out));
    }
    if edits.is_empty() {
        return not_needed("every assembler file using CFI_ macros includes asm/dwarf2.h unconditionally");
    }
    needed(format!("CFI_ macros without an unconditional asm/dwarf2.h in {}", found.join(", ")), Repair { edits, ..Repair::default() })
}

/// Whether `text` includes `target` outside any #if, directly or through
/// headers of the tree, up to `depth` levels (a header's include guard
/// does not count as a condition).
fn reaches_unconditionally(t: &Tree, text: &str, target: &str, depth: u32) -> bool {
    for inc in unconditional_includes(text) {
        if inc == target {
            return true;
        }
        if depth == 0 {
            continue;
        }
        let path = match inc.split_once('/') {
            Some(("asm", rest)) => format!("{ASM_INCLUDE}/{rest}"),
            Some(("linux", rest)) => format!("include/linux/{rest}"),
            _ => continue,
        };
        if t.read(&path).is_some_and(|h| reaches_unconditionally(t, &h, target, depth - 1)) {
            return true;
        }
    }
    false
}

/// `#include <x>` lines at conditional depth 0, the include guard aside.
fn unconditional_includes(text: &str) -> Vec<String> {
    let directives: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start().strip_prefix('#')?.trim_start();
            let (d, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            Some((d.to_string(), rest.trim().to_string()))
        })
        .collect();
    // An include guard: `#ifndef X` then `#define X` as the first two directives.
    let guarded = matches!(directives.as_slice(), [(a, x), (b, y), ..] if a == "ifndef" && b == "define" && y.split_whitespace().next() == Some(x.as_str()));
    let mut depth: i32 = if guarded { -1 } else { 0 };
    // `#ifdef __ASSEMBLY__` holds for every assembler file: not a condition.
    let mut stack: Vec<bool> = Vec::new();
    let mut out = Vec::new();
    for (d, rest) in &directives {
        match d.as_str() {
            "if" | "ifdef" | "ifndef" => {
                let always = d == "ifdef" && rest == "__ASSEMBLY__";
                stack.push(always);
                depth += i32::from(!always);
            }
            "endif" => depth -= i32::from(!stack.pop().unwrap_or(false)),
            "include" if depth <= 0 => {
                if let Some(inner) = rest.strip_prefix('<').and_then(|r| r.split_once('>')).map(|(i, _)| i) {
                    out.push(inner.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// Top-level directories of a tree that an x86 build never compiles.
const NOT_BUILT: &[&str] = &["Documentation", "samples", "scripts", "tools", "usr", ".git"];

/// Every .c file an x86 build may compile (other architectures' aside),
/// relative to the tree, sorted.
fn c_sources(t: &Tree) -> Vec<String> {
    let built = |dir: &str, name: &str| !((dir.is_empty() && NOT_BUILT.contains(&name)) || (dir == "arch" && name != "x86"));
    t.files_under("", built, |name| name.ends_with(".c"))
}

/// The array a line declares (not defines) `static const ... NAME[] __initdata;`.
fn const_initdata_declaration(l: &str) -> Option<&str> {
    let l = l.trim();
    let head = l.strip_prefix("static const ")?.strip_suffix("__initdata;")?.trim_end();
    let name = head.strip_suffix("[]")?.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next()?;
    (!name.is_empty() && !head.contains('=')).then_some(name)
}

pub(super) fn init_section_declaration(t: &Tree) -> Finding {
    let mut edits = Vec::new();
    let mut found = Vec::new();
    for rel in c_sources(t) {
        let Some(text) = t.read(&rel) else { continue };
        if !text.contains("__initdata;") || !text.contains("__initconst") {
            continue;
        }
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut out = String::new();
        let mut changed = false;
        for (i, l) in lines.iter().enumerate() {
            let defined_const = const_initdata_declaration(l).is_some_and(|name| {
                let def = format!("{name}[] __initconst");
                lines[i + 1..].iter().any(|d| d.contains(&def) && d.contains('='))
            });
            if defined_const {
                out.push_str(&l.replacen("__initdata;", "__initconst; /* repro fix init-section-declaration */", 1));
                found.push(format!("{rel}:{}", i + 1));
                changed = true;
            } else {
                out.push_str(l);
            }
        }
        if changed {
            edits.push(write(&rel, out));
        }
    }
    if edits.is_empty() {
        return not_needed("no const array is declared __initdata and defined __initconst");
    }
    needed(
        format!("a const array declared __initdata and defined __initconst at {}", found.join(", ")),
        Repair { edits, ..Repair::default() },
    )
}

const VMLINUX_LDS: &str = "include/asm-generic/vmlinux.lds.h";
const IRQENTRY_START: &str = "__irqentry_text_start";

pub(super) fn irqentry_section(t: &Tree) -> Finding {
    let Some(lds) = t.read(VMLINUX_LDS) else { return not_needed("no include/asm-generic/vmlinux.lds.h") };
    let lines: Vec<&str> = lds.split_inclusive('\n').collect();
    // `#ifdef CONFIG_FUNCTION_GRAPH_TRACER` / `#define IRQENTRY_TEXT ...` / `#else` / `#define IRQENTRY_TEXT` / `#endif`
    let Some(start) = lines
        .windows(2)
        .position(|w| w[0].trim() == "#ifdef CONFIG_FUNCTION_GRAPH_TRACER" && w[1].trim_start().starts_with("#define IRQENTRY_TEXT"))
    else {
        return not_needed("the linker script defines the irqentry section whatever the configuration (upstream from 4.6)");
    };
    let Some(els) = lines[start..].iter().position(|l| l.trim() == "#else").map(|i| start + i) else {
        return not_needed("the linker script's irqentry section has no #else branch to drop");
    };
    let Some(end) = lines[els..].iter().position(|l| l.trim() == "#endif").map(|i| els + i) else {
        return not_needed("the linker script's irqentry section has no #endif");
    };
    let users: Vec<String> = t
        .files_under("arch/x86", |_, _| true, |name| name.ends_with(".c") || name.ends_with(".S"))
        .into_iter()
        .filter(|f| t.read(f).is_some_and(|text| text.contains(IRQENTRY_START)))
        .collect();
    if users.is_empty() {
        return not_needed("only the function graph tracer uses the irqentry section's bounds");
    }
    let out = format!(
        "{}/* repro fix irqentry-section: defined whatever the configuration */\n{}{}",
        lines[..start].concat(),
        lines[start + 1..els].concat(),
        lines[end + 1..].concat()
    );
    needed(
        format!(
            "{} uses {IRQENTRY_START}, which {VMLINUX_LDS}:{} defines only with the function graph tracer",
            users.join(", "),
            start + 1
        ),
        Repair { edits: vec![write(VMLINUX_LDS, out)], ..Repair::default() },
    )
}
