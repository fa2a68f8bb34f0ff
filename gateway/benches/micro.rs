//! Microbenchmarks (`cargo bench -p gateway --bench micro`): router lookup with 10 / 1,000 /
//! 10,000 routes, one plugin call through the `Filter` trait (pooled and fresh instance; the
//! added cost of a call is its time minus `plugin_call/baseline`, which does everything but
//! the call: copy the request, build the context, `block_on`), and
//! a call on requests with 2 vs 32 header fields that the plugin did not declare it reads
//! (`settings.request-headers`), so they stay on the host side of the WIT boundary; the
//! difference is the benchmark's own copy of the request.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gateway::bench::{
    Cache, Engines, Filter, InstancePool, Isolation, Limits, Matcher, PathMatch, PluginConfig,
    RequestContext, RequestKey, RequestVerdict, Router, Services, Slot, WasmFilter, cache, loader,
};
use http::{HeaderMap, Method};
use std::hint::black_box;
use std::sync::Arc;

fn router_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_lookup");
    for count in [10usize, 1_000, 10_000] {
        let routes = (0..count)
            .map(|i| {
                let matcher = Matcher::new(
                    PathMatch::Prefix(format!("/service-{i}/api")),
                    vec![Method::GET, Method::POST],
                    &[],
                    Vec::new(),
                    0,
                );
                (matcher, i)
            })
            .collect();
        let router = Router::new(routes);
        let headers = HeaderMap::new();
        // The worst case for a scan: the route matched is the last one tried.
        let path = format!("/service-{}/api/items/42", count - 1);
        group.bench_with_input(BenchmarkId::from_parameter(count), &path, |b, path| {
            b.iter(|| {
                let key = RequestKey {
                    host: Some("api.example.com"),
                    path,
                    method: &Method::GET,
                    headers: &headers,
                };
                black_box(router.find(black_box(&key)))
            })
        });
    }
    group.finish();
}

/// A request-transformer use with an empty config (a no-op filter) in `isolation`.
fn noop_filter(rt: &tokio::runtime::Runtime, isolation: &str) -> WasmFilter {
    let engines = Engines::new().unwrap();
    let config: PluginConfig = toml::from_str(&format!(
        "module = \"builtin:request-transformer\"\nisolation = \"{isolation}\""
    ))
    .unwrap();
    assert!(matches!(
        config.isolation,
        Isolation::Pooled | Isolation::Request
    ));
    let cache = Cache::open(
        &std::env::temp_dir().join("gateway-bench-cache"),
        cache::key_file().as_deref(),
    );
    let plugin = loader::load(
        "noop",
        &config,
        std::path::Path::new("."),
        &engines,
        cache.as_ref(),
        false,
        Services::empty(),
    )
    .map_err(|e| e.message)
    .unwrap();
    let limits = Limits::resolve(&config.limits());
    let pool = rt
        .block_on(InstancePool::new(Arc::new(plugin), "{}".into(), limits))
        .map_err(|e| e.to_string())
        .unwrap();
    // Engines stop their epoch ticker on drop; keep them for the whole run.
    std::mem::forget(engines);
    WasmFilter::new(pool, "bench")
}

fn request_with_headers(count: usize) -> http::request::Parts {
    let mut builder = http::Request::get("/api/items?id=42").header("host", "api.example.com");
    for i in 0..count.saturating_sub(1) {
        builder = builder.header(format!("x-header-{i}"), "some-typical-header-value");
    }
    builder.body(()).unwrap().into_parts().0
}

/// One call as the proxy makes it, on a copy of `request` with a fresh context; without a
/// filter, only that copy, the context and `block_on` (the baseline to subtract).
fn call(rt: &tokio::runtime::Runtime, filter: Option<&WasmFilter>, request: &http::request::Parts) {
    let mut request = request.clone();
    let body = None;
    let mut ctx = RequestContext {
        route: Arc::from("bench"),
        request_id: Arc::from("req-1"),
        trace_id: None,
        client_addr: Arc::from("127.0.0.1:5000"),
        scheme: "http",
        attributes: Arc::from([]),
        values: Arc::default(),
    };
    let mut slot: Slot = None;
    let Some(filter) = filter else {
        rt.block_on(async { black_box((&mut request, &body, &mut ctx, &mut slot)) });
        return;
    };
    let verdict = rt
        .block_on(filter.on_request(&request, body, &ctx, &mut slot))
        .map_err(|f| f.detail)
        .unwrap();
    let RequestVerdict::Continue(edit) = verdict else {
        panic!("a no-op filter continues");
    };
    black_box(edit.apply(&mut request, &mut ctx));
}

fn plugin_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pooled = noop_filter(&rt, "pooled");
    let fresh = noop_filter(&rt, "request");
    let request = request_with_headers(8);
    let mut group = c.benchmark_group("plugin_call");
    group.bench_function("baseline", |b| b.iter(|| call(&rt, None, &request)));
    group.bench_function("pooled", |b| b.iter(|| call(&rt, Some(&pooled), &request)));
    group.bench_function("fresh_instance", |b| {
        b.iter(|| call(&rt, Some(&fresh), &request))
    });
    group.finish();

    let mut group = c.benchmark_group("undeclared_headers");
    for headers in [2usize, 32] {
        let request = request_with_headers(headers);
        group.bench_with_input(BenchmarkId::from_parameter(headers), &request, |b, r| {
            b.iter(|| call(&rt, Some(&pooled), r))
        });
    }
    group.finish();
}

/// Loading a compiled plugin from the cache: read, MAC check, deserialize (`cache::load`),
/// against wasmtime mapping an unauthenticated artifact (`deserialize_file`, the old path).
#[allow(unsafe_code)]
fn cache_load(c: &mut Criterion) {
    let engines = Engines::new().unwrap();
    let engine = engines.engine(false, Isolation::Pooled).clone();
    let bytes =
        loader::read_module("builtin:request-transformer", std::path::Path::new(".")).unwrap();
    let dir = std::env::temp_dir().join(format!("gateway-bench-cache-load-{}", std::process::id()));
    let key = dir.join("key").join("cache.key");
    let cache = Cache::open(&dir.join("cache"), Some(&key)).unwrap();
    cache::load(&engine, &bytes, Some(&cache)).unwrap();
    let raw = dir.join("raw.cwasm");
    let component = wasmtime::component::Component::new(&engine, &bytes).unwrap();
    let artifact = component.serialize().unwrap();
    std::fs::write(&raw, &artifact).unwrap();
    let mut group = c.benchmark_group("cache_load");
    group.bench_function(format!("mac_checked_{}KiB", artifact.len() >> 10), |b| {
        b.iter(|| cache::load(&engine, black_box(&bytes), Some(&cache)).unwrap())
    });
    group.bench_function("unchecked_deserialize_file", |b| {
        // SAFETY: the artifact was just serialized by this engine.
        b.iter(|| {
            unsafe { wasmtime::component::Component::deserialize_file(&engine, &raw) }.unwrap()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, router_lookup, plugin_call, cache_load);
criterion_main!(benches);
