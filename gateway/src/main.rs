//! `gateway`: the command-line entry point; everything else lives in the library half
//! (`src/lib.rs`), which benchmarks and tools link against too.

fn main() -> std::process::ExitCode {
    gateway::main()
}
