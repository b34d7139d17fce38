//! One scrape of a node's Prometheus text, as plain series to sum and look up.

/// The samples of one scrape: (metric, labels, value). Histogram buckets are left out; their
/// `_sum` and `_count` series stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series(Vec<Sample>);

/// A metric name, its labels (sorted) and its value.
type Sample = (String, Vec<(String, String)>, f64);

impl Series {
    /// Parses Prometheus or OpenMetrics text; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Self {
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
            return Self::default();
        };
        let samples = scrape
            .samples
            .into_iter()
            .filter_map(|sample| {
                let value = match sample.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => return None,
                };
                let mut labels: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                Some((sample.metric, labels, value))
            })
            .collect();
        Self(samples)
    }

    /// The sum of every series of `metric`; `None` when the node has none.
    pub fn sum(&self, metric: &str) -> Option<f64> {
        let mut found = None;
        for (name, _, value) in &self.0 {
            if name == metric {
                *found.get_or_insert(0.0) += value;
            }
        }
        found
    }

    /// The sum of `metric` over the series whose `label` is `value`.
    pub fn sum_where(&self, metric: &str, label: &str, value: &str) -> Option<f64> {
        let mut found = None;
        for (name, labels, v) in &self.0 {
            if name == metric && labels.iter().any(|(k, l)| k == label && l == value) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// `metric` summed by the value of `label`, in first-seen order.
    pub fn by(&self, metric: &str, label: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for (name, labels, v) in &self.0 {
            if name != metric {
                continue;
            }
            let Some((_, key)) = labels.iter().find(|(k, _)| k == label) else {
                continue;
            };
            match out.iter_mut().find(|(k, _)| k == key) {
                Some((_, sum)) => *sum += v,
                None => out.push((key.clone(), *v)),
            }
        }
        out
    }

    /// The (`a`, `b`) label pairs of the series of `metric` whose value is 1 (an info-style
    /// gauge such as `outpost_dns_network_edge`).
    pub fn pairs(&self, metric: &str, a: &str, b: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(name, _, v)| name == metric && *v == 1.0)
            .filter_map(|(_, labels, _)| {
                let get = |key: &str| {
                    labels
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                };
                Some((get(a)?, get(b)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP outpost_requests Requests by cache outcome.
# TYPE outpost_requests counter
outpost_requests_total{node=\"edge-ams\",outcome=\"hit\"} 7
outpost_requests_total{node=\"edge-ams\",outcome=\"miss\"} 3
# TYPE outpost_upstream_latency_seconds histogram
outpost_upstream_latency_seconds_sum{node=\"edge-ams\"} 0.25
outpost_upstream_latency_seconds_count{node=\"edge-ams\"} 3
outpost_upstream_latency_seconds_bucket{node=\"edge-ams\",le=\"0.1\"} 2
outpost_upstream_latency_seconds_bucket{node=\"edge-ams\",le=\"+Inf\"} 3
# TYPE outpost_dns_network_edge gauge
outpost_dns_network_edge{node=\"dns\",network=\"127.0.1.0/24\",edge=\"edge-ams\"} 1
outpost_dns_network_edge{node=\"dns\",network=\"127.0.2.0/24\",edge=\"edge-nyc\"} 0
# EOF
";

    #[test]
    fn sums_looks_up_and_pairs_what_a_node_exposes() {
        let series = Series::parse(TEXT);
        assert_eq!(series.sum("outpost_requests_total"), Some(10.0));
        assert_eq!(
            series.sum_where("outpost_requests_total", "outcome", "hit"),
            Some(7.0)
        );
        assert_eq!(series.sum("outpost_nothing_total"), None);
        assert_eq!(
            series.sum("outpost_upstream_latency_seconds_count"),
            Some(3.0)
        );
        assert_eq!(
            series.by("outpost_requests_total", "outcome"),
            vec![("hit".to_owned(), 7.0), ("miss".to_owned(), 3.0)]
        );
        assert_eq!(
            series.pairs("outpost_dns_network_edge", "network", "edge"),
            vec![("127.0.1.0/24".to_owned(), "edge-ams".to_owned())]
        );
        assert_eq!(Series::parse("not metrics {{{"), Series::default());
    }
}
