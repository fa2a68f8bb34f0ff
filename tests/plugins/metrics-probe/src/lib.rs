//! Test plugin for the `metrics` capability. In `init` it declares counter `probe_lookups_total`
//! (label `result`, with the values `results` of its config) and histogram `probe_size_bytes`
//! (buckets 10, 100, 1000); with `"declare": "bad"` it declares an invalid name, so `init`
//! fails. Per request it counts `x-result` and observes `x-size`; `x-declare: late` makes it
//! try to declare during the call. A refused call is answered in header `x-metrics-error`.

use plugin_sdk::metrics::{Counter, Histogram};
use plugin_sdk::{Context, Filter, Flow, Request, Settings};
use serde::Deserialize;

/// `{"results": ["hit", "miss"], "declare": "bad"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Values of label `result`.
    pub results: Vec<String>,
    /// `bad`: declare an invalid metric name in `init`.
    #[serde(default)]
    pub declare: Option<String>,
}

/// The probe.
pub struct MetricsProbe {
    lookups: Counter,
    sizes: Histogram,
}

impl Filter for MetricsProbe {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.declare.as_deref() == Some("bad") {
            Counter::declare("Probe-Lookups", "", &[])?;
        }
        let results: Vec<&str> = config.results.iter().map(String::as_str).collect();
        let lookups = Counter::declare(
            "probe_lookups_total",
            "Lookups by result.",
            &[("result", &results)],
        )?;
        let sizes = Histogram::declare(
            "probe_size_bytes",
            "Sizes seen.",
            &[],
            &[10.0, 100.0, 1000.0],
        )?;
        Ok(MetricsProbe { lookups, sizes })
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(vec!["x-result".into(), "x-size".into(), "x-declare".into()]),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Flow {
        let mut result = Ok(());
        if let Some(value) = req.header("x-result") {
            result = result.and(self.lookups.inc(&[value]));
        }
        if let Some(size) = req.header("x-size").and_then(|s| s.parse::<f64>().ok()) {
            result = result.and(self.sizes.observe(&[], size));
        }
        if req.header("x-declare") == Some("late") {
            result = result.and(Counter::declare("late_total", "", &[]).map(|_| ()));
        }
        if let Err(e) = result {
            req.set_header("x-metrics-error", e);
        }
        Flow::Continue
    }
}

plugin_sdk::export_filter!(MetricsProbe);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    #[test]
    fn counts_declared_values_and_refuses_the_rest() {
        testing::reset_state();
        let probe: MetricsProbe = testing::init(json!({"results": ["hit", "miss"]})).unwrap();
        let run = |request: TestRequest| testing::request(&probe, request);
        let ok = run(TestRequest::get("/")
            .with_header("x-result", "hit")
            .with_header("x-size", "42"));
        assert_eq!(ok.upstream().unwrap().header("x-metrics-error"), None);
        assert_eq!(
            testing::metric("probe_lookups_total", &["hit"])
                .unwrap()
                .sum,
            1.0
        );
        assert_eq!(testing::metric("probe_size_bytes", &[]).unwrap().sum, 42.0);
        let hot = run(TestRequest::get("/").with_header("x-result", "hot"));
        let error = hot.upstream().unwrap().header("x-metrics-error").unwrap();
        assert!(error.contains("\"hot\""), "{error}");
        let late = run(TestRequest::get("/").with_header("x-declare", "late"));
        let error = late.upstream().unwrap().header("x-metrics-error").unwrap();
        assert!(error.contains("declared in init"), "{error}");
        let bad = testing::init::<MetricsProbe>(json!({"results": ["a"], "declare": "bad"}));
        assert!(bad.err().unwrap().contains("[a-z_]"));
    }
}
