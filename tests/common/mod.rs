/// Unwraps a testbed step's result, or fails the test with the error and the daemons' logs.
#[macro_export]
macro_rules! step {
    ($tb:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}\n{}", e, $tb.logs()),
        }
    };
}

pub mod cluster;
pub mod frames;
pub mod pki;
pub mod podman;
pub mod testbed;

/// The vswitchd and vswitchctl that cargo built for the integration test being run.
#[allow(dead_code)] // not every test binary starts daemons
pub fn bins() -> testbed::Binaries {
    testbed::Binaries {
        vswitchd: env!("CARGO_BIN_EXE_vswitchd").into(),
        vswitchctl: env!("CARGO_BIN_EXE_vswitchctl").into(),
    }
}

/// Whether the running kernel is at least `major.minor`.
#[allow(dead_code)] // only the tests of kernel features ask
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The number at `path` in a `vswitchctl show ... --json` document (0 when absent).
#[allow(dead_code)] // not every test binary reads counters
pub fn counter(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

/// The daemons' environment for a run with TAP offloads on (the default) or off.
#[allow(dead_code)] // only the tests that run both ways
pub fn offload_env(on: bool) -> &'static [(&'static str, &'static str)] {
    if on {
        &[]
    } else {
        &[("VSWITCH_OFFLOADS", "off")]
    }
}
