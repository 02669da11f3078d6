//! The network secret on disk: 32 random bytes, raw or as 64 hex characters (an optional
//! trailing newline allowed, so `vswitchctl gen-key > FILE` and `head -c32 /dev/urandom > FILE`
//! both work). The file must be private to its owner, like an SSH private key: a secret that
//! other users can read protects nothing.
//!
//! Called by the control thread at start; never on the packet path.

use ring::rand::{SecureRandom, SystemRandom};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {p}: does not exist (make one: (umask 077; head -c 32 /dev/urandom > {p}))", p = .0.display())]
    Missing(PathBuf),
    #[error("key file {p}: {source}", p = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("key file {p}: not a regular file", p = .0.display())]
    NotRegular(PathBuf),
    #[error("key file {p}: mode {mode:04o} lets other users read the secret: chmod 600 {p}", p = path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {p}: {len} bytes; expected 32 raw bytes or 64 hex characters", p = path.display())]
    BadLength { path: PathBuf, len: u64 },
    #[error("key file {p}: 64 characters but not hex; expected 32 raw bytes or 64 hex characters", p = .0.display())]
    BadHex(PathBuf),
}

/// Reads a network secret. Refuses a missing file, anything but a regular file (symlinks to
/// one are followed), a file that the group or others may read or write, and any content other
/// than 32 raw bytes or 64 hex characters with an optional trailing newline.
pub fn load_key_file(path: &Path) -> Result<[u8; SECRET_LEN], KeyFileError> {
    let io_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            KeyFileError::Missing(path.to_path_buf())
        } else {
            KeyFileError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    // Checked before opening too: opening a FIFO would block until someone writes to it.
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(KeyFileError::NotRegular(path.to_path_buf()));
    }
    let mut file = File::open(path).map_err(io_err)?;
    // Checked on the open file, so what we check is what we read.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // One byte more than the longest valid content, to tell "too long" without reading a
    // whole wrongly chosen file.
    let mut buf = [0u8; 2 * SECRET_LEN + 2];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    parse(&buf[..len]).ok_or_else(|| {
        if matches!(meta.len(), 64 | 65) {
            KeyFileError::BadHex(path.to_path_buf())
        } else {
            KeyFileError::BadLength {
                path: path.to_path_buf(),
                len: meta.len(),
            }
        }
    })
}

fn parse(content: &[u8]) -> Option<[u8; SECRET_LEN]> {
    match content.len() {
        SECRET_LEN => content.try_into().ok(),
        64 => super::from_hex(content),
        65 if content[64] == b'\n' => super::from_hex(&content[..64]),
        _ => None,
    }
}

/// A fresh secret from the OS random generator, as 64 hex characters.
pub fn generate_key_hex() -> String {
    let mut secret = [0u8; SECRET_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .expect("the OS random generator (getrandom) failed");
    super::to_hex(&secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d =
                std::env::temp_dir().join(format!("vswitch-keyfile-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }

        fn file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn expected() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn raw_and_hex() {
        let d = TempDir::new("ok");
        let raw = d.file("raw.key", &expected(), 0o600);
        assert_eq!(load_key_file(&raw).unwrap(), expected());
        let hex = d.file("hex.key", HEX.as_bytes(), 0o400);
        assert_eq!(load_key_file(&hex).unwrap(), expected());
        let nl = d.file(
            "nl.key",
            format!("{}\n", HEX.to_uppercase()).as_bytes(),
            0o600,
        );
        assert_eq!(load_key_file(&nl).unwrap(), expected());
    }

    #[test]
    fn refuses_readable_by_others() {
        let d = TempDir::new("mode");
        for mode in [0o644, 0o604, 0o640, 0o660, 0o606] {
            let p = d.file("open.key", HEX.as_bytes(), mode);
            let e = load_key_file(&p).unwrap_err();
            assert!(matches!(e, KeyFileError::Permissions { .. }), "{mode:o}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
        }
    }

    #[test]
    fn refuses_bad_content() {
        let d = TempDir::new("content");
        for (name, content) in [
            ("short", &b"0123456789"[..]),
            ("empty", &b""[..]),
            ("raw33", &[1u8; 33][..]),
            ("hex66", format!("{HEX}\n\n").as_bytes()),
            ("long", &[b'a'; 4096][..]),
        ] {
            let p = d.file(name, content, 0o600);
            let e = load_key_file(&p).unwrap_err();
            assert!(matches!(e, KeyFileError::BadLength { .. }), "{name}: {e}");
            assert!(e.to_string().contains(&p.display().to_string()));
        }
        let p = d.file("nothex", &[b'g'; 64], 0o600);
        let e = load_key_file(&p).unwrap_err();
        assert!(matches!(e, KeyFileError::BadHex(_)), "{e}");
        let p = d.file("crlf", format!("{HEX}\r").as_bytes(), 0o600);
        assert!(load_key_file(&p).is_err());
    }

    #[test]
    fn refuses_missing_and_directories() {
        let d = TempDir::new("missing");
        let p = d.0.join("nope.key");
        let e = load_key_file(&p).unwrap_err();
        assert!(matches!(e, KeyFileError::Missing(_)), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()));
        let sub = d.0.join("dir.key");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        let e = load_key_file(&sub).unwrap_err();
        assert!(matches!(e, KeyFileError::NotRegular(_)), "{e}");
        assert!(e.to_string().contains("dir.key"));
        let fifo = d.0.join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = load_key_file(&fifo).unwrap_err();
        assert!(matches!(e, KeyFileError::NotRegular(_)), "{e}");
    }

    #[test]
    fn generated_keys_load() {
        let a = generate_key_hex();
        let b = generate_key_hex();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        let d = TempDir::new("gen");
        let p = d.file("gen.key", format!("{a}\n").as_bytes(), 0o600);
        assert_eq!(crate::crypto::to_hex(&load_key_file(&p).unwrap()), a);
    }
}
