//! Compatibility fixes that find their target by content.
//!
//! An old tree meets a newer compiler, assembler and linker than it was
//! written for, configurations its vendor never builds, and snapshots that
//! lost their run bits. Each [`Fix`] names the change it answers, looks in
//! the tree for the construct that change breaks and for the upstream
//! repair, and says "not needed" or plans a [`Repair`] (file edits, run
//! bits, or make flags), whatever the tree's version says. A tree that has
//! the construct in a form repro cannot repair fails naming the fix and the
//! construct, with advice.
//!
//! Written as code, not as patches: a patch matches the exact lines of the
//! tree it was made against (RHEL 7.3's head_64.S at line 343), which no
//! other tree has; these rules match the construct wherever it stands.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Kind};

/// These rules' own text: part of every build's cache key, so an image
/// built under other rules is never taken for one built under these.
pub(crate) const RULES: &str = include_str!("compat.rs");

/// What the compiler that builds the tree does by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Toolchain {
    /// `__GNUC__` (clang says 4).
    pub gcc_major: u32,
    /// Whether it builds position-independent executables unless told not to.
    pub default_pie: bool,
}

/// Every fix repro knows, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fix {
    RunBits,
    GccVersionHeader,
    EarlyIdtJump,
    RealmodeM16,
    HeaderFunctionInline,
    CfiInclude,
    NoPie,
    MaxPageSize,
}

/// A file change a repair makes (paths relative to the tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    /// Replace (or create) a file with this text.
    Write { path: PathBuf, text: String },
    /// Give a script its run bits back.
    MakeExecutable { path: PathBuf },
}

/// How a fix repairs a tree that needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Repair {
    pub edits: Vec<Edit>,
    /// Appended to CC.
    pub cc_flags: Vec<String>,
    /// Appended to LD (`ld` when nothing else sets it).
    pub ld_flags: Vec<String>,
}

/// What one fix found in one tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    NotNeeded { why: String },
    Needed { found: String, repair: Repair },
}

/// The fixes' findings for one tree: what the build applies and reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Assessment {
    pub findings: Vec<(Fix, Finding)>,
}

impl Assessment {
    /// Every fix over the tree at `src`; a construct that needs a repair
    /// repro cannot make is a build failure naming the fix.
    pub(crate) fn of_tree(src: &Path, tc: &Toolchain) -> Result<Assessment> {
        let tree = Tree { root: src };
        let findings = Fix::ALL.iter().map(|f| f.assess(&tree, tc).map(|x| (*f, x))).collect::<Result<_>>()?;
        Ok(Assessment { findings })
    }

    pub(crate) fn needed(&self) -> impl Iterator<Item = (Fix, &str, &Repair)> {
        self.findings.iter().filter_map(|(f, x)| match x {
            Finding::Needed { found, repair } => Some((*f, found.as_str(), repair)),
            Finding::NotNeeded { .. } => None,
        })
    }

    pub(crate) fn cc_flags(&self) -> Vec<String> {
        self.needed().flat_map(|(_, _, r)| r.cc_flags.clone()).collect()
    }

    pub(crate) fn ld_flags(&self) -> Vec<String> {
        self.needed().flat_map(|(_, _, r)| r.ld_flags.clone()).collect()
    }

    /// One line per fix, for the build log and build.json.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|(f, x)| match x {
                Finding::Needed { found, .. } => format!("{}: applied ({found})", f.name()),
                Finding::NotNeeded { why } => format!("{}: not needed ({why})", f.name()),
            })
            .collect()
    }
}

impl Fix {
    pub(crate) const ALL: &'static [Fix] = &[
        Fix::RunBits,
        Fix::GccVersionHeader,
        Fix::EarlyIdtJump,
        Fix::RealmodeM16,
        Fix::HeaderFunctionInline,
        Fix::CfiInclude,
        Fix::NoPie,
        Fix::MaxPageSize,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fix::RunBits => "run-bits",
            Fix::GccVersionHeader => "gcc-version-header",
            Fix::EarlyIdtJump => "early-idt-jump",
            Fix::RealmodeM16 => "realmode-m16",
            Fix::HeaderFunctionInline => "header-function-inline",
            Fix::CfiInclude => "cfi-include",
            Fix::NoPie => "no-pie",
            Fix::MaxPageSize => "max-page-size",
        }
    }

    /// The change in the toolchain (or in how the tree arrived) it answers.
    pub(crate) fn answers(self) -> &'static str {
        match self {
            Fix::RunBits => "snapshots, tarballs and mirrors that store every file 0644: make runs the tree's scripts directly",
            Fix::GccVersionHeader => {
                "GCC 6 and later: compiler-gcc.h of 3.x includes compiler-gcc<__GNUC__>.h, which the tree ships only up to its own era"
            }
            Fix::EarlyIdtJump => {
                "GNU as 2.3x relaxes a global `jmp sym` to 2 bytes, shrinking the fixed 9-byte early IDT stubs so the IDT points into their middle (upstream pads them with .fill since 4.2)"
            }
            Fix::RealmodeM16 => {
                "GCC 4.9 and later emit code before code16gcc.h's .code16gcc, so -m32 setup code crashes before it prints; -m16 (upstream from 3.16) does not"
            }
            Fix::HeaderFunctionInline => {
                "configurations a vendor never builds: a header defines a plain function in its !CONFIG branch, defined again in every file that includes it"
            }
            Fix::CfiInclude => "configurations a vendor never builds: an assembler file uses CFI_ macros whose header it reaches only under #ifdef",
            Fix::NoPie => "compilers that build PIE by default (Debian, Ubuntu): code model kernel does not support PIC mode (upstream passes -fno-PIE from 4.10)",
            Fix::MaxPageSize => {
                "binutils 2.31 made 4 KiB the x86-64 max-page-size; the kernel's layout wants 2 MiB, which arch/x86/Makefile asks for itself only from 4.16 (and stable backports): without it the guest prints nothing"
            }
        }
    }

    fn assess(self, t: &Tree, tc: &Toolchain) -> Result<Finding> {
        match self {
            Fix::RunBits => Ok(run_bits(t)),
            Fix::GccVersionHeader => gcc_version_header(t, tc),
            Fix::EarlyIdtJump => early_idt_jump(t),
            Fix::RealmodeM16 => realmode_m16(t),
            Fix::HeaderFunctionInline => Ok(header_function_inline(t)),
            Fix::CfiInclude => Ok(cfi_include(t)),
            Fix::NoPie => Ok(no_pie(t, tc)),
            Fix::MaxPageSize => Ok(max_page_size(t)),
        }
    }

    fn cannot(self, construct: &str, advice: &str) -> anyhow::Error {
        fail(
            Kind::BuildFailed,
            format!(
                "this tree needs repro's compatibility fix {} ({}), but {construct}, a form repro does not know how to repair. {advice}",
                self.name(),
                self.answers()
            ),
        )
    }
}

fn not_needed(why: impl Into<String>) -> Finding {
    Finding::NotNeeded { why: why.into() }
}

fn needed(found: impl Into<String>, repair: Repair) -> Finding {
    Finding::Needed { found: found.into(), repair }
}

fn write(path: &str, text: String) -> Edit {
    Edit::Write { path: PathBuf::from(path), text }
}

/// The tree, read with a bound per file (no file the rules read is 4 MiB).
struct Tree<'a> {
    root: &'a Path,
}

const MAX_SOURCE: u64 = 4 << 20;
/// One file of the tree at `src`, read as the fixes read it (bounded; a regular file or nothing).
pub(crate) fn read_source(src: &Path, rel: &str) -> Option<String> {
    Tree { root: src }.read(rel)
}

impl Tree<'_> {
    fn read(&self, rel: &str) -> Option<String> {
        let p = self.root.join(rel);
        let meta = std::fs::metadata(&p).ok()?;
        if !meta.is_file() || meta.len() > MAX_SOURCE {
            return None;
        }
        std::fs::read(&p).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn exists(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }

    /// File names directly in `dir` (relative to the tree).
    fn list(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        v.sort();
        v
    }
}

/// The directories whose scripts a build runs: top-level helpers, Kbuild's
/// own, the architecture's and the initramfs generator.
const SCRIPT_DIRS: &[&str] = &["scripts", "arch/x86", "usr", "tools"];

fn run_bits(t: &Tree) -> Finding {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    // Upstream keeps some scripts 0644 on purpose (make runs them through
    // the shell); a tree that lost its run bits has none left under scripts/.
    let mut executable = 0usize;
    let mut missing = Vec::new();
    let mut stack: Vec<PathBuf> = SCRIPT_DIRS.iter().map(|d| t.root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !ft.is_file() {
                continue;
            }
            let mut head = [0u8; 2];
            let is_script = std::fs::File::open(e.path()).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"#!";
            let rel = e.path().strip_prefix(t.root).unwrap_or(&e.path()).to_path_buf();
            if !is_script {
                continue;
            }
            if meta.permissions().mode() & 0o111 != 0 {
                executable += usize::from(rel.starts_with("scripts"));
            } else {
                missing.push(rel);
            }
        }
    }
    if missing.is_empty() {
        return not_needed("every script under scripts/, arch/x86/, usr/ and tools/ has its run bits");
    }
    if executable > 0 {
        return not_needed(format!("the tree keeps its run bits ({executable} scripts under scripts/ are executable)"));
    }
    missing.sort();
    let found = format!("{} scripts without run bits, e.g. {}", missing.len(), missing[0].display());
    needed(found, Repair { edits: missing.into_iter().map(|path| Edit::MakeExecutable { path }).collect(), ..Repair::default() })
}

const GCC_H: &str = "include/linux/compiler-gcc.h";

fn gcc_version_header(t: &Tree, tc: &Toolchain) -> Result<Finding> {
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

const HEAD_64: &str = "arch/x86/kernel/head_64.S";

fn early_idt_jump(t: &Tree) -> Result<Finding> {
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
const REALMODE_MAKEFILES: &[&str] = &["arch/x86/boot/Makefile", "arch/x86/realmode/rm/Makefile"];

fn realmode_m16(t: &Tree) -> Result<Finding> {
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

/// The Makefile with its `KBUILD_CFLAGS := ... -m32 ... -include
/// .../code16gcc.h ...` statement (continued lines) built with -m16
/// instead; None if it has no such statement; Err names what is odd.
fn m16_statement(text: &str) -> std::result::Result<Option<String>, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        while i < lines.len() && lines[i].trim_end().ends_with('\\') {
            i += 1;
        }
        let end = (i + 1).min(lines.len());
        i = end;
        let stmt = &lines[start..end];
        let is_cflags = stmt[0].trim_start().starts_with("KBUILD_CFLAGS");
        if !is_cflags || !stmt.iter().any(|l| l.contains("code16gcc.h")) {
            continue;
        }
        if !stmt.iter().any(|l| l.split_whitespace().any(|w| w == "-m32")) {
            return Err(format!("line {}: KBUILD_CFLAGS includes code16gcc.h without -m32", start + 1));
        }
        let mut out: String = lines[..start].concat();
        for l in stmt {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut kept = Vec::new();
            let mut k = 0;
            while k < words.len() {
                if words[k] == "-include" && words.get(k + 1).is_some_and(|p| p.ends_with("code16gcc.h")) {
                    k += 2;
                    continue;
                }
                kept.push(if words[k] == "-m32" { "-m16" } else { words[k] });
                k += 1;
            }
            if kept.is_empty() || kept == ["\\"] {
                continue; // the line held only the -include
            }
            let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
            out.push_str(&format!("{indent}{}\n", kept.join(" ")));
        }
        out.push_str(&lines[end..].concat());
        return Ok(Some(out));
    }
    Ok(None)
}

const ASM_INCLUDE: &str = "arch/x86/include/asm";

fn header_function_inline(t: &Tree) -> Finding {
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

fn cfi_include(t: &Tree) -> Finding {
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

fn no_pie(t: &Tree, tc: &Toolchain) -> Finding {
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

fn max_page_size(t: &Tree) -> Finding {
    let Some(text) = t.read("arch/x86/Makefile") else { return not_needed("no arch/x86/Makefile") };
    if text.contains("max-page-size") {
        return not_needed("arch/x86/Makefile links with -z max-page-size=0x200000 itself");
    }
    needed(
        "arch/x86/Makefile does not set the linker's max-page-size",
        Repair { ld_flags: vec!["-z".into(), "max-page-size=0x200000".into()], ..Repair::default() },
    )
}

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
