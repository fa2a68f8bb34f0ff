//! Test plugin for the `kv` capability: `?op=set&key=K&value=V` stores V under K for a minute,
//! `?op=get&key=K` answers the value (404 when absent); anything else continues.

use plugin_sdk::{Context, Filter, Flow, NoConfig, Reply, Request, Settings, kv};

/// The filter (no config).
pub struct KvProbe;

impl Filter for KvProbe {
    type Config = NoConfig;

    fn new(_: Self::Config) -> Result<Self, String> {
        Ok(KvProbe)
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(Vec::new()),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        let key = req.query_param("key").unwrap_or("").to_string();
        let reply = match req.query_param("op") {
            Some("set") => {
                let value = req.query_param("value").unwrap_or("");
                match kv::set(&key, value.as_bytes(), 60_000) {
                    Ok(()) => Reply::new(204),
                    Err(e) => Reply::error(503, "kv", &format!("{e:?}"), ctx),
                }
            }
            Some("get") => match kv::get(&key) {
                Ok(Some(value)) => Reply::new(200).with_body(value),
                Ok(None) => Reply::new(404),
                Err(e) => Reply::error(503, "kv", &format!("{e:?}"), ctx),
            },
            _ => return Flow::Continue,
        };
        Flow::Respond(reply)
    }
}

plugin_sdk::export_filter!(KvProbe);
