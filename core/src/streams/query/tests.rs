use super::*;

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A products file's bytes.
fn doc(products: Value) -> Vec<u8> {
    let doc = serde_json::json!({
        "format": "products:1.0", "content_id": "c", "products": products
    });
    serde_json::to_vec(&doc).unwrap()
}

fn query(p: &[u8], opts: &QueryOptions) -> Result<(String, String)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    query_products(&[("t", p, "/m/")], opts, &mut out, &mut err)?;
    Ok((
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    ))
}

fn run(p: &[u8], opts: &QueryOptions) -> (String, String) {
    query(p, opts).unwrap()
}

fn opts(filters: &[&str], max: Option<i64>, fmt: &str) -> QueryOptions {
    QueryOptions {
        filters: ItemFilter::parse_all(filters).unwrap(),
        max_items: max,
        output: Output::Format(fmt.into()),
    }
}

fn versions_doc() -> Vec<u8> {
    let item = |a: &str| serde_json::json!({"items": {"i": {"arch": a}}});
    doc(serde_json::json!({
        "p": {"versions": {"2": item("x"), "3": item("y"), "1": item("x"), "10": item("x")}},
        "e": {"versions": {"9": {}, "1": item("x")}}
    }))
}

#[test]
fn versions_sorted_newest_first_and_max_applies_after_filtering() {
    let p = versions_doc();
    let o = |f: &[&str], m| run(&p, &opts(f, m, "%(product_name)s %(version_name)s")).0;
    assert_eq!(o(&[], None), "p 3\np 2\np 10\np 1\ne 1\n");
    assert_eq!(o(&["arch=x"], Some(2)), "p 2\np 10\ne 1\n");
    // A version that never had items counts for --max.
    assert_eq!(o(&[], Some(1)), "p 3\n");
    assert_eq!(o(&[], Some(0)), "");
    assert_eq!(o(&["arch=x"], Some(-1)), "p 2\np 10\n");
    assert_eq!(o(&[], Some(-9)), "");
}

#[test]
fn missing_keys_are_reported_and_the_query_goes_on() {
    let p = versions_doc();
    let (out, err) = run(&p, &opts(&["version_name=3"], None, "%(nope)s"));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "output format failed. Missing nope\nitem: {'format': 'products:1.0', 'content_id': 'c', 'product_name': 'p', 'version_name': '3', 'arch': 'y', 'item_name': 'i'}\n"
    );
}

#[test]
fn items_with_a_path_get_an_item_url_and_need_checksum_and_size() {
    let p = doc(serde_json::json!({"p": {"versions": {"1": {"items": {
        "i": {"path": "a/b", "sha256": SHA, "size": 3}}}}}}));
    let (out, _) = run(&p, &opts(&[], None, "%(item_url)s"));
    assert_eq!(out, "/m/a/b\n");
    let p = doc(serde_json::json!({"p": {"versions": {"1": {"items": {
        "i": {"path": "a/b", "size": 3}}}}}}));
    let e = query(&p, &QueryOptions::default()).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(is_python_int(" +1_000 ") && !is_python_int("1.5") && !is_python_int("1__0"));
}

/// Products printed by several threads come out in document order; an
/// error while printing stops the output after the products before it;
/// a product failing its checks prints nothing at all.
#[test]
fn products_printed_by_threads_keep_document_order_and_error_semantics() {
    let n = PARALLEL_MIN_PRODUCTS * 4;
    let many = |broken: Option<(usize, Value)>| {
        let mut products = serde_json::Map::new();
        for p in 0..n {
            let item = match &broken {
                Some((b, v)) if *b == p => v.clone(),
                _ => serde_json::json!({"path": format!("p{p}"), "sha256": SHA, "size": 1}),
            };
            products.insert(
                format!("p{p:03}"),
                serde_json::json!({"versions": {"1": {"items": {"i": item}}}}),
            );
        }
        doc(Value::Object(products))
    };
    let fmt = opts(&[], None, "%(product_name)s");
    let want: String = (0..n).map(|p| format!("p{p:03}\n")).collect();
    assert_eq!(run(&many(None), &fmt).0, want);
    let partial = |broken: Value, at: usize| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let bytes = many(Some((at, broken)));
        let e = query_products(&[("t", &bytes, "/m/")], &fmt, &mut out, &mut err)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("product p{at:03}")), "{e}");
        String::from_utf8(out).unwrap()
    };
    let no_checksum = serde_json::json!({"path": "x", "size": 1});
    assert_eq!(partial(no_checksum, 41), want[..41 * 5]);
    let unsafe_path = serde_json::json!({"path": "../x", "sha256": SHA, "size": 1});
    assert_eq!(partial(unsafe_path, 50), "");
}

#[test]
fn borrowed_flattening_agrees_with_flatten() {
    let text = br#"{"format":"products:1.0","content_id":"c","n":1.5,"arch":"x",
        "_aliases":{"crsn":{"r1":{"region":"r1","arch":"aliased"}}},
        "products":{"p":{"arch":"y","crsn":"r1","versions":{"1":{"label":"l","product_name":"v",
        "items":{"i":{"arch":"z","size":3,"ok":true,"list":[1],"crsn":"r1"},"j":{"n":null}}}}}}}"#;
    let products = crate::streams::products::Products::parse("t", text).unwrap();
    let want = crate::streams::flatten::flatten(&products);
    let doc = tree::parse_object("t", text).unwrap();
    let aliases = doc.get(ALIASES).and_then(Node::as_object);
    let level = |n: &'static [&str]| {
        let mut o = &doc;
        for k in n {
            o = o.get(k).and_then(Node::as_object).unwrap();
        }
        expanded(o, aliases)
    };
    let mut top = Flat::default();
    top.add_level(&expanded(&doc, aliases));
    let pf = top.child(&level(&["products", "p"]), "product_name", "p");
    let vf = pf.child(
        &level(&["products", "p", "versions", "1"]),
        "version_name",
        "1",
    );
    let items = [
        (
            "i",
            level(&["products", "p", "versions", "1", "items", "i"]),
        ),
        (
            "j",
            level(&["products", "p", "versions", "1", "items", "j"]),
        ),
    ];
    let got: Vec<Value> = items
        .iter()
        .map(|(name, m)| vf.child(m, "item_name", name).to_json())
        .collect();
    let want: Vec<Value> = want.into_iter().map(Value::Object).collect();
    assert_eq!(got, want);
    let keys = |x: &Value| x.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got[0]), keys(&want[0]));
}

#[test]
fn json_output_collects_every_item() {
    let p = versions_doc();
    let o = QueryOptions {
        filters: ItemFilter::parse_all(&["product_name=e"]).unwrap(),
        output: Output::Json,
        ..Default::default()
    };
    let (out, _) = run(&p, &o);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(out.starts_with("[\n  {\n    \"arch\": \"x\",\n"), "{out}");
    let o = QueryOptions {
        filters: ItemFilter::parse_all(&["product_name=none"]).unwrap(),
        output: Output::Json,
        ..Default::default()
    };
    assert_eq!(run(&p, &o).0, "[]\n");
}
