//! Request text the audit queue owns by value.
//!
//! The audit consumer runs on another thread than the request. Whatever a
//! queued entry points to on the heap, the consumer frees there: glibc's
//! `malloc` serialises such cross-thread frees on the allocating arena's
//! lock, and a header value cloned from hyper's read buffer keeps that
//! buffer alive until the consumer runs, so the connection allocates a new
//! one. Copying the few bytes a record needs into the entry avoids both;
//! only values longer than the inline room (rare: a path past 128 bytes, a
//! user agent past 256) spill to the heap.

/// Up to `N` bytes inline, longer values on the heap.
pub(crate) enum Copied<const N: usize> {
    Inline { len: u16, bytes: [u8; N] },
    Spilled(Box<[u8]>),
}

impl<const N: usize> Copied<N> {
    pub(crate) fn new(value: &[u8]) -> Self {
        match u16::try_from(value.len()) {
            Ok(len) if value.len() <= N => {
                let mut bytes = [0; N];
                bytes[..value.len()].copy_from_slice(value);
                Self::Inline { len, bytes }
            }
            _ => Self::Spilled(value.into()),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Spilled(bytes) => bytes,
        }
    }

    /// The text, for values copied from a `str` (whole, or cut on a
    /// character boundary); anything else reads as empty.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Whether the value lives in the entry itself.
    #[cfg(test)]
    pub(crate) const fn is_inline(&self) -> bool {
        matches!(self, Self::Inline { .. })
    }
}

/// The shortest prefix of `text` that still has `chars + 1` characters, or
/// all of it: what [`sanitize`](super::redact::sanitize) with a bound of
/// `chars` needs to give the same result as on the whole text.
pub(crate) fn enough_chars(text: &str, chars: usize) -> &str {
    if text.len() <= chars {
        return text;
    }
    text.char_indices()
        .nth(chars + 1)
        .map_or(text, |(end, _)| &text[..end])
}

/// The same for bytes read with `String::from_utf8_lossy`: every character
/// it yields takes one to four bytes, so `4 × (chars + 2)` bytes yield at
/// least `chars + 2` characters, and cutting there changes none of the
/// first `chars + 1`.
pub(crate) fn enough_lossy_bytes(bytes: &[u8], chars: usize) -> &[u8] {
    &bytes[..bytes.len().min(4 * (chars + 2))]
}

#[cfg(test)]
mod tests {
    use super::super::redact::sanitize;
    use super::*;

    #[test]
    fn short_values_stay_inline_and_long_ones_spill() {
        let short = Copied::<8>::new(b"/orders");
        assert!(short.is_inline());
        assert_eq!(short.as_str(), "/orders");
        let full = Copied::<8>::new(b"12345678");
        assert!(full.is_inline());
        assert_eq!(full.as_bytes(), b"12345678");
        let long = Copied::<8>::new(b"123456789");
        assert!(!long.is_inline());
        assert_eq!(long.as_bytes(), b"123456789");
        assert_eq!(Copied::<8>::new(b"").as_str(), "");
        assert_eq!(Copied::<4>::new(&[0xff, 0xfe]).as_str(), "");
    }

    #[test]
    fn bounded_copies_sanitize_like_the_whole_value() {
        let max = 5;
        let texts = [
            "",
            "abc",
            "abcde",
            "abcdef",
            "abcdefghijklmnop",
            "ééééé",
            "éééééé",
            "a\u{1b}[31mbcdefgh",
            "日本語のテキストです",
            "👍👍👍👍👍👍👍👍",
        ];
        for text in texts {
            assert_eq!(
                sanitize(enough_chars(text, max), max),
                sanitize(text, max),
                "{text:?}"
            );
        }
        let mut bytes: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
        bytes.push(vec![0xff; 64]);
        bytes.push([b"ab".as_slice(), &[0xe6, 0x97], b"cdefghijklmnopqrstuvwxyz"].concat());
        bytes.push([[0xf0, 0x9f, 0x91].as_slice(); 12].concat());
        for value in bytes {
            let whole = String::from_utf8_lossy(&value);
            let cut = String::from_utf8_lossy(enough_lossy_bytes(&value, max));
            assert_eq!(sanitize(&cut, max), sanitize(&whole, max), "{value:?}");
        }
    }
}
