//! Enrichment: user agent → browser, OS, device type and bot flag (with a
//! shared cache so each distinct user agent is parsed once), IP anonymising,
//! country lookup and scrubbing full addresses out of raw payloads.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use crate::json::hash128;

/// What kind of client a user agent names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UaKind {
    /// A browser or app a person uses.
    Client,
    /// A crawler, monitor or headless/automated browser.
    Bot,
    /// An HTTP library or command-line tool (curl, python-requests, okhttp, …).
    Library,
}

/// The parsed user agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UaInfo {
    pub kind: UaKind,
    pub device: &'static str,
    pub browser: Option<Cow<'static, str>>,
    pub os: Option<Cow<'static, str>>,
}

/// Substrings (lower case) of automated clients' user agents.
const BOT_MARKERS: &[&str] = &[
    "headlesschrome",
    "headless",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "slimerjs",
    "electron-headless",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "crawler",
    "crawl",
    "spider",
    "slurp",
    "scrapy",
    "facebookexternalhit",
    "embedly",
    "preview",
    "pingdom",
    "uptimerobot",
    "statuscake",
    "site24x7",
    "ia_archiver",
    "httrack",
    "zgrab",
    "masscan",
    "nmap",
];

/// Weaker signs of automation (a contact URL, a `…bot` token): HTTP
/// libraries carry them too, so they count only for what is no library.
const WEAK_BOT_MARKERS: &[&str] = &[
    "bot/", "bot;", "bot)", "bot-", "bot ", "bot_", "-bot", "_bot", "+http",
];

/// Substrings (lower case) of HTTP libraries and command-line tools.
const LIBRARY_MARKERS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python/",
    "aiohttp",
    "python-httpx",
    "httpx/",
    "urllib3",
    "go-http-client",
    "java/",
    "java(tm)",
    "okhttp",
    "apache-httpclient",
    "commons-httpclient",
    "libwww-perl",
    "lwp::",
    "node-fetch",
    "undici",
    "axios/",
    "got (",
    "guzzlehttp",
    "php/",
    "ruby",
    "faraday",
    "httpie",
    "postmanruntime",
    "insomnia",
    "dart:io",
    "reqwest",
    "hyper/",
    "rest-client",
    "winhttp",
    "powershell",
];

/// Parses a user agent (no cache: see [`UaCache`]).
pub(crate) fn parse_ua(ua: &str) -> UaInfo {
    let lower = ua.to_ascii_lowercase();
    // "CUBOT" is a phone brand, not a bot
    let lower = if lower.contains("cubot") {
        lower.replace("cubot", "cu_ot")
    } else {
        lower
    };
    let bot = BOT_MARKERS.iter().any(|m| lower.contains(m));
    let weak_bot = WEAK_BOT_MARKERS.iter().any(|m| lower.contains(m));
    let parsed = woothee::parser::Parser::new().parse(ua);
    let (name, category, os) = match &parsed {
        Some(r) => (r.name, r.category, r.os),
        None => ("UNKNOWN", "UNKNOWN", "UNKNOWN"),
    };
    let library = name == "HTTP Library" || LIBRARY_MARKERS.iter().any(|m| lower.contains(m));
    let kind = if bot || category == "crawler" {
        UaKind::Bot
    } else if library {
        UaKind::Library
    } else if weak_bot {
        UaKind::Bot
    } else {
        UaKind::Client
    };
    let device = match kind {
        UaKind::Bot => "bot",
        UaKind::Library => "unknown",
        UaKind::Client => match category {
            "pc" => {
                if lower.contains("tablet") {
                    "tablet"
                } else {
                    "desktop"
                }
            }
            "smartphone" | "mobilephone" => {
                if os == "iPad"
                    || lower.contains("tablet")
                    || (os == "Android" && !lower.contains("mobile"))
                {
                    "tablet"
                } else {
                    "mobile"
                }
            }
            _ => "unknown",
        },
    };
    let browser = match (kind, category) {
        (UaKind::Client, "pc" | "smartphone" | "mobilephone" | "appliance") => browser_name(name),
        _ => None,
    };
    let os = if kind == UaKind::Bot {
        None
    } else {
        os_family(os)
    };
    UaInfo {
        kind,
        device,
        browser,
        os,
    }
}

/// woothee's browser names as `'static` text.
fn browser_name(name: &str) -> Option<Cow<'static, str>> {
    const NAMES: &[&str] = &[
        "Chrome",
        "Safari",
        "Firefox",
        "Edge",
        "Internet Explorer",
        "Opera",
        "SamsungBrowser",
        "Vivaldi",
        "Yandex Browser",
        "Webview",
        "Sleipnir",
        "Google Search App",
    ];
    if name == "UNKNOWN" || name.is_empty() {
        return None;
    }
    Some(match NAMES.iter().find(|n| **n == name) {
        Some(n) => Cow::Borrowed(*n),
        None => Cow::Owned(name.to_owned()),
    })
}

/// Normalises an OS name (woothee's or a payload's) to its family:
/// `Windows 10` → `Windows`, `iPhone` → `iOS`, `Mac OSX` → `macOS`.
pub(crate) fn os_family(os: &str) -> Option<Cow<'static, str>> {
    let os = os.trim();
    if os.is_empty() || os == "UNKNOWN" {
        return None;
    }
    let l = os.to_ascii_lowercase();
    let fam: &'static str = if l.starts_with("windows phone") {
        "Windows Phone"
    } else if l.starts_with("windows") {
        "Windows"
    } else if l == "iphone" || l == "ipad" || l == "ipod" || l == "ios" || l == "ipados" {
        "iOS"
    } else if l.starts_with("mac") || l == "os x" {
        "macOS"
    } else if l.starts_with("android") {
        "Android"
    } else if l.starts_with("chrome") {
        "Chrome OS"
    } else if l.starts_with("linux") || l == "ubuntu" || l == "fedora" || l == "debian" {
        "Linux"
    } else {
        return Some(Cow::Owned(os.to_owned()));
    };
    Some(Cow::Borrowed(fam))
}

/// A payload's device name (`Mobile`, `ios`, `smartphone`, …) as a device type.
pub(crate) fn device_hint(d: &str) -> Option<&'static str> {
    let c = shoplake_core::event::canonical_device(Some(d));
    if c != "unknown" {
        return Some(c);
    }
    let l = d.trim().to_ascii_lowercase();
    match l.as_str() {
        "ios" | "android" | "iphone" | "mob" | "handset" => Some("mobile"),
        "ipad" | "tab" => Some("tablet"),
        "pc" | "web" | "macos" | "windows" | "linux" => Some("desktop"),
        _ => None,
    }
}

const UA_SLOTS: usize = 512;
/// A cached user agent and what it parsed to.
type Cached = (Box<str>, UaInfo);
/// User agents longer than this are parsed but not cached.
const UA_CACHE_MAX_LEN: usize = 1024;

/// A direct-mapped cache of parsed user agents shared by all requests: one
/// lock per slot, so two cores rarely meet.
pub(crate) struct UaCache {
    slots: Vec<Mutex<Option<Cached>>>,
}

impl UaCache {
    pub fn new() -> Self {
        UaCache {
            slots: (0..UA_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The parsed `ua`, from the cache when it was seen recently.
    pub fn get(&self, ua: &str) -> UaInfo {
        if ua.len() > UA_CACHE_MAX_LEN {
            return parse_ua(ua);
        }
        let slot = &self.slots[(hash128(&[ua.as_bytes()]).0 as usize) % UA_SLOTS];
        if let Ok(g) = slot.lock()
            && let Some((k, v)) = g.as_ref()
            && &**k == ua
        {
            return v.clone();
        }
        let info = parse_ua(ua);
        if let Ok(mut g) = slot.lock() {
            *g = Some((ua.into(), info.clone()));
        }
        info
    }
}

/// The address with its host part zeroed: IPv4 keeps 24 bits (`1.2.3.4` →
/// `1.2.3.0`), IPv6 keeps 48 bits (the last 80 are zeroed); IPv4-mapped IPv6
/// addresses are treated as IPv4.
pub(crate) fn anonymise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(anon4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(anon4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

fn anon4(v4: Ipv4Addr) -> Ipv4Addr {
    let o = v4.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 0)
}

/// Parses a payload IP (`1.2.3.4`, `::1`, `[::1]`, `1.2.3.4:5678`).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let s = s.trim_start_matches('[');
    let s = match s.find(']') {
        Some(i) => &s[..i],
        None => match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => s,
        },
    };
    s.parse().ok()
}

/// A country lookup in a MaxMind-format database.
pub(crate) struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl Geo {
    pub fn open(path: &std::path::Path) -> Result<Self, maxminddb::MaxMindDbError> {
        Ok(Geo {
            reader: maxminddb::Reader::open_readfile(path)?,
        })
    }

    /// `country.iso_code` of the full address.
    pub fn country(&self, ip: IpAddr) -> Option<Cow<'static, str>> {
        let r = self.reader.lookup(ip).ok()?;
        let code: Option<String> = r
            .decode_path(&[
                maxminddb::PathElement::Key("country"),
                maxminddb::PathElement::Key("iso_code"),
            ])
            .ok()?;
        code.map(Cow::Owned)
    }
}

/// Replaces every occurrence of the address `full` in `raw` that is not part
/// of a longer address with `anon`; `None` when there is none.
pub(crate) fn scrub(raw: &str, full: &str, anon: &str) -> Option<String> {
    if full.is_empty() || !raw.contains(full) {
        return None;
    }
    let is_addr = |c: u8| c.is_ascii_hexdigit() || c == b'.' || c == b':';
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut last = 0;
    let mut changed = false;
    let mut from = 0;
    while let Some(off) = raw[from..].find(full) {
        let start = from + off;
        let end = start + full.len();
        let before_ok = start == 0 || !is_addr(b[start - 1]);
        let after_ok = end == b.len() || !is_addr(b[end]);
        if before_ok && after_ok {
            out.push_str(&raw[last..start]);
            out.push_str(anon);
            last = end;
            changed = true;
        }
        from = start + 1;
        while from < raw.len() && !raw.is_char_boundary(from) {
            from += 1;
        }
        if from >= raw.len() {
            break;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&raw[last..]);
    Some(out)
}

/// Replaces every token of `raw` that parses as an IP address with its
/// anonymised form (for items that could not be decoded, whose IP fields are
/// unknown); `None` when there is none.
pub(crate) fn scrub_any_ip(raw: &str) -> Option<String> {
    let is_addr = |c: u8| c.is_ascii_hexdigit() || c == b'.' || c == b':';
    let b = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        if !is_addr(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_addr(b[i]) {
            i += 1;
        }
        let tok = &raw[start..i];
        let dots = tok.bytes().filter(|&c| c == b'.').count();
        let colons = tok.bytes().filter(|&c| c == b':').count();
        if (dots == 3 || colons >= 2)
            && tok.len() >= 7
            && let Ok(ip) = tok.parse::<IpAddr>()
        {
            let anon = anonymise(ip).to_string();
            if anon != tok {
                let o = out.get_or_insert_with(|| String::with_capacity(raw.len()));
                o.push_str(&raw[last..start]);
                o.push_str(&anon);
                last = i;
            }
        }
    }
    let mut o = out?;
    o.push_str(&raw[last..]);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_any_finds_addresses() {
        assert_eq!(
            scrub_any_ip(r#"{"ip":"81.2.69.160","t":"10:00:00.000","v6":"2001:db8::1","n":1.5}"#)
                .unwrap(),
            r#"{"ip":"81.2.69.0","t":"10:00:00.000","v6":"2001:db8::","n":1.5}"#
        );
        assert_eq!(scrub_any_ip(r#"{"a":"1.2.3.0"}"#), None);
        assert_eq!(scrub_any_ip("é::é"), None);
    }

    const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_TAB: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const WIN_EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";

    #[test]
    fn browsers_and_devices() {
        let i = parse_ua(CHROME_MAC);
        assert_eq!(
            (i.kind, i.device, i.browser.as_deref(), i.os.as_deref()),
            (UaKind::Client, "desktop", Some("Chrome"), Some("macOS"))
        );
        let i = parse_ua(IPHONE);
        assert_eq!(
            (i.device, i.browser.as_deref(), i.os.as_deref()),
            ("mobile", Some("Safari"), Some("iOS"))
        );
        assert_eq!(parse_ua(IPAD).device, "tablet");
        assert_eq!(parse_ua(ANDROID_TAB).device, "tablet");
        let i = parse_ua(ANDROID_PHONE);
        assert_eq!((i.device, i.os.as_deref()), ("mobile", Some("Android")));
        let i = parse_ua(WIN_EDGE);
        assert_eq!(
            (i.device, i.browser.as_deref(), i.os.as_deref()),
            ("desktop", Some("Edge"), Some("Windows"))
        );
    }

    #[test]
    fn bots_headless_and_libraries() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        ] {
            let i = parse_ua(ua);
            assert_eq!((i.kind, i.device), (UaKind::Bot, "bot"), "{ua}");
        }
        for ua in [
            "curl/8.4.0",
            "Wget/1.21",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Java/17.0.2",
            "okhttp/4.12.0",
            "Apache-HttpClient/4.5.13 (Java/11)",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        ] {
            assert_eq!(parse_ua(ua).kind, UaKind::Library, "{ua}");
        }
        let cubot = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0 Mobile Safari/537.36";
        assert_eq!(parse_ua(cubot).kind, UaKind::Client);
        assert_eq!(parse_ua("").kind, UaKind::Client);
        assert_eq!(parse_ua("").device, "unknown");
    }

    #[test]
    fn cache_returns_same_answers() {
        let c = UaCache::new();
        for _ in 0..3 {
            assert_eq!(c.get(CHROME_MAC), parse_ua(CHROME_MAC));
            assert_eq!(c.get(IPHONE), parse_ua(IPHONE));
        }
        let long = format!("{CHROME_MAC}{}", "x".repeat(2000));
        assert_eq!(c.get(&long).device, "desktop");
    }

    #[test]
    fn addresses_are_anonymised() {
        let a = |s: &str| anonymise(s.parse().unwrap()).to_string();
        assert_eq!(a("1.2.3.4"), "1.2.3.0");
        assert_eq!(a("2001:db8:85a3:8d3:1319:8a2e:370:7348"), "2001:db8:85a3::");
        assert_eq!(a("::ffff:10.1.2.3"), "10.1.2.0");
        assert_eq!(parse_ip(" 1.2.3.4 "), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip("1.2.3.4:8080"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("nope"), None);
    }

    #[test]
    fn scrub_replaces_whole_addresses_only() {
        assert_eq!(
            scrub(
                r#"{"ip":"1.2.3.4","x":"11.2.3.45","l":"1.2.3.4, 5.6.7.8"}"#,
                "1.2.3.4",
                "1.2.3.0"
            )
            .unwrap(),
            r#"{"ip":"1.2.3.0","x":"11.2.3.45","l":"1.2.3.0, 5.6.7.8"}"#
        );
        assert_eq!(scrub(r#"{"x":"11.2.3.45"}"#, "1.2.3.4", "1.2.3.0"), None);
        assert_eq!(
            scrub("é1.2.3.4é", "1.2.3.4", "1.2.3.0").unwrap(),
            "é1.2.3.0é"
        );
    }

    #[test]
    fn hints_and_families() {
        assert_eq!(device_hint("Mobile"), Some("mobile"));
        assert_eq!(device_hint("ios"), Some("mobile"));
        assert_eq!(device_hint("Tablet"), Some("tablet"));
        assert_eq!(device_hint("toaster"), None);
        assert_eq!(os_family("Mac OS X").as_deref(), Some("macOS"));
        assert_eq!(os_family("Windows 10").as_deref(), Some("Windows"));
        assert_eq!(os_family("HarmonyOS").as_deref(), Some("HarmonyOS"));
    }
}
