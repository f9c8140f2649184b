//! Text the host shows a person: lines from outside made printable, tails
//! of logs, and command lines quoted so they can be pasted into a shell.
//! Every module that shows such text uses these, so each rule exists once.

use std::ffi::OsStr;

/// Guest or tool output made safe for a terminal: control characters
/// (escape sequences included) become U+FFFD; tabs stay.
/// Text as it may reach a terminal: lines and tabs kept, every other
/// control character (ESC, BEL, CR, C1 codes) replaced. A guest kernel
/// controls its console, the agent's output and its release string, so
/// everything repro prints goes through here ([`out`], [`err`]).
pub(crate) fn terminal_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c }).collect()
}

/// [`terminal_safe`], but keeping colour codes (SGR: ESC `[` digits and `;`
/// `m`), which the log's own formatter writes on a terminal and which only
/// colour text. Every other escape sequence still loses its ESC.
pub(crate) fn terminal_safe_keeping_colour(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' {
            let body = &rest[1..];
            let end = body.strip_prefix('[').and_then(|b| b.find(|c: char| !(c.is_ascii_digit() || c == ';')).map(|i| (b, i)));
            if let Some((b, i)) = end.filter(|(b, i)| b[*i..].starts_with('m')) {
                out.push('\u{1b}');
                out.push('[');
                out.push_str(&b[..=i]);
                rest = &b[i + 1..];
                continue;
            }
        }
        out.push(if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c });
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The log's stderr: every line the tracing subscriber writes (warnings
/// quote guest output and file names) goes through
/// [`terminal_safe_keeping_colour`], so no warning carries a raw control
/// character to the terminal.
pub(crate) struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let safe = terminal_safe_keeping_colour(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Write to stderr, terminal-safe.
pub(crate) fn err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(terminal_safe(text).as_bytes());
}

/// [`err`] with a newline: every line repro itself prints to stderr.
pub(crate) fn errln(text: &str) {
    err(&format!("{text}\n"));
}

/// Write to stdout, terminal-safe. A reader that went away (`repro watch
/// | head -1`) is no panic: the command stops as for Ctrl-C, keeps what it
/// recorded and exits quietly ([`crate::interrupt::stdout_closed`]).
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(terminal_safe(text).as_bytes()).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            crate::interrupt::stdout_closed();
        }
    }
}

/// [`out`] with a newline.
pub(crate) fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// At most `max` characters of outside text, marked where it was cut: a
/// name a user (or a script gone wrong) passed is never echoed whole.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

pub(crate) fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\t' { '\u{fffd}' } else { c }).collect()
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first line of `s` (all of it when it has none).
pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One word as a POSIX shell reads it back: bare when it holds only
/// characters no shell treats specially, else in single quotes.
pub(crate) fn shell_quote(word: &OsStr) -> String {
    let w = word.to_string_lossy();
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c)) {
        w.into_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// A command line for logs and provenance, pasteable into a shell.
pub(crate) fn shell_words<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> String {
    args.into_iter().map(|a| shell_quote(a.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quotes_only_what_needs_it() {
        let a = ["-append", "console=ttyS0 panic=-1", "it's", "", "a,b=c@d"];
        assert_eq!(shell_words(a), r"-append 'console=ttyS0 panic=-1' 'it'\''s' '' a,b=c@d");
    }

    #[test]
    fn what_repro_prints_keeps_its_lines_and_loses_every_escape() {
        let guest = "seed on 6.1\x1b]0;pwned\x07 (tcg)\n  ipv6\x1b[2J open()\r\n\u{9b}31m";
        assert_eq!(terminal_safe(guest), "seed on 6.1\u{fffd}]0;pwned\u{fffd} (tcg)\n  ipv6\u{fffd}[2J open()\u{fffd}\n\u{fffd}31m");
        let e = crate::error::fail(crate::error::Kind::GuestPanic, "console:\n\x1b[31mKernel panic\x07");
        assert!(!crate::error::render(&e).chars().any(|c| c == '\x1b' || c == '\x07'));
    }

    #[test]
    fn escape_sequences_are_not_passed_to_the_terminal() {
        assert_eq!(printable("ok\x1b[2J\tdone\r"), "ok\u{fffd}[2J\tdone\u{fffd}");
        assert_eq!(printable("ok\tdone\u{1b}]0;pwned\u{7}\r"), "ok\tdone\u{fffd}]0;pwned\u{fffd}\u{fffd}");
    }

    #[test]
    fn tails_and_first_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
        assert_eq!(first_line("x\ny"), "x");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn log_lines_keep_their_colours_and_lose_every_other_control() {
        let line =
            "\u{1b}[33mWARN\u{1b}[0m ignoring a garbled line: a\rb\u{e}c\u{f}d\u{b}e\u{18}f\u{1a}g\u{1b}]0;title\u{7}\u{9b}2J\ttab\n";
        let safe = terminal_safe_keeping_colour(line);
        assert!(safe.starts_with("\u{1b}[33mWARN\u{1b}[0m "), "{safe:?}");
        assert_eq!(safe.matches('\u{1b}').count(), 2, "{safe:?}");
        assert!(!safe.chars().any(|c| c.is_control() && !"\u{1b}\n\t".contains(c)), "{safe:?}");
        assert!(safe.ends_with("\ttab\n"));
        assert_eq!(terminal_safe_keeping_colour("\u{1b}[31"), "\u{fffd}[31");
    }
}
