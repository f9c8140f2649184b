//! The agent's stream as bounded lines: a serial line may carry stray
//! bytes, a flood or a cut; none of them makes repro hold more than
//! [`MAX_LINE_BYTES`] or mistake a lost tail for a line.

use anyhow::Result;
use repro_proto::MAX_LINE_BYTES;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The agent's stream, split into bounded lines.
pub(crate) struct Lines {
    reader: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    buf: Vec<u8>,
    /// The stream ended in the middle of a line of this many bytes: its
    /// tail was lost, which is not the same as the agent failing.
    pub(super) truncated_tail: Option<usize>,
}

/// One line from the agent.
pub(crate) enum Line {
    Text(String),
    /// Longer than [`MAX_LINE_BYTES`]: dropped without being held.
    Oversized,
}

impl Lines {
    pub(crate) fn new(reader: Box<dyn AsyncRead + Unpin + Send>) -> Lines {
        Lines { reader: BufReader::new(reader), buf: Vec::new(), truncated_tail: None }
    }

    /// One line, lossily decoded (a serial line may carry stray bytes), and
    /// never more than [`MAX_LINE_BYTES`] of it held in memory. None at the
    /// end of the stream; a partial last line is noted in `truncated_tail`.
    pub(crate) async fn next(&mut self) -> Result<Option<Line>> {
        self.buf.clear();
        let mut oversized = false;
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                if !self.buf.is_empty() || oversized {
                    self.truncated_tail = Some(self.buf.len());
                }
                return Ok(None);
            }
            let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !oversized && self.buf.len() + take > MAX_LINE_BYTES {
                oversized = true;
                self.buf = Vec::new();
            }
            if !oversized {
                self.buf.extend_from_slice(&chunk[..take]);
            }
            self.reader.consume(take);
            if end {
                return Ok(Some(if oversized {
                    Line::Oversized
                } else {
                    Line::Text(String::from_utf8_lossy(&self.buf).trim().to_string())
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: Vec<u8>) -> (Vec<String>, Option<usize>) {
        let mut lines = Lines::new(Box::new(std::io::Cursor::new(input)));
        let mut out = Vec::new();
        while let Some(l) = lines.next().await.unwrap() {
            out.push(match l {
                Line::Text(t) => t,
                Line::Oversized => "<oversized>".into(),
            });
        }
        (out, lines.truncated_tail)
    }

    #[tokio::test]
    async fn a_stream_cut_mid_line_is_a_truncated_tail_not_a_line() {
        let (lines, tail) = read_all(b"{\"type\":\"done\"}\n{\"type\":\"sett".to_vec()).await;
        assert_eq!(lines, ["{\"type\":\"done\"}"]);
        assert_eq!(tail, Some(r#"{"type":"sett"#.len()));
        assert_eq!(read_all(b"a\nb\n".to_vec()).await, (vec!["a".to_string(), "b".to_string()], None));
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_dropped_without_being_held() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let (lines, tail) = read_all(input).await;
        assert_eq!(lines, ["<oversized>", "next"]);
        assert_eq!(tail, None);
    }
}
