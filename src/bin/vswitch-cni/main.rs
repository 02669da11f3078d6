//! `vswitch-cni`: a CNI plugin (spec 1.1.0) that puts containers on vswitch networks.
//!
//! A container runtime (podman with its CNI backend, containerd, CRI-O) runs it with
//! `CNI_COMMAND` and the other CNI_* variables set and the network configuration on stdin; it
//! asks the host's vswitchd over its control socket (netconf `"socket"`, default
//! /run/vswitch/vswitchd.sock) to attach or detach the container's interface on the vswitch
//! network (netconf `"network"`, default the configuration's `"name"`). The address comes from
//! vswitchd. The result, or a CNI error object, goes to stdout; notes go to stderr. See
//! README "CNI (podman)" and config/cni/vswitch.conflist.

mod ops;
mod spec;

use spec::{code, CniError, Command, Invocation, NetConf, LATEST};
use std::io::{Read, Write};
use std::process::ExitCode;
use vswitch::control::config::DEFAULT_CONTROL_SOCKET;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = spec::version_of(&stdin).unwrap_or_else(|| LATEST.to_string());
    let outcome = match read {
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            "cannot read the network configuration",
            format!("reading stdin: {e}"),
        )),
        Ok(_) => run(&stdin),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(result)) => {
            let _ = writeln!(out, "{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            eprintln!("vswitch-cni: {}: {}", e.msg, e.details);
            ExitCode::FAILURE
        }
    }
}

/// One invocation: what to print on success (ADD's result, VERSION's answer), if anything.
fn run(stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let inv = Invocation::from_env(|k| std::env::var(k).ok())?;
    // VERSION reads only `cniVersion`; every other command the whole configuration.
    let conf = || NetConf::parse(stdin, inv.command, DEFAULT_CONTROL_SOCKET);
    match inv.command {
        Command::Version => Ok(Some(spec::version_result(stdin))),
        Command::Add => ops::add(&inv, &conf()?).map(Some),
        Command::Del => ops::del(&inv, &conf()?).map(|_| None),
        Command::Check => ops::check(&inv, &conf()?).map(|_| None),
        Command::Status => ops::status(&conf()?).map(|_| None),
        Command::Gc => ops::gc(&conf()?).map(|_| None),
    }
}
