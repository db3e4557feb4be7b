//! Reviews: which purchased lines get reviewed, their rating (latent product
//! quality, much lower after a return) and a text matching the rating.

use crate::catalog::Product;
use crate::day::Candidate;
use crate::rng::{Rng, Stream};

/// Candidates drawn per wanted review (before dropping duplicates and
/// reviews that would fall after the window).
pub(crate) const OVERSAMPLE: f64 = 3.0;
/// Mean days between purchase and review.
pub(crate) const MEAN_DELAY_DAYS: f64 = 6.0;

/// Keeps one candidate per (customer, product) — the earliest purchase — and
/// then the `want` with the smallest keys, ordered by review day then line.
pub(crate) fn select(mut cands: Vec<Candidate>, want: usize) -> Vec<Candidate> {
    cands.sort_unstable_by_key(|c| (c.customer, c.product, c.line));
    cands.dedup_by_key(|c| (c.customer, c.product));
    if cands.len() > want {
        cands.sort_unstable_by(|a, b| a.key.total_cmp(&b.key).then(a.line.cmp(&b.line)));
        cands.truncate(want);
    }
    cands.sort_unstable_by_key(|c| (c.review_day, c.line));
    cands
}

/// The rating (1–5) and text of one review.
pub(crate) fn write_review(seed: u64, c: &Candidate, product: &Product) -> (u8, Option<String>) {
    let mut rng = Rng::new(seed, Stream::ReviewText, c.line);
    let mut score = 4.1 + 0.8 * product.quality + 0.8 * rng.normal();
    if c.returned {
        score -= 2.4;
    }
    let rating = score.round().clamp(1.0, 5.0) as u8;
    if rng.chance(0.08) {
        return (rating, None);
    }
    let noun = product.noun.to_lowercase();
    let templates: &[&str] = match rating {
        5 => &[
            "Absolutely love this {noun}. Exceeded my expectations!",
            "Five stars. The {brand} {noun} is worth every penny.",
            "Perfect, exactly as described, and it arrived fast.",
            "Bought it as a gift and they loved it, will order again.",
            "Best {noun} I've owned, hands down.",
            "Great quality, great price. What more could you want?",
        ],
        4 => &[
            "Very good {noun}, just a few minor quirks.",
            "Solid quality for the price, would recommend.",
            "Works well. Delivery took a bit longer than expected, but happy overall.",
            "Nice {noun}; not perfect, but close.",
            "Does what it says. Would give 4.5 stars if I could.",
        ],
        3 => &[
            "It's okay. Does the job, nothing special.",
            "Average {noun} - some things good, some not so much.",
            "Mixed feelings: looks great, but the quality could be better.",
            "Decent, but I expected more for the price.",
        ],
        2 => &[
            "Disappointed. The {noun} stopped working properly after a week.",
            "Not as described, \"premium\" is a stretch.",
            "Poor fit and finish; I would not buy it again.",
            "Below average, and customer service was slow to respond.",
        ],
        _ => &[
            "Terrible. Broke on first use.",
            "Complete waste of money, do not buy.",
            "Arrived damaged, and the replacement was no better.",
            "Nothing like the photos. \"Quality\" product? No.",
        ],
    };
    let mut text = rng
        .pick(templates)
        .replace("{noun}", &noun)
        .replace("{brand}", product.brand);
    if c.returned && rating <= 3 {
        let reasons = [
            "Sent it back, it did not match the description.",
            "Returned it for a refund.",
            "Had to return it, it was not what I needed.",
            "Returned it, the {noun} was faulty.",
        ];
        text.push(' ');
        text.push_str(&rng.pick(&reasons).replace("{noun}", &noun));
    }
    (rating, Some(text))
}
