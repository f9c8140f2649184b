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

mod toolchain;
mod tree_form;
mod vendor;

use toolchain::{decompressor_no_sse, early_idt_jump, gcc_version_header, max_page_size, no_pie, realmode_m16};
use tree_form::run_bits;
use vendor::{cfi_include, header_function_inline, init_section_declaration, irqentry_section};

/// These rules' own text: part of every build's cache key, so an image
/// built under other rules is never taken for one built under these.
pub(crate) const RULES: &str =
    concat!(include_str!("mod.rs"), include_str!("tree_form.rs"), include_str!("toolchain.rs"), include_str!("vendor.rs"));

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
    DecompressorNoSse,
    HeaderFunctionInline,
    CfiInclude,
    InitSectionDeclaration,
    IrqentrySection,
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
        Fix::DecompressorNoSse,
        Fix::HeaderFunctionInline,
        Fix::CfiInclude,
        Fix::InitSectionDeclaration,
        Fix::IrqentrySection,
        Fix::NoPie,
        Fix::MaxPageSize,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fix::RunBits => "run-bits",
            Fix::GccVersionHeader => "gcc-version-header",
            Fix::EarlyIdtJump => "early-idt-jump",
            Fix::RealmodeM16 => "realmode-m16",
            Fix::DecompressorNoSse => "decompressor-no-sse",
            Fix::HeaderFunctionInline => "header-function-inline",
            Fix::CfiInclude => "cfi-include",
            Fix::InitSectionDeclaration => "init-section-declaration",
            Fix::IrqentrySection => "irqentry-section",
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
            Fix::DecompressorNoSse => {
                "GCC 12 vectorizes at -O2: the decompressor, which sets its own KBUILD_CFLAGS, gets SSE instructions before SSE is enabled and resets the guest after \"Decompressing Linux...\" (upstream builds it with -mno-mmx -mno-sse from 3.14)"
            }
            Fix::HeaderFunctionInline => {
                "configurations a vendor never builds: a header defines a plain function in its !CONFIG branch, defined again in every file that includes it"
            }
            Fix::CfiInclude => "configurations a vendor never builds: an assembler file uses CFI_ macros whose header it reaches only under #ifdef",
            Fix::InitSectionDeclaration => {
                "compilers newer than a vendor's (GCC 12 against RHEL 7's 4.8): a const array declared __initdata but defined __initconst is placed by its declaration, beside the file's writable init data, a section type conflict that stops the build"
            }
            Fix::IrqentrySection => {
                "configurations a vendor never builds: code backported from later kernels (RHEL 7's KAISER) maps the irqentry section, which the tree's linker script defines only with the function graph tracer on (upstream defines it always from 4.6, 229a71860547)"
            }
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
            Fix::DecompressorNoSse => Ok(decompressor_no_sse(t)),
            Fix::HeaderFunctionInline => Ok(header_function_inline(t)),
            Fix::CfiInclude => Ok(cfi_include(t)),
            Fix::InitSectionDeclaration => Ok(init_section_declaration(t)),
            Fix::IrqentrySection => Ok(irqentry_section(t)),
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

    /// Files below `dir` (relative to the tree, "" for its top), sorted:
    /// those `keep` takes by name, in the directories `enter` takes by
    /// their parent (relative) and name.
    fn files_under(&self, dir: &str, enter: impl Fn(&str, &str) -> bool, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_string()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(self.root.join(&d)).into_iter().flatten().flatten() {
                let Some(name) = e.file_name().to_str().map(String::from) else { continue };
                let rel = if d.is_empty() { name.clone() } else { format!("{d}/{name}") };
                match e.file_type() {
                    Ok(ft) if ft.is_dir() && enter(&d, &name) => stack.push(rel),
                    Ok(ft) if ft.is_file() && keep(&name) => out.push(rel),
                    _ => {}
                }
            }
        }
        out.sort();
        out
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

#[cfg(test)]
mod tests;
