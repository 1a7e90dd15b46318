//! Whether a payload is JSON text, without allocating.
//!
//! A room log keeping JSON forms checks every payload at append (`history`). `serde_json` would
//! do, but it allocates on both of its paths: every error is boxed, and its raw-value scanner
//! keeps a heap stack of the open arrays and objects. Appends must not allocate, so the check is
//! written here: one pass over the bytes, no recursion, no heap.
//!
//! # Invariants
//! - It accepts exactly what `serde_json::from_slice::<&RawValue>` accepts (one JSON value,
//!   RFC 8259, surrounded by optional white space; strings without raw control characters;
//!   escapes well formed, `\u` with four hex digits whatever the code point), except values
//!   nested deeper than [`MAX_DEPTH`], which it refuses. A test compares the two on generated
//!   inputs.
//! - The text it returns is the value without the surrounding white space, the same slice
//!   `RawValue::get` gives, so a JSON form built from it is byte for byte what `serde_json`
//!   writes.

/// Deepest nesting of arrays and objects accepted: the open containers are kept as bits of a
/// `u128`. `serde_json` parses typed values to the same depth by default.
pub(crate) const MAX_DEPTH: u32 = 128;

/// The JSON text of `bytes` without surrounding white space, if `bytes` is one JSON value.
pub(crate) fn json_text(bytes: &[u8]) -> Option<&str> {
    let text = core::str::from_utf8(bytes).ok()?;
    let b = text.as_bytes();
    let start = skip_ws(b, 0);
    let end = value(b, start)?;
    if skip_ws(b, end) != b.len() {
        return None;
    }
    text.get(start..end)
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The open containers: bit `n` of `kinds` is 1 when the container at depth `n + 1` is an
/// object.
struct Stack {
    kinds: u128,
    depth: u32,
}

impl Stack {
    fn push(&mut self, object: bool) -> Option<()> {
        if self.depth == MAX_DEPTH {
            return None;
        }
        self.kinds = (self.kinds & !(1 << self.depth)) | (u128::from(object) << self.depth);
        self.depth += 1;
        Some(())
    }

    fn top_is_object(&self) -> bool {
        self.depth > 0 && self.kinds >> (self.depth - 1) & 1 == 1
    }
}

/// Scans one value starting at `i` (no white space before it); returns the index after it.
fn value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut stack = Stack { kinds: 0, depth: 0 };
    loop {
        // A value is expected at `i`.
        i = skip_ws(b, i);
        match *b.get(i)? {
            open @ (b'[' | b'{') => {
                let object = open == b'{';
                stack.push(object)?;
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                    stack.depth -= 1;
                } else {
                    if object {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
            }
            b'"' => i = string(b, i)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // A value ended at `i`: close containers until one takes another element.
        loop {
            if stack.depth == 0 {
                return Some(i);
            }
            i = skip_ws(b, i);
            let object = stack.top_is_object();
            match (*b.get(i)?, object) {
                (b',', _) => {
                    i += 1;
                    if object {
                        i = member_key(b, skip_ws(b, i))?;
                    }
                    break;
                }
                (b']', false) | (b'}', true) => {
                    i += 1;
                    stack.depth -= 1;
                }
                _ => return None,
            }
        }
    }
}

/// Scans `"key" :` at `i`; returns the index after the colon.
#[inline]
fn member_key(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let i = skip_ws(b, string(b, i)?);
    (b.get(i) == Some(&b':')).then_some(i + 1)
}

/// The bytes that end a run of plain characters inside a string: the closing quote, an escape,
/// or a control character (which JSON forbids raw).
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = c < 0x20 || c == b'"' as usize || c == b'\\' as usize;
        c += 1;
    }
    table
};

/// The index of the first byte at or after `i` that ends a run of plain string characters.
///
/// Most of a payload is plain string characters, so they are skipped eight at a time: a word
/// holds a stop byte when one of its bytes is `"` or `\\` (equal to zero after an XOR) or below
/// 0x20 (the classic "has a zero / has a byte less than n" bit tricks, exact for the first
/// such byte, which is all that is used).
#[inline(always)]
fn plain_run(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let stops = stops & HIGH;
        if stops != 0 {
            // Little-endian: the lowest flagged byte is the first stop.
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    Some(
        i + b
            .get(i..)?
            .iter()
            .position(|&c| STRING_STOP[usize::from(c)])?,
    )
}

/// Scans a string whose opening quote is at `i`; returns the index after the closing quote.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i = plain_run(b, i)?;
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                i += 1;
                match *b.get(i)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                    b'u' => {
                        let hex = b.get(i + 1..i + 5)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 5;
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// Scans a number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i)?,
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    fn serde(bytes: &[u8]) -> Option<&str> {
        serde_json::from_slice::<&RawValue>(bytes)
            .ok()
            .map(RawValue::get)
    }

    #[test]
    fn known_cases() {
        let yes: [&str; 14] = [
            "0",
            "-0",
            " 1.5e+3 ",
            "-12.0E-7",
            "\"\"",
            r#""\u00e9\n\"\\\/""#,
            "\"h\u{e9}llo \u{1F600}\"",
            "[]",
            " { } ",
            r#"{"a":[1,{"b":null}],"c":true,"d":false}"#,
            "\t[ 1 , 2 ]\r\n",
            r#"{"k" : "v" , "k2":[]}"#,
            r#""\uD800""#,
            "123456789012345678901234567890",
        ];
        for text in yes {
            assert_eq!(
                json_text(text.as_bytes()),
                serde(text.as_bytes()),
                "{text:?}"
            );
            assert!(json_text(text.as_bytes()).is_some(), "{text:?}");
        }
        let no: [&[u8]; 22] = [
            b"",
            b"  ",
            b"01",
            b"1.",
            b".5",
            b"-",
            b"1e",
            b"+1",
            b"tru",
            b"nul",
            b"\"open",
            b"\"a\x01b\"",
            br#""\x""#,
            br#""\u12g4""#,
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"1 2",
            b"[}",
            b"\xff",
        ];
        for bytes in no {
            assert_eq!(json_text(bytes), None, "{bytes:?}");
            assert_eq!(serde(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = |n: usize| {
            let mut s = String::new();
            for _ in 0..n {
                s.push_str("[{\"k\":");
            }
            s.push('1');
            for _ in 0..n {
                s.push_str("}]");
            }
            s
        };
        let ok = deep(MAX_DEPTH as usize / 2);
        assert_eq!(json_text(ok.as_bytes()), Some(ok.as_str()));
        assert_eq!(json_text(deep(MAX_DEPTH as usize / 2 + 1).as_bytes()), None);
        // Far deeper than any stack would take if this recursed.
        assert_eq!(json_text("[".repeat(1_000_000).as_bytes()), None);
    }

    /// JSON-ish text: tokens of the grammar in any order, so that most inputs are near misses.
    fn soup() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b","[..]),
            Just(&b":"[..]),
            Just(&b"\""[..]),
            Just(&b"\"k\""[..]),
            Just(&b"\\"[..]),
            Just(&b"\\u00e9"[..]),
            Just(&b"\\u12"[..]),
            Just(&b" "[..]),
            Just(&b"\n"[..]),
            Just(&b"-"[..]),
            Just(&b"0"[..]),
            Just(&b"17"[..]),
            Just(&b"."[..]),
            Just(&b"e"[..]),
            Just(&b"+"[..]),
            Just(&b"true"[..]),
            Just(&b"nul"[..]),
            Just(&b"null"[..]),
            Just(&b"\x01"[..]),
            Just("\u{e9}".as_bytes()),
            Just(&b"\xff"[..]),
        ];
        proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
    }

    /// Well-formed JSON values, with white space in between, to check acceptance.
    fn values() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(String::from("null")),
            any::<bool>().prop_map(|b| alloc::format!("{b}")),
            any::<i64>().prop_map(|n| alloc::format!("{n}")),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| alloc::format!("{f:e}")),
            "[a-z\u{e9}\\\\\"\n]{0,6}"
                .prop_map(|s| serde_json::to_string(&s).expect("a string encodes")),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| alloc::format!("[ {} ]", v.join(" ,"))),
                proptest::collection::vec(("[a-z]{0,3}", inner), 0..6).prop_map(|v| {
                    let members: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| alloc::format!("\"{k}\" :{v}"))
                        .collect();
                    alloc::format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn agrees_with_serde_json_on_near_misses(bytes in soup()) {
            prop_assert_eq!(json_text(&bytes), serde(&bytes));
        }

        #[test]
        fn agrees_with_serde_json_on_values(text in values(), pad in "[ \t\n]{0,2}") {
            let padded = alloc::format!("{pad}{text}{pad}");
            prop_assert_eq!(json_text(padded.as_bytes()), Some(text.as_str()));
            prop_assert_eq!(json_text(padded.as_bytes()), serde(padded.as_bytes()));
        }
    }
}
