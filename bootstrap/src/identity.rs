//! The bootstrap peer's persistent identity: a libp2p ed25519 keypair in a 0600 file, so its
//! PeerId (and every address handed out with it) survives restarts.

use std::path::Path;

use libp2p::identity::Keypair;
use samizdat_net::os::write_private;

/// Errors loading or creating the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("identity file {0}: {1}")]
    Io(String, std::io::Error),
    /// The file does not hold a keypair.
    #[error("identity file {0} is corrupt: {1}")]
    Corrupt(String, String),
}

/// Loads the keypair at `path`, creating it on first start.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, IdentityError> {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| IdentityError::Corrupt(shown, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = Keypair::generate_ed25519();
            let bytes = kp
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt(shown.clone(), e.to_string()))?;
            write_private(path, &bytes).map_err(|e| IdentityError::Io(shown, e))?;
            Ok(kp)
        }
        Err(e) => Err(IdentityError::Io(shown, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_is_private() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("identity.key");
        let a = load_or_create_identity(&p).expect("create");
        let b = load_or_create_identity(&p).expect("load");
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&p, b"garbage").expect("write");
        assert!(matches!(
            load_or_create_identity(&p),
            Err(IdentityError::Corrupt(..))
        ));
    }
}
