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
