//! `vswitchd` refuses bad configuration before touching the network: the message names the
//! file, the key and the problem, and the exit status is non-zero.

use std::process::Command;

fn vswitchd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("vswitchd-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_example_configs() {
    for f in [
        "config/node-a.toml",
        "config/node-b.toml",
        "config/reference.toml",
    ] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        let (code, out) = vswitchd(&["--config", &path, "--check"]);
        assert_eq!(code, 0, "{f}: {out}");
        assert!(out.contains("ok"), "{out}");
    }
}

#[test]
fn bad_configs_are_refused_naming_file_key_and_problem() {
    let base = "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n[[peer]]\nname = \"b\"\nunderlay_ip = \"192.0.2.2\"\n";
    let cases = [
        ("vni", format!("{base}[[network]]\nname = \"blue\"\nvni = 16777216\nsubnet = \"10.0.9.0/24\"\n"), "vni"),
        ("addr", base.replace("192.0.2.1", "192.0.2.300") + "[[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\n", "underlay_ip"),
        ("peer", format!("{base}[[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\npeers = [\"node-z\"]\n"), "node-z"),
        ("dupvni", format!("{base}[[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\n[[network]]\nname = \"red\"\nvni = 42\nsubnet = \"10.0.8.0/24\"\n"), "vni"),
        ("mtu", format!("{base}[[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\nmtu = 1500\n"), "mtu"),
        ("typo", format!("{base}[[network]]\nname = \"blue\"\nvnii = 42\nsubnet = \"10.0.9.0/24\"\n"), "vnii"),
        ("syntax", "[node\nname = \"a\"\n".to_string(), "line"),
    ];
    for (name, text, key) in cases {
        let path = write_config(name, &text);
        let (code, out) = vswitchd(&["--config", path.to_str().unwrap(), "--check"]);
        let _ = std::fs::remove_file(&path);
        assert_ne!(code, 0, "{name}: accepted:\n{out}");
        assert!(
            out.contains(path.to_str().unwrap()),
            "{name}: message does not name the file: {out}"
        );
        assert!(
            out.contains(key),
            "{name}: message does not name {key:?}: {out}"
        );
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let (code, out) = vswitchd(&["--config", "/nonexistent/node.toml", "--check"]);
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/node.toml"), "{out}");
}
