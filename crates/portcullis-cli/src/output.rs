//! Human-readable tables and JSON documents on stdout.

use std::fmt::Write as _;
use std::io::{self, Write};

/// Text from a store (account names, key labels, reasons) made safe for a
/// terminal: control characters (escape sequences an attacker could have
/// put in a login identifier) are shown as `\u{…}` instead of interpreted.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A table with a header row, columns padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are sanitised.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| sanitize(c)).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
            let mut first = true;
            let mut text = String::new();
            for (i, cell) in cells.enumerate() {
                if !first {
                    text.push_str("  ");
                }
                first = false;
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, &mut self.header.iter().copied());
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(String::as_str));
        }
        out
    }
}

/// Where a command writes its result: text for people or one JSON document
/// for scripts.
#[derive(Debug)]
pub(crate) struct Out {
    json: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// Writes `text` (human mode) or `value` (JSON mode) to stdout.
    pub(crate) fn emit(&self, text: &str, value: &serde_json::Value) -> io::Result<()> {
        if self.json {
            let mut doc = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
            doc.push('\n');
            write_stdout(&doc)
        } else {
            write_stdout(text)
        }
    }
}

/// Writes to stdout in one piece.
pub(crate) fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Writes a line to stderr (warnings, errors); a failure to write there
/// has nowhere else to go and is ignored.
pub(crate) fn warn(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\u{a}");
        assert_eq!(sanitize("plain é"), "plain é");
    }

    #[test]
    fn tables_pad_columns() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["xyz".to_owned(), "1".to_owned()]);
        assert_eq!(t.render(), "A    LONG\nxyz  1\n");
    }
}
