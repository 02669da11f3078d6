//! What the demos share: narration, Ctrl-C handling, preflight, finding the binaries.
#![allow(dead_code)] // each demo uses part of it

use super::testbed::{Binaries, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

// ---- narration -------------------------------------------------------------------------------

/// Starts the next numbered step, or stops the walkthrough if Ctrl-C (or SIGTERM) came.
pub fn step(title: &str) -> Result<()> {
    if interrupted() {
        return Err("interrupted".into());
    }
    heading(title);
    Ok(())
}

pub fn heading(title: &str) {
    static N: AtomicUsize = AtomicUsize::new(1);
    println!("\n== {}. {title}", N.fetch_add(1, Ordering::Relaxed));
}

/// A command that does the same by hand.
pub fn cmd(line: &str) {
    println!("  $ {line}");
}

/// A remark.
pub fn say(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

/// Program output, indented under the command that made it.
pub fn indent(text: &str) {
    for line in text.trim_end().lines() {
        println!("      {line}");
    }
}

// ---- Ctrl-C ------------------------------------------------------------------------------------

pub fn interrupt_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// SIGINT and SIGTERM only raise a flag: the walkthrough stops at the next step and unwinds, so
/// the testbed's Drop removes everything. The children in our process group get the same SIGINT
/// from the terminal and stop on their own; the testbed stops the daemons by pid either way.
pub fn catch_interrupts() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(interrupt_flag())) {
            eprintln!(
                "warning: cannot catch signal {sig} ({e}); Ctrl-C may leave namespaces behind"
            );
        }
    }
}

pub fn interrupted() -> bool {
    interrupt_flag().load(Ordering::Relaxed)
}

// ---- setup -------------------------------------------------------------------------------------

/// Root, and the tools the demo drives (`wanted`; installed by the project's script when
/// missing); those in `needed` must be there afterwards.
pub fn preflight(example: &str, wanted: &[&str], needed: &[&str]) -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "this demo makes network namespaces and must run as root, e.g.\n  \
                    sudo -E cargo run --release --example {example}"
        ));
    }
    if wanted.iter().any(|t| !on_path(t)) {
        // A fresh machine lacks some of them: install them as the test script does.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-deps.sh");
        println!("some tools the demo drives are missing; installing them:\n  $ {script}");
        let status = std::process::Command::new("bash")
            .arg(script)
            .status()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !status.success() {
            return Err(format!("{script} failed ({status})"));
        }
    }
    for tool in needed {
        if !on_path(tool) {
            return Err(format!(
                "`{tool}` is not installed (needed by the demo; `ip` comes with iproute2)"
            ));
        }
    }
    Ok(())
}

pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(tool).is_file())
}

/// vswitchd and vswitchctl beside this example (target/<profile>/examples/two-hosts ->
/// target/<profile>/vswitchd). `cargo run --example` does not build bin targets, so build them
/// when they are missing or older than this example.
pub fn find_binaries() -> Result<Binaries> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in target/<profile>/examples", exe.display()))?;
    let bins = Binaries {
        vswitchd: dir.join("vswitchd"),
        vswitchctl: dir.join("vswitchctl"),
    };
    let built = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let exe_time = built(&exe).unwrap_or(SystemTime::UNIX_EPOCH);
    if [&bins.vswitchd, &bins.vswitchctl]
        .iter()
        .all(|p| built(p).is_some_and(|t| t >= exe_time))
    {
        return Ok(bins);
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build".to_string(), "--bins".to_string()];
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => args.push("--release".into()),
        Some(other) => args.extend(["--profile".into(), other.into()]),
        None => {}
    }
    println!("vswitchd/vswitchctl are missing or older than this example; building them:");
    println!(
        "  $ cd {} && cargo {}",
        env!("CARGO_MANIFEST_DIR"),
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("`cargo {}` failed ({status})", args.join(" ")));
    }
    for p in [&bins.vswitchd, &bins.vswitchctl] {
        if !p.is_file() {
            return Err(format!("{} is still missing after the build", p.display()));
        }
    }
    Ok(bins)
}

/// Namespaces whose name starts with `prefix-`, as `ip netns list` shows them.
pub fn namespaces_named(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}
