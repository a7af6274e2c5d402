//! Item filters (`key=value`, `key!=value`, `key~regex`, `key!~regex`) as
//! every command that takes them parses and applies them. The first line is
//! the filter, the rest the value it is matched against.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfs_core::streams::filter::ItemFilter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter, value) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(f) = ItemFilter::parse(filter) else {
        return;
    };
    // A filter prints as it parses: error messages and logs show what runs.
    let shown = f.to_string();
    let again = ItemFilter::parse(&shown).expect("a printed filter parses");
    assert_eq!(
        (again.key(), again.op(), again.value()),
        (f.key(), f.op(), f.value()),
        "filter {filter:?} printed as {shown:?}"
    );
    let _ = f.matches_value(Some(value));
    let _ = f.matches_value(None);
});
