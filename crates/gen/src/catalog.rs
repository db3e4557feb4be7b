//! The product catalogue: categories, brands, names, log-normal prices, a
//! latent quality per product (drives returns and ratings), Zipf popularity
//! over a shuffled order, planted complementary products, and the weekly
//! repricing schedule.

use crate::rng::{Cdf, Rng, Stream, exp, powf};

/// One category's vocabulary and economics.
pub(crate) struct Category {
    /// Display name (the `category` column).
    pub name: &'static str,
    /// URL slug (`/category/<slug>`).
    pub slug: &'static str,
    /// Relative size of the category in the catalogue.
    share: f64,
    brands: &'static [&'static str],
    adjectives: &'static [&'static str],
    /// Nouns with their price relative to the category median.
    nouns: &'static [(&'static str, f64)],
    /// Median price in currency units.
    price_median: f64,
    /// Log-scale spread of the price.
    price_sigma: f64,
    /// Relative return propensity.
    return_base: f64,
    /// Consumables: bought several at a time more often.
    pub multi_unit: bool,
    /// Categories whose products complement this one's, with weights.
    complements: &'static [(usize, f64)],
}

/// Exponent of the popularity law.
pub(crate) const ZIPF_EXPONENT: f64 = 1.1;
/// Popularity-weighted share of lines returned or refunded.
pub(crate) const RETURN_SHARE: f64 = 0.07;
/// Highest return probability of a single product.
const MAX_RETURN_P: f64 = 0.55;
/// Days between repricing rounds.
pub(crate) const REPRICE_EVERY: u32 = 7;
/// Share of the catalogue repriced in each round.
const REPRICE_SHARE: f64 = 0.02;

pub(crate) const CATEGORIES: &[Category] = &[
    Category {
        name: "Electronics",
        slug: "electronics",
        share: 1.2,
        brands: &["Voltix", "Nexora", "Aurion", "Quantix", "Lumetra", "Sonaro"],
        adjectives: &[
            "Wireless",
            "Smart",
            "Portable",
            "Ultra-Slim",
            "Noise-Cancelling",
            "4K",
            "Bluetooth",
            "Rechargeable",
            "Compact",
            "Pro",
        ],
        nouns: &[
            ("Headphones", 1.3),
            ("Earbuds", 0.9),
            ("Speaker", 1.0),
            ("Smartwatch", 2.2),
            ("Power Bank", 0.5),
            ("Webcam", 0.9),
            ("Keyboard", 0.9),
            ("Mouse", 0.45),
            ("Monitor", 3.2),
            ("Tablet", 4.0),
            ("Charger", 0.35),
            ("Router", 1.6),
            ("Action Camera", 3.0),
            ("E-Reader", 2.0),
        ],
        price_median: 59.0,
        price_sigma: 0.54,
        return_base: 1.3,
        multi_unit: false,
        complements: &[(0, 0.8), (1, 0.2)],
    },
    Category {
        name: "Home & Kitchen",
        slug: "home-kitchen",
        share: 1.2,
        brands: &[
            "Hearthly",
            "Casa Nova",
            "Kitchara",
            "Dwello",
            "Oakmere",
            "Brightnest",
        ],
        adjectives: &[
            "Stainless Steel",
            "Non-Stick",
            "Ceramic",
            "Bamboo",
            "Cast Iron",
            "Glass",
            "Insulated",
            "Stackable",
            "Minimalist",
            "Electric",
        ],
        nouns: &[
            ("Frying Pan", 1.0),
            ("Chef's Knife", 1.1),
            ("Cutting Board", 0.6),
            ("Kettle", 1.0),
            ("Coffee Maker", 2.2),
            ("Blender", 2.0),
            ("Storage Set", 0.7),
            ("Table Lamp", 1.2),
            ("Throw Blanket", 0.9),
            ("Dinnerware Set", 1.6),
            ("Toaster", 1.3),
            ("Mixing Bowls", 0.7),
            ("Air Fryer", 2.8),
        ],
        price_median: 32.0,
        price_sigma: 0.48,
        return_base: 1.0,
        multi_unit: false,
        complements: &[(1, 0.6), (7, 0.25), (8, 0.15)],
    },
    Category {
        name: "Fashion",
        slug: "fashion",
        share: 1.4,
        brands: &[
            "Urbanthread",
            "Maison Vale",
            "Northloom",
            "Kindred & Co",
            "Velora",
            "Stitchworks",
        ],
        adjectives: &[
            "Slim-Fit",
            "Oversized",
            "Linen",
            "Cotton",
            "Leather",
            "Wool",
            "Denim",
            "Quilted",
            "Vintage",
            "Classic",
        ],
        nouns: &[
            ("T-Shirt", 0.5),
            ("Jeans", 1.3),
            ("Jacket", 2.5),
            ("Sneakers", 2.0),
            ("Dress", 1.5),
            ("Hoodie", 1.1),
            ("Scarf", 0.6),
            ("Boots", 2.6),
            ("Shirt", 0.9),
            ("Sweater", 1.3),
            ("Belt", 0.6),
            ("Backpack", 1.4),
            ("Chinos", 1.1),
        ],
        price_median: 35.0,
        price_sigma: 0.39,
        return_base: 2.8,
        multi_unit: false,
        complements: &[(2, 0.8), (3, 0.2)],
    },
    Category {
        name: "Beauty",
        slug: "beauty",
        share: 0.8,
        brands: &["Lumiere", "Pure Petal", "Glowra", "Verdant Skin", "Aurelle"],
        adjectives: &[
            "Hydrating",
            "Vitamin C",
            "Matte",
            "Organic",
            "Fragrance-Free",
            "Nourishing",
            "Brightening",
            "Long-Lasting",
            "Gentle",
            "Rose",
        ],
        nouns: &[
            ("Face Serum", 1.5),
            ("Moisturizer", 1.2),
            ("Lipstick", 0.8),
            ("Mascara", 0.7),
            ("Cleanser", 0.8),
            ("Sunscreen", 0.9),
            ("Eye Cream", 1.6),
            ("Hair Oil", 1.0),
            ("Shampoo", 0.6),
            ("Face Mask", 0.5),
            ("Foundation", 1.3),
            ("Body Lotion", 0.7),
        ],
        price_median: 18.0,
        price_sigma: 0.36,
        return_base: 0.6,
        multi_unit: true,
        complements: &[(3, 0.7), (9, 0.3)],
    },
    Category {
        name: "Sports & Outdoors",
        slug: "sports-outdoors",
        share: 0.9,
        brands: &[
            "Peakform",
            "Stridex",
            "Trailborn",
            "Kinetic Edge",
            "Summit & Pine",
        ],
        adjectives: &[
            "Lightweight",
            "Adjustable",
            "Waterproof",
            "Foldable",
            "Breathable",
            "Ergonomic",
            "Heavy-Duty",
            "Non-Slip",
            "Insulated",
            "Reflective",
        ],
        nouns: &[
            ("Yoga Mat", 0.8),
            ("Dumbbell Set", 1.8),
            ("Running Shoes", 2.5),
            ("Water Bottle", 0.5),
            ("Tent", 4.0),
            ("Resistance Bands", 0.5),
            ("Cycling Helmet", 1.6),
            ("Hiking Backpack", 2.2),
            ("Jump Rope", 0.3),
            ("Fitness Tracker", 2.0),
            ("Sleeping Bag", 2.0),
            ("Foam Roller", 0.6),
        ],
        price_median: 38.0,
        price_sigma: 0.51,
        return_base: 1.0,
        multi_unit: false,
        complements: &[(4, 0.7), (9, 0.3)],
    },
    Category {
        name: "Books",
        slug: "books",
        share: 1.0,
        brands: &[
            "Inkwell Press",
            "Northlight Books",
            "Paperlantern",
            "Meridian House",
            "Quillstone",
        ],
        adjectives: &[
            "Illustrated",
            "Bestselling",
            "Complete",
            "Pocket",
            "Annotated",
            "Collector's",
            "Beginner's",
            "Essential",
            "Modern",
            "Classic",
        ],
        nouns: &[
            ("Cookbook", 1.6),
            ("Mystery Novel", 0.8),
            ("Sci-Fi Novel", 0.8),
            ("Biography", 1.3),
            ("Travel Guide", 1.2),
            ("Poetry Collection", 0.9),
            ("History of Rome", 1.5),
            ("Guide to Python", 2.4),
            ("Fantasy Saga", 1.1),
            ("Picture Book", 0.9),
            ("Self-Help Book", 1.0),
            ("Graphic Novel", 1.3),
        ],
        price_median: 14.0,
        price_sigma: 0.27,
        return_base: 0.35,
        multi_unit: false,
        complements: &[(5, 0.8), (6, 0.2)],
    },
    Category {
        name: "Toys & Games",
        slug: "toys-games",
        share: 0.7,
        brands: &[
            "Playwise",
            "Tinkertot",
            "Brickhaven",
            "Jollyjam",
            "Wonderkin",
        ],
        adjectives: &[
            "Wooden",
            "Educational",
            "Magnetic",
            "Remote-Control",
            "Plush",
            "Glow-in-the-Dark",
            "Interactive",
            "Classic",
            "Deluxe",
            "Mini",
        ],
        nouns: &[
            ("Building Blocks", 1.5),
            ("Puzzle", 0.7),
            ("Board Game", 1.3),
            ("Race Car", 1.0),
            ("Teddy Bear", 0.8),
            ("Dollhouse", 3.0),
            ("Science Kit", 1.2),
            ("Card Game", 0.5),
            ("Train Set", 2.2),
            ("Drone", 2.8),
            ("Art Set", 0.9),
            ("Marble Run", 1.4),
        ],
        price_median: 25.0,
        price_sigma: 0.42,
        return_base: 0.8,
        multi_unit: false,
        complements: &[(6, 0.7), (5, 0.3)],
    },
    Category {
        name: "Grocery",
        slug: "grocery",
        share: 0.8,
        brands: &[
            "Harvest Table",
            "Greenfield Farms",
            "Daily Pantry",
            "Artisan Roast",
            "Orchard Lane",
        ],
        adjectives: &[
            "Organic",
            "Whole Bean",
            "Extra Virgin",
            "Gluten-Free",
            "Dark",
            "Raw",
            "Smoked",
            "Sea Salt",
            "Spicy",
            "Wildflower",
        ],
        nouns: &[
            ("Coffee", 1.5),
            ("Olive Oil", 1.4),
            ("Honey", 1.1),
            ("Granola", 0.7),
            ("Green Tea", 0.7),
            ("Pasta", 0.4),
            ("Chocolate Bar", 0.4),
            ("Almonds", 1.1),
            ("Hot Sauce", 0.7),
            ("Maple Syrup", 1.4),
            ("Protein Bars", 1.8),
            ("Oat Milk", 0.5),
        ],
        price_median: 9.0,
        price_sigma: 0.33,
        return_base: 0.25,
        multi_unit: true,
        complements: &[(7, 0.8), (1, 0.2)],
    },
    Category {
        name: "Garden",
        slug: "garden",
        share: 0.6,
        brands: &[
            "Greenthumb",
            "Terracraft",
            "Bloomfield",
            "Yardly",
            "Fernhill",
        ],
        adjectives: &[
            "Solar",
            "Cordless",
            "Galvanized",
            "Self-Watering",
            "Weatherproof",
            "Collapsible",
            "Raised",
            "Terracotta",
            "Heavy-Duty",
            "Telescopic",
        ],
        nouns: &[
            ("Garden Hose", 1.1),
            ("Pruning Shears", 0.8),
            ("Planter", 0.9),
            ("String Lights", 0.9),
            ("Lawn Mower", 8.0),
            ("Bird Feeder", 0.8),
            ("Watering Can", 0.7),
            ("Seed Starter Kit", 0.6),
            ("Patio Chair", 2.5),
            ("Garden Gloves", 0.4),
            ("Compost Bin", 1.8),
            ("Hedge Trimmer", 3.5),
        ],
        price_median: 29.0,
        price_sigma: 0.54,
        return_base: 0.8,
        multi_unit: false,
        complements: &[(8, 0.7), (1, 0.3)],
    },
    Category {
        name: "Health & Household",
        slug: "health-household",
        share: 0.6,
        brands: &[
            "Vitalis",
            "Nordic Well",
            "Carewell",
            "Purelife",
            "Thrivewell",
        ],
        adjectives: &[
            "Daily",
            "Vegan",
            "Sugar-Free",
            "Extra Strength",
            "Digital",
            "Chewable",
            "Unscented",
            "Reusable",
            "Travel-Size",
            "Family-Size",
        ],
        nouns: &[
            ("Multivitamin", 1.0),
            ("Omega-3 Capsules", 1.0),
            ("Thermometer", 0.9),
            ("First Aid Kit", 1.2),
            ("Hand Sanitizer", 0.3),
            ("Probiotic", 1.5),
            ("Electric Toothbrush", 3.0),
            ("Blood Pressure Monitor", 3.0),
            ("Vitamin D Drops", 0.7),
            ("Massage Gun", 5.0),
            ("Sleep Aid", 0.7),
            ("Protein Powder", 2.0),
        ],
        price_median: 17.0,
        price_sigma: 0.42,
        return_base: 0.5,
        multi_unit: true,
        complements: &[(9, 0.6), (4, 0.2), (3, 0.2)],
    },
];

/// One product.
pub(crate) struct Product {
    /// Index into [`CATEGORIES`].
    pub cat: u8,
    pub brand: &'static str,
    pub noun: &'static str,
    pub name: String,
    /// Search query that finds it, URL-encoded (`wireless+headphones`).
    pub query: String,
    /// Price on the first day, in cents.
    pub base_cents: i64,
    pub stock: u32,
    /// Latent quality, standard normal: drives returns and ratings.
    pub quality: f64,
    /// Probability that a line of this product is returned or refunded.
    pub return_p: f64,
    /// Products bought together with this one.
    pub complements: Vec<u32>,
    /// Price changes after the first day: `(day offset, cents)`, by day.
    pub price_changes: Vec<(u32, i64)>,
}

impl Product {
    /// The price in force on day offset `day`.
    #[inline]
    pub(crate) fn price_on(&self, day: u32) -> i64 {
        let mut p = self.base_cents;
        for &(d, c) in &self.price_changes {
            if d <= day {
                p = c;
            } else {
                break;
            }
        }
        p
    }
}

/// A repricing round: the products whose price changed that day.
pub(crate) struct PriceUpdate {
    pub day: u32,
    pub products: Vec<u32>,
    /// New stock levels, parallel to `products`.
    pub stock: Vec<u32>,
}

/// The whole catalogue plus its samplers.
pub(crate) struct Catalog {
    pub products: Vec<Product>,
    /// Popularity over all products.
    pub popular: Cdf,
    /// Per category: product indices and their popularity.
    pub by_cat: Vec<(Vec<u32>, Cdf)>,
    pub updates: Vec<PriceUpdate>,
    /// Digits in a product id.
    pub id_width: usize,
}

/// Rounds a price to a shop-like ending (.99 mostly).
pub(crate) fn shop_price(rng: &mut Rng, price: f64) -> i64 {
    let price = price.clamp(1.0, 9_999.0);
    let units = price.floor() as i64;
    let end = match rng.below(20) {
        0..=14 => 99,
        15..=17 => 49,
        _ => 0,
    };
    let cents = if end == 0 {
        units * 100
    } else {
        (units - 1).max(0) * 100 + end
    };
    cents.max(99)
}

/// URL-encodes a search query (`+` for spaces).
pub(crate) fn url_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out
}

/// Digits needed for ids up to `n`, at least `min`.
pub(crate) fn id_width(n: u64, min: usize) -> usize {
    let mut w = 1;
    let mut x = n;
    while x >= 10 {
        x /= 10;
        w += 1;
    }
    w.max(min)
}

impl Catalog {
    /// Builds `n` products for a window of `days` days.
    pub(crate) fn new(seed: u64, n: usize, days: u32) -> Catalog {
        let mut rng = Rng::new(seed, Stream::Catalog, 0);
        let shares: Vec<f64> = CATEGORIES.iter().map(|c| c.share).collect();
        let mut products = Vec::with_capacity(n);
        for i in 0..n {
            // the first products cover every category once, then by share
            let cat = if i < CATEGORIES.len() && n >= CATEGORIES.len() {
                i
            } else {
                rng.weighted(&shares)
            };
            let c = &CATEGORIES[cat];
            let brand = *rng.pick(c.brands);
            let adjective = *rng.pick(c.adjectives);
            let (noun, price_factor) = *rng.pick(c.nouns);
            let name = format!("{brand} {adjective} {noun}");
            let query = if rng.chance(0.3) {
                url_query(&format!("{brand} {noun}").to_lowercase())
            } else if rng.chance(0.5) {
                url_query(&format!("{adjective} {noun}").to_lowercase())
            } else {
                url_query(&noun.to_lowercase())
            };
            let quality = rng.normal();
            // better products cost a little more
            let price =
                rng.lognormal(c.price_median * price_factor, c.price_sigma) * exp(0.08 * quality);
            let base_cents = shop_price(&mut rng, price);
            let stock = if rng.chance(0.04) {
                0
            } else {
                let median = 40.0 * powf(base_cents as f64 / 2_000.0, -0.4);
                rng.lognormal(median.max(5.0), 0.9)
                    .round()
                    .clamp(1.0, 5_000.0) as u32
            };
            let raw_return = c.return_base * exp(-0.9 * quality);
            products.push(Product {
                cat: cat as u8,
                brand,
                noun,
                name,
                query,
                base_cents,
                stock,
                quality,
                return_p: raw_return,
                complements: Vec::new(),
                price_changes: Vec::new(),
            });
        }

        // popularity: Zipf over a shuffled order
        let mut order: Vec<u32> = (0..n as u32).collect();
        rng.shuffle(&mut order);
        let mut weight = vec![0.0; n];
        for (rank, &p) in order.iter().enumerate() {
            weight[p as usize] = powf(rank as f64 + 1.0, -ZIPF_EXPONENT);
        }
        let popular = Cdf::new(weight.iter().copied());

        let mut members: Vec<Vec<u32>> = vec![Vec::new(); CATEGORIES.len()];
        for (i, p) in products.iter().enumerate() {
            members[p.cat as usize].push(i as u32);
        }
        let by_cat: Vec<(Vec<u32>, Cdf)> = members
            .into_iter()
            .map(|m| {
                let cdf = Cdf::new(m.iter().map(|&p| weight[p as usize]));
                (m, cdf)
            })
            .collect();

        // return probabilities: scale so the popularity-weighted mean is the
        // target share (a few rounds, because of the cap)
        let total_w: f64 = weight.iter().sum();
        let mut scale = 1.0;
        for _ in 0..8 {
            let mean: f64 = products
                .iter()
                .zip(&weight)
                .map(|(p, w)| (p.return_p * scale).min(MAX_RETURN_P) * w)
                .sum::<f64>()
                / total_w;
            if mean <= 0.0 {
                break;
            }
            scale *= RETURN_SHARE / mean;
        }
        for p in &mut products {
            p.return_p = (p.return_p * scale).min(MAX_RETURN_P);
        }

        // planted complements: 1–2 per product, uniform within a related
        // category (so their lift is high)
        for i in 0..n {
            let c = &CATEGORIES[products[i].cat as usize];
            let k = 1 + rng.below(2) as usize;
            let cw: Vec<f64> = c.complements.iter().map(|x| x.1).collect();
            let mut comps = Vec::with_capacity(k);
            for _ in 0..k {
                for _attempt in 0..4 {
                    let target = c.complements[rng.weighted(&cw)].0;
                    let pool = &by_cat[target].0;
                    if pool.is_empty() {
                        continue;
                    }
                    let q = *rng.pick(pool);
                    if q as usize != i && !comps.contains(&q) {
                        comps.push(q);
                        break;
                    }
                }
            }
            products[i].complements = comps;
        }

        // weekly repricing of a few % of the catalogue
        let mut prng = Rng::new(seed, Stream::Prices, 0);
        let per_round = (n as f64 * REPRICE_SHARE).round() as usize;
        let mut updates = Vec::new();
        if per_round > 0 {
            let mut day = REPRICE_EVERY;
            while day < days {
                let mut chosen = Vec::with_capacity(per_round);
                while chosen.len() < per_round {
                    let p = prng.below(n as u64) as u32;
                    if !chosen.contains(&p) {
                        chosen.push(p);
                    }
                }
                chosen.sort_unstable();
                let mut stock = Vec::with_capacity(per_round);
                for &p in &chosen {
                    let prod = &mut products[p as usize];
                    let old = prod.price_on(day) as f64 / 100.0;
                    let factor =
                        [0.8, 0.85, 0.9, 1.05, 1.1][prng.weighted(&[0.25, 0.2, 0.15, 0.25, 0.15])];
                    let mut cents = shop_price(&mut prng, old * factor);
                    if cents == prod.price_on(day) {
                        cents = if factor < 1.0 {
                            (cents - 100).max(99)
                        } else {
                            cents + 100
                        };
                    }
                    prod.price_changes.push((day, cents));
                    let s = (f64::from(prod.stock) * (0.5 + prng.f64())).round() as u32;
                    stock.push(if prng.chance(0.05) { 0 } else { s.max(1) });
                }
                updates.push(PriceUpdate {
                    day,
                    products: chosen,
                    stock,
                });
                day += REPRICE_EVERY;
            }
        }

        Catalog {
            products,
            popular,
            by_cat,
            updates,
            id_width: id_width(n as u64, 5),
        }
    }

    /// A product by popularity.
    #[inline]
    pub(crate) fn popular_product(&self, rng: &mut Rng) -> u32 {
        self.popular.sample(rng) as u32
    }

    /// A product of category `cat` by popularity (any product if the
    /// category is empty).
    #[inline]
    pub(crate) fn product_in(&self, rng: &mut Rng, cat: u8) -> u32 {
        let (members, cdf) = &self.by_cat[cat as usize];
        if members.is_empty() {
            return self.popular_product(rng);
        }
        members[cdf.sample(rng)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_plausible() {
        let cat = Catalog::new(3, 2_000, 90);
        assert_eq!(cat.products.len(), 2_000);
        // every category present, books cheaper than electronics
        let median = |c: usize| {
            let mut v: Vec<i64> = cat
                .products
                .iter()
                .filter(|p| p.cat as usize == c)
                .map(|p| p.base_cents)
                .collect();
            assert!(!v.is_empty());
            v.sort_unstable();
            v[v.len() / 2]
        };
        for c in 0..CATEGORIES.len() {
            median(c);
        }
        assert!(
            median(0) > 2 * median(5),
            "electronics {} books {}",
            median(0),
            median(5)
        );
        assert!(cat.products.iter().all(|p| p.base_cents >= 99));
        // brands per category
        for c in 0..CATEGORIES.len() {
            let mut brands: Vec<&str> = cat
                .products
                .iter()
                .filter(|p| p.cat as usize == c)
                .map(|p| p.brand)
                .collect();
            brands.sort_unstable();
            brands.dedup();
            assert!(brands.len() >= 4, "category {c}: {brands:?}");
        }
        // fashion returns more than books
        let mean_ret = |c: usize| {
            let v: Vec<f64> = cat
                .products
                .iter()
                .filter(|p| p.cat as usize == c)
                .map(|p| p.return_p)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean_ret(2) > 3.0 * mean_ret(5));
        // complements exist and are not the product itself
        assert!(
            cat.products
                .iter()
                .enumerate()
                .all(|(i, p)| !p.complements.is_empty() && !p.complements.contains(&(i as u32)))
        );
        // repricing: weekly rounds of ~2%
        assert_eq!(cat.updates.len(), 12);
        assert!(cat.updates.iter().all(|u| u.products.len() == 40));
        let changed = cat
            .products
            .iter()
            .find(|p| !p.price_changes.is_empty())
            .unwrap();
        let (d, c) = changed.price_changes[0];
        assert_eq!(changed.price_on(d), c);
        assert_eq!(changed.price_on(d - 1), changed.base_cents);
        assert_ne!(c, changed.base_cents);
    }

    #[test]
    fn helpers() {
        assert_eq!(url_query("chef's knife"), "chef%27s+knife");
        assert_eq!(id_width(5_000, 5), 5);
        assert_eq!(id_width(123_456, 5), 6);
        assert_eq!(id_width(0, 1), 1);
    }
}
