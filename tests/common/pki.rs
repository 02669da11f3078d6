//! Certificates for tests that talk TLS to etcd.
#![allow(dead_code)]

fn run(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// A throwaway CA, a server certificate for `server_ips` and a client certificate, made with
/// openssl in `dir`.
pub fn make_pki(dir: &std::path::Path, server_ips: &[&str]) -> Pki {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=vsw-test-ca"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    run("openssl", &ca);
    let leaf = |name: &str, ext: &str| {
        let (key, csr, pem, extfile) = (
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.pem")),
            p(&format!("{name}.ext")),
        );
        std::fs::write(&extfile, ext).unwrap();
        let mut req = vec!["req", "-subj", "/CN=vsw-test"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        run("openssl", &req);
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-extfile",
                &extfile,
            ],
        );
        (pem, key)
    };
    // clientAuth too: with client-cert-auth, etcd's gateway dials its own gRPC server with the
    // server certificate as its client certificate.
    let (server_cert, server_key) = leaf(
        "server",
        &format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
            server_ips
                .iter()
                .map(|ip| format!("IP:{ip}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    let (client_cert, client_key) = leaf("client", "extendedKeyUsage=clientAuth\n");
    Pki {
        ca: ca_pem,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}
