//! What every collector fuzz target (`fuzz/`) does with its input, and the
//! test that replays the kept corpus in every test run: the first byte
//! picks a request shape (path, query, content encoding, privacy rules);
//! the rest is the body. The collector must answer (events, rejections or
//! an error), never panic, and every accepted event must be one it could
//! store.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::{Collector, CollectorOptions, Input, PiiRules, Protocol};
use shoplake_core::config::PrivacyConfig;
use shoplake_core::privacy::PiiKey;

fn collectors() -> &'static [Collector; 2] {
    static C: OnceLock<[Collector; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let key = PiiKey::from_secret(&[9u8; 32]).expect("32 bytes");
        let private = CollectorOptions {
            pii: PiiRules::new(&PrivacyConfig::default(), key),
            max_event_bytes: 4096,
            ..Default::default()
        };
        [
            Collector::new(CollectorOptions::default()).expect("no GeoIP"),
            Collector::new(private).expect("no GeoIP"),
        ]
    })
}

/// Paths and queries each protocol is reached by.
fn shapes(p: Protocol) -> &'static [(&'static str, Option<&'static str>)] {
    match p {
        Protocol::Segment => &[
            ("/v1/batch", None),
            ("/v1/track", None),
            ("/v1/identify", None),
            ("/v1/pixel/track", Some("data=eyJldmVudCI6IngifQ")),
        ],
        Protocol::Snowplow => &[
            ("/com.snowplowanalytics.snowplow/tp2", None),
            (
                "/i",
                Some("e=pv&aid=web&duid=d&url=https%3A%2F%2Fshop.example%2F"),
            ),
        ],
        Protocol::Ga4 => &[("/mp/collect", Some("measurement_id=G-1&api_secret=k"))],
        Protocol::PostHog => &[
            ("/batch/", None),
            ("/i/v0/e/", None),
            ("/capture/", Some("compression=gzip-js")),
        ],
        Protocol::AwsClickstream => &[
            ("/collect", Some("appId=web")),
            ("/collect", Some("appId=web&compression=gzip")),
        ],
    }
}

/// Runs one fuzz input through the collector of `protocol`.
pub fn run(protocol: Protocol, data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let shapes = shapes(protocol);
    let (path, query) = shapes[sel as usize % shapes.len()];
    let collector = &collectors()[(sel as usize / 8) % 2];
    // Content-Encoding as the server decodes it first
    let decoded;
    let body = match sel >> 6 {
        1 => match crate::decompress(Some("gzip"), body, 1 << 16) {
            Ok(b) => {
                decoded = b;
                &decoded[..]
            }
            Err(_) => return,
        },
        _ => body,
    };
    let input = Input {
        protocol,
        path,
        query,
        body,
        content_type: Some("application/json"),
        basic_auth_user: None,
        user_agent: (sel & 4 != 0).then_some("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"),
        ip: (sel & 2 != 0).then(|| IpAddr::from([203, 0, 113, 9])),
        received_at: 1_714_557_620_000_000,
    };
    if let Ok(d) = collector.collect(&input) {
        for c in &d.events {
            assert!(!c.event.event_id.is_empty() && c.event.event_id.len() <= 256);
            assert!(c.event.anonymous_id.is_some() || c.event.user_id.is_some());
            // (the client at 203.0.113.9 may not find that address stored;
            // a client elsewhere may write any text)
            assert!(
                input.ip.is_none() || !whole_address(&c.raw, "203.0.113.9"),
                "a full IP address was stored"
            );
        }
        for r in &d.rejected {
            assert!(!r.reason.is_empty());
        }
    }
}

/// Whether `ip` occurs in `text` as an address of its own, not as part of a
/// longer token (`1203.0.113.95`, `203.0.113.9e`) that the scrubber leaves.
fn whole_address(text: &str, ip: &str) -> bool {
    let is_addr = |c: u8| c.is_ascii_hexdigit() || c == b'.' || c == b':';
    let b = text.as_bytes();
    text.match_indices(ip).any(|(at, _)| {
        let end = at + ip.len();
        (at == 0 || !is_addr(b[at - 1])) && (end == b.len() || !is_addr(b[end]))
    })
}

#[cfg(test)]
mod tests {
    /// The fuzz corpus kept in the repository (`fuzz/corpus/<target>`), run
    /// through the same checks as the fuzzer: inputs that once mattered stay
    /// covered without libFuzzer.
    #[test]
    fn the_kept_fuzz_corpus_replays_cleanly() {
        use crate::Protocol::*;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        let mut n = 0;
        for (dir, p) in [
            ("segment", Segment),
            ("snowplow", Snowplow),
            ("ga4", Ga4),
            ("posthog", PostHog),
            ("aws_clickstream", AwsClickstream),
        ] {
            let entries =
                std::fs::read_dir(root.join(dir)).expect("the corpus is in the repository");
            for e in entries {
                let path = e.unwrap().path();
                super::run(p, &std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n >= 5, "{n} inputs");
    }
}
