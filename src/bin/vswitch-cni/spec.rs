//! The CNI protocol as this plugin speaks it (CNI spec 1.1.0, github.com/containernetworking/cni
//! SPEC.md): the invocation (environment variables, §2 "Parameters"), the plugin
//! configuration on stdin (§1, §3 "Deriving request configuration"), versions, results (§5)
//! and error objects with the spec's codes (§5 "Error").
//!
//! Pure: nothing here reads the environment, stdin or a socket itself, so every rule is tested
//! with plain values.

use serde_json::{json, Map, Value};

/// Versions whose results this plugin writes (VERSION answers them). The 0.3.x and 0.4.0
/// results differ from 1.x only in `ips[].version`; CHECK needs 0.4.0, STATUS and GC 1.1.0.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version of this spec; also the `cniVersion` of an error when the input named none that
/// this plugin speaks.
pub const LATEST: &str = "1.1.0";

/// Spec §5 "Error": the well-known codes this plugin uses.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_NETCONF: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100+): vswitchd answered but refused the request.
    pub const DAEMON_REFUSED: u32 = 100;
    /// Plugin-specific: CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
}

/// A CNI error object (spec §5 "Error"), written on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    pub fn to_json(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }
}

/// The per-call parameters of spec §2, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime gave none (allowed for DEL).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: KEY=VALUE pairs separated by ';'.
    pub args: Vec<(String, String)>,
}

impl Invocation {
    /// Reads and checks the variables `command` needs (spec §2, each operation's "Required
    /// environment parameters"); `get` looks one up.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "invalid CNI_COMMAND",
                    format!(
                        "CNI_COMMAND={other:?}: expected ADD, DEL, CHECK, STATUS, VERSION or GC"
                    ),
                ))
            }
            None => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "CNI_COMMAND is not set",
                    "this is a CNI plugin: a container runtime runs it with CNI_COMMAND \
                     (ADD, DEL, CHECK, STATUS, VERSION or GC) and the network configuration \
                     on stdin",
                ))
            }
        };
        let attachment_op = matches!(command, Command::Add | Command::Del | Command::Check);
        let mut missing = Vec::new();
        let mut need = |k: &'static str, required: bool| -> String {
            let v = var(k).unwrap_or_default();
            if required && v.is_empty() {
                missing.push(k);
            }
            v
        };
        let container_id = need("CNI_CONTAINERID", attachment_op);
        let netns = need(
            "CNI_NETNS",
            matches!(command, Command::Add | Command::Check),
        );
        let ifname = need("CNI_IFNAME", attachment_op);
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("missing environment variables: {}", missing.join(", ")),
                format!(
                    "CNI_COMMAND={} needs {}",
                    command.as_str(),
                    missing.join(", ")
                ),
            ));
        }
        if attachment_op {
            check_container_id(&container_id)?;
            check_ifname(&ifname)?;
        }
        let args = parse_cni_args(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// A value of `CNI_ARGS`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The spec's rule for container ids (§2) and network names (§1): "Must start with an
/// alphanumeric character, optionally followed by any combination of one or more alphanumeric
/// characters, underscore, dot (.) or hyphen (-)."
fn is_cni_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_container_id(id: &str) -> Result<(), CniError> {
    if is_cni_identifier(id) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_CONTAINERID",
            format!(
                "CNI_CONTAINERID={id:?}: must start with a letter or digit, followed by letters, \
                 digits, '_', '.' or '-'"
            ),
        ))
    }
}

/// Linux's rule for interface names (dev_valid_name): 1..=15 bytes, not "." or "..", no '/',
/// ':' or whitespace.
fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_IFNAME",
            format!(
                "CNI_IFNAME={name:?}: a Linux interface name has 1 to 15 bytes, none of them \
                 '/', ':' or white space"
            ),
        ))
    }
}

/// `CNI_ARGS`: "FOO=BAR;ABC=123" (spec §2). An empty string is no arguments.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_ARGS",
                format!("CNI_ARGS: {p:?} is not KEY=VALUE (pairs are separated by ';')"),
            )),
        })
        .collect()
}

/// The plugin configuration on stdin, as far as this plugin reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    /// The network configuration's name (the runtime's network).
    pub name: String,
    /// The vswitch network: `"network"`, default `name`.
    pub network: String,
    /// vswitchd's control socket: `"socket"`, default /run/vswitch/vswitchd.sock.
    pub socket: String,
    pub prev_result: Option<Value>,
    /// `runtimeConfig` (capability arguments: `mac`, `ips`).
    pub runtime_config: Map<String, Value>,
    /// GC: `cni.dev/valid-attachments` as (containerID, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

/// The `cniVersion` of a configuration, if it is one this plugin speaks: the version for the
/// error object when the rest of the configuration is wrong.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS.contains(&s).then(|| s.to_string())
}

impl NetConf {
    /// Decodes and checks the configuration for `command` (not VERSION, which reads only
    /// `cniVersion`).
    pub fn parse(
        stdin: &[u8],
        command: Command,
        default_socket: &str,
    ) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                "cannot decode the network configuration",
                format!("stdin is not a JSON object: {e}"),
            )
        })?;
        let obj = v.as_object().ok_or_else(|| {
            CniError::new(
                code::DECODE,
                "cannot decode the network configuration",
                "stdin is JSON but not an object",
            )
        })?;
        let invalid =
            |d: String| CniError::new(code::INVALID_NETCONF, "invalid network configuration", d);
        let string = |k: &str| -> Result<Option<String>, CniError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!("\"{k}\" must be a string, not {other}"))),
            }
        };
        // Spec §1: a configuration without cniVersion is read as 0.1.0 (libcni does so too),
        // which this plugin does not speak.
        let cni_version = string("cniVersion")?.unwrap_or_else(|| "0.1.0".to_string());
        check_version(&cni_version, command)?;
        let name = string("name")?.ok_or_else(|| {
            invalid("\"name\" (the network configuration's name) is missing".into())
        })?;
        check_conf_name(&name).map_err(invalid)?;
        if string("type")?.is_none() {
            return Err(invalid(
                "\"type\" (the plugin's name, vswitch-cni) is missing".into(),
            ));
        }
        // This plugin gives addresses from vswitch's own IPAM; a delegated IPAM plugin's
        // addresses would be ones the switch does not know (spec §5: code 2 names the field).
        if let Some(ipam) = obj.get("ipam") {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "unsupported field in network configuration",
                format!(
                    "\"ipam\": {ipam}: vswitch-cni takes addresses from vswitchd (the \
                     network's subnet), not from an IPAM plugin; remove \"ipam\""
                ),
            ));
        }
        let network = match string("network")? {
            Some(n) if n.trim().is_empty() => return Err(invalid("\"network\" is empty".into())),
            Some(n) => n,
            None => name.clone(),
        };
        let socket = match string("socket")? {
            Some(s) if !s.starts_with('/') => {
                return Err(invalid(format!(
                    "\"socket\": {s:?} is not an absolute path (vswitchd's control socket, \
                     default {default_socket})"
                )))
            }
            Some(s) => s,
            None => default_socket.to_string(),
        };
        let prev_result = obj.get("prevResult").filter(|v| !v.is_null()).cloned();
        if let Some(p) = &prev_result {
            if !p.is_object() {
                return Err(invalid(format!(
                    "\"prevResult\" must be an object, not {p}"
                )));
            }
        }
        let runtime_config = match obj.get("runtimeConfig") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(invalid(format!(
                    "\"runtimeConfig\" must be an object, not {other}"
                )))
            }
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|e| {
                        let field = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
                        field("containerID").zip(field("ifname")).ok_or_else(|| {
                            invalid(format!(
                                "\"cni.dev/valid-attachments\": {e} needs string \"containerID\" and \"ifname\""
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => {
                return Err(invalid(format!(
                    "\"cni.dev/valid-attachments\" must be an array, not {other}"
                )))
            }
        };
        Ok(NetConf {
            cni_version,
            name,
            network,
            socket,
            prev_result,
            runtime_config,
            valid_attachments,
        })
    }

    /// The key the daemon keeps this attachment under: the configuration's name (so that GC of
    /// one configuration never touches another's ports), the container and the interface.
    /// None of the three may hold ':' (spec §1, §2; Linux interface names).
    pub fn attachment(&self, container_id: &str, ifname: &str) -> String {
        format!("{}{container_id}:{ifname}", self.attachment_prefix())
    }

    /// What every attachment key of this configuration starts with.
    pub fn attachment_prefix(&self) -> String {
        format!("cni:{}:", self.name)
    }
}

/// `(containerID, ifname)` of an attachment key made by `NetConf::attachment` for a
/// configuration whose keys start with `prefix`.
pub fn split_attachment<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.split_once(':')
}

fn check_conf_name(name: &str) -> Result<(), String> {
    if is_cni_identifier(name) {
        Ok(())
    } else {
        Err(format!(
            "\"name\": {name:?} must start with a letter or digit, followed by letters, digits, \
             '_', '.' or '-'"
        ))
    }
}

/// Whether this plugin speaks `version`, and whether `command` exists in it (CHECK came with
/// 0.4.0, STATUS and GC with 1.1.0).
pub fn check_version(version: &str, command: Command) -> Result<(), CniError> {
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!(
                "cniVersion {version:?} is not supported; this plugin supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let since = match command {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        _ => return Ok(()),
    };
    if semver(version) < semver(since) {
        let cmd = command.as_str();
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version does not allow {cmd}"),
            format!("{cmd} needs cniVersion {since} or later; the configuration has {version}"),
        ));
    }
    Ok(())
}

fn semver(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The VERSION answer (spec §5 "VERSION Success").
pub fn version_result(stdin: &[u8]) -> Value {
    let asked: Option<String> = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
        v.get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    json!({
        "cniVersion": asked.unwrap_or_else(|| LATEST.to_string()),
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

/// What ADD made, in the terms of an ADD result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub ifname: String,
    pub mac: String,
    pub mtu: u32,
    pub sandbox: String,
    /// ADDR/PREFIX.
    pub address: String,
    pub gateway: Option<String>,
    pub nameserver: Option<String>,
    pub search: Vec<String>,
}

/// The ADD result (spec §5 "ADD Success") in `version`'s shape: `ips[].version` before 1.0.0,
/// `interfaces[].mtu` from 1.1.0. Chained after another plugin (`prev`, its result), ours is
/// added to it, as the spec asks of a plugin given a `prevResult`: the interface appended, the
/// address pointing at it, DNS filled in where the previous result has none.
pub fn add_result(version: &str, a: &Attached, prev: Option<&Value>) -> Value {
    let mut iface = json!({ "name": a.ifname, "mac": a.mac, "sandbox": a.sandbox });
    if semver(version) >= (1, 1, 0) {
        iface["mtu"] = json!(a.mtu);
    }
    let mut out = prev.cloned().unwrap_or_else(|| json!({}));
    out["cniVersion"] = json!(version);
    let mut interfaces = out["interfaces"].as_array().cloned().unwrap_or_default();
    let index = interfaces.len();
    interfaces.push(iface);
    let mut ip = json!({ "address": a.address, "interface": index });
    if let Some(g) = &a.gateway {
        ip["gateway"] = json!(g);
    }
    if semver(version) < (1, 0, 0) {
        ip["version"] = json!("4");
    }
    let mut ips = out["ips"].as_array().cloned().unwrap_or_default();
    ips.push(ip);
    let mut dns = out["dns"].as_object().cloned().unwrap_or_default();
    if let Some(ns) = &a.nameserver {
        let list = dns.entry("nameservers").or_insert_with(|| json!([]));
        if let Some(l) = list.as_array_mut().filter(|l| !l.contains(&json!(ns))) {
            l.insert(0, json!(ns));
        }
    }
    if !a.search.is_empty() {
        dns.entry("search").or_insert_with(|| json!(a.search));
    }
    out["interfaces"] = json!(interfaces);
    out["ips"] = json!(ips);
    out["dns"] = Value::Object(dns);
    out
}

/// What CHECK expects, from `prevResult`: the interface named `ifname` in `sandbox`, its MAC
/// and its IPv4 addresses (ADDR/PREFIX).
pub fn expected_from_prev(
    prev: &Value,
    ifname: &str,
    sandbox: &str,
) -> Result<(Option<String>, Vec<String>), CniError> {
    let bad = |d: String| CniError::new(code::INVALID_NETCONF, "invalid prevResult", d);
    let ifaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let idx = ifaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox").and_then(Value::as_str).unwrap_or("") == sandbox
        })
        .ok_or_else(|| {
            bad(format!(
                "prevResult has no interface {ifname} in sandbox {sandbox}"
            ))
        })?;
    let mac = ifaces[idx]
        .get("mac")
        .and_then(Value::as_str)
        .map(str::to_string);
    let ips = prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| ip.get("interface").and_then(Value::as_u64) == Some(idx as u64))
        .filter_map(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    Ok((mac, ips))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const SOCK: &str = "/run/vswitch/vswitchd.sock";

    #[test]
    fn add_needs_its_variables_and_names_the_missing_ones() {
        let e = Invocation::from_env(env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]))
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(
            e.msg.contains("CNI_CONTAINERID") && e.msg.contains("CNI_NETNS"),
            "{e:?}"
        );
        // DEL may come without a namespace (it may be gone).
        let i = Invocation::from_env(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!((i.command, i.netns.as_str()), (Command::Del, ""));
        let e = Invocation::from_env(env(&[("CNI_COMMAND", "PLUG")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert_eq!(
            Invocation::from_env(env(&[])).unwrap_err().code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn container_ids_ifnames_and_args_are_checked() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_CONTAINERID", "-bad"),
        ];
        let e = Invocation::from_env(env(&base)).unwrap_err();
        assert!(e.details.contains("CNI_CONTAINERID"), "{e:?}");
        let mut b = base;
        b[3].1 = "c0ffee";
        b[2].1 = "eth0:1";
        assert!(Invocation::from_env(env(&b))
            .unwrap_err()
            .details
            .contains("CNI_IFNAME"));
        b[2].1 = "eth0";
        let mut with_args = b.to_vec();
        with_args.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web1"));
        let i = Invocation::from_env(env(&with_args)).unwrap();
        assert_eq!(i.arg("K8S_POD_NAME"), Some("web1"));
        assert!(parse_cni_args("A=1;junk").is_err());
        assert!(parse_cni_args("").unwrap().is_empty());
    }

    #[test]
    fn netconf_defaults_and_errors() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"blue","type":"vswitch-cni"}"#,
            Command::Add,
            SOCK,
        )
        .unwrap();
        assert_eq!((c.network.as_str(), c.socket.as_str()), ("blue", SOCK));
        assert_eq!(c.attachment("c0ffee", "eth0"), "cni:blue:c0ffee:eth0");
        assert_eq!(
            split_attachment(&c.attachment_prefix(), "cni:blue:c0ffee:eth0"),
            Some(("c0ffee", "eth0"))
        );
        assert_eq!(
            split_attachment(&c.attachment_prefix(), "cni:bluer:c:eth0"),
            None
        );
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch-cni","network":"red","socket":"/tmp/s"}"#,
            Command::Add,
            SOCK,
        )
        .unwrap();
        assert_eq!((c.network.as_str(), c.socket.as_str()), ("red", "/tmp/s"));

        let err = |s: &str, cmd| NetConf::parse(s.as_bytes(), cmd, SOCK).unwrap_err();
        assert_eq!(err("not json", Command::Add).code, code::DECODE);
        assert_eq!(err("[1]", Command::Add).code, code::DECODE);
        assert_eq!(
            err(r#"{"cniVersion":"1.1.0","type":"v"}"#, Command::Add).code,
            code::INVALID_NETCONF
        );
        assert_eq!(
            err(r#"{"cniVersion":"1.1.0","name":"n"}"#, Command::Add).code,
            code::INVALID_NETCONF
        );
        assert_eq!(
            err(
                r#"{"cniVersion":"1.1.0","name":"n","type":"v","socket":"rel.sock"}"#,
                Command::Add
            )
            .code,
            code::INVALID_NETCONF
        );
        assert_eq!(
            err(
                r#"{"cniVersion":"1.1.0","name":"n","type":"v","network":7}"#,
                Command::Add
            )
            .code,
            code::INVALID_NETCONF
        );
        assert_eq!(
            err(
                r#"{"cniVersion":"9.0.0","name":"n","type":"v"}"#,
                Command::Add
            )
            .code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            err(r#"{"name":"n","type":"v"}"#, Command::Add).code,
            code::INCOMPATIBLE_VERSION
        );
        let e = err(
            r#"{"cniVersion":"1.1.0","name":"n","type":"v","ipam":{"type":"host-local"}}"#,
            Command::Add,
        );
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(
            e.details.contains("ipam") && e.details.contains("host-local"),
            "{e:?}"
        );
        // CHECK came with 0.4.0, STATUS and GC with 1.1.0.
        assert_eq!(
            err(
                r#"{"cniVersion":"0.3.1","name":"n","type":"v"}"#,
                Command::Check
            )
            .code,
            code::INCOMPATIBLE_VERSION
        );
        let e = err(
            r#"{"cniVersion":"1.0.0","name":"n","type":"v"}"#,
            Command::Gc,
        );
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("GC"), "{e:?}");
    }

    #[test]
    fn valid_attachments_are_read() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"v","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
            Command::Gc,
            SOCK,
        )
        .unwrap();
        assert_eq!(c.valid_attachments, Some(vec![("a".into(), "eth0".into())]));
        let e = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"v","cni.dev/valid-attachments":[{"containerID":"a"}]}"#,
            Command::Gc,
            SOCK,
        )
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_NETCONF);
    }

    #[test]
    fn results_take_the_shape_of_their_version() {
        let a = Attached {
            ifname: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            mtu: 1450,
            sandbox: "/run/netns/x".into(),
            address: "10.0.9.2/24".into(),
            gateway: None,
            nameserver: Some("10.0.9.1".into()),
            search: vec!["blue".into()],
        };
        let r = add_result("1.1.0", &a, None);
        assert_eq!(r["interfaces"][0]["mtu"], 1450);
        assert_eq!(
            r["ips"][0],
            json!({"address": "10.0.9.2/24", "interface": 0})
        );
        assert_eq!(
            r["dns"],
            json!({"nameservers": ["10.0.9.1"], "search": ["blue"]})
        );
        let r = add_result("1.0.0", &a, None);
        assert!(r["interfaces"][0].get("mtu").is_none());
        assert_eq!(add_result("0.4.0", &a, None)["ips"][0]["version"], "4");
        let (mac, ips) = expected_from_prev(&r, "eth0", "/run/netns/x").unwrap();
        assert_eq!(
            (mac.as_deref(), ips),
            (Some("02:00:00:00:00:01"), vec!["10.0.9.2/24".to_string()])
        );
        assert!(expected_from_prev(&r, "eth1", "/run/netns/x").is_err());

        // Chained after a plugin that made an interface of its own: ours is appended.
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["192.0.2.53"]},
        });
        let r = add_result("1.0.0", &a, Some(&prev));
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(
            r["ips"][1],
            json!({"address": "10.0.9.2/24", "interface": 1})
        );
        assert_eq!(r["dns"]["nameservers"], json!(["10.0.9.1", "192.0.2.53"]));
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(
            expected_from_prev(&r, "eth0", "/run/netns/x").unwrap().1,
            vec!["10.0.9.2/24".to_string()]
        );
    }

    #[test]
    fn version_echoes_the_asked_version() {
        let v = version_result(br#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0")));
        assert_eq!(version_result(b"")["cniVersion"], LATEST);
        assert_eq!(
            version_of(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(version_of(br#"{"cniVersion":"7"}"#), None);
    }
}
