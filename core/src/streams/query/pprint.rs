//! Python's `pprint.pprint(item)` (width 80, indent 1, keys sorted) of a
//! flattened item, for `--pretty`, following `pprint.PrettyPrinter`'s
//! `_format`, `_pprint_dict` and `_pprint_str` as of Python 3.11: a dict
//! that does not fit on one line gets one key per line, and a string value
//! that does not fit is split after whitespace into adjacent literals.

use super::pyfmt::{Entries, repr, split_lines_keepends, write_dict_repr};

const WIDTH: usize = 80;

/// The text `pprint.pprint(item)` prints, trailing newline included.
pub fn pformat(item: &impl Entries) -> String {
    let mut entries: Vec<(&str, &str)> = item.pairs().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut one_line = String::new();
    write_dict_repr(&mut one_line, entries.iter().copied(), false);
    let mut out = String::with_capacity(one_line.len() + 64);
    if one_line.chars().count() <= WIDTH {
        out.push_str(&one_line);
    } else {
        // _pprint_dict at level 1, indent 0, allowance 0.
        out.push('{');
        let indent = 1;
        let last = entries.len().saturating_sub(1);
        for (i, (k, v)) in entries.iter().enumerate() {
            let key = repr(k);
            out.push_str(&key);
            out.push_str(": ");
            // _format_dict_items gives every value an allowance of 1: the
            // `,` after it, or the closing `}` after the last one.
            format_str(&mut out, v, indent + key.chars().count() + 2, 1);
            if i != last {
                out.push_str(",\n");
                out.extend(std::iter::repeat_n(' ', indent));
            }
        }
        out.push('}');
    }
    out.push('\n');
    out
}

/// `_format` of a string nested in a dict (level 2: no parentheses).
fn format_str(out: &mut String, s: &str, indent: usize, allowance: usize) {
    let rep = repr(s);
    let max_width = WIDTH as isize - indent as isize - allowance as isize;
    if rep.chars().count() as isize <= max_width || s.is_empty() {
        out.push_str(&rep);
        return;
    }
    let lines = split_lines_keepends(s);
    let max_width = WIDTH as isize - indent as isize;
    let mut max_width1 = max_width;
    let mut chunks: Vec<String> = Vec::new();
    let mut last_rep = String::new();
    for (i, line) in lines.iter().enumerate() {
        let is_last_line = i == lines.len() - 1;
        last_rep = repr(line);
        if is_last_line {
            max_width1 -= allowance as isize;
        }
        if last_rep.chars().count() as isize <= max_width1 {
            chunks.push(last_rep.clone());
            continue;
        }
        let parts = whitespace_parts(line);
        let mut max_width2 = max_width;
        let mut current = String::new();
        for (j, part) in parts.iter().enumerate() {
            let candidate = format!("{current}{part}");
            if j == parts.len() - 1 && is_last_line {
                max_width2 -= allowance as isize;
            }
            if repr(&candidate).chars().count() as isize > max_width2 {
                if !current.is_empty() {
                    chunks.push(repr(&current));
                }
                current = part.to_string();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            chunks.push(repr(&current));
        }
    }
    if chunks.len() == 1 {
        // Python writes the last line's repr here, not the chunk.
        out.push_str(&last_rep);
        return;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        out.push_str(chunk);
    }
}

/// Python's `str.isspace()`: Unicode White_Space plus the information
/// separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `re.findall(r'\S*\s*', line)` without its final empty match.
fn whitespace_parts(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let non_space = rest.find(is_py_space).unwrap_or(rest.len());
        let after = &rest[non_space..];
        let space = after.find(|c| !is_py_space(c)).unwrap_or(after.len());
        let end = non_space + space;
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn item(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    // Expected outputs are Python 3.11's `pprint.pprint` of the same dicts.
    #[test]
    fn short_dicts_stay_on_one_line_sorted() {
        assert_eq!(
            pformat(&item(&[("b", "1"), ("a", "2")])),
            "{'a': '2', 'b': '1'}\n"
        );
    }

    #[test]
    fn long_dicts_and_strings_wrap_like_python() {
        let long = "word ".repeat(20);
        let got = pformat(&item(&[
            ("path", "a/b/c"),
            ("description", &long),
            ("lines", "one\ntwo\n"),
            ("url", &"x".repeat(90)),
        ]));
        let want = concat!(
            "{'description': 'word word word word word word word word word word word word '\n",
            "                'word word word word word word word word ',\n",
            " 'lines': 'one\\ntwo\\n',\n",
            " 'path': 'a/b/c',\n",
            " 'url': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'}\n",
        );
        assert_eq!(got, want);
    }

    #[test]
    fn splitting_helpers_match_python() {
        assert_eq!(whitespace_parts("a  b\tc "), ["a  ", "b\t", "c "]);
        assert_eq!(whitespace_parts("  a"), ["  ", "a"]);
    }
}
