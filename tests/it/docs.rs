//! Documentation generated from the code must stay true.

use std::path::Path;

#[test]
fn data_dictionary_matches_the_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/data-dictionary.md");
    let want = shoplake_core::schema::data_dictionary_markdown();
    let got = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); write it with\n    cargo run -- catalog dictionary > docs/data-dictionary.md",
            path.display()
        )
    });
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || format!("line {}", got.lines().count().min(want.lines().count()) + 1),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "{} is out of date (first difference at {line}); regenerate it with\n    cargo run -- catalog dictionary > docs/data-dictionary.md",
            path.display()
        );
    }
}
