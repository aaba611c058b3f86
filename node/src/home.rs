//! The node's data directory: where each file lives, and writing secret files safely.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use samizdat_net::os::sync_dir;
pub use samizdat_net::os::write_private;

/// Errors locating or preparing the home directory.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No `--home`, no `SAMIZDAT_HOME` and no platform data directory.
    #[error("cannot find a home directory: pass --home DIR or set SAMIZDAT_HOME")]
    NoHome,
    /// The directory could not be created or read.
    #[error("home directory {path}: {source}")]
    Io {
        /// The directory in question.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// A node's home directory and the names of the files in it.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `dir`, or `SAMIZDAT_HOME`, or the platform data directory, in that order.
    pub fn resolve(dir: Option<PathBuf>) -> Result<Self, HomeError> {
        if let Some(dir) = dir {
            return Ok(Self::at(dir));
        }
        if let Some(dir) = std::env::var_os("SAMIZDAT_HOME").filter(|d| !d.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        directories::ProjectDirs::from("org", "samizdat", "samizdat")
            .map(|d| Self::at(d.data_dir().to_path_buf()))
            .ok_or(HomeError::NoHome)
    }

    /// The home at exactly `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory (0700) if it does not exist.
    pub fn create(&self) -> Result<(), HomeError> {
        let io_err = |source| HomeError::Io {
            path: self.root.clone(),
            source,
        };
        fs::create_dir_all(&self.root).map_err(io_err)?;
        restrict_dir(&self.root).map_err(io_err)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.toml`: settings the operator may edit.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `keyring.json`: the data key, wrapped by a passphrase key or by `master.key`.
    pub fn keyring_file(&self) -> PathBuf {
        self.root.join("keyring.json")
    }

    /// `master.key`: the 0600 key that wraps the data key when no passphrase is set.
    pub fn master_key_file(&self) -> PathBuf {
        self.root.join("master.key")
    }

    /// `identity.key`: the node's signing and encryption keys, sealed with the data key.
    pub fn identity_file(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// `store/`: the sled database.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `blobs/`: file chunks, sealed.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `api.token`: the bearer token of the local API, rotated on every start.
    pub fn api_token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// `api.addr`: the address the running daemon's API is bound to.
    pub fn api_addr_file(&self) -> PathBuf {
        self.root.join("api.addr")
    }

    /// Whether `samizdat init` has run here.
    pub fn is_initialized(&self) -> bool {
        self.keyring_file().exists()
    }
}

/// Writes a non-secret file atomically (temp file + rename).
pub fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn restrict_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path().join("h"));
        home.create().expect("create");
        let f = home.api_token_file();
        write_private(&f, b"one").expect("write");
        write_private(&f, b"two").expect("rewrite");
        assert_eq!(fs::read(&f).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = fs::metadata(home.path())
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o700);
        }
    }
}
