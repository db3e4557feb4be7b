//! Full-text search: one tokenizer for documents and queries, in Rust, so
//! SQLite FTS5 and PostgreSQL `tsvector` see the same words and no user
//! input ever reaches either query syntax.
//!
//! A word is a run of alphanumeric characters, lower-cased; everything else
//! separates words (`alice@example.com` is `alice example com`). A query
//! matches an order that has every query word, the last one as a prefix
//! (`blue wid` finds "Blue Widget"). Since query words contain only letters
//! and digits, quotes, parentheses, `AND`/`OR`/`NEAR`, `*`, `:`, `&`, `!`
//! are either separators or quoted plain words: a query can never be a
//! syntax error.

/// Most words of a query used (the rest are ignored).
const MAX_QUERY_WORDS: usize = 16;
/// Longest word kept in a query, in characters.
const MAX_WORD_CHARS: usize = 64;

/// The words of `text`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The searchable document of an order: its words, separated by spaces.
pub(crate) fn document<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut doc = String::new();
    for part in parts {
        for w in words(part) {
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(&w);
        }
    }
    doc
}

/// The words of a user query (`None` if it has none, i.e. no text filter).
pub(crate) fn query_words(q: &str) -> Option<Vec<String>> {
    let ws: Vec<String> = words(q)
        .take(MAX_QUERY_WORDS)
        .map(|w| w.chars().take(MAX_WORD_CHARS).collect())
        .collect();
    if ws.is_empty() { None } else { Some(ws) }
}

/// An FTS5 MATCH expression: every word as a quoted string, the last a
/// prefix (`"blue" "wid"*`).
pub(crate) fn fts5_query(words: &[String]) -> String {
    let last = words.len().saturating_sub(1);
    let parts: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == last {
                format!("\"{w}\"*")
            } else {
                format!("\"{w}\"")
            }
        })
        .collect();
    parts.join(" ")
}

/// A PostgreSQL `to_tsquery` text: `blue & wid:*`.
pub(crate) fn ts_query(words: &[String]) -> String {
    let mut q = words.join(" & ");
    q.push_str(":*");
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_queries_split_alike() {
        assert_eq!(
            document(["Alice@Example.com", "cust-42", "Blue Widget"]),
            "alice example com cust 42 blue widget"
        );
        let q = query_words("  \"blue\" (WID* OR NEAR:x) ").unwrap();
        assert_eq!(q, ["blue", "wid", "or", "near", "x"]);
        assert_eq!(fts5_query(&q), r#""blue" "wid" "or" "near" "x"*"#);
        assert_eq!(ts_query(&q[..2]), "blue & wid:*");
        assert_eq!(query_words(" ()*:'\" & | !"), None);
        assert_eq!(document(["Café Über"]), "café über");
    }
}
