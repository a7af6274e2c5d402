//! Products and index documents as `mountctl insert`, the mount's
//! `streams/v1/` writes and `mountctl query` read them: parsing, validation,
//! the meph2 serialization round trip, flattening, condensing and querying.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfs_core::streams::Products;
use streamfs_core::streams::condense::{condense, push_down};
use streamfs_core::streams::flatten::flatten;
use streamfs_core::streams::index::parse_index;
use streamfs_core::streams::query::{Output, Query, QueryOptions, tree};

fuzz_target!(|data: &[u8]| {
    let _ = parse_index("fuzz.json", data);

    // The query reads documents into its own borrowed tree.
    if let Ok(doc) = tree::parse_object("fuzz.json", data) {
        for output in [Output::default(), Output::Json] {
            let opts = QueryOptions {
                output,
                ..QueryOptions::default()
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut q = Query::new(&opts, &mut out, &mut err);
            if q.products("fuzz.json", &doc, "").is_ok() {
                let _ = q.finish();
            }
        }
    }

    let Ok(products) = Products::parse("fuzz.json", data) else {
        return;
    };
    // What streamfs writes, it reads back unchanged.
    let bytes = products.to_bytes();
    let again = Products::parse("again.json", &bytes).expect("a written document parses");
    assert_eq!(again, products, "serialization round trip");
    let _ = flatten(&products);
    let mut condensed = products.clone();
    condense(&mut condensed);
    push_down(&mut condensed);
    condensed.sort();
    let _ = condensed.version_keys();
    for item in products.items() {
        let _ = (item.path(), item.sha256(), item.size(), item.what());
    }
});
