//! Test plugin that tries to read a host file, so its component imports `wasi:filesystem`:
//! refused unless granted `wasi`, and even then it finds no directory to read.

use plugin_sdk::{Context, Filter, Flow, NoConfig, Reply, Request};

/// The file reader.
pub struct FsReader;

impl Filter for FsReader {
    type Config = NoConfig;

    fn new(_config: Self::Config) -> Result<Self, String> {
        Ok(FsReader)
    }

    fn on_request(&self, _req: &mut Request, _ctx: &mut Context) -> Flow {
        match std::fs::read_to_string("/etc/hostname") {
            Ok(text) => {
                Flow::Respond(Reply::new(200).with_body(format!("read {} bytes", text.len())))
            }
            Err(e) => Flow::Respond(Reply::new(500).with_body(format!("fs error: {e}"))),
        }
    }
}

plugin_sdk::export_filter!(FsReader);
