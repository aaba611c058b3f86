//! `cargo run --release -p samizdat-bench -- [--quick] [--only NAME] [--nodes N] [--out DIR]`: runs the benchmarks,
//! prints a table, and writes `target/bench/report.json`. Every figure comes with a baseline
//! measured in the same run (machines here are small and noisy: compare ratios, not seconds).

mod bootstrap_load;
mod churn;
mod crypto_bench;
mod files_bench;
mod harness;
mod mesh;
mod mls_bench;
mod node_cost;
mod plot;
mod store_bench;
mod sybil;
mod sync_bench;
mod web_bench;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{Map, Value};

/// Samizdat benchmarks.
#[derive(Debug, Parser)]
#[command(name = "samizdat-bench")]
struct Args {
    /// Small sizes, for CI: checks that every benchmark runs and reports.
    #[arg(long)]
    quick: bool,
    /// Run only this benchmark (crypto, mls, store, sync, files, web, mesh, churn, sybil, node,
    /// bootstrap).
    #[arg(long)]
    only: Option<String>,
    /// Measure only a mesh of this many nodes (with `--only mesh`): one row, and idle CPU at
    /// that size.
    #[arg(long)]
    nodes: Option<usize>,
    /// Where to write report.json (default: target/bench).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Open files wanted: 500 nodes × 100 connections × 2 ends, and some.
const WANT_FDS: u64 = 131_072;

type Bench = (&'static str, fn(bool) -> Result<Value>);

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(n) = args.nodes {
        let _ = mesh::NODES.set(n);
    }
    let _ = mesh::QUICK.set(args.quick);
    // Hundreds of nodes in one process hold tens of thousands of sockets (both ends of each
    // connection): where allowed (root), lift the hard limit too, so that a 200-node mesh
    // measures the nodes and not descriptor exhaustion.
    let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, WANT_FDS, WANT_FDS);
    let fds = samizdat_node::os::raise_open_files_limit()?;
    eprintln!("open files limit: {fds}");
    let benches: [Bench; 11] = [
        ("crypto", crypto_bench::run),
        ("mls", mls_bench::run),
        ("store", store_bench::run),
        ("sync", sync_bench::run),
        ("files", files_bench::run),
        ("web", web_bench::run),
        ("mesh", mesh::run),
        ("churn", churn::run),
        ("sybil", sybil::run),
        ("node", node_cost::run),
        ("bootstrap", bootstrap_load::run),
    ];
    if let Some(only) = &args.only
        && !benches.iter().any(|(n, _)| n == only)
    {
        anyhow::bail!(
            "unknown benchmark {only:?}; available: {}",
            benches.map(|(n, _)| n).join(", ")
        );
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"));
    std::fs::create_dir_all(&out_dir)?;
    let report_path = out_dir.join("report.json");
    // Keep sections from earlier runs of other benchmarks (with --only).
    let mut report: Map<String, Value> = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    report.insert("quick".into(), Value::Bool(args.quick));
    for (name, run) in benches {
        if args.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("== {name}");
        let v = run(args.quick).with_context(|| format!("benchmark {name}"))?;
        harness::print_table(name, &v);
        // Some benchmarks report top-level fields the report's contract names directly
        // ("mesh", "idle_rss_mib"); the rest go under their own name.
        match v {
            Value::Object(m) if m.contains_key("mesh") || m.contains_key("idle_rss_mib") => {
                for (k, val) in m {
                    report.insert(k, val);
                }
            }
            other => {
                report.insert(name.into(), other);
            }
        }
    }
    std::fs::write(
        &report_path,
        serde_json::to_vec_pretty(&Value::Object(report))?,
    )?;
    println!("\nreport: {}", report_path.display());
    Ok(())
}
