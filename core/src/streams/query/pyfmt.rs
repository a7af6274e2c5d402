//! Python's text renderings of a flattened item, as sstream-query prints
//! them: `str()`/`repr()`/`ascii()` of a `dict` of `str`, and `FMT % item`
//! (printf-style formatting with a mapping, the `-o` option).
//!
//! Flattened items hold only strings (python-simplestreams' `stringitems`),
//! so only string and dict values need rendering; numeric conversions such
//! as `%d` fail on them in Python, and fail here with Python's message.

use serde_json::{Map, Value};

use super::printable::is_printable;

/// `repr(s)` (or `ascii(s)` when `ascii`), appended to `out`. Python quotes
/// with `'` unless the string holds a `'` and no `"`.
pub fn write_repr(out: &mut String, s: &str, ascii: bool) {
    // What almost every string is: printable ASCII without a backslash.
    // Folded without an early exit so that it vectorizes; the quote
    // searches are memchr.
    let plain_ascii = s.bytes().fold(true, |ok, b| {
        ok & (b.wrapping_sub(b' ') < 95) & (b != b'\\')
    });
    let single = s.contains('\'');
    let double = single && s.contains('"');
    if plain_ascii && !(single && double) {
        let quote = if single { '"' } else { '\'' };
        out.reserve(s.len() + 2);
        out.push(quote);
        out.push_str(s);
        out.push(quote);
        return;
    }
    let quote = if single && !double { '"' } else { '\'' };
    out.reserve(s.len() + 2);
    out.push(quote);
    // Most text is printable ASCII that needs no escape: copy it in runs.
    let plain = |b: u8| (b' '..=b'~').contains(&b) && b != b'\\' && b != quote as u8;
    let mut rest = s;
    while !rest.is_empty() {
        let run = rest.bytes().position(|b| !plain(b)).unwrap_or(rest.len());
        out.push_str(&rest[..run]);
        rest = &rest[run..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if !ascii && c > '\u{7f}' && is_printable(c) => out.push(c),
            c => push_escape(out, c),
        }
    }
    out.push(quote);
}

/// `\xhh`, `\uhhhh` or `\Uhhhhhhhh`, the shortest Python allows for `c`.
fn push_escape(out: &mut String, c: char) {
    use std::fmt::Write;
    let n = c as u32;
    // Writing to a String cannot fail.
    let _ = if n <= 0xff {
        write!(out, "\\x{n:02x}")
    } else if n <= 0xffff {
        write!(out, "\\u{n:04x}")
    } else {
        write!(out, "\\U{n:08x}")
    };
}

pub fn repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_repr(&mut out, s, false);
    out
}

/// A flattened item as the renderings see it: string values by key, and
/// the pairs in the item's order. Implemented by the query's borrowed items
/// and by plain JSON maps.
pub trait Entries {
    fn lookup(&self, key: &str) -> Option<&str>;
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)>;

    /// `repr(item)` (`ascii(item)` when `ascii`) appended to `out`; items
    /// that keep some pairs already rendered override it.
    fn write_dict_repr(&self, out: &mut String, ascii: bool) {
        write_dict_repr(out, self.pairs(), ascii);
    }
}

impl Entries for Map<String, Value> {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }
}

/// `str(item)` (= `repr(item)`) of a flattened item, pairs in the given
/// order; `ascii(item)` when `ascii`.
pub fn write_dict_repr<'a>(
    out: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ascii: bool,
) {
    out.push('{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_dict_pair(out, k, v, ascii);
    }
    out.push('}');
}

/// One `key: value` pair of a dict's repr.
pub fn write_dict_pair(out: &mut String, k: &str, v: &str, ascii: bool) {
    write_repr(out, k, ascii);
    out.push_str(": ");
    write_repr(out, v, ascii);
}

pub fn dict_repr(item: &impl Entries) -> String {
    let mut out = String::with_capacity(1024);
    item.write_dict_repr(&mut out, false);
    out
}

/// Why `FMT % item` failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Python's `KeyError`: sstream-query reports it and goes on.
    MissingKey(String),
    /// Python's `TypeError`/`ValueError` (message as Python words it): fatal
    /// to sstream-query.
    Python { kind: &'static str, message: String },
}

fn type_error(message: impl Into<String>) -> FormatError {
    FormatError::Python {
        kind: "TypeError",
        message: message.into(),
    }
}

fn value_error(message: impl Into<String>) -> FormatError {
    FormatError::Python {
        kind: "ValueError",
        message: message.into(),
    }
}

/// A width or precision: a number or `*` (taken from the arguments).
#[derive(Clone, Debug)]
enum Count {
    Num(usize),
    Star,
}

#[derive(Clone, Debug)]
struct Spec {
    key: Option<String>,
    left: bool,
    width: Option<Count>,
    precision: Option<Count>,
    conversion: char,
    /// Index (in characters) of the conversion character, for messages.
    index: usize,
}

#[derive(Clone, Debug)]
enum Piece {
    Literal(String),
    Spec(Spec),
    /// A syntax error Python raises when formatting reaches this point
    /// (not before: a missing key earlier in the format wins).
    Invalid(FormatError),
}

/// A printf-style format compiled once and applied to every item.
#[derive(Clone, Debug)]
pub struct PercentFormat {
    pieces: Vec<Piece>,
}

/// The argument the next conversion consumes: Python formats
/// `FMT % mapping` with the mapping itself as the one positional argument,
/// and each `%(key)` replaces it by the key's value.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Dict,
    Str(&'a str),
}

impl Arg<'_> {
    fn type_name(self) -> &'static str {
        match self {
            Arg::Dict => "dict",
            Arg::Str(_) => "str",
        }
    }
}

impl PercentFormat {
    /// Compiles `fmt` following CPython's `PyUnicode_Format`.
    pub fn new(fmt: &str) -> Self {
        let chars: Vec<char> = fmt.chars().collect();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        let n = chars.len();
        let flush = |lit: &mut String, pieces: &mut Vec<Piece>| {
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(lit)));
            }
        };
        while i < n {
            if chars[i] != '%' {
                lit.push(chars[i]);
                i += 1;
                continue;
            }
            i += 1;
            if i < n && chars[i] == '%' {
                lit.push('%');
                i += 1;
                continue;
            }
            flush(&mut lit, &mut pieces);
            match parse_spec(&chars, &mut i) {
                Ok(spec) => pieces.push(Piece::Spec(spec)),
                Err(e) => {
                    pieces.push(Piece::Invalid(e));
                    return PercentFormat { pieces };
                }
            }
        }
        flush(&mut lit, &mut pieces);
        PercentFormat { pieces }
    }

    /// Whether some conversion renders the whole item (`%s`, `%r`), which
    /// is worth preparing for when many items share their upper levels.
    pub fn renders_item(&self) -> bool {
        self.pieces.iter().any(
            |p| matches!(p, Piece::Spec(s) if s.key.is_none() && matches!(s.conversion, 's' | 'r')),
        )
    }

    /// `FMT % item`.
    pub fn format(&self, item: &impl Entries) -> Result<String, FormatError> {
        let mut out = String::new();
        self.format_into(item, &mut out)?;
        Ok(out)
    }

    /// `FMT % item`, appended to `out` (which is left with part of it on an
    /// error): one buffer serves every item of a query.
    pub fn format_into(&self, item: &impl Entries, out: &mut String) -> Result<(), FormatError> {
        let mut arg = Some(Arg::Dict);
        for piece in &self.pieces {
            let spec = match piece {
                Piece::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Piece::Invalid(e) => return Err(e.clone()),
                Piece::Spec(spec) => spec,
            };
            if let Some(key) = &spec.key {
                match item.lookup(key) {
                    Some(v) => arg = Some(Arg::Str(v)),
                    None => return Err(FormatError::MissingKey(key.clone())),
                }
            }
            let mut next_arg = || {
                arg.take()
                    .ok_or_else(|| type_error("not enough arguments for format string"))
            };
            for count in [&spec.width, &spec.precision] {
                if let Some(Count::Star) = count {
                    next_arg()?;
                    return Err(type_error("* wants int"));
                }
            }
            let value = next_arg()?;
            // Without width or precision, text is rendered in place (an
            // item's `%s` is its whole line: no copy, no count of its chars).
            if matches!(spec.conversion, 's' | 'r' | 'a')
                && spec.width.is_none()
                && spec.precision.is_none()
            {
                let ascii = spec.conversion == 'a';
                match (value, spec.conversion) {
                    (Arg::Str(v), 's') => out.push_str(v),
                    (Arg::Str(v), _) => write_repr(out, v, ascii),
                    (Arg::Dict, _) => item.write_dict_repr(out, ascii),
                }
                continue;
            }
            let text = match spec.conversion {
                's' | 'r' | 'a' => {
                    let ascii = spec.conversion == 'a';
                    let mut s = String::new();
                    match (value, spec.conversion) {
                        (Arg::Str(v), 's') => s.push_str(v),
                        (Arg::Str(v), _) => write_repr(&mut s, v, ascii),
                        (Arg::Dict, _) => item.write_dict_repr(&mut s, ascii),
                    }
                    match spec.precision {
                        Some(Count::Num(p)) => s.chars().take(p).collect(),
                        _ => s,
                    }
                }
                'c' => match value {
                    Arg::Str(v) if v.chars().count() == 1 => v.to_string(),
                    _ => return Err(type_error("%c requires int or char")),
                },
                c @ ('d' | 'i' | 'u') => {
                    return Err(type_error(format!(
                        "%{c} format: a real number is required, not {}",
                        value.type_name()
                    )));
                }
                c @ ('o' | 'x' | 'X') => {
                    return Err(type_error(format!(
                        "%{c} format: an integer is required, not {}",
                        value.type_name()
                    )));
                }
                'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
                    return Err(type_error(format!(
                        "must be real number, not {}",
                        value.type_name()
                    )));
                }
                c => {
                    let shown = if (' '..='~').contains(&c) || c == '\u{1f}' {
                        c
                    } else {
                        '?'
                    };
                    return Err(value_error(format!(
                        "unsupported format character '{shown}' (0x{:x}) at index {}",
                        c as u32, spec.index
                    )));
                }
            };
            pad(out, &text, spec);
        }
        Ok(())
    }
}

fn pad(out: &mut String, text: &str, spec: &Spec) {
    let width = match spec.width {
        Some(Count::Num(w)) => w,
        _ => 0,
    };
    let len = text.chars().count();
    let fill = width.saturating_sub(len);
    if !spec.left {
        out.extend(std::iter::repeat_n(' ', fill));
    }
    out.push_str(text);
    if spec.left {
        out.extend(std::iter::repeat_n(' ', fill));
    }
}

/// Parses what follows a `%` (not `%%`): `(key)`, flags, width, precision,
/// length modifier, conversion. `i` ends after the conversion character.
fn parse_spec(chars: &[char], i: &mut usize) -> Result<Spec, FormatError> {
    let n = chars.len();
    let incomplete = || value_error("incomplete format");
    let mut key = None;
    if *i < n && chars[*i] == '(' {
        let mut depth = 1;
        let start = *i + 1;
        let mut j = start;
        while j < n && depth > 0 {
            match chars[j] {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        if depth > 0 {
            return Err(value_error("incomplete format key"));
        }
        key = Some(chars[start..j - 1].iter().collect());
        *i = j;
    }
    let mut left = false;
    while *i < n && matches!(chars[*i], '-' | '+' | ' ' | '#' | '0') {
        left |= chars[*i] == '-';
        *i += 1;
    }
    let width = parse_count(chars, i, "width too big")?;
    let mut precision = None;
    if *i < n && chars[*i] == '.' {
        *i += 1;
        precision = Some(parse_count(chars, i, "precision too big")?.unwrap_or(Count::Num(0)));
    }
    if *i < n && matches!(chars[*i], 'h' | 'l' | 'L') {
        *i += 1;
    }
    if *i >= n {
        return Err(incomplete());
    }
    let conversion = chars[*i];
    let index = *i;
    *i += 1;
    Ok(Spec {
        key,
        left,
        width,
        precision,
        conversion,
        index,
    })
}

fn parse_count(
    chars: &[char],
    i: &mut usize,
    too_big: &'static str,
) -> Result<Option<Count>, FormatError> {
    if *i < chars.len() && chars[*i] == '*' {
        *i += 1;
        return Ok(Some(Count::Star));
    }
    let mut num: Option<usize> = None;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        // Python refuses counts beyond its ssize_t.
        let next = num
            .unwrap_or(0)
            .checked_mul(10)
            .and_then(|x| x.checked_add(d as usize))
            .filter(|&x| x <= isize::MAX as usize)
            .ok_or_else(|| value_error(too_big))?;
        num = Some(next);
        *i += 1;
    }
    Ok(num.map(Count::Num))
}

/// `str.splitlines(keepends=True)`.
pub fn split_lines_keepends(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let end = match c {
            '\r' => match iter.peek() {
                Some(&(j, '\n')) => {
                    iter.next();
                    j + 1
                }
                _ => i + 1,
            },
            c if is_line_break(c) => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..end]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `str.splitlines()`: the lines without their line breaks.
pub fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    split_lines_keepends(s).into_iter().map(|line| {
        let line = line.strip_suffix("\r\n").unwrap_or(line);
        match line.chars().next_back() {
            Some(c) if is_line_break(c) => &line[..line.len() - c.len_utf8()],
            _ => line,
        }
    })
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{b}'
            | '\u{c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Map<String, Value> {
        [("a", "x"), ("b", "yy")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    fn fmt(f: &str) -> Result<String, FormatError> {
        PercentFormat::new(f).format(&item())
    }

    fn py_err(f: &str) -> String {
        match fmt(f) {
            Err(FormatError::Python { kind, message }) => format!("{kind}: {message}"),
            other => panic!("{f:?}: {other:?}"),
        }
    }

    #[test]
    fn repr_quotes_and_escapes_like_python() {
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("say \"hi\""), "'say \"hi\"'");
        assert_eq!(repr("both ' \""), "'both \\' \"'");
        assert_eq!(
            repr("\0\u{7f}\u{80}\u{a0}\u{ad}\u{2028}😀\t\n\r\\é"),
            "'\\x00\\x7f\\x80\\xa0\\xad\\u2028😀\\t\\n\\r\\\\é'"
        );
        assert_eq!(repr("\u{378}\u{e0001}"), "'\\u0378\\U000e0001'");
        let mut s = String::new();
        write_repr(&mut s, "é😀", true);
        assert_eq!(s, "'\\xe9\\U0001f600'");
    }

    #[test]
    fn splitlines_like_python() {
        let s = "a\r\nb\rc\u{2028}d\n\ne";
        assert_eq!(
            split_lines_keepends(s),
            ["a\r\n", "b\r", "c\u{2028}", "d\n", "\n", "e"]
        );
        assert_eq!(
            split_lines(s).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "", "e"]
        );
        assert!(split_lines("").next().is_none());
    }

    #[test]
    fn dict_repr_like_python() {
        assert_eq!(dict_repr(&item()), "{'a': 'x', 'b': 'yy'}");
    }

    // Expected values are what Python 3.11 gives for `f % {'a': 'x', 'b': 'yy'}`.
    #[test]
    fn percent_format_like_python() {
        assert_eq!(fmt("%(a)s %(b)s").unwrap(), "x yy");
        assert_eq!(fmt("%s %(a)s").unwrap(), "{'a': 'x', 'b': 'yy'} x");
        assert_eq!(fmt("abc").unwrap(), "abc");
        assert_eq!(
            fmt("%(a)5s|%(a)-5s|%(b).1s|%(a)05s").unwrap(),
            "    x|x    |y|    x"
        );
        assert_eq!(fmt("%(a)r %(a)a %(a)c %(a)-3c|").unwrap(), "'x' 'x' x x  |");
        assert_eq!(
            fmt("%(a)ls %(b)hs %(a).s|%(a) +#0-4s|").unwrap(),
            "x yy |x   |"
        );
        assert_eq!(fmt("%s%%%(a)s").unwrap(), "{'a': 'x', 'b': 'yy'}%x");
        assert_eq!(fmt("%.1s").unwrap(), "{");
        assert_eq!(fmt("100%%").unwrap(), "100%");
    }

    #[test]
    fn percent_format_errors_like_python() {
        assert_eq!(fmt("%(z)s %y"), Err(FormatError::MissingKey("z".into())));
        assert_eq!(
            fmt("%(a(b)s)s").unwrap_err(),
            FormatError::MissingKey("a(b)s".into())
        );
        for (f, e) in [
            (
                "%(a)s %s",
                "TypeError: not enough arguments for format string",
            ),
            (
                "%(a)s %y",
                "TypeError: not enough arguments for format string",
            ),
            ("%s %s", "TypeError: not enough arguments for format string"),
            (
                "%y %(z)s",
                "ValueError: unsupported format character 'y' (0x79) at index 1",
            ),
            (
                "%é",
                "ValueError: unsupported format character '?' (0xe9) at index 1",
            ),
            (
                "%(a)%",
                "ValueError: unsupported format character '%' (0x25) at index 4",
            ),
            (
                "%5%",
                "ValueError: unsupported format character '%' (0x25) at index 2",
            ),
            (
                "%(a)lld",
                "ValueError: unsupported format character 'l' (0x6c) at index 5",
            ),
            ("%(a(b)s", "ValueError: incomplete format key"),
            ("abc %", "ValueError: incomplete format"),
            ("%(a)L", "ValueError: incomplete format"),
            ("%(a)3.", "ValueError: incomplete format"),
            ("%(a)*s", "TypeError: * wants int"),
            ("%(b)c", "TypeError: %c requires int or char"),
            (
                "%(a)d",
                "TypeError: %d format: a real number is required, not str",
            ),
            (
                "%u",
                "TypeError: %u format: a real number is required, not dict",
            ),
            (
                "%(a)X",
                "TypeError: %X format: an integer is required, not str",
            ),
            ("%(a)e", "TypeError: must be real number, not str"),
            ("%(a)099999999999999999999s", "ValueError: width too big"),
        ] {
            assert_eq!(py_err(f), e, "{f:?}");
        }
    }
}
