//! Reading a function's `/metrics` (Prometheus text) in a test.

/// `GET {base}/metrics` without credentials, which must answer 200: the
/// scrape.
pub async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200, "GET {base}/metrics");
    r.text().await.unwrap()
}

/// The value of the sample named exactly `series` (`name{labels}`, or
/// `name` alone when unlabelled) in `scrape`; 0 when it is not there.
pub fn sample(scrape: &str, series: &str) -> u64 {
    find(scrape, series).unwrap_or(0)
}

/// As [`sample`], for a series that must be there.
pub fn counter(scrape: &str, series: &str) -> u64 {
    find(scrape, series).unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
}

fn find(scrape: &str, series: &str) -> Option<u64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
